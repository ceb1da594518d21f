"""What the report re-applies to a run's stored scores: the run's filter, the one with `--set` overrides, and other
thresholds of one rule at a time, each rule calibrated over the whole run. No score is computed again.

Every threshold the page needs is an order statistic of a score column: a relative rule's (at the run's
fraction, the overrides' or another one tried), an absolute rule tried at "the value that drops 25% by this score
alone", and each score's range for its histogram. `calibrate` finds them all at once, exactly, in rounds of
tasks over the parts of clips.parquet (`pipelines/selection.py`); the driver holds only the thresholds.

Early filtering leaves gaps: a clip rejected right after motion, OCR or aesthetics never got its later scores or
captions. When other thresholds would let such a clip through, nothing says whether its later scores would
pass, so it is counted apart (`unknown`: "plus up to N" on the page), never as kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from curation.config import CurationConfig
from curation.config_io import parse_override
from curation.filtering import Rule, filter_rules
from curation.record import DECODE_FAILED, DUPLICATE, SCORES
from curation.stages import later_work
from pipelines.selection import (
    OrderStatistic,
    Piece,
    Read,
    Run,
    Sample,
    find_order_statistics,
    find_scored_counts,
    sample_end,
    statistic_of,
    with_thresholds,
)


@dataclass(frozen=True)
class Try:
    """One setting of a rule tried on the stored scores, the other rules as configured."""

    setting: float | None  # the rule's FilterConfig value; None: the rule off
    share: bool  # tried as one of `report.what_if_fractions` (else: off, or as configured)
    rule: Rule | None  # the rule with this setting, calibrated; None: off
    configured: bool  # the setting of the config the tries vary


@dataclass(frozen=True)
class Alternatives:
    """Other settings of one rule of the shown config, off first, then from the loosest to the strictest."""

    rule: Rule
    position: int  # of `rule` among the shown config's rules
    tries: tuple[Try, ...]


@dataclass(frozen=True)
class Filters:
    """What the report's pass applies to every row, every threshold set: the run's rules (`before`), the
    overrides' (`after`, None when they change no filter), the alternatives of the shown config's rules, and
    each score's range."""

    before: tuple[Rule, ...]
    after: tuple[Rule, ...] | None
    overrides: tuple[str, ...]  # the filter.* ones
    # Absolute rules of the run after whose stage an enabled stage came: a clip they rejected skipped it
    # (`filter.early`), so its later scores and captions were never computed.
    stopping: frozenset[str]
    alternatives: tuple[Alternatives, ...]
    unscored: tuple[str, ...]  # rules of the shown config whose score no clip has
    ranges: dict[str, tuple[float, float, int]]  # score -> (lowest, highest, clips with a finite value)

    @property
    def shown(self) -> tuple[Rule, ...]:
        """The rules the what-if tables vary: the overrides' if any, else the run's."""
        return self.after if self.after is not None else self.before

    def reason_names(self) -> list[str]:
        """Every reason a clip can be rejected for by the run's filter, in the order of the rules (a copy last)."""
        return [DECODE_FAILED, *(rule.name for rule in self.before), DUPLICATE]


def compares(config: CurationConfig, proposed: CurationConfig | None) -> bool:
    """Whether the overrides change the filter (not e.g. only report.*)."""
    return proposed is not None and proposed.filter != config.filter


def calibrate(
    config: CurationConfig,
    proposed: CurationConfig | None,
    overrides: Sequence[str],
    read: Read,
    parts: Sequence[Piece],
    run: Run,
) -> Filters:
    """The run's filter and `proposed`'s (the run's config with `overrides`), with the tries of every rule of the
    shown one at `report.what_if_fractions`, calibrated over the run's parts."""
    configs = [config, proposed] if compares(config, proposed) else [config]
    shown = configs[-1]
    fractions = shown.report.what_if_fractions
    # 1. Where each config's calibration sample ends (a pass of tasks, only when one is limited).
    relative_scores = sorted({r.score.value for c in configs for r in filter_rules(c.filter) if r.relative})
    limited = any(c.filter.calibration_clips is not None for c in configs)
    counts = find_scored_counts(read, parts, run, relative_scores) if relative_scores and limited else {}

    def samples(c: CurationConfig) -> dict[str, Sample]:
        return {score: sample_end(counts[score], c.filter.calibration_clips) for score in counts}

    # 2. Every order statistic the page needs, found together.
    wanted = [statistic_of(rule, samples(c)) for c in configs for rule in filter_rules(c.filter) if rule.relative]
    for rule in filter_rules(shown.filter):
        sample = samples(shown).get(rule.score.value) if rule.relative else None
        wanted += [OrderStatistic(rule.score.value, fraction, rule.keep, sample) for fraction in fractions]
    ranges = {score: (OrderStatistic(score, 0.0, "min"), OrderStatistic(score, 0.0, "max")) for score in SCORES}
    wanted += [stat for pair in ranges.values() for stat in pair]
    found = find_order_statistics(wanted, read, parts, run)
    # 3. The rules and the tries with their thresholds.
    rules = [tuple(with_thresholds(filter_rules(c.filter), samples(c), found)) for c in configs]
    alternatives, unscored = [], []
    for position, rule in enumerate(rules[-1]):
        low = found[ranges[rule.score.value][0]]
        if not low.pool:
            unscored.append(rule.name)
            continue
        tries = _tries(rule, getattr(shown.filter, rule.name), fractions, samples(shown), found)
        alternatives.append(Alternatives(rule, position, tries))
    return Filters(
        before=rules[0],
        after=rules[1] if len(rules) > 1 else None,
        overrides=tuple(o for o in overrides if parse_override(o)[0][0] == "filter") if len(rules) > 1 else (),
        stopping=stopping_rules(config),
        alternatives=tuple(alternatives),
        unscored=tuple(unscored),
        ranges={
            score: (found[low].value, found[high].value, found[low].pool)
            for score, (low, high) in ranges.items()
            if found[low].pool
        },
    )


def _tries(
    rule: Rule,
    configured: float,
    fractions: Sequence[float],
    samples: dict[str, Sample],
    found: dict,
) -> tuple[Try, ...]:
    """`rule` off, at each share of `fractions` and as configured. An absolute rule is tried at the thresholds
    that would drop each share of the scored clips by that score alone."""
    score = rule.score.value
    shares: dict[float, bool] = {}  # setting -> tried as a share; the first way a setting is tried names it
    for fraction in fractions:
        setting = fraction if rule.relative else found[OrderStatistic(score, fraction, rule.keep)].value
        shares.setdefault(setting, True)
    shares.setdefault(configured, False)
    strictness = sorted(shares, reverse=not rule.relative and rule.keep == "max")
    tries = [Try(None, False, None, False)]
    for setting in strictness:
        if rule.relative:
            stat = found[OrderStatistic(score, setting, rule.keep, samples.get(score))]
            variant = replace(rule, fraction=setting, threshold=stat.value, pool=stat.pool)
        else:
            variant = replace(rule, threshold=setting)
        tries.append(Try(setting, shares[setting], variant, setting == configured))
    return tuple(tries)


def stopping_rules(config: CurationConfig) -> frozenset[str]:
    """The run's absolute rules whose rejections skipped later stages (see `Filters.stopping`).

    With `filter.early`, absolute rules run right after their score's stage (`curation/filtering.py`), and a
    rejected clip goes through no later stage: its later scores and captions are None because they were never
    computed.
    """
    if not (config.filter.enabled and config.filter.early):
        return frozenset()
    later = later_work(config)
    return frozenset(r.name for r in filter_rules(config.filter) if not r.relative and later[r.score.stage])
