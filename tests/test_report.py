"""report.html and `svd report`: a run whose scores, reasons and clip files we wrote ourselves, and a real run."""

from __future__ import annotations

import base64
import io
import json
import math
import re
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from PIL import Image
from tiny_curation import CPU_STAGES, TINY

from curation.config import CurationConfig
from curation.config_io import load_config, save_config
from curation.synthetic import Shot, Transition, make_video
from pipelines.curate import run_curation
from pipelines.report import write_report
from pipelines.storage import Folder
from svd.cli import cli

CLIP_FRAMES = 9  # frame i of every generated clip is flat grey at level FIRST_LEVEL + LEVEL_STEP * i
FIRST_LEVEL, LEVEL_STEP = 20, 25
MIDDLE_LEVEL = FIRST_LEVEL + LEVEL_STEP * ((CLIP_FRAMES - 1) // 2)
CLIP_SIZE = (64, 48)
EVIL_CAPTION = "<script>alert(1)</script> a cat"


@dataclass(frozen=True)
class Clip:
    """One row of the hand-made run and what its reasons must be under the run's filter."""

    key: str
    motion: float | None
    text: float | None = None
    aesthetic: float | None = None
    clip_score: float | None = None
    caption: str | None = None
    reasons: tuple[str, ...] = ()


# The run's filter: min_motion 1, max_text_area 0.07, min_aesthetic 4 (all early), bottom half of CLIP score.
# Early rejections skipped every later stage, so their later scores and captions are None.
CLIPS = (
    Clip("still", 0.2, reasons=("min_motion",)),
    Clip("calm", 0.6, reasons=("min_motion",)),
    Clip("texty", 2.0, 0.3, reasons=("max_text_area",)),
    Clip("ugly", 2.5, 0.0, 3.0, reasons=("min_aesthetic",)),
    Clip("cat", 3.0, 0.01, 5.0, 0.20, EVIL_CAPTION, reasons=("drop_bottom_clip_score",)),
    Clip("dog", 3.5, 0.0, 6.0, 0.25, "a dog", reasons=("drop_bottom_clip_score",)),
    Clip("car", 4.0, 0.02, 5.5, 0.30, "a red car & a <b>bus</b>"),
    Clip("bird", 5.0, 0.0, 7.0, 0.35, 'a bird says "hi"'),
    Clip("broken", None, reasons=("decode",)),
)
CLIP_THRESHOLD = 0.30  # floor(0.5 * 4) = 2nd of the 4 CLIP scores, sorted: 0.20 0.25 [0.30] 0.35


def run_config() -> CurationConfig:
    return CurationConfig.model_validate(
        {
            "filter": {
                "min_motion": 1.0,
                "max_text_area": 0.07,
                "min_aesthetic": 4.0,
                "drop_bottom_motion": None,
                "drop_bottom_aesthetic": None,
                "drop_bottom_clip_score": 0.5,
            }
        }
    )


def write_clip(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = *CLIP_SIZE, "yuv420p"
        for index in range(CLIP_FRAMES):
            image = np.full((CLIP_SIZE[1], CLIP_SIZE[0], 3), FIRST_LEVEL + LEVEL_STEP * index, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


def row_of(clip: Clip) -> dict:
    reasons = []
    values = {"min_motion": (clip.motion, 1.0), "max_text_area": (clip.text, 0.07)}
    values |= {"min_aesthetic": (clip.aesthetic, 4.0), "drop_bottom_clip_score": (clip.clip_score, CLIP_THRESHOLD)}
    for name in clip.reasons:
        if name == "decode":
            reasons.append({"filter": "decode", "value": None, "threshold": None, "error": "clip has 3 frames"})
        else:
            reasons.append({"filter": name, "value": values[name][0], "threshold": values[name][1], "error": None})
    return {
        "key": clip.key,
        "path": f"clips/{clip.key}.mp4",
        "num_frames": CLIP_FRAMES,
        "fps": 24.0,
        "motion_score": clip.motion,
        "text_area_ratio": clip.text,
        "aesthetic_score": clip.aesthetic,
        "clip_score": clip.clip_score,
        "caption": clip.caption,
        "kept": not clip.reasons,
        "reject_reasons": reasons,
    }


@pytest.fixture(scope="module")
def made_run(tmp_path_factory) -> Path:
    """An OUT as svd curate leaves it, from CLIPS; the clip of "broken" is not a video, that of "bird" is gone."""
    out = tmp_path_factory.mktemp("made") / "out"
    rows = [row_of(clip) for clip in CLIPS]
    for row in rows:
        write_clip(out / row["path"])
    (out / "clips" / "broken.mp4").write_bytes(b"not a video")
    (out / "clips" / "bird.mp4").unlink()
    pq.write_table(pa.Table.from_pylist(rows), out / "clips.parquet")
    counts = {"inputs": 2, "failed_inputs": 1, "clips": len(rows), "kept": 2, "rejected": 7, "shards": 1}
    for clip in CLIPS:
        for name in clip.reasons:
            counts[f"rejected_by_{name}"] = counts.get(f"rejected_by_{name}", 0) + 1
    (out / "summary.json").write_text(json.dumps({"counts": counts, "thresholds": {}}))
    save_config(run_config(), out / "config.yaml")
    (out / "shards").mkdir()
    (out / "shards" / "shard-000000.tar").write_bytes(b"shard bytes")
    return out


@pytest.fixture(scope="module")
def page(made_run) -> str:
    write_report(made_run)
    return (made_run / "report.html").read_text(encoding="utf-8")


def section(page: str, anchor: str) -> str:
    match = re.search(rf"<(section|div|table)[^>]* id='{re.escape(anchor)}'.*?</\1>", page, re.S)
    assert match, f"no {anchor} on the page"
    return match.group(0)


def card_keys(html: str) -> list[str]:
    return re.findall(r"<figure class='card' data-key='([^']*)'", html)


def report(*args: str):
    return CliRunner().invoke(cli, ["report", *args])


def test_page_is_self_contained_and_thumbnails_are_middle_frames(page):
    assert not re.search(r"https?://", page)
    assert not re.search(r"<(script|link|iframe)\b", page, re.I)
    sources = re.findall(r"\b(?:src|href)\s*=\s*'([^']*)'", page)
    assert sources and all(source.startswith("data:image/jpeg;base64,") for source in sources)
    car = re.search(r"data-key='car'><img src='data:image/jpeg;base64,([^']*)'", page).group(1)
    image = Image.open(io.BytesIO(base64.b64decode(car)))
    assert image.format == "JPEG" and image.size == CLIP_SIZE  # narrower than thumbnail_width: not upscaled
    assert abs(np.asarray(image.convert("L")).mean() - MIDDLE_LEVEL) < LEVEL_STEP / 3


def test_one_histogram_per_computed_score_with_its_thresholds(page):
    histograms = section(page, "histograms")
    assert re.findall(r"class='histogram' id='hist-(\w+)'", histograms) == [
        "motion_score",
        "text_area_ratio",
        "aesthetic_score",
        "clip_score",
    ]
    for score, rule, value in [
        ("motion_score", "min_motion", "1"),
        ("text_area_ratio", "max_text_area", "0.07"),
        ("aesthetic_score", "min_aesthetic", "4"),
        ("clip_score", "drop_bottom_clip_score", "0.3"),
    ]:
        plot = section(page, f"hist-{score}")
        assert "<svg" in plot and f"<code>{rule}</code> = {value} " in plot
    assert "8 clips with this score: 2 kept, 6 rejected" in section(page, "hist-motion_score")


def test_counts_match_summary(page, made_run):
    counts = json.loads((made_run / "summary.json").read_text())["counts"]
    table = dict(re.findall(r"<tr><td>(\w+)</td><td class='n'>(\d+)</td></tr>", section(page, "counts")))
    assert table == {name: str(value) for name, value in counts.items()}


def test_contact_sheets_per_reason_with_the_right_clips(page):
    expected = {"sheet-kept": ["bird", "car"]}
    for clip in CLIPS:
        for name in clip.reasons:
            expected.setdefault(f"sheet-rejected-{name}", []).append(clip.key)
    found = dict(re.findall(r"<section class='sheet' id='([\w-]+)'>(.*?)</section>", page, re.S))
    assert {anchor: card_keys(html) for anchor, html in found.items()} == {k: sorted(v) for k, v in expected.items()}
    assert "clip file missing" in section(page, "sheet-kept")  # bird's file was deleted
    assert "clip cannot be decoded" in found["sheet-rejected-decode"]
    assert "decode: clip has 3 frames" in found["sheet-rejected-decode"]


def test_captions_and_keys_are_escaped(page):
    assert "<script" not in page and "<b>bus" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; a cat" in page
    assert "a red car &amp; a &lt;b&gt;bus&lt;/b&gt;" in page and "a bird says &quot;hi&quot;" in page


def test_alternative_thresholds_count_early_rejections_apart(page):
    """min_motion off: still and calm pass motion but were never OCR'd or scored: "up to 2", not kept."""
    table = section(page, "what-if-min_motion")
    off = re.search(
        r"<tr><td>off</td><td class='n'>[^<]*</td><td class='n'>(\d+)</td><td class='n'>([^<]*)</td>", table
    )
    assert off.groups() == ("2", "+ up to 2")
    assert "4 clips were rejected early" in page  # still, calm, texty, ugly: each skipped later stages


def by_hand(rows: list[dict], min_motion: float, drop_clip_score: float) -> tuple[int, int]:
    """(kept, up to) from the parquet scores, rule by rule: a clip missing a later score never got it."""
    scored = sorted(row["clip_score"] for row in rows if row["clip_score"] is not None)
    clip_bar = scored[math.floor(drop_clip_score * len(scored))]
    passes = {
        "motion_score": lambda value: value >= min_motion,
        "text_area_ratio": lambda value: value <= 0.07,
        "aesthetic_score": lambda value: value >= 4.0,
        "clip_score": lambda value: value >= clip_bar,
    }
    kept = up_to = 0
    for row in rows:
        if row["motion_score"] is None:  # the clip file could not be decoded
            continue
        if any(row[score] is not None and not ok(row[score]) for score, ok in passes.items()):
            continue
        if any(row[score] is None for score in passes):
            up_to += 1
        else:
            kept += 1
    return kept, up_to


@pytest.mark.parametrize(
    "override, min_motion, drop_clip_score",
    [
        ("filter.drop_bottom_clip_score=0.25", 1.0, 0.25),  # dog comes back
        ("filter.min_motion=0.5", 0.5, 0.5),  # calm passes motion, but its later scores were never computed
        ("filter.min_motion=0.1", 0.1, 0.5),
        ("filter.min_motion=4.5", 4.5, 0.5),  # car is lost
    ],
)
def test_svd_report_with_an_override_prints_what_it_would_keep(
    made_run, tmp_path, override, min_motion, drop_clip_score
):
    out = tmp_path / "out"
    shutil.copytree(made_run, out)
    config_before = (out / "config.yaml").read_bytes()
    result = report(str(out), "--set", override)
    assert result.exit_code == 0, result.output
    kept, up_to = by_hand(pq.read_table(out / "clips.parquet").to_pylist(), min_motion, drop_clip_score)
    assert "9 clips, 2 kept by the run" in result.stdout
    assert f"with --set {override}: {kept} kept (" in result.stdout
    if up_to:
        assert f"plus up to {up_to} clips the run rejected early" in result.stdout
    else:
        assert "up to" not in result.stdout
    assert (out / "config.yaml").read_bytes() == config_before
    assert (out / "shards" / "shard-000000.tar").read_bytes() == b"shard bytes"
    assert f"--set {override}" in (out / "report.html").read_text()


def test_the_page_shows_the_clips_that_change_side(made_run, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(made_run, out)
    overrides = ["--set", "filter.min_motion=0.5", "--set", "filter.drop_bottom_clip_score=0.25"]
    result = report(str(out), *overrides, "--set", "report.thumbnails_per_sheet=1")
    assert result.exit_code == 0, result.output
    page = (out / "report.html").read_text()
    assert card_keys(section(page, "sheet-newly-kept")) == ["dog"]
    assert card_keys(section(page, "sheet-newly-rejected")) == []
    assert card_keys(section(page, "sheet-unknown")) == ["calm"]
    assert "Kept: 2 (1 more not shown)" in page and len(card_keys(section(page, "sheet-kept"))) == 1


def test_help_says_what_the_report_holds():
    result = CliRunner().invoke(cli, ["report", "--help"])
    assert result.exit_code == 0
    for words in ("report.html", "--set", "histogram", "contact sheets", "config.yaml"):
        assert words in result.output


@pytest.mark.parametrize(
    "args, words",
    [
        (["{missing}"], "no such folder"),
        (["{unfinished}"], "no finished svd curate run here (summary.json, config.yaml missing)"),
        (["{run}", "--set", "filter.min_motoin=1"], "did you mean filter.min_motion?"),
        (["{run}", "--set", "motion.sample_fps=3"], "only re-applies filter.*"),
        (["{run}", "--set", "filter.min_motion=-1"], "filter.min_motion: Input should be greater than or equal to 0"),
    ],
)
def test_bad_out_or_set_is_one_line_and_exit_2(made_run, tmp_path, args, words):
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "unfinished" / "clips.parquet").write_bytes(b"")
    places = {"missing": tmp_path / "nothing", "unfinished": tmp_path / "unfinished", "run": made_run}
    result = report(*(arg.format(**places) for arg in args))
    assert result.exit_code == 2
    assert words in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_a_run_without_clips_gets_a_page(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    pq.write_table(pa.table({"key": pa.array([], pa.string())}), out / "clips.parquet")  # as the job writes it
    (out / "summary.json").write_text(json.dumps({"counts": {"inputs": 1, "clips": 0, "kept": 0}, "thresholds": {}}))
    save_config(run_config(), out / "config.yaml")
    result = report(str(out), "--set", "filter.min_motion=2")
    assert result.exit_code == 0, result.output
    assert "0 clips, 0 kept by the run" in result.stdout and ": 0 kept (0 more, 0 fewer)" in result.stdout
    assert "No score was computed" in (out / "report.html").read_text()


def test_a_clip_on_two_sheets_is_decoded_once(made_run, tmp_path, monkeypatch):
    """A run without saved thumbnails gets them from the clip files, each file read once."""
    out = tmp_path / "out"
    shutil.copytree(made_run, out)
    asked = []
    read_bytes = Folder.read_bytes

    def counted(folder, relative):
        if relative.startswith("clips/"):
            asked.append(relative)
        return read_bytes(folder, relative)

    monkeypatch.setattr(Folder, "read_bytes", counted)
    write_report(out, overrides=["filter.min_motion=0.5"])  # calm: on its reason's sheet and on "unknown"
    assert sorted(set(asked)) == sorted(f"clips/{clip.key}.mp4" for clip in CLIPS)
    assert len(asked) == len(set(asked))


@pytest.mark.parametrize("rows_per_part", [1, 2, 4])
def test_the_page_does_not_depend_on_how_the_table_is_cut_into_parts(made_run, page, tmp_path, rows_per_part):
    """The report's tasks each read one part of clips.parquet and the driver merges what they count: the same
    page, byte for byte, from one part or many, with and without overrides."""
    out = tmp_path / "out"
    shutil.copytree(made_run, out)
    table = pq.read_table(out / "clips.parquet")
    (out / "clips.parquet").unlink()
    for index, start in enumerate(range(0, table.num_rows, rows_per_part)):
        (out / "clips.parquet").mkdir(exist_ok=True)
        pq.write_table(table.slice(start, rows_per_part), out / "clips.parquet" / f"part-{index:06d}.parquet")
    write_report(out)
    assert (out / "report.html").read_text(encoding="utf-8") == page.replace(made_run.name, out.name)
    overrides = ["filter.min_motion=0.5", "filter.drop_bottom_clip_score=0.25", "report.thumbnails_per_sheet=1"]
    whole = tmp_path / "whole"
    shutil.copytree(made_run, whole)
    assert write_report(out, overrides=overrides) == replace(
        write_report(whole, overrides=overrides), path=str(out / "report.html")
    )
    assert (out / "report.html").read_text() == (whole / "report.html").read_text().replace("whole", out.name)


def test_report_of_a_real_run(tmp_path):
    """svd curate on a generated video, then svd report with a stricter motion threshold."""
    timeline = [Shot("moving", 2.5, speed=3.0), Transition("cut"), Shot("text", 2.5), Transition("cut")]
    timeline += [Shot("static", 2.5), Transition("cut"), Shot("pan", 2.5, speed=1.0)]
    video = make_video(tmp_path / "video.mp4", timeline, seed=1, keyframe_seconds=0.5).path
    out = tmp_path / "out"
    run_curation(
        [video], out, load_config(CurationConfig, TINY, [*CPU_STAGES, "ocr.enabled=false"])
    )  # motion: no model

    rows = pq.read_table(out / "clips.parquet").to_pylist()
    motion = sorted(row["motion_score"] for row in rows)
    bar = motion[len(motion) // 2]  # keeps the upper half by motion
    relative = motion[len(rows) // 4]  # tiny.yaml drops the bottom 25% of motion
    kept = [row for row in rows if row["motion_score"] >= max(bar, relative)]
    result = report(str(out), "--set", f"filter.min_motion={bar!r}")
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())["counts"]
    assert f"{len(rows)} clips, {summary['kept']} kept by the run" in result.stdout
    assert f": {len(kept)} kept (" in result.stdout
    page = (out / "report.html").read_text()
    assert card_keys(section(page, "sheet-kept")) == sorted(row["key"] for row in rows if row["kept"])
