"""Rows and time through each stage of a run: what progress shows while the stages run, and summary.json's `stages`.

On Ray the figures are Ray Data's own, per operator of the running dataset, from
`Dataset.get_stats_summary()` (a DeveloperAPI since ray 2.55, hence the pin): a `DatasetStatsSummary` whose
`OperatorStatsSummary` objects give each operator's rows, times and throughput as fields, no text to parse.
While the dataset is being iterated it reads the streaming executor's stats so far (Ray: "updated as streaming
execution progresses"), so the same call serves progress and the summary at the end. It walks the stats of
every block produced so far (about 0.3 s per 100,000 blocks), which is why progress asks for it only every
`curation.progress.LOG_EVERY_SECONDS`. Ray names an operator after the functions it fused into it:
`Map(motion_stage)->MapBatches(OcrStage)` is the OCR actor pool running motion, then OCR.

Without Ray (`run_curation(..., use_ray=False)`) the figures are our own: the rows each stage's worker returned
and the seconds it took, by stage name.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ray.data
    from ray.data._internal.stats import DatasetStatsSummary, OperatorStatsSummary


class StageStats:
    """Each stage's figures so far, by operator (on Ray) or stage (without): `{name: {"rows_out", ...}}`.

    On Ray, `stream_results` hands it the dataset it iterates (`dataset`); per operator, as Ray reports them:
    `rows_in`, `rows_out`, `wall_s` (the operator's first task start to its last task end), `task_wall_s` and
    `cpu_s` (summed over its tasks), `rows_per_s` (rows out per `wall_s`). Without Ray, `stream_results_here`
    adds each worker call (`add`): `rows_out`, `wall_s` (seconds in the worker) and `rows_per_s`.
    """

    def __init__(self) -> None:
        self.dataset: ray.data.Dataset | None = None
        self._counted: dict[str, dict] = {}

    def add(self, stage: str, rows: int, started: float) -> None:
        """Count `rows` out of `stage`'s worker, which ran from `started` (`time.perf_counter()`) to now."""
        counted = self._counted.setdefault(str(stage), {"rows_out": 0, "wall_s": 0.0})
        counted["rows_out"] += rows
        counted["wall_s"] += time.perf_counter() - started

    def figures(self) -> dict[str, dict]:
        if self.dataset is not None:
            return {op.operator_name: _ray_figures(op) for op in _operators(self.dataset.get_stats_summary())}
        return {
            name: {"rows_out": c["rows_out"], "wall_s": round(c["wall_s"], 3), "rows_per_s": _rate(c)}
            for name, c in self._counted.items()
        }

    def describe(self) -> str:
        """One line for progress: `NAME ROWS rows (RATE rows/s), ...`."""
        return ", ".join(
            f"{name} {stage['rows_out']} rows ({stage['rows_per_s']:.1f} rows/s)"
            for name, stage in self.figures().items()
        )


def _operators(summary: DatasetStatsSummary) -> Iterator[OperatorStatsSummary]:
    """The operators in pipeline order: a summary holds its last operator, its parents the ones before."""
    for parent in summary.parents:
        yield from _operators(parent)
    yield from summary.operators_stats


def _ray_figures(op: OperatorStatsSummary) -> dict:
    return {
        "rows_in": op.total_input_num_rows or 0,
        "rows_out": op.output_num_rows.sum if op.output_num_rows else 0,
        "wall_s": round(op.time_total_s, 3),
        "task_wall_s": round(op.wall_time.sum, 3) if op.wall_time else 0.0,
        "cpu_s": round(op.cpu_time.sum, 3) if op.cpu_time else 0.0,
        "rows_per_s": round(op.num_rows_per_s, 2),
    }


def _rate(counted: dict) -> float:
    return round(counted["rows_out"] / counted["wall_s"], 2) if counted["wall_s"] else 0.0
