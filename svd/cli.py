"""The `svd` command: curate video data, train video models, generate video from an image.

Exit codes, for every subcommand:
  0  everything asked for was done
  1  the job failed (nothing usable was written, or an internal error)
  2  usage or config error (bad flag, bad config file, bad `--set`)
  3  `svd curate` only: some inputs failed (listed in OUT/errors.jsonl), the rest was written
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
from pathlib import Path

import click

from svd import __version__
from svd.generate.options import PRESETS, SAMPLER_NAMES, TORCH_DTYPES, LoadOptions, SampleSettings

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
        for name in ("urllib3", "filelock", "PIL", "matplotlib", "ray", "httpx", "faiss"):
            logging.getLogger(name).setLevel(logging.WARNING)
        # bitsandbytes warns on import (diffusers and peft import it) that it cannot fetch optional CPU kernels
        # from the hub; 8-bit AdamW, the one thing used from it, does not need them.
        logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


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
    svd report    OUT/report.html of a curate run: score histograms, contact sheets, other thresholds
    svd train     train temporal layers on top of a frozen Stable Diffusion UNet, on those shards
    svd generate  image-to-video with Stable Video Diffusion checkpoints or a model from `svd train`
    svd quickstart  all three on a sample video with tiny models, in a few minutes on a CPU

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

    INPUT is a video file, a folder (searched recursively) or a .txt file listing one path per line. INPUT
    and OUT may be local paths or URLs (file://, s3://, gs://, ...: any filesystem fsspec has installed).

    \b
    OUT/shards/shard-NNNNNN.tar  kept clips: KEY.mp4, KEY.json (record, scores, captions), KEY.txt (caption)
    OUT/clips.parquet/           every clip, kept or rejected, with scores, captions, kept, reject_reasons
                                 (a folder of Parquet parts: pandas.read_parquet reads it whole)
    OUT/thumbnails.parquet/      each clip's middle frame as a small JPEG, for the report
    OUT/errors.jsonl             one line per input that failed: its path and what is wrong
    OUT/summary.json             counts per stage and the thresholds used
    OUT/report.html              histograms and contact sheets of kept and rejected clips
    OUT/config.yaml              the fully resolved config of the run
    OUT/clips/KEY.mp4            what --set output.clip_files=none|rejected|all keeps (default none: the
                                 kept clips live in the shards only)

    Exit code 0 when every input was processed, 3 when some failed (see errors.jsonl), 2 for a usage error.
    """
    setup_logging(verbose, quiet)
    from curation.config import CurationConfig
    from curation.config_io import ConfigError, load_config
    from curation.errors import EndpointError, ModelLoadError
    from curation.run_lock import FolderLocked
    from pipelines.curate import InputError, find_inputs, run_curation
    from pipelines.ray_runtime import ClusterError
    from pipelines.storage import without_credentials

    try:
        config = load_config(CurationConfig, config_path, overrides)
        skipped: list[str] = []
        sources = find_inputs(list(inputs), skipped)
        result = run_curation(sources, output_dir, config, address=address, restart=restart, skipped=skipped)
    except (ConfigError, InputError, FolderLocked) as error:
        raise UsageProblem(str(error)) from None
    except (ClusterError, ModelLoadError, EndpointError) as error:
        raise click.ClickException(str(error)) from None
    where = without_credentials(output_dir).rstrip("/")
    click.echo(f"{where}: {result.clips} clips from {len(sources) - result.failed_inputs} videos", err=True)
    if result.failed_inputs:
        click.echo(f"{result.failed_inputs} input(s) failed: see {where}/errors.jsonl", err=True)
        sys.exit(EXIT_PARTIAL)


@cli.command(context_settings=CONTEXT)
@click.argument("output_dir", metavar="OUT")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Try another filter on the stored scores, e.g. --set filter.min_motion=0.5 (repeatable; filter.* and "
    "report.* only).",
)
@common_options
def report(output_dir, overrides, verbose, quiet) -> None:
    """Rebuild OUT/report.html of a finished `svd curate` run, without computing any score again.

    The page holds a histogram of each score with its thresholds, the counts per stage, contact sheets of kept
    clips and of rejected clips per reason, and how many clips other thresholds would keep. With --set
    filter.KEY=VALUE it also shows, and prints, what the run would keep with those thresholds; OUT/config.yaml
    stays the run's config. A clip the run rejected early (filter.early) never got its later scores: where the
    new thresholds would let it through it is counted as "plus up to", not as kept.
    """
    setup_logging(verbose, quiet)
    from curation.config_io import ConfigError
    from pipelines.report import ReportError, write_report

    try:
        summary = write_report(output_dir, overrides=overrides)
    except (ConfigError, ReportError) as error:
        raise UsageProblem(str(error)) from None
    click.echo(f"{summary.path}: {summary.clips} clips, {summary.kept} kept by the run")
    if summary.kept_with_overrides is not None:
        overrides_text = " ".join(f"--set {override}" for override in summary.overrides)
        click.echo(
            f"with {overrides_text}: {summary.kept_with_overrides} kept "
            f"({summary.newly_kept} more, {summary.newly_rejected} fewer)"
        )
        if summary.unknown_with_overrides:
            click.echo(
                f"plus up to {summary.unknown_with_overrides} clips the run rejected early, whose later scores were "
                "never computed: run svd curate with these thresholds to know"
            )


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
    from fsspec.implementations.local import LocalFileSystem

    from curation.config_io import ConfigError, load_config
    from curation.run_lock import FolderLocked, run_lock
    from svd.model.loading import ModelSourceError
    from svd.model.lora import AdapterError
    from svd.train.config import TrainConfig
    from svd.train.data import expand_shards
    from svd.train.loop import train as run_training
    from svd.train.memory import TrainSetupError

    try:
        config = load_config(TrainConfig, config_path, overrides)
        config.model.resolved_parameterisation()
        expand_shards(config.data.shards)
    except (ConfigError, ValueError) as error:
        raise UsageProblem(str(error)) from None
    # One job at a time in RUN_DIR: rank 0 holds its lock (under torchrun every rank runs this command).
    held = contextlib.ExitStack()
    if os.environ.get("RANK", "0") == "0":
        try:
            held.enter_context(run_lock(LocalFileSystem(), str(Path(run_dir).absolute()), "RUN_DIR"))
        except FolderLocked as error:
            raise UsageProblem(str(error)) from None
    try:
        with held:
            result = run_training(config, Path(run_dir), resume=resume)
    except (ModelSourceError, AdapterError, TrainSetupError) as error:
        raise UsageProblem(str(error)) from None
    if result.final is not None:
        click.echo(f"{result.final}: {result.step} steps; last checkpoint {result.checkpoint}", err=True)


# `svd generate`'s sampling options are SampleSettings' fields: default and help from there (a torch-free module).
SAMPLE_FIELDS = {setting.name: setting for setting in dataclasses.fields(SampleSettings)}


def sample_option(name: str, type: click.ParamType | None = None):
    """The `--NAME` option of the SampleSettings field `name`, with that field's default (shown unless None)
    and help text; `type` None: click's, from the default."""
    setting = SAMPLE_FIELDS[name]
    return click.option(
        f"--{name.replace('_', '-')}",
        default=setting.default,
        show_default=setting.default is not None,
        type=type,
        help=setting.metadata["help"],
    )


@cli.command(context_settings=CONTEXT)
@click.argument("images", nargs=-1, metavar="[IMAGE]...")
@click.option(
    "--prompt", metavar="TEXT", help="Text-to-video: one video of this prompt (--model: a text-to-video export)."
)
@click.option(
    "--prompts", "prompts_file", metavar="FILE", help="Text-to-video: a text file of prompts, one video per line."
)
@click.option(
    "--negative-prompt", default="", metavar="TEXT", help="Text-to-video: what guidance steers away from (default: '')."
)
@click.option(
    "--init-video",
    metavar="FILE",
    help="Video-to-video: noise this video's first frames to --strength and denoise them again, conditioned on IMAGE "
    "or on its first frame.",
)
@click.option(
    "-o",
    "--output",
    metavar="OUT",
    help="One image: a .mp4 (default NAME.mp4), a .gif, or a folder of PNG frames. Several: a folder (default .).",
)
@click.option(
    "--model",
    metavar="DIR_OR_HUB_ID",
    help="An SVD checkpoint in diffusers layout, or a RUN_DIR/final exported by `svd train` "
    "(default: stabilityai/stable-video-diffusion-img2vid-xt, from the hub).",
)
@click.option(
    "--format",
    "kind",
    type=click.Choice(["mp4", "gif", "png"]),
    help="Output type when -o is a folder of several videos (default mp4; png: a folder of frames per image).",
)
@sample_option("num_frames", click.IntRange(min=1))
@sample_option("steps", click.IntRange(min=1))
@sample_option("fps", click.IntRange(min=1))
@sample_option("motion_bucket_id", click.IntRange(min=0))
@sample_option("noise_aug_strength", click.FloatRange(min=0))
@sample_option("min_guidance")
@sample_option("max_guidance")
@sample_option("guidance_scale")
@sample_option("sampler", click.Choice(SAMPLER_NAMES))
@sample_option("s_churn", click.FloatRange(min=0))
@click.option(
    "--preset",
    type=click.Choice(list(PRESETS)),
    help="Named steps and guidance: sgm-xt and sgm-svd are Stability's simple_video_sample.py settings for img2vid-xt "
    "and img2vid (options given on the command line win); the defaults are diffusers'.",
)
@sample_option("strength", click.FloatRange(0, 1))
@sample_option("segments", click.IntRange(min=1))
@sample_option("overlap", click.IntRange(min=1))
@click.option("--seed", type=int, help="Seed of the first image (image i gets seed + i); default: random, reported.")
@sample_option("height", click.IntRange(min=1))
@sample_option("width", click.IntRange(min=1))
@sample_option("decode_chunk_size", click.IntRange(min=1))
@click.option(
    "--dtype",
    type=click.Choice(["auto", *TORCH_DTYPES]),
    default=LoadOptions.dtype,
    show_default=True,
    help="Precision (auto: fp16 on a GPU, fp32 on a CPU).",
)
@click.option("--device", metavar="DEVICE", help="cuda, cuda:1, cpu... (default: cuda when there is one).")
@click.option("--cpu-offload", is_flag=True, help="Keep each model part on the CPU except while it runs.")
@click.option(
    "--low-memory",
    is_flag=True,
    help="Fit 14 frames at 576x1024 in under 8 GB of GPU memory: CPU offload, feed-forward chunking, one guidance "
    "branch at a time, VAE decoding 2 frames at a time.",
)
@click.option(
    "--compile", "compile_unet", is_flag=True, help="torch.compile the UNet (slow first video, faster after)."
)
@click.option(
    "--lora",
    metavar="DIR",
    help="A LoRA adapter folder (svd train's RUN_DIR/final/lora, or any peft adapter for this UNet), merged in.",
)
@click.option(
    "--lora-scale",
    default=LoadOptions.lora_scale,
    show_default=True,
    type=float,
    help="Strength of --lora: 0 is the model without it, 1 as trained.",
)
@click.option("--batch-size", default=1, show_default=True, type=click.IntRange(min=1), help="Images sampled together.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print a JSON summary (seed, settings, outputs, timings) on stdout."
)
@common_options
def generate(
    images,
    prompt,
    prompts_file,
    negative_prompt,
    init_video,
    output,
    model,
    kind,
    num_frames,
    steps,
    fps,
    motion_bucket_id,
    noise_aug_strength,
    min_guidance,
    max_guidance,
    guidance_scale,
    sampler,
    s_churn,
    preset,
    strength,
    segments,
    overlap,
    seed,
    height,
    width,
    decode_chunk_size,
    dtype,
    device,
    cpu_offload,
    low_memory,
    compile_unet,
    lora,
    lora_scale,
    batch_size,
    as_json,
    verbose,
    quiet,
) -> None:
    """Make videos with a Stable Video Diffusion model, from still images (or prompts, or a video).

    IMAGE is an image file or a folder of images. The conditioning image, as the model saw it, is saved beside
    each video as NAME.condition.png. Frames equal those of diffusers' StableVideoDiffusionPipeline for the same
    model, seed and settings (and of its matching scheduler for each --sampler).

    \b
    svd generate cat.jpg                          cat.mp4, 25 frames at 576x1024 with img2vid-xt
    svd generate photos/ -o videos --format gif   videos/NAME.gif for every image in photos/
    svd generate cat.jpg --model run/final --num-frames 14 --low-memory -o cat.gif
    svd generate cat.jpg --lora run/final/lora --lora-scale 0.8   img2vid-xt with a trained LoRA adapter
    svd generate cat.jpg --sampler dpmpp_2m --steps 15 --preset sgm-xt
    svd generate cat.jpg --segments 4 --json      one 97-frame video (4 x 25 - 3), each segment's seed in the JSON
    svd generate --init-video walk.mp4 --strength 0.6 -o restyled.mp4
    svd generate --prompt "a red car at sunset" --model t2v-run/final --guidance-scale 7.5
    """
    setup_logging(verbose, quiet)
    import json

    import torch

    from svd.generate.options import low_memory as low_memory_preset
    from svd.generate.run import GenerateInputError, read_prompts
    from svd.generate.run import generate as run_generation
    from svd.model.loading import ModelSourceError
    from svd.model.lora import AdapterError

    load = LoadOptions(
        device=device, dtype=dtype, cpu_offload=cpu_offload, compile=compile_unet, lora=lora, lora_scale=lora_scale
    )
    settings = SampleSettings(
        num_frames=num_frames,
        steps=steps,
        fps=fps,
        motion_bucket_id=motion_bucket_id,
        noise_aug_strength=noise_aug_strength,
        min_guidance=min_guidance,
        max_guidance=max_guidance,
        guidance_scale=guidance_scale,
        sampler=sampler,
        s_churn=s_churn,
        strength=strength,
        segments=segments,
        overlap=overlap,
        height=height,
        width=width,
        decode_chunk_size=decode_chunk_size,
    )
    context = click.get_current_context()
    for name, value in PRESETS[preset or "diffusers"].items():
        if context.get_parameter_source(name) == click.core.ParameterSource.DEFAULT:
            setattr(settings, name, value)
    if low_memory:
        low_memory_preset(load, settings, decode_chunk_size_given=decode_chunk_size is not None)
    try:
        if prompt is not None and prompts_file is not None:
            raise GenerateInputError("give --prompt or --prompts, not both")
        prompts = [prompt] if prompt is not None else read_prompts(prompts_file) if prompts_file else []
        summary = run_generation(
            images,
            prompts=prompts,
            negative_prompt=negative_prompt,
            init_video=init_video,
            output=output,
            kind=kind,
            model=model,
            load=load,
            settings=settings,
            seed=seed,
            batch_size=batch_size,
            progress=not quiet,
            on_video=None if as_json else lambda job: click.echo(job.output),
        )
    except (GenerateInputError, ModelSourceError, AdapterError) as error:
        raise UsageProblem(str(error)) from None
    except torch.OutOfMemoryError:
        raise click.ClickException(
            "out of GPU memory: try --low-memory, a smaller --decode-chunk-size or --num-frames, or --batch-size 1"
        ) from None
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2))
    else:
        videos = len(summary.videos)
        click.echo(
            f"{videos} video(s), seed {summary.seed}, {summary.timings['seconds_per_video']:.1f} s per video", err=True
        )


@cli.command(context_settings=CONTEXT)
@click.argument("folder", default="quickstart", metavar="[DIR]")
@common_options
def quickstart(folder, verbose, quiet) -> None:
    """Image to video in one command, on a CPU in a few minutes: a sample video, curated with every stage
    (configs/curation/tiny.yaml, tiny random models), a tiny model trained on its shards for a few steps
    (configs/train/tiny.yaml), and a video generated with it from one of the curated frames. DIR (default:
    quickstart) must be new or empty; each step prints what it wrote there.

    The models are tiny and random: the result shows that every stage works end to end, not what SVD makes.
    """
    setup_logging(verbose, quiet + 1)  # warnings and the steps' own lines only
    from svd.quickstart import QuickstartError
    from svd.quickstart import quickstart as run_quickstart

    try:
        run_quickstart(Path(folder), echo=click.echo)
    except QuickstartError as error:
        raise UsageProblem(str(error)) from None


@cli.command("sample-video", context_settings=CONTEXT)
@click.argument("path", default="sample.mp4", metavar="[PATH]")
@click.option("--seed", default=0, show_default=True, help="Seed of the shots' textures and colours.")
@common_options
def sample_video(path, seed, verbose, quiet) -> None:
    """Write a short generated video to try `svd curate` on (default: sample.mp4).

    30 seconds at 128x96: shots with moving objects, a static shot, on-screen text, a fast pan with a
    flash, a shot shorter than the minimum clip length, joined by hard cuts, dissolves and a fade through
    black.
    """
    setup_logging(verbose, quiet)
    from curation.synthetic import make_video, sample_timeline

    video = make_video(path, sample_timeline(), seed=seed)
    click.echo(f"{video.path}: {video.num_frames} frames, {len(video.shots)} shots")


@cli.command(context_settings=CONTEXT)
@click.argument("sd_unet", metavar="SD_UNET")
@click.option("-o", "--output", "output_dir", required=True, metavar="OUT", help="Output folder: a diffusers SVD UNet.")
@click.option(
    "--num-frames",
    default=14,
    show_default=True,
    type=click.IntRange(min=1),
    help="Frame count stored in the UNet config: diffusers' pipeline generates this many by default.",
)
@click.option(
    "--dtype",
    type=click.Choice(["fp32", "fp16", "bf16"]),
    default="fp32",
    show_default=True,
    help="Precision of the saved weights.",
)
@click.option("--overwrite", is_flag=True, help="Replace OUT if it already holds a model.")
@common_options
def inflate(sd_unet, output_dir, num_frames, dtype, overwrite, verbose, quiet) -> None:
    """Turn a Stable Diffusion 2.x UNet into an SVD-layout video UNet with new temporal layers.

    SD_UNET is a diffusers UNet folder, an SD pipeline folder (its unet/ is used) or a hub id such as
    stabilityai/stable-diffusion-2-1. Every SD weight is copied into its spatial counterpart, conv_in gets
    4 zero input channels for the conditioning latent, and the output layer of every new temporal path
    starts at zero: the video model reproduces the image model frame by frame until it is trained.

    \b
    OUT/config.json, OUT/diffusion_pytorch_model.safetensors
                               read by UNetSpatioTemporalConditionModel.from_pretrained(OUT)
    OUT/inflated_from.json     the source, its UNet config and its scheduler config (the `backbone`
                               noise parameterisation of `svd train` needs the latter)
    """
    setup_logging(verbose, quiet)
    import torch

    from svd.model.inflate import UnsupportedUNetError, inflate_checkpoint
    from svd.model.loading import ModelSourceError

    torch_dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
    try:
        summary = inflate_checkpoint(sd_unet, output_dir, num_frames=num_frames, dtype=torch_dtype, overwrite=overwrite)
    except ModelSourceError as error:
        raise UsageProblem(str(error)) from None
    except UnsupportedUNetError as error:
        raise UsageProblem(f"{sd_unet}: cannot be inflated: {error}") from None
    except FileExistsError as error:
        raise UsageProblem(str(error)) from None
    click.echo(
        f"{summary.output}: SVD UNet, {summary.total_parameters / 1e6:.1f}M parameters: "
        f"{summary.sd_parameters / 1e6:.1f}M copied from SD, {summary.temporal_parameters / 1e6:.1f}M in new "
        "temporal layers"
    )


def main() -> None:
    cli(prog_name="svd")


if __name__ == "__main__":
    sys.exit(main())
