"""Copies as groups, and which copy of each group stays.

Pairs of near-identical clips (`near.py`, or perceptual matches) join into groups: two clips are in one group
when a chain of pairs links them (connected components). In each group the
first clip by the keep order stays (`keep_order`: best aesthetic score, then most motion, then most frames, then
the key, so the choice never depends on the order the pairs came in); every other clip is a duplicate of it,
with the highest similarity it has to any clip of its group.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


@dataclass(frozen=True)
class Duplicate:
    """A clip that is not kept: the clip of its group that stays (`of`) and its closest link in the group."""

    index: int
    of: int
    similarity: float


def components(count: int, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """A group number for each of `count` items, given the pairs (first[k], second[k]) (scipy's connected
    components of the pairs' graph)."""
    graph = coo_matrix((np.ones(len(first), np.int8), (first, second)), shape=(count, count))
    return connected_components(graph, directed=False)[1]


def keep_order(rows: Sequence[dict], columns: Sequence[str], key: str) -> np.ndarray:
    """Each row's rank by `columns` (each best first: highest; a missing value last), ties broken by `key`."""

    def sort_key(position: int):
        row = rows[position]
        values = []
        for column in columns:
            value = row.get(column)
            missing = value is None or value != value  # None or NaN
            values.append((missing, 0.0 if missing else -float(value)))
        return (*values, row[key])

    order = sorted(range(len(rows)), key=sort_key)
    ranks = np.empty(len(rows), np.int64)
    ranks[order] = np.arange(len(rows))
    return ranks


def duplicates(
    count: int, first: np.ndarray, second: np.ndarray, similarity: np.ndarray, ranks: np.ndarray
) -> list[Duplicate]:
    """Every item that is not the best (lowest `ranks`) of its group, with its group's best and its closest link."""
    group = components(count, first, second)
    paired = np.unique(np.concatenate([first, second]))
    best: dict[int, int] = {}
    for item in paired.tolist():
        root = int(group[item])
        if root not in best or ranks[item] < ranks[best[root]]:
            best[root] = item
    closest = np.full(count, -np.inf)
    np.maximum.at(closest, first, similarity)
    np.maximum.at(closest, second, similarity)
    kept = {best[int(group[item])] for item in paired.tolist()}
    return [
        Duplicate(item, best[int(group[item])], float(closest[item])) for item in paired.tolist() if item not in kept
    ]
