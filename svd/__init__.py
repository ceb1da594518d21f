"""Video diffusion in the Stable Video Diffusion layout: model, training, generation, and the `svd` CLI."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("svd-toolkit")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
