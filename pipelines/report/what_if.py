"""What a filter config does to a run's stored scores: the run's filter, the one with `--set` overrides, and
other thresholds of one rule at a time. The filter (`curation/filtering.py`) is re-applied; no score is
computed again.

Early filtering leaves gaps: a clip rejected right after motion, OCR or aesthetics never got its later scores or
captions. When other thresholds would let such a clip through, nothing says whether its later scores would
pass, so it is counted apart (`unknown`: "plus up to N" on the page), never as kept.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from curation.config import CurationConfig
from curation.config_io import parse_override
from curation.filtering import Rule, apply_filter, filter_rules, relative_threshold
from curation.record import DECODE_FAILED, SCORES, Column
from curation.stages import later_work


@dataclass(frozen=True)
class Outcome:
    """What one filter config does to the stored scores of a run."""

    kept: frozenset[str]
    # Would pass every rule they have a score for, but the run rejected them early: their later scores and
    # captions were never computed, so whether they would be kept is unknown.
    unknown: frozenset[str]
    reasons: dict[str, list[dict]]  # clip key -> why it is rejected under this config
    rules: tuple[Rule, ...]  # relative thresholds calibrated


@dataclass(frozen=True)
class Comparison:
    """The run's filter against the one with `--set` overrides, on the same stored scores."""

    before: Outcome
    after: Outcome
    proposed: CurationConfig  # the run's config with the overrides
    overrides: tuple[str, ...]  # the filter.* ones

    @property
    def newly_kept(self) -> list[str]:
        return sorted(self.after.kept - self.before.kept)

    @property
    def newly_rejected(self) -> list[str]:
        return sorted(self.before.kept - self.after.kept)


@dataclass(frozen=True)
class Alternative:
    """One setting of a rule tried on the stored scores, the other rules as configured."""

    setting: float | None  # the rule's FilterConfig value; None: the rule off
    share: bool  # tried as one of `report.what_if_fractions` (else: off, or as configured)
    dropped: int | None  # an absolute setting tried for a share: how many scored clips it alone drops
    threshold: float | None  # the threshold the setting amounts to (a relative one calibrated)
    kept: int
    unknown: int
    configured: bool  # the setting of the config the alternatives vary


@dataclass(frozen=True)
class Alternatives:
    """Other settings of one rule, off first, then from the loosest to the strictest."""

    rule: Rule
    scored: int  # clips with a finite value of the rule's score
    tries: tuple[Alternative, ...]


def compare(
    rows: Sequence[dict], config: CurationConfig, proposed: CurationConfig | None, overrides: Sequence[str] = ()
) -> Comparison | None:
    """The run's filter against `proposed`'s; None when they are the same filter (e.g. only report.* changed)."""
    if proposed is None or proposed.filter == config.filter:
        return None
    skipped = frozenset(cut_short(rows, config))
    shown = tuple(override for override in overrides if parse_override(override)[0][0] == "filter")
    return Comparison(evaluate(rows, config), evaluate(rows, proposed, skipped), proposed, shown)


def evaluate(rows: Sequence[dict], config: CurationConfig, skipped: frozenset[str] = frozenset()) -> Outcome:
    """Re-apply `config`'s filter to the stored scores. Clips in `skipped` (cut short by the run's early filter)
    that pass every rule they have a score for are `unknown`, not kept."""
    light = [
        {
            Column.KEY: row[Column.KEY],
            **{score: row.get(score) for score in SCORES},
            Column.REJECT_REASONS: list(row.get(Column.REJECT_REASONS) or []),
        }
        for row in rows
    ]
    rules = apply_filter(light, config.filter)
    passed = {row[Column.KEY] for row in light if row[Column.KEPT]}
    return Outcome(
        kept=frozenset(passed - skipped),
        unknown=frozenset(passed & skipped),
        reasons={row[Column.KEY]: row[Column.REJECT_REASONS] for row in light if row[Column.REJECT_REASONS]},
        rules=tuple(rules),
    )


def cut_short(rows: Sequence[dict], config: CurationConfig) -> dict[str, str]:
    """Clips the run rejected early, before stages that then skipped them: key -> the filter that stopped it.

    With `filter.early`, absolute rules run right after their score's stage (`curation/filtering.py`), and a
    rejected clip goes through no later stage: its later scores and captions are None because they were never
    computed.
    """
    if not (config.filter.enabled and config.filter.early):
        return {}
    absolute = {rule.name: rule.score for rule in filter_rules(config.filter) if not rule.relative}
    later = later_work(config)
    stopped = {}
    for row in rows:
        for reason in row.get(Column.REJECT_REASONS) or []:
            score = absolute.get(reason["filter"])
            if score is not None and later[score.stage]:
                stopped[row[Column.KEY]] = reason["filter"]
                break
    return stopped


def reason_names(outcome: Outcome) -> list[str]:
    """Filters that rejected something, in the order of the rules (decode failures first)."""
    found = {reason["filter"] for reasons in outcome.reasons.values() for reason in reasons}
    order = [DECODE_FAILED, *(rule.name for rule in outcome.rules)]
    return [name for name in order if name in found] + sorted(found - set(order))


def alternatives(
    rows: Sequence[dict], shown: CurationConfig, rule: Rule, skipped: frozenset[str], fractions: Sequence[float]
) -> Alternatives | None:
    """`rule` (one of `shown`'s) off, at each share of `fractions` and as configured, the other rules as in
    `shown`. An absolute rule is tried at the thresholds that would drop each share of the scored clips by that
    score alone. None when no clip has the rule's score."""
    values = [row[rule.score] for row in rows if finite(row.get(rule.score))]
    if not values:
        return None
    configured = getattr(shown.filter, rule.name)
    # setting -> (tried as a share, what it alone drops); the first way a setting is tried names it
    tries: dict[float | None, tuple[bool, int | None]] = {None: (False, None)}
    for fraction in fractions:
        if rule.relative:
            tries.setdefault(fraction, (True, None))
        else:
            value = relative_threshold(values, fraction, rule.keep)
            dropped = sum(replace(rule, threshold=value).rejects(v) for v in values)
            tries.setdefault(value, (True, dropped))
    tries.setdefault(configured, (False, None))
    strictness = sorted(
        (value for value in tries if value is not None), reverse=not rule.relative and rule.keep == "max"
    )
    found = []
    for value in [None, *strictness]:
        config = shown.model_copy(update={"filter": shown.filter.model_copy(update={rule.name: value})})
        outcome = evaluate(rows, config, skipped)
        used = next((r.threshold for r in outcome.rules if r.name == rule.name), None)
        share, dropped = tries[value]
        found.append(
            Alternative(value, share, dropped, used, len(outcome.kept), len(outcome.unknown), value == configured)
        )
    return Alternatives(rule, len(values), tuple(found))


def finite(value) -> bool:
    """A number that is a score: not None (never computed), NaN or infinite."""
    return isinstance(value, int | float) and math.isfinite(value)
