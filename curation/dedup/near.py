"""Pairs of near-identical vectors among many (CLIP embeddings of clips, frames' perceptual hashes as vectors),
without comparing all pairs: partition, then compare within each partition.

1. `train_partitions`: k-means centroids (faiss, spherical) from a sample of the vectors.
2. `assign`: each vector goes to its `probes` nearest centroids. Two near-identical vectors almost always share
   their nearest centroid; the other probes catch the pairs that straddle a border.
3. `pairs_within`: inside one partition, every pair at cosine >= `min_cosine` (faiss' exact range search,
   matrix products on the partition's block).

Each step is a function of its inputs alone, so a job can run step 2 per group of clips and step 3 per
partition, as tasks; `near_pairs` runs the three in one process. Work grows as n x probes^2 x
`PARTITION_VECTORS`: linear in n at a fixed partition size. Recall against an exact search is measured in
`benchmarks/dedup_speed.py` (faiss' own inverted-file range search, scanning lists per query, found fewer pairs
in more time there); every pair found is exact (its true cosine, over the threshold).

Vectors are float32 rows of unit length (cosine = inner product).
"""

from __future__ import annotations

import math

import faiss
import numpy as np

PARTITION_VECTORS = 1000  # vectors a partition holds on average (before the extra probes' copies)
TRAIN_PER_PARTITION = 64  # sample vectors per centroid for k-means (faiss warns below 39)
PROBES = 4  # partitions each vector joins (BENCHMARKS.md: recall 0.97-0.99 at 10^6 random vectors, 3: 0.95)


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """`vectors` as contiguous float32 rows of unit length (a zero row stays zero)."""
    vectors = np.asarray(vectors, np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), np.float32)


def train_partitions(sample: np.ndarray, partitions: int, seed: int = 0) -> np.ndarray:
    """Up to `partitions` unit centroids from `sample` (unit rows): fewer when the sample is too small for them."""
    partitions = max(1, min(partitions, len(sample) // TRAIN_PER_PARTITION))
    if partitions == 1:
        return unit_rows(sample.sum(axis=0, keepdims=True))
    kmeans = faiss.Kmeans(sample.shape[1], partitions, niter=10, spherical=True, seed=seed, verbose=False)
    kmeans.cp.max_points_per_centroid = TRAIN_PER_PARTITION
    kmeans.train(np.ascontiguousarray(sample, np.float32))
    return np.ascontiguousarray(kmeans.centroids, np.float32)


def assign(vectors: np.ndarray, centroids: np.ndarray, probes: int = PROBES) -> np.ndarray:
    """Each vector's `probes` nearest centroids (n x probes partition numbers; fewer columns with fewer centroids)."""
    if len(centroids) == 1:
        return np.zeros((len(vectors), 1), np.int64)
    index = faiss.IndexFlatIP(centroids.shape[1])
    index.add(centroids)
    return index.search(vectors, min(probes, len(centroids)))[1]


def pairs_within(vectors: np.ndarray, min_cosine: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair (i < j) of rows of one partition at cosine >= `min_cosine`: (i, j, cosine) arrays."""
    if len(vectors) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    # faiss keeps results strictly above the radius: a hair below `min_cosine` admits ties, filtered exactly below.
    limits, similarities, found = index.range_search(vectors, float(np.nextafter(np.float32(min_cosine), -1)))
    queries = np.repeat(np.arange(len(vectors)), np.diff(limits.astype(np.int64)))
    keep = (queries < found) & (similarities >= min_cosine)
    return queries[keep], found[keep], similarities[keep]


def near_pairs(
    vectors: np.ndarray, min_cosine: float, probes: int = PROBES, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair of `vectors` (unit rows) at cosine >= `min_cosine` that shares a partition, each once, sorted:
    (i, j, cosine) arrays with i < j. The three steps in this process."""
    count = len(vectors)
    partitions = math.ceil(count / PARTITION_VECTORS)
    sample = np.random.default_rng(seed).choice(count, min(count, partitions * TRAIN_PER_PARTITION), replace=False)
    where = assign(vectors, train_partitions(vectors[np.sort(sample)], partitions, seed), probes)
    order = np.argsort(where, axis=None, kind="stable")  # the (vector, probe) cells, partition by partition
    members, partition_of = order // where.shape[1], where.reshape(-1)[order]
    starts = np.flatnonzero(np.r_[True, partition_of[1:] != partition_of[:-1]])
    firsts, seconds, similarities = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0, np.float32)]
    for start, end in zip(starts, [*starts[1:], len(order)], strict=True):
        rows = members[start:end]
        i, j, similarity = pairs_within(vectors[rows], min_cosine)
        firsts.append(np.minimum(rows[i], rows[j]))
        seconds.append(np.maximum(rows[i], rows[j]))
        similarities.append(similarity)
    first, second, similarity = np.concatenate(firsts), np.concatenate(seconds), np.concatenate(similarities)
    unique = np.unique(first * count + second, return_index=True)[1]  # a pair found in two partitions
    return first[unique], second[unique], similarity[unique]
