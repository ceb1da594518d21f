"""The `svd` command: curate video data, train video models, generate video from an image.

Exit codes, for every subcommand:
  0  everything asked for was done
  1  the job failed (nothing usable was written, or an internal error)
  2  usage or config error (bad flag, bad config file, bad `--set`)
  3  `svd curate` only: some inputs failed (listed in OUT/errors.jsonl), the rest was written
"""

from __future__ import annotations

import logging
import sys

import click

from svd import __version__

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class UsageProblem(click.ClickException):
    """A user mistake (config, flag, input): one line on stderr, exit code 2, no traceback."""

    exit_code = EXIT_USAGE


def setup_logging(verbose: int, quiet: int) -> None:
    level = logging.INFO - 10 * verbose + 10 * quiet
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(levelname)s %(name)s: %(message)s", force=True)
    # Third-party libraries stay at WARNING unless -vv asks for everything.
    if verbose < 2:
        for name in ("urllib3", "filelock", "PIL", "matplotlib", "ray", "httpx"):
            logging.getLogger(name).setLevel(logging.WARNING)


def common_options(command):
    """-v/-q on every subcommand, so they work after the subcommand name, where people type them."""
    command = click.option("-q", "--quiet", count=True, help="Less output: warnings and errors only.")(command)
    command = click.option("-v", "--verbose", count=True, help="More output (-vv: also third-party libraries).")(
        command
    )
    return command


def config_options(command):
    command = click.option(
        "--set",
        "overrides",
        multiple=True,
        metavar="KEY=VALUE",
        help="Override one config key, e.g. --set split.min_seconds=3 (repeatable; values are YAML).",
    )(command)
    return command


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, "--version", prog_name="svd", message="%(prog)s %(version)s")
def cli() -> None:
    """Curate video data, train video diffusion models on it, and generate video from an image.

    \b
    svd curate    long videos -> single-shot clips, scored, captioned, filtered, written as WebDataset shards
    svd train     train temporal layers on top of a frozen Stable Diffusion UNet, on those shards
    svd generate  image-to-video with Stable Video Diffusion checkpoints or a model from `svd train`

    Run `svd COMMAND --help` for the options of each command.
    """


@cli.command(context_settings=CONTEXT)
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("-o", "--output", "output_dir", required=True, metavar="OUT", help="Output folder (created if needed).")
@click.option(
    "-c",
    "--config",
    "config_path",
    metavar="CONFIG",
    help="Curation config YAML (default: the SVD paper's pipeline, configs/curation/svd.yaml).",
)
@config_options
@click.option("--address", metavar="ADDR", help="Join this Ray cluster (default: start an embedded local Ray).")
@click.option("--restart", is_flag=True, help="Start OUT afresh even if it holds a run with another config.")
@common_options
def curate(inputs, output_dir, config_path, overrides, address, restart, verbose, quiet) -> None:
    """Cut videos into single-shot clips, score, caption and filter them, and write WebDataset shards.

    INPUT is a video file, a folder (searched recursively) or a .txt file listing one path per line.

    \b
    OUT/shards/shard-NNNNNN.tar  kept clips: KEY.mp4, KEY.json (record, scores, captions), KEY.txt (caption)
    OUT/clips.parquet            every clip, kept or rejected, with scores, captions, kept, reject_reasons
    OUT/errors.jsonl             one line per input that failed: its path and what is wrong
    OUT/summary.json             counts per stage and the thresholds used
    OUT/report.html              histograms and contact sheets of kept and rejected clips
    OUT/config.yaml              the fully resolved config of the run

    Exit code 0 when every input was processed, 3 when some failed (see errors.jsonl), 2 for a usage error.
    """
    setup_logging(verbose, quiet)
    raise click.ClickException("svd curate is not implemented yet")


@cli.command(context_settings=CONTEXT)
@click.option("-c", "--config", "config_path", required=True, metavar="CONFIG", help="Training config YAML.")
@click.option("-o", "--output", "run_dir", required=True, metavar="RUN_DIR", help="Run folder: checkpoints, logs.")
@config_options
@click.option("--resume", is_flag=True, help="Continue from the latest checkpoint in RUN_DIR.")
@common_options
def train(config_path, run_dir, overrides, resume, verbose, quiet) -> None:
    """Train the temporal layers of a video UNet on WebDataset shards written by `svd curate`.

    The image backbone (a Stable Diffusion UNet, or an official SVD checkpoint) stays frozen unless
    `model.freeze` says otherwise. RUN_DIR receives checkpoints, TensorBoard logs, validation videos,
    the resolved config and, at the end, the model in diffusers layout in RUN_DIR/final/.
    """
    setup_logging(verbose, quiet)
    raise click.ClickException("svd train is not implemented yet")


@cli.command(context_settings=CONTEXT)
@click.argument("images", nargs=-1, required=True, metavar="IMAGE...")
@click.option("-o", "--output", metavar="OUT", help="Output: a .mp4 (default), a .gif, or a folder of PNG frames.")
@click.option(
    "--model",
    metavar="DIR_OR_HUB_ID",
    help="An SVD checkpoint in diffusers layout, or a RUN_DIR/final exported by `svd train`.",
)
@common_options
def generate(images, output, model, verbose, quiet) -> None:
    """Turn still images into short videos with a Stable Video Diffusion model.

    IMAGE is an image file or a folder of images. The conditioning image is saved beside each video.
    """
    setup_logging(verbose, quiet)
    raise click.ClickException("svd generate is not implemented yet")


@cli.command("sample-video", context_settings=CONTEXT)
@click.argument("path", default="sample.mp4", metavar="[PATH]")
@click.option("--seed", default=0, show_default=True, help="Seed of the shots' textures and colours.")
@common_options
def sample_video(path, seed, verbose, quiet) -> None:
    """Write a short generated video to try `svd curate` on (default: sample.mp4).

    30 seconds at 128x96: shots with moving objects, a static shot, on-screen text, a fast pan with a
    flash, a shot shorter than the minimum clip length, joined by hard cuts, a dissolve, a fade through
    black and a wipe.
    """
    setup_logging(verbose, quiet)
    from curation.synthetic import make_video, sample_timeline

    video = make_video(path, sample_timeline(), seed=seed)
    click.echo(f"{video.path}: {video.num_frames} frames, {len(video.shots)} shots")


def main() -> None:
    cli(prog_name="svd")


if __name__ == "__main__":
    sys.exit(main())
