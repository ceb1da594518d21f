"""How fast are the scores? Clips per second for motion and OCR (and CLIP on a GPU), decode and compute apart.

  decode:  `curation.frame_sampling.decode_frames` of each clip, once with the frames motion needs (2 fps,
           long side 256), once with OCR's (first/middle/last, long side 384), and once with both in
           the single pass the pipeline makes (`plan_frames`);
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

from curation.config import AestheticConfig, ClipConfig, CurationConfig
from curation.frame_sampling import key_indices, plan_frames, sampled_indices
from curation.scores.motion import motion_score
from curation.scores.ocr import TextDetector
from curation.scores.openclip import AestheticPredictor, OpenClipScorer
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


def random_vit_l14(folder: Path) -> Path:
    """ViT-L-14 (QuickGELU, as OpenAI's) with random weights, in open_clip's local-folder layout."""
    model_cfg = open_clip.get_model_config("ViT-L-14")
    model_cfg["quick_gelu"] = True
    preprocess = {
        k: v
        for k, v in open_clip.get_pretrained_cfg("ViT-L-14", "openai").items()
        if k in ("mean", "std", "interpolation", "resize_mode")
    }
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg, "preprocess_cfg": preprocess}))
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-L-14", force_quick_gelu=True)
    save_file({k: v.half().contiguous() for k, v in model.state_dict().items()}, folder / "open_clip_model.safetensors")
    torch.manual_seed(1)
    torch.save(AestheticPredictor(768).state_dict(), folder / "aesthetic.pth")
    return folder


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
    config.clip.enabled = False  # the one-pass decode timed here is motion's and OCR's frames
    num_frames = round(args.seconds * FPS)
    motion_indices = sampled_indices(num_frames, FPS, config.motion.sample_fps)
    ocr_indices = key_indices(num_frames)
    plan = plan_frames(num_frames, FPS, config)
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

    start = time.perf_counter()
    detector = TextDetector(config.ocr)
    ocr_load = time.perf_counter() - start
    ocr_frames = [[frames[i] for i in ocr_indices] for frames in decoded]
    detector(ocr_frames[:1])  # warm-up (allocator, cuDNN)
    synchronize(detector.device)

    def run_ocr():
        result = detector(ocr_frames)
        synchronize(detector.device)
        return result

    ocr_time, ocr_scores = best_of(args.repeats, run_ocr)

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    print(f"\ncommand:  {shlex.join(['python', *sys.argv])}")
    print(f"machine:  {machine_description()}; GPU: {gpu}; torch threads {torch.get_num_threads()}")
    print(f"clips:    {n} x {args.seconds:g} s, {size[0]}x{size[1]} H.264 at {FPS} fps (synthetic: {', '.join(KINDS)})")
    print(
        f"frames:   motion {len(motion_indices)} per clip at long side {config.motion.max_side}; OCR {len(ocr_indices)} at {config.ocr.max_side}; one pass: {len(plan.all_indices)} at {plan.max_side}"
    )
    print(
        f"OCR:      device {detector.device}, {detector.dtype}, max_side {config.ocr.max_side}, model load {ocr_load:.1f} s"
    )
    print(f"scores:   motion {np.round(motion_scores, 2).tolist()}")
    print(f"          text area {np.round(ocr_scores, 3).tolist()}")
    print(f"repeats:  {args.repeats}, best counts\n")
    print("| stage | decode s/clip | compute s/clip | clips/s (decode + compute) | clips/s (compute only) |")
    print("|---|---:|---:|---:|---:|")
    rows = [("motion", decode_motion, motion_time), (f"OCR ({detector.device.type})", decode_ocr, ocr_time)]
    for name, decode, compute in rows:
        print(f"| {name} | {decode / n:.3f} | {compute / n:.3f} | {n / (decode + compute):.2f} | {n / compute:.2f} |")
    both = decode_both + motion_time + ocr_time
    print(
        f"| motion + OCR, one decode pass | {decode_both / n:.3f} | {(motion_time + ocr_time) / n:.3f} | {n / both:.2f} | {n / (motion_time + ocr_time):.2f} |"
    )

    if args.clip or torch.cuda.is_available():
        time_clip(args, decoded, plan)


def time_clip(args: argparse.Namespace, decoded: list[dict[int, np.ndarray]], plan) -> None:
    """OpenClipScorer on `--clip-clips` clips of 3 key frames (the decoded ones, repeated), then their captions."""
    with tempfile.TemporaryDirectory() as work:
        folder = random_vit_l14(Path(work))
        config = ClipConfig(
            model=str(folder),
            pretrained=None,
            device=args.device,
            aesthetic=AestheticConfig(weights=str(folder / "aesthetic.pth")),
        )
        start = time.perf_counter()
        scorer = OpenClipScorer(config)
        load = time.perf_counter() - start
    keys = plan.indices["ocr"]  # CLIP takes the same first, middle and last frames
    batch = [[decoded[i % len(decoded)][k] for k in keys] for i in range(args.clip_clips)]
    captions = [
        f"a synthetic video clip number {i} with moving discs and a textured background" for i in range(len(batch))
    ]
    scorer.image_scores(batch[:2])
    synchronize(scorer.device)

    def images():
        result = scorer.image_scores(batch)
        synchronize(scorer.device)
        return result

    image_time, results = best_of(args.repeats, images)
    embeddings = [result.embeddings for result in results]

    def texts():
        result = scorer.clip_scores(embeddings, captions)
        synchronize(scorer.device)
        return result

    text_time, _ = best_of(args.repeats, texts)
    n = len(batch)
    print(
        f"\nCLIP:     ViT-L-14 (random weights, same architecture), device {scorer.device}, {scorer.dtype}, batch {config.batch_size}, load {load:.1f} s"
    )
    print("| CLIP step | s/clip | clips/s |")
    print("|---|---:|---:|")
    print(
        f"| image embeddings + aesthetic ({len(keys)} frames per clip, from decoded frames) | {image_time / n:.4f} | {n / image_time:.1f} |"
    )
    print(f"| caption embedding + clip_score | {text_time / n:.4f} | {n / text_time:.1f} |")


if __name__ == "__main__":
    main()
