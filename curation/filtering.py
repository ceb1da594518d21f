"""Which clips are kept: absolute and dataset-relative thresholds on the scores, with reasons.

A `Rule` is one configured filter (`min_motion`, `drop_bottom_aesthetic`, ...). Absolute rules carry their
threshold from the config; relative ones ("drop the bottom 25% of motion", as the SVD paper does) get it
from `calibrate`, over the scores of the whole run or of a calibration sample. A rejected clip keeps its
row and every score computed so far, plus one `Reason` per failed rule: nothing is dropped silently.

With `filter.early` (the default), each score's rules run right after the stage that computes it
(`scores_checked_after`), so a clip rejected for no motion or too much text never reaches the GPU
stages; a relative threshold is then taken over the clips that reached that stage.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from curation.config import FilterConfig
from curation.record import DECODE_FAILED, SCORES, Column
from curation.stages import BY_NAME, STAGES

# The early-filter checkpoints in pipeline order: each stage that computes a score, with that score.
STAGE_SCORES = tuple((stage.name, column) for stage in STAGES for column in stage.columns if column in SCORES)
END = "end"  # the checkpoint after the last stage

Keep = Literal["min", "max"]  # min: values below the threshold are rejected; max: above

# (config field, score, direction, relative): every filter FilterConfig knows.
_FILTERS: tuple[tuple[str, str, Keep, bool], ...] = (
    ("min_motion", Column.MOTION_SCORE, "min", False),
    ("drop_bottom_motion", Column.MOTION_SCORE, "min", True),
    ("max_text_area", Column.TEXT_AREA_RATIO, "max", False),
    ("drop_top_text_area", Column.TEXT_AREA_RATIO, "max", True),
    ("min_aesthetic", Column.AESTHETIC_SCORE, "min", False),
    ("drop_bottom_aesthetic", Column.AESTHETIC_SCORE, "min", True),
    ("min_clip_score", Column.CLIP_SCORE, "min", False),
    ("drop_bottom_clip_score", Column.CLIP_SCORE, "min", True),
)


@dataclass(frozen=True)
class Rule:
    """One filter. `threshold` is None for a relative rule until `calibrate` sets it."""

    name: str  # the FilterConfig field, e.g. "drop_bottom_motion"
    score: Column  # the score it reads, e.g. Column.MOTION_SCORE
    keep: Keep
    threshold: float | None
    fraction: float | None = None  # relative rules: the fraction of clips dropped
    pool: int | None = None  # relative rules: how many scores the threshold came from

    @property
    def relative(self) -> bool:
        return self.fraction is not None

    def rejects(self, value: float) -> bool:
        if self.threshold is None:
            return False
        return value < self.threshold if self.keep == "min" else value > self.threshold


@dataclass(frozen=True)
class Reason:
    """Why a clip was rejected: which filter, the clip's value, the threshold it missed."""

    filter: str
    value: float
    threshold: float

    def to_dict(self) -> dict:
        return {"filter": self.filter, "value": self.value, "threshold": self.threshold}  # asdict: 10x slower


def filter_rules(config: FilterConfig) -> list[Rule]:
    """The configured rules (None fields are off); relative ones still need `calibrate`."""
    if not config.enabled:
        return []
    rules = []
    for name, score, keep, relative in _FILTERS:
        value = getattr(config, name)
        if value is None:
            continue
        if relative:
            rules.append(Rule(name, score, keep, threshold=None, fraction=float(value)))
        else:
            rules.append(Rule(name, score, keep, threshold=float(value)))
    return rules


def calibrate(rules: Sequence[Rule], scores: Mapping[str, Sequence[float | None]]) -> list[Rule]:
    """Set the thresholds of relative rules from `scores` (score name -> values; None values are skipped).

    Absolute rules pass unchanged, and so do relative rules whose score is not in `scores`, which lets a
    streaming job calibrate each score when its sample is ready.
    """
    out = []
    for rule in rules:
        if rule.relative and rule.score in scores:
            values = [float(v) for v in scores[rule.score] if v is not None and math.isfinite(v)]
            threshold = relative_threshold(values, rule.fraction, rule.keep)
            rule = replace(rule, threshold=threshold, pool=len(values))
        out.append(rule)
    return out


def relative_threshold(values: Sequence[float], fraction: float, keep: Keep) -> float | None:
    """The cut-off that drops at most `fraction` of `values` from the low (min) or high (max) end.

    floor(fraction * n) values are dropped; a tie with the first kept value is kept, so ties never push
    the share dropped above `fraction`. None when there are no values (the rule then rejects nothing).
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    if not values:
        return None
    ordered = sorted(values, reverse=keep == "max")
    return ordered[math.floor(fraction * len(ordered))]


def reject_reasons(scores: Mapping[str, float | None], rules: Sequence[Rule]) -> list[Reason]:
    """Every rule the clip fails. A rule whose score was not computed (None) cannot fail."""
    reasons = []
    for rule in rules:
        value = scores.get(rule.score)
        if value is None or rule.threshold is None:
            continue
        if rule.rejects(value):
            reasons.append(Reason(rule.name, float(value), rule.threshold))
    return reasons


def scores_checked_after(stage: str, config: FilterConfig) -> tuple[Column, ...]:
    """Which scores' rules run right after `stage` (a stage of `curation.stages`, or END).

    early: each score right after its own stage, so rejected clips skip the later ones (motion and OCR
    before captioning); otherwise every score at the end, and every clip gets every score.
    """
    if stage not in (*BY_NAME, END):
        raise ValueError(f"unknown stage {stage!r}; expected one of {', '.join((*BY_NAME, END))}")
    if not config.enabled:
        return ()
    if config.early:
        return tuple(score for name, score in STAGE_SCORES if name == stage)
    return tuple(score for _, score in STAGE_SCORES) if stage == END else ()


def rules_for(rules: Sequence[Rule], scores: Sequence[str]) -> list[Rule]:
    """The rules that read one of `scores`."""
    return [rule for rule in rules if rule.score in scores]


def thresholds_summary(rules: Sequence[Rule]) -> dict[str, dict]:
    """The thresholds used, for summary.json: absolute ones as configured, relative ones as computed."""
    return {
        rule.name: {
            "score": rule.score,
            "keep": rule.keep,
            "threshold": rule.threshold,
            "kind": "relative" if rule.relative else "absolute",
            **({"fraction": rule.fraction, "computed_from": rule.pool} if rule.relative else {}),
        }
        for rule in rules
    }


def apply_filter(rows: list[dict], config: FilterConfig) -> list[Rule]:
    """Every rule over the whole run: relative thresholds from the scores (all of them, or the first
    `filter.calibration_clips`), then each clip's reasons.

    Absolute rules already ran early in the stream (so rejected clips skipped later stages); running them
    again here gives the same reasons, and the relative ones are added. Returns the calibrated rules.
    """
    rules = filter_rules(config)
    scores = {}
    for rule in rules:
        values = [row[rule.score] for row in rows if row.get(rule.score) is not None]
        scores[rule.score] = values[: config.calibration_clips]  # the first N scored, in input order
    rules = calibrate(rules, scores)
    for row in rows:
        judge(row, rules)
    return rules


def judge(row: dict, rules: Sequence[Rule]) -> None:
    """Set a row's reasons and kept flag from every rule (calibrated). Absolute rules already ran early in the
    stream and give the same reasons again; a file that could not be read back stays rejected."""
    early = [reason for reason in row[Column.REJECT_REASONS] if reason["filter"] == DECODE_FAILED]
    row[Column.REJECT_REASONS] = early + [reason.to_dict() for reason in reject_reasons(row, rules)]
    row[Column.KEPT] = not row[Column.REJECT_REASONS]
