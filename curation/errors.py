"""The errors a model stage stops a run with before any clip is processed: one line each, no traceback.

Kept apart from `curation.devices` (which imports torch) so that the driver and the split workers can name
them without loading torch.
"""

from __future__ import annotations


class ModelLoadError(RuntimeError):
    """A model that cannot be loaded: names the stage, the model and how to point at a local copy.

    Raised before any clip is processed, so a run never stops halfway for a missing model.
    """

    def __init__(self, stage: str, model: str, reason: str, config_key: str):
        super().__init__(
            f"{stage}: cannot load model {model!r}: {reason}. "
            f"Give a local folder or file with --set {config_key}=PATH (no model hub is needed then)"
        )


class EndpointError(RuntimeError):
    """The OpenAI-compatible server cannot be reached or gave an unusable answer (one line, with the URL)."""
