"""What the benchmarks print about the machine they ran on (BENCHMARKS.md quotes it with each figure)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def machine_description() -> str:
    """CPU count and model, OS and architecture, e.g. "2 CPUs, AMD EPYC 7B13, Linux x86_64"."""
    cpu = platform.processor() or "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():  # on Linux platform.processor() is often just the architecture
        models = [
            line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")
        ]
        cpu = models[0] if models else cpu
    return f"{os.cpu_count()} CPUs, {cpu}, {platform.system()} {platform.machine()}"
