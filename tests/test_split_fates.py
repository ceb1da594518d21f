"""Where the footage went: every source frame has one fate, in the split result, summary.json and report.html."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from tiny_curation import CPU_STAGES, TINY

from curation.config import CurationConfig, SplitConfig
from curation.config_io import load_config
from curation.record import Column
from curation.split.fates import ALIGNMENT, CLIP, TOO_SHORT, TRANSITION, fate_counts, frame_fates
from curation.split.runner import split_video
from curation.synthetic import make_video, sample_timeline
from pipelines.curate import run_curation


def test_each_frame_gets_the_first_fate_that_applies():
    spans = frame_fates(20, transitions=[(5, 8)], too_short=[(8, 12)], clips=[(0, 5), (14, 20), (7, 9)])
    assert spans == [
        (0, 5, CLIP),
        (5, 7, TRANSITION),
        (7, 9, CLIP),
        (9, 12, TOO_SHORT),
        (12, 14, ALIGNMENT),
        (14, 20, CLIP),
    ]
    assert fate_counts(spans) == {CLIP: 13, TRANSITION: 2, TOO_SHORT: 3, ALIGNMENT: 2}
    assert frame_fates(0, [], [], []) == []
    assert frame_fates(4, [], [], []) == [(0, 4, ALIGNMENT)]


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("fates") / "sample.mp4", sample_timeline(), seed=0)


def covers(spans, num_frames: int) -> bool:
    return [start for start, _, _ in spans[1:]] == [end for _, end, _ in spans[:-1]] and (
        spans[0][0],
        spans[-1][1],
    ) == (0, num_frames)


@pytest.mark.parametrize("reencode", [False, True])
def test_the_split_accounts_for_every_frame(sample, tmp_path, reencode):
    result = split_video(sample.path, tmp_path / "clips", tmp_path, SplitConfig(reencode=reencode))
    assert covers(result.fates, sample.num_frames)
    counts = fate_counts(result.fates)
    assert sum(counts.values()) == result.counts["frames"] == sample.num_frames
    assert counts[CLIP] == sum(clip.num_frames for clip in result.clips) == result.counts["frames_in_clips"]
    # The clips' frames are exactly the fate's "clip" spans.
    clip_frames = {frame for clip in result.clips for frame in range(clip.start_frame, clip.end_frame)}
    assert clip_frames == {frame for start, end, fate in result.fates if fate == CLIP for frame in range(start, end)}
    # The sample has gradual transitions (a dissolve, a fade, a wipe) and one shot under min_seconds.
    assert counts[TRANSITION] > 0 and counts[TOO_SHORT] > 0
    if reencode:  # frame-exact clips: nothing is lost to keyframe alignment
        assert counts[ALIGNMENT] == 0
    else:  # stream copy starts each clip on a keyframe: the scene's frames before it are lost to alignment
        firsts = [clip for clip in result.clips if clip.transition_before != "chunk"]  # a scene's first clip
        heads = [
            (clip.scene_start_frame, clip.start_frame) for clip in firsts if clip.start_frame > clip.scene_start_frame
        ]
        assert heads
        fate_of = {frame: fate for start, end, fate in result.fates for frame in range(start, end)}
        assert all(fate_of[frame] == ALIGNMENT for start, end in heads for frame in range(start, end))


def test_summary_sources_and_report_show_where_the_frames_went(sample, tmp_path):
    config = load_config(CurationConfig, TINY, CPU_STAGES)
    result = run_curation([sample.path], tmp_path / "out", config, use_ray=False)
    out = tmp_path / "out"
    frames = json.loads((out / "summary.json").read_text())["frames"]
    rows = pq.read_table(out / "clips.parquet").to_pylist()
    assert frames["total"] == sample.num_frames
    assert frames["in_kept_clips"] == sum(row[Column.NUM_FRAMES] for row in rows if row[Column.KEPT])
    assert frames["in_rejected_clips"] == sum(row[Column.NUM_FRAMES] for row in rows if not row[Column.KEPT])
    assert sum(frames["in_rejected_clips_by_reason"].values()) == frames["in_rejected_clips"]
    parts = ("in_kept_clips", "in_rejected_clips", "in_transitions", "in_too_short_scenes", "lost_to_alignment")
    assert sum(frames[name] for name in parts) == frames["total"]
    assert result.counts["frames_in_transitions"] == frames["in_transitions"]

    (source,) = [json.loads(line) for line in (out / "sources.jsonl").read_text().splitlines()]
    assert source["source"] == str(sample.path) and source["frames"] == sample.num_frames
    assert covers([tuple(span) for span in source["fates"]], sample.num_frames)

    page = (out / "report.html").read_text()
    assert page.count("class='timeline'") == 1
    # One rectangle per clip and per span no clip holds.
    assert page.count("<rect x=", page.index("id='timelines'"), page.index("id='histograms'")) == len(rows) + sum(
        1 for span in source["fates"] if span[2] != CLIP
    )
