"""How fast are the scores? Clips per second for motion and OCR (and CLIP on a GPU), decode and compute apart.

  decode:  `curation.frame_sampling.decode_frames` of each clip, once with the frames motion needs (2 fps,
           long side 256), once with OCR's (first/middle/last, long side 384), and once with both in
           the single pass the pipeline makes (`curation.stages.frame_plan`);
  motion:  `curation.scores.motion.motion_score` on the decoded 2-fps frames (Farneback at 16 px);
  OCR:     `curation.scores.ocr.TextDetector` on the key frames of all clips, batched (model load timed apart);
  CLIP:    `curation.scores.openclip.OpenClipScorer` (ViT-L-14 + the aesthetic MLP) image scores and caption
           scores, with `--clip` or whenever a GPU is visible. Nothing can be downloaded here, so the
           model has random weights written to a temporary local folder: the speed is the same.

Clips are synthetic (moving, static, pan and text shots, noisy textures: heavier to decode than typical
footage), generated once and cached in ~/.cache/svd-toolkit-bench/. The best of `--repeats` counts.

    python benchmarks/score_speed.py                       # 8 clips of 5 s, 1280x720 at 30 fps
    python benchmarks/score_speed.py --clips 16 --repeats 2 --size 1920x1080
    python benchmarks/score_speed.py --clip --device cuda  # on a GPU machine
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import open_clip
import torch
from machine import machine_description
from safetensors.torch import save_file

from curation.config import AestheticConfig, ClipConfig, CurationConfig, OcrConfig
from curation.frame_sampling import key_indices, sampled_indices
from curation.scores.motion import motion_score
from curation.scores.ocr import TextDetector
from curation.scores.openclip import AestheticPredictor, OpenClipScorer
from curation.stages import frame_plan
from curation.synthetic import Shot, make_video
from curation.video_io import decode_frames

CACHE = Path.home() / ".cache" / "svd-toolkit-bench"
FPS = 30
KINDS = ("moving", "static", "pan", "text")


def clips(count: int, seconds: float, size: tuple[int, int]) -> list[Path]:
    """`count` cached single-shot clips, cycling through the shot kinds."""
    paths = []
    for index in range(count):
        kind = KINDS[index % len(KINDS)]
        path = CACHE / f"clip_{size[0]}x{size[1]}_{FPS}fps_{seconds:g}s_{index}_{kind}.mp4"
        if not path.exists():
            CACHE.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(".partial.mp4")
            make_video(partial, [Shot(kind, seconds, speed=3.0)], fps=FPS, size=size, seed=index)
            partial.rename(path)
        paths.append(path)
    return paths


def best_of(repeats: int, run: Callable[[], object]) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    """Peak GPU memory allocated since `reset_peak`, GiB (None on the CPU)."""
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 3) if device.type == "cuda" else None


def key_frame_clips(count: int, seconds: float, size: tuple[int, int], max_side: int) -> list[list[np.ndarray]]:
    """The first, middle and last frames (long side `max_side`) of `count` clips: the cached synthetic clips,
    one of each shot kind at most, decoded once and cycled."""
    indices = key_indices(round(seconds * FPS))
    decoded = [decode_frames(path, indices, max_side) for path in clips(min(count, len(KINDS)), seconds, size)]
    return [[decoded[i % len(decoded)][k] for k in indices] for i in range(count)]


def time_ocr(config: OcrConfig, ocr_frames: list[list[np.ndarray]], repeats: int) -> dict:
    """`TextDetector` (model load timed apart, one warm-up clip) on every clip's key frames, best of `repeats`."""
    start = time.perf_counter()
    detector = TextDetector(config)
    load = time.perf_counter() - start
    detector(ocr_frames[:1])  # warm-up (allocator, cuDNN)
    synchronize(detector.device)
    reset_peak(detector.device)

    def run_ocr():
        result = detector(ocr_frames)
        synchronize(detector.device)
        return result

    seconds, scores = best_of(repeats, run_ocr)
    n = len(ocr_frames)
    return {
        "device": str(detector.device),
        "dtype": str(detector.dtype).removeprefix("torch."),
        "max_side": config.max_side,
        "batch_size": config.batch_size,
        "clips": n,
        "frames_per_clip": len(ocr_frames[0]),
        "load_s": round(load, 2),
        "seconds": seconds,
        "clips_per_s": n / seconds,
        "peak_gib": peak_gib(detector.device),
        "scores": scores,
    }


# A ViT and text transformer of 2 layers, 32 wide (the GPU suite's `--tiny` run); the real BPE vocabulary.
TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


def random_open_clip(folder: Path, tiny: bool = False) -> Path:
    """ViT-L-14 (QuickGELU, as OpenAI's; or `TINY_CLIP`) and the aesthetic MLP with random weights, in
    open_clip's local-folder layout."""
    model_cfg = dict(TINY_CLIP) if tiny else open_clip.get_model_config("ViT-L-14")
    model_cfg["quick_gelu"] = True
    preprocess = {
        k: v
        for k, v in open_clip.get_pretrained_cfg("ViT-L-14", "openai").items()
        if k in ("mean", "std", "interpolation", "resize_mode")
    }
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg, "preprocess_cfg": preprocess}))
    torch.manual_seed(0)
    model = open_clip.CLIP(**model_cfg) if tiny else open_clip.create_model("ViT-L-14", force_quick_gelu=True)
    save_file({k: v.half().contiguous() for k, v in model.state_dict().items()}, folder / "open_clip_model.safetensors")
    torch.manual_seed(1)
    torch.save(AestheticPredictor(model_cfg["embed_dim"]).state_dict(), folder / "aesthetic.pth")
    return folder


def time_clip(clip_frames: list[list[np.ndarray]], repeats: int, device: str, tiny: bool = False) -> dict:
    """`OpenClipScorer` (random ViT-L-14 + aesthetic MLP, or tiny ones): image scores of every clip's frames,
    then caption embeddings + clip_score, each best of `repeats` after a warm-up."""
    with tempfile.TemporaryDirectory() as work:
        folder = random_open_clip(Path(work), tiny)
        config = ClipConfig(
            model=str(folder),
            pretrained=None,
            device=device,
            aesthetic=AestheticConfig(weights=str(folder / "aesthetic.pth")),
        )
        start = time.perf_counter()
        scorer = OpenClipScorer(config)
        load = time.perf_counter() - start
    captions = [
        f"a synthetic video clip number {i} with moving discs and a textured background"
        for i in range(len(clip_frames))
    ]
    scorer.image_scores(clip_frames[:2])
    synchronize(scorer.device)
    reset_peak(scorer.device)

    def images():
        result = scorer.image_scores(clip_frames)
        synchronize(scorer.device)
        return result

    image_time, results = best_of(repeats, images)
    embeddings = [result.embeddings for result in results]

    def texts():
        result = scorer.clip_scores(embeddings, captions)
        synchronize(scorer.device)
        return result

    text_time, _ = best_of(repeats, texts)
    n = len(clip_frames)
    return {
        "model": "tiny" if tiny else "ViT-L-14",
        "device": str(scorer.device),
        "dtype": str(scorer.dtype).removeprefix("torch."),
        "batch_size": config.batch_size,
        "clips": n,
        "frames_per_clip": len(clip_frames[0]),
        "frame_size": list(clip_frames[0][0].shape[:2]),
        "load_s": round(load, 2),
        "image_seconds": image_time,
        "clips_per_s": n / image_time,  # image embeddings + aesthetic: the stage that runs on every clip
        "text_seconds": text_time,
        "caption_clips_per_s": n / text_time,
        "peak_gib": peak_gib(scorer.device),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each clip")
    parser.add_argument("--size", default="1280x720", help="WIDTHxHEIGHT of the clips")
    parser.add_argument("--repeats", type=int, default=1, help="the best one counts")
    parser.add_argument("--device", default="auto", help="for OCR and CLIP: auto, cpu, cuda")
    parser.add_argument("--clip", action="store_true", help="also time CLIP (default: only when a GPU is visible)")
    parser.add_argument("--clip-clips", type=int, default=256, help="clips (3 frames each) for the CLIP timing")
    args = parser.parse_args()

    size = tuple(int(v) for v in args.size.split("x"))
    paths = clips(args.clips, args.seconds, size)
    config = CurationConfig()
    config.ocr.device = config.clip.device = args.device
    config.clip.enabled = config.caption.enabled = False  # the one-pass decode timed here: motion's and OCR's frames
    num_frames = round(args.seconds * FPS)
    motion_indices = sampled_indices(num_frames, FPS, config.motion.sample_fps)
    ocr_indices = key_indices(num_frames)
    plan = frame_plan(num_frames, FPS, config)
    n = len(paths)

    for path in paths:  # warm the page cache for every path alike
        path.read_bytes()
    decode_motion, _ = best_of(
        args.repeats, lambda: [decode_frames(p, motion_indices, config.motion.max_side) for p in paths]
    )
    decode_ocr, _ = best_of(args.repeats, lambda: [decode_frames(p, ocr_indices, config.ocr.max_side) for p in paths])
    decode_both, decoded = best_of(
        args.repeats, lambda: [decode_frames(p, plan.all_indices, plan.max_side) for p in paths]
    )

    motion_frames = [[frames[i] for i in motion_indices] for frames in decoded]
    motion_time, motion_scores = best_of(args.repeats, lambda: [motion_score(f, config.motion) for f in motion_frames])

    ocr = time_ocr(config.ocr, [[frames[i] for i in ocr_indices] for frames in decoded], args.repeats)
    ocr_time = ocr["seconds"]

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    print(f"\ncommand:  {shlex.join(['python', *sys.argv])}")
    print(f"machine:  {machine_description()}; GPU: {gpu}; torch threads {torch.get_num_threads()}")
    print(f"clips:    {n} x {args.seconds:g} s, {size[0]}x{size[1]} H.264 at {FPS} fps (synthetic: {', '.join(KINDS)})")
    print(
        f"frames:   motion {len(motion_indices)} per clip at long side {config.motion.max_side}; OCR {len(ocr_indices)} at {config.ocr.max_side}; one pass: {len(plan.all_indices)} at {plan.max_side}"
    )
    print(
        f"OCR:      device {ocr['device']}, torch.{ocr['dtype']}, max_side {config.ocr.max_side}, model load {ocr['load_s']:.1f} s"
    )
    print(f"scores:   motion {np.round(motion_scores, 2).tolist()}")
    print(f"          text area {np.round(ocr['scores'], 3).tolist()}")
    print(f"repeats:  {args.repeats}, best counts\n")
    print("| stage | decode s/clip | compute s/clip | clips/s (decode + compute) | clips/s (compute only) |")
    print("|---|---:|---:|---:|---:|")
    rows = [("motion", decode_motion, motion_time), (f"OCR ({torch.device(ocr['device']).type})", decode_ocr, ocr_time)]
    for name, decode, compute in rows:
        print(f"| {name} | {decode / n:.3f} | {compute / n:.3f} | {n / (decode + compute):.2f} | {n / compute:.2f} |")
    both = decode_both + motion_time + ocr_time
    print(
        f"| motion + OCR, one decode pass | {decode_both / n:.3f} | {(motion_time + ocr_time) / n:.3f} | {n / both:.2f} | {n / (motion_time + ocr_time):.2f} |"
    )

    if args.clip or torch.cuda.is_available():
        keys = plan.indices["ocr"]  # CLIP takes the same first, middle and last frames
        clip = time_clip([[decoded[i % n][k] for k in keys] for i in range(args.clip_clips)], args.repeats, args.device)
        print(
            f"\nCLIP:     ViT-L-14 (random weights, same architecture), device {clip['device']}, torch.{clip['dtype']}, batch {clip['batch_size']}, load {clip['load_s']:.1f} s"
        )
        print("| CLIP step | s/clip | clips/s |")
        print("|---|---:|---:|")
        print(
            f"| image embeddings + aesthetic ({len(keys)} frames per clip, from decoded frames) | {clip['image_seconds'] / clip['clips']:.4f} | {clip['clips_per_s']:.1f} |"
        )
        print(
            f"| caption embedding + clip_score | {clip['text_seconds'] / clip['clips']:.4f} | {clip['caption_clips_per_s']:.1f} |"
        )


if __name__ == "__main__":
    main()
