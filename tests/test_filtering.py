from dataclasses import dataclass

import pytest

from curation.config import FilterConfig
from curation.filtering import (
    END,
    STAGE_SCORES,
    Reason,
    Rule,
    apply_filter,
    calibrate,
    filter_rules,
    reject_reasons,
    relative_threshold,
    rules_for,
    scores_checked_after,
    thresholds_summary,
)
from curation.record import Stage

TEN = [float(v) for v in range(1, 11)]


@dataclass(frozen=True)
class Case:
    values: list[float]
    fraction: float
    keep: str
    threshold: float | None
    dropped: int


@pytest.mark.parametrize(
    "case",
    [
        Case(TEN, 0.25, "min", 3.0, 2),  # floor(2.5) = 2 lowest dropped
        Case(TEN, 0.5, "min", 6.0, 5),
        Case(TEN, 0.25, "max", 8.0, 2),  # the top 2
        Case(TEN, 0.0, "min", 1.0, 0),
        Case([4.0, 1.0, 3.0, 2.0], 0.25, "min", 2.0, 1),  # order of the input does not matter
        Case([1.0, 1.0, 1.0, 2.0], 0.5, "min", 1.0, 0),  # ties with the first kept value are kept
        Case([], 0.25, "min", None, 0),
    ],
)
def test_relative_threshold(case):
    threshold = relative_threshold(case.values, case.fraction, case.keep)
    assert threshold == case.threshold
    rule = Rule("r", "s", case.keep, threshold, fraction=case.fraction)
    assert sum(rule.rejects(v) for v in case.values) == case.dropped


def test_relative_threshold_refuses_a_bad_fraction():
    with pytest.raises(ValueError, match="fraction must be in"):
        relative_threshold(TEN, 1.0, "min")


def test_default_rules_are_the_papers():
    rules = {rule.name: rule for rule in filter_rules(FilterConfig())}
    assert set(rules) == {"max_text_area", "drop_bottom_motion", "drop_bottom_aesthetic", "drop_bottom_clip_score"}
    assert rules["max_text_area"] == Rule("max_text_area", "text_area_ratio", "max", 0.07)
    assert (rules["drop_bottom_motion"].fraction, rules["drop_bottom_aesthetic"].fraction) == (0.25, 0.25)
    assert rules["drop_bottom_clip_score"].fraction == 0.5
    assert all(rule.threshold is None for rule in rules.values() if rule.relative)  # until calibrated


def test_filter_switched_off_has_no_rules():
    assert filter_rules(FilterConfig(enabled=False)) == []


def test_absolute_thresholds_and_reasons():
    rules = filter_rules(
        FilterConfig(
            min_motion=0.5,
            max_text_area=0.07,
            min_aesthetic=4.5,
            min_clip_score=0.2,
            drop_bottom_motion=None,
            drop_bottom_aesthetic=None,
            drop_bottom_clip_score=None,
        )
    )
    good = {"motion_score": 0.5, "text_area_ratio": 0.07, "aesthetic_score": 4.5, "clip_score": 0.2}  # at the limits
    assert reject_reasons(good, rules) == []
    bad = {"motion_score": 0.1, "text_area_ratio": 0.3, "aesthetic_score": 5.0, "clip_score": 0.1}
    assert reject_reasons(bad, rules) == [
        Reason("min_motion", 0.1, 0.5),
        Reason("max_text_area", 0.3, 0.07),
        Reason("min_clip_score", 0.1, 0.2),
    ]
    assert reject_reasons(bad, rules)[0].to_dict() == {"filter": "min_motion", "value": 0.1, "threshold": 0.5}


def test_a_score_not_computed_cannot_fail():
    rules = filter_rules(FilterConfig(min_motion=0.5, min_aesthetic=4.0))
    assert reject_reasons({"motion_score": None, "aesthetic_score": None}, rules) == []
    assert reject_reasons({}, rules) == []


def test_percentile_thresholds_over_a_run():
    motion = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    aesthetic = [5.0, 4.0, 6.0, 3.0, None, 4.5, 5.5, 6.5]  # one clip never got this score
    rules = calibrate(
        filter_rules(FilterConfig(drop_bottom_clip_score=None)),
        {"motion_score": motion, "aesthetic_score": aesthetic},
    )
    by_name = {rule.name: rule for rule in rules}
    assert (by_name["drop_bottom_motion"].threshold, by_name["drop_bottom_motion"].pool) == (0.3, 8)
    assert (by_name["drop_bottom_aesthetic"].threshold, by_name["drop_bottom_aesthetic"].pool) == (4.0, 7)
    reasons = [
        [r.filter for r in reject_reasons({"motion_score": m, "aesthetic_score": a}, rules)]
        for m, a in zip(motion, aesthetic, strict=True)
    ]
    assert reasons == [
        ["drop_bottom_motion"],
        ["drop_bottom_motion"],
        [],
        ["drop_bottom_aesthetic"],
        [],
        [],
        [],
        [],
    ]


def test_calibration_sample_sets_thresholds_for_the_rest():
    # Streaming: the first clips calibrate; later clips are judged by the same threshold.
    rules = calibrate(filter_rules(FilterConfig(max_text_area=None)), {"motion_score": [1.0, 2.0, 3.0, 4.0]})
    threshold = next(rule for rule in rules if rule.name == "drop_bottom_motion").threshold
    assert threshold == 2.0
    assert [bool(reject_reasons({"motion_score": v}, rules)) for v in (0.5, 1.99, 2.0, 9.0)] == [
        True,
        True,
        False,
        False,
    ]
    # A score not calibrated yet keeps its rule open (threshold None), rejecting nothing.
    aesthetic = next(rule for rule in rules if rule.name == "drop_bottom_aesthetic")
    assert aesthetic.threshold is None and not aesthetic.rejects(-100.0)


def test_summary_states_the_thresholds_used():
    rules = calibrate(filter_rules(FilterConfig()), {"motion_score": [1.0, 2.0, 3.0, 4.0]})
    summary = thresholds_summary(rules)
    assert summary["max_text_area"] == {
        "score": "text_area_ratio",
        "keep": "max",
        "threshold": 0.07,
        "kind": "absolute",
    }
    assert summary["drop_bottom_motion"] == {
        "score": "motion_score",
        "keep": "min",
        "threshold": 2.0,
        "kind": "relative",
        "fraction": 0.25,
        "computed_from": 4,
    }


def test_early_filters_run_after_their_own_stage():
    config = FilterConfig()
    assert [scores_checked_after(stage, config) for stage, _ in STAGE_SCORES] == [
        ("motion_score",),
        ("text_area_ratio",),
        ("aesthetic_score",),
        ("clip_score",),
    ]
    assert scores_checked_after(END, config) == ()


def test_late_filters_all_run_at_the_end():
    config = FilterConfig(early=False)
    assert all(scores_checked_after(stage, config) == () for stage, _ in STAGE_SCORES)
    assert scores_checked_after(END, config) == ("motion_score", "text_area_ratio", "aesthetic_score", "clip_score")
    assert scores_checked_after(END, FilterConfig(enabled=False)) == ()


def test_unknown_stage():
    with pytest.raises(ValueError, match="unknown stage 'colour'"):
        scores_checked_after("colour", FilterConfig())


@pytest.mark.parametrize("early", [True, False])
def test_rejected_clips_skip_the_expensive_stages_only_when_early(early):
    """A toy run in pipeline order: cheap scores, then a costly stage that counts the clips it sees."""
    config = FilterConfig(
        early=early, max_text_area=0.07, drop_bottom_motion=None, min_motion=0.2, drop_bottom_aesthetic=None
    )
    rules = filter_rules(config)
    clips = {
        "still": {"motion_score": 0.0, "text_area_ratio": 0.0},
        "text": {"motion_score": 1.0, "text_area_ratio": 0.5},
        "good": {"motion_score": 1.0, "text_area_ratio": 0.0},
    }
    reasons: dict[str, list[Reason]] = {key: [] for key in clips}
    costly_calls = []
    for stage, _ in STAGE_SCORES:
        for key, scores in clips.items():
            if reasons[key]:
                continue  # rejected: no more work on this clip
            if stage == Stage.AESTHETICS:
                costly_calls.append(key)
                scores["aesthetic_score"] = 5.0
            reasons[key] += reject_reasons(scores, rules_for(rules, scores_checked_after(stage, config)))
    for key, scores in clips.items():
        reasons[key] += reject_reasons(scores, rules_for(rules, scores_checked_after(END, config)))
    assert {key: [r.filter for r in found] for key, found in reasons.items()} == {
        "still": ["min_motion"],
        "text": ["max_text_area"],
        "good": [],
    }
    assert costly_calls == (["good"] if early else ["still", "text", "good"])


def test_whole_run_filter_sets_relative_thresholds_and_keeps_every_row():
    """Relative thresholds over the run (or its first calibration_clips scored clips), reasons per clip."""
    rows = [
        {"key": f"k{i}", "motion_score": float(i), "text_area_ratio": 0.5 if i == 7 else 0.0, "kept": True}
        for i in range(8)
    ]
    for row in rows:
        row["reject_reasons"] = []
    config = FilterConfig(drop_bottom_motion=0.25)
    rules = apply_filter(rows, config)
    assert [row["kept"] for row in rows] == [False, False, True, True, True, True, True, False]
    assert rows[0]["reject_reasons"] == [{"filter": "drop_bottom_motion", "value": 0.0, "threshold": 2.0}]
    assert rows[7]["reject_reasons"] == [{"filter": "max_text_area", "value": 0.5, "threshold": 0.07}]
    assert {rule.name: rule.threshold for rule in rules}["drop_bottom_motion"] == 2.0

    calibrated = FilterConfig(drop_bottom_motion=0.5, calibration_clips=4)
    apply_filter(rows, calibrated)  # threshold from motion 0..3 only: 2.0
    assert [row["kept"] for row in rows] == [False, False, True, True, True, True, True, False]
