"""Training metrics to the console, RUN_DIR/metrics.jsonl and TensorBoard (RUN_DIR/tensorboard/)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger("svd.train")


class MetricsLog:
    def __init__(self, run_dir: Path, tensorboard: bool) -> None:
        self.file = (run_dir / "metrics.jsonl").open("a", encoding="utf-8")
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(run_dir / "tensorboard"))
            except ImportError:
                log.warning(
                    "TensorBoard logging off: the tensorboard package is not installed (pip install "
                    "tensorboard); metrics still go to the console and metrics.jsonl"
                )

    def write(self, step: int, values: dict[str, float], console: bool = True) -> None:
        self.file.write(json.dumps({"step": step, **values}) + "\n")
        self.file.flush()
        if self.writer is not None:
            for name, value in values.items():
                self.writer.add_scalar(name, value, step)
        if console:
            log.info("step %d  %s", step, "  ".join(f"{k} {_short(v)}" for k, v in values.items()))

    def close(self) -> None:
        self.file.close()
        if self.writer is not None:
            self.writer.close()


def _short(value: float) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
