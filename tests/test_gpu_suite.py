"""benchmarks/gpu_suite.py: `--tiny` runs every part (tiny models, CPU) and records finite positive figures; a
part that fails or outlives its budget is recorded and the suite goes on; without a GPU it refuses to start."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

SUITE = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_suite.py"


def load_suite():
    """The suite's module (its registry of parts), without running anything."""
    path = list(sys.path)
    try:
        spec = importlib.util.spec_from_file_location("gpu_suite", SUITE)
        module = importlib.util.module_from_spec(spec)
        sys.modules.setdefault("gpu_suite", module)  # dataclasses look their module up there
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = path  # the module puts benchmarks/ first on the path
    return module


SUITE_MODULE = load_suite()
PARTS = {part.name: part for part in SUITE_MODULE.PARTS}


def run_suite(*args: str, timeout: float = 900, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SUITE), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=os.environ | {"HF_HUB_OFFLINE": "1"} | env,
    )


def positive(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def test_tiny_suite_runs_every_part_with_finite_positive_figures(tmp_path):
    out = tmp_path / "suite.json"
    done = run_suite("--tiny", "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text())

    assert list(report["parts"]) == list(PARTS)
    assert report["failed"] == []
    assert report["tiny"] is True
    assert report["machine"]["description"] and report["versions"]["torch"]
    assert positive(report["wall_s"]) and report["settings"]["total_budget_s"] > 0
    for name, result in report["parts"].items():
        assert result["status"] == "ok" and result["error"] is None, (name, result)
        assert result["settings"]["tiny"] is True and positive(result["budget_s"])
        assert positive(result["host_peak_rss_gib"]), name
        assert result["rows"], name
        for row in result["rows"]:
            for figure in PARTS[name].figures:
                assert positive(row.get(figure)), (name, figure, row)
            for key in ("peak_gib", "peak_memory_gb"):  # GPU memory: measured on a GPU only
                assert row.get(key) is None, (name, key, row)
    generate = report["parts"]["generate"]["rows"]
    assert [row["impl"] for row in generate] == ["diffusers", "ours", "ours --low-memory"]
    assert all(positive(row["speedup_vs_diffusers"]) for row in generate[1:])
    samplers = report["parts"]["generate-samplers"]["rows"]
    assert [(row["impl"], row["sampler"]) for row in samplers] == [
        (impl, sampler) for impl in ("diffusers", "ours") for sampler in ("heun", "dpmpp_2m", "ddim")
    ]
    segments = report["parts"]["generate-segments"]["rows"]
    assert [(row["impl"], row["frames"]) for row in segments] == [("ours", 3), ("ours --segments 4", 9)]
    train = report["parts"]["train"]["rows"]
    assert {(row["policy"], row["optimizer"], row["checkpointing"]) for row in train} == {
        *((policy, "adamw", checkpointing) for policy in ("temporal", "all") for checkpointing in (False, True)),
        ("lora", "adamw", True),  # issue 18's memory cases
        ("all", "adamw8bit", True),
    }
    assert all(row["status"] == "ok" for row in train)
    for name in PARTS:  # one progress line when a part starts, one with its figures when it ends
        assert f"{name}: started" in done.stdout and f"{name}: ok in" in done.stdout
    assert (tmp_path / "suite.logs" / "generate.log").is_file()


def test_a_failing_part_is_recorded_and_the_suite_goes_on(tmp_path):
    out = tmp_path / "suite.json"
    done = run_suite("--tiny", "--only", "generate,ocr", "--inject-failure", "generate", "--out", str(out))
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads(out.read_text())
    assert report["failed"] == ["generate"]
    failed = report["parts"]["generate"]
    assert failed["status"] == "failed" and "injected" in failed["error"]
    assert "RuntimeError" in failed["traceback"] and failed["log_tail"]
    assert report["parts"]["ocr"]["status"] == "ok"
    assert positive(report["parts"]["ocr"]["rows"][0]["clips_per_s"])


def test_a_part_past_its_budget_is_killed_and_recorded(tmp_path):
    out = tmp_path / "suite.json"
    done = run_suite("--tiny", "--only", "llm", "--budget-scale", "0.005", "--out", str(out), timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    result = json.loads(out.read_text())["parts"]["llm"]
    assert result["status"] == "timeout" and "killed at its budget" in result["error"]
    assert result["wall_s"] < 30


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--only", "generate,nope"], "unknown part nope"), ([], "no CUDA GPU visible")],
)
def test_refuses_in_one_line(tmp_path, args, message):
    out = tmp_path / "suite.json"
    done = run_suite(*args, "--out", str(out), timeout=120, CUDA_VISIBLE_DEVICES="")
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and message in done.stderr
    assert not out.exists()
