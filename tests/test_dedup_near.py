"""Near-identical vectors found by partitions (`curation/dedup/near.py`), on embeddings built with known cosines."""

from __future__ import annotations

import numpy as np
import pytest

from curation.dedup import near
from curation.dedup.groups import duplicates, keep_order
from curation.dedup.near import near_pairs, unit_rows


def planted(count: int, dimensions: int, cosines: list[float], seed: int = 0) -> tuple[np.ndarray, dict]:
    """`count` random unit vectors, then for each of `cosines` a new vector at exactly that cosine to one of them;
    and the planted pairs -> cosine."""
    rng = np.random.default_rng(seed)
    vectors = unit_rows(rng.normal(size=(count, dimensions)))
    extra, pairs = [], {}
    for n, cosine in enumerate(cosines):
        base = vectors[n * 7]
        other = rng.normal(size=dimensions)
        other -= other.dot(base) * base  # orthogonal to base
        other /= np.linalg.norm(other)
        extra.append(cosine * base + np.sqrt(1 - cosine**2) * other)
        pairs[(n * 7, count + n)] = cosine
    return unit_rows(np.vstack([vectors, *extra])), pairs


def exact_pairs(vectors: np.ndarray, min_cosine: float) -> set[tuple[int, int]]:
    similarities = vectors @ vectors.T
    first, second = np.nonzero(np.triu(similarities >= min_cosine, k=1))
    return set(zip(first.tolist(), second.tolist(), strict=True))


@pytest.mark.parametrize("partition_vectors, recall", [(near.PARTITION_VECTORS, 1.0), (200, 0.9)])
def test_the_pairs_over_the_threshold_are_found_and_no_other(monkeypatch, partition_vectors, recall):
    """Partitions are approximate: a pair whose vectors share no partition is missed (random vectors have no
    clusters, the worst case). Every pair found is exact: cosine over the threshold, reported as it is."""
    monkeypatch.setattr(near, "PARTITION_VECTORS", partition_vectors)  # 200: 20 partitions, pairs on borders
    cosines = [0.99, 0.97, 0.95, 0.93, 0.91, 0.89, 0.85, 0.5] * 5
    vectors, pairs = planted(4000, 64, cosines)
    first, second, similarity = near_pairs(vectors, min_cosine=0.9)
    found = dict(zip(zip(first.tolist(), second.tolist(), strict=True), similarity.tolist(), strict=True))
    expected = {pair for pair, cosine in pairs.items() if cosine >= 0.9}
    assert expected == exact_pairs(vectors, 0.9)  # random 64-d vectors are never this close
    assert set(found) <= expected and len(set(found)) >= recall * len(expected)
    for pair in found:
        assert found[pair] == pytest.approx(pairs[pair], abs=1e-5)
    assert np.all(first < second) and len(set(found)) == len(first)


def test_a_pair_at_exactly_the_threshold_is_found():
    vectors = unit_rows(np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]]))
    first, second, similarity = near_pairs(vectors, min_cosine=float(unit_rows([[0.8, 0.6]])[0] @ [1.0, 0.0]))
    assert list(zip(first.tolist(), second.tolist(), strict=True)) == [(0, 1)]
    assert similarity.tolist() == pytest.approx([0.8], abs=1e-6)


def test_groups_keep_the_best_copy_by_the_keep_order():
    rows = [
        {"key": "a", "aesthetic_score": 5.0, "motion_score": 1.0, "num_frames": 50},
        {"key": "b", "aesthetic_score": 6.0, "motion_score": 1.0, "num_frames": 50},  # best of group {a, b, c}
        {"key": "c", "aesthetic_score": None, "motion_score": 9.0, "num_frames": 90},  # no score: last
        {"key": "d", "aesthetic_score": 4.0, "motion_score": 2.0, "num_frames": 40},
        {"key": "e", "aesthetic_score": 4.0, "motion_score": 2.0, "num_frames": 60},  # ties d, longer: stays
        {"key": "f", "aesthetic_score": 1.0, "motion_score": 0.0, "num_frames": 10},  # alone
    ]
    ranks = keep_order(rows, ["aesthetic_score", "motion_score", "num_frames"], "key")
    first, second = np.array([0, 2, 3]), np.array([1, 0, 4])  # a-b, c-a (a chain), d-e
    found = duplicates(len(rows), first, second, np.array([0.97, 0.93, 0.99]), ranks)
    assert [(rows[d.index]["key"], rows[d.of]["key"], d.similarity) for d in found] == [
        ("a", "b", pytest.approx(0.97)),
        ("c", "b", pytest.approx(0.93)),
        ("d", "e", pytest.approx(0.99)),
    ]
    assert duplicates(3, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.arange(3)) == []
