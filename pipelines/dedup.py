"""Copies among the clips the filter keeps, found over the whole run (`dedup.perceptual`, `dedup.semantic`),
between the thresholds and the shards of the output phase (`outputs.py`).

One task reads, group by group, the kept clips' perceptual hashes (made by the motion task), CLIP embeddings
(the aesthetics stage's, with `dedup.semantic`) and the columns of the keep order: about 100 bytes a clip, and
2 bytes per embedding dimension, so the driver never holds them. Clips whose embeddings are within
`min_cosine` are paired by the same partitioned search. Frames whose hashes are within
`max_distance` bits are paired without comparing all pairs (`curation/dedup/near.py`: a hash as a 64-d vector
of +-1/8, whose cosine is 1 - 2 x distance / 64); the clips with paired frames are compared in full
(`perceptual.similarity`), those alike enough join groups, and each group keeps its first clip by `dedup.keep`
(`curation/dedup/groups.py`). The verdicts are written per output group (`.work/duplicates/group-NNNNNN.parquet`:
key, the clip that stays, similarity), which that group's tasks read when they filter their rows.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curation.config import CurationConfig
from curation.dedup import perceptual
from curation.dedup.groups import duplicates, keep_order
from curation.dedup.near import near_pairs, unit_rows
from curation.filtering import Rule, judge
from curation.record import SCORES, Column, duplicate_of, embedding_of
from pipelines.layout import WORK_FOLDER
from pipelines.selection import Piece, Read
from pipelines.storage import Folder

VERDICTS_FOLDER = f"{WORK_FOLDER}/duplicates"
VERDICT_PATTERN = "group-{index:06d}.parquet"
VERDICT_SCHEMA = pa.schema([("key", pa.string()), ("of", pa.string()), ("similarity", pa.float64())])
HASH_BITS = 64


def find_duplicates(
    output_dir: str, read: Read, groups: list[Piece], rules: list[Rule], config: CurationConfig
) -> dict[str, int]:
    """Task: the copies among the kept clips of every group (`read`: a group's rows, `selection.Read`); writes each
    group's verdicts and returns counts."""
    dedup = config.dedup
    order = list(dict.fromkeys([*dedup.keep, Column.NUM_FRAMES.value]))
    wanted = [Column.KEY.value, Column.PERCEPTUAL_HASH.value, Column.CLIP_EMBEDDING.value, Column.REJECT_REASONS.value]
    columns = list(dict.fromkeys([*wanted, *(score.value for score in SCORES), *order]))
    clips, signatures, embeddings, group_of = [], [], [], []
    for group in groups:
        for row in read(group, columns)[0].to_pylist():
            judge(row, rules)
            signature = perceptual.from_text(row[Column.PERCEPTUAL_HASH]) if dedup.perceptual.enabled else []
            embedding = embedding_of(row[Column.CLIP_EMBEDDING]) if dedup.semantic.enabled else None
            if row[Column.KEPT] and (signature or embedding is not None):
                clips.append({name: row[name] for name in [Column.KEY.value, *order]})
                signatures.append(signature)
                embeddings.append(embedding)
                group_of.append(group.index)
    # Pairs by either way, the strongest link of a pair found by both kept; then groups, and who stays.
    links: dict[tuple[int, int], float] = {}
    found_ways = [clip_pairs(signatures, dedup.perceptual.max_distance, dedup.perceptual.min_share)]
    found_ways.append(embedding_pairs(embeddings, dedup.semantic.min_cosine))
    for first, second, similarity in found_ways:
        for a, b, value in zip(first.tolist(), second.tolist(), similarity.tolist(), strict=True):
            links[a, b] = max(value, links.get((a, b), value))
    first, second = (np.array([pair[n] for pair in links], np.int64) for n in (0, 1))
    ranks = keep_order(clips, order, Column.KEY.value)
    found = duplicates(len(clips), first, second, np.array(list(links.values()), np.float64), ranks)
    by_group: dict[int, list[tuple[str, str, float]]] = {}
    for copy in found:
        verdict = (clips[copy.index][Column.KEY], clips[copy.of][Column.KEY], round(copy.similarity, 4))
        by_group.setdefault(group_of[copy.index], []).append(verdict)
    output = Folder(output_dir)
    for index, verdicts in by_group.items():
        rows = [dict(zip(VERDICT_SCHEMA.names, verdict, strict=True)) for verdict in verdicts]
        table = pa.Table.from_pylist(rows, schema=VERDICT_SCHEMA)
        buffer = pa.BufferOutputStream()
        pq.write_table(table, buffer)
        output.write_bytes(f"{VERDICTS_FOLDER}/{VERDICT_PATTERN.format(index=index)}", buffer.getvalue().to_pybytes())
    return {"compared_clips": len(clips), "duplicates": len(found)}


def embedding_pairs(embeddings: list[np.ndarray | None], min_cosine: float) -> tuple[np.ndarray, ...]:
    """The pairs of clips (by position, a < b) whose CLIP embeddings have cosine >= `min_cosine`."""
    held = [position for position, embedding in enumerate(embeddings) if embedding is not None]
    if len(held) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    first, second, similarity = near_pairs(unit_rows(np.stack([embeddings[i] for i in held])), min_cosine)
    positions = np.array(held, np.int64)
    return positions[first], positions[second], similarity.astype(np.float64)


def clip_pairs(
    signatures: list[list[int]], max_distance: int, min_share: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pairs of clips (by position, a < b) whose signatures are alike: frames paired by their hashes first,
    then the clips that hold them compared in full. (a, b, similarity) arrays."""
    frame_clip = np.repeat(np.arange(len(signatures)), [len(signature) for signature in signatures])
    pairs = []
    if len(frame_clip) > 1:
        vectors = _hash_vectors(np.array([value for signature in signatures for value in signature], np.uint64))
        first, second, _ = near_pairs(vectors, 1 - 2 * max_distance / HASH_BITS)
        candidates = set(zip(frame_clip[first].tolist(), frame_clip[second].tolist(), strict=True))
        for a, b in sorted({(min(a, b), max(a, b)) for a, b in candidates if a != b}):
            share = perceptual.similarity(signatures[a], signatures[b], max_distance)
            if share >= min_share:
                pairs.append((a, b, share))
    if not pairs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    first, second, similarity = zip(*pairs, strict=True)
    return np.array(first, np.int64), np.array(second, np.int64), np.array(similarity)


def read_verdicts(output: Folder, group_index: int) -> dict[str, dict]:
    """A group's copies: key -> its reject reason (`duplicate_of`); {} when the group has none."""
    name = f"{VERDICTS_FOLDER}/{VERDICT_PATTERN.format(index=group_index)}"
    if not output.exists(name):
        return {}
    table = pq.read_table(pa.BufferReader(output.read_bytes(name))).to_pylist()
    return {row["key"]: duplicate_of(row["of"], row["similarity"]) for row in table}


def _hash_vectors(hashes: np.ndarray) -> np.ndarray:
    """64-bit hashes as unit vectors of +-1/8: their inner product is 1 - 2 x (Hamming distance) / 64."""
    bits = (hashes[:, None] >> np.arange(HASH_BITS, dtype=np.uint64)) & np.uint64(1)
    return (bits.astype(np.float32) * 2 - 1) / np.sqrt(HASH_BITS, dtype=np.float32)
