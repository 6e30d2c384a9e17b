"""`gtmm bench`: the figures it prints are consistent, and the warm-cache figure comes from a
second process that really finds the first one's compilation."""

import json
import os
import subprocess
import sys

import pytest

from gtmm.bench import bench
from gtmm.errors import GtmmError
from gtmm.train import TrainConfig


def _tiny(model="vrnn"):
    return TrainConfig(model=model, task="perfect-recall", l=2, k=1, batch_size=2, steps=1)


def test_bench_sets_the_step_against_the_matrix_product_ceiling():
    record = bench(_tiny(), steps=1)
    assert record["step_s"] > 0 and record["first_step_s"] > 0 and record["peak_rss_mb"] > 0
    assert record["matmul_ceiling_gflop_per_s"] > 0
    # Each figure is rounded as printed (fraction to 0.001, GFLOP/s to 0.1), so they agree up to
    # those roundings; on a slow or loaded machine the ceiling is small and the 0.1 dominates.
    g, c = record["gflop_per_s"], record["matmul_ceiling_gflop_per_s"]
    assert record["fraction_of_ceiling"] == pytest.approx(g / c, abs=5e-4 + 0.05 / c + g * 0.05 / c**2 + 1e-9)
    assert record["first_step_warm_cache_s"] is None
    # an accelerator's allocator reports its peak; a CPU's arrays are in peak_rss_mb
    if record["backend"] == "cpu":
        assert record["device_peak_mb"] is None
    else:
        assert record["device_peak_mb"] > 0


def test_warm_cache_needs_the_cache_and_says_so_before_compiling(monkeypatch):
    monkeypatch.setenv("GTMM_NO_COMPILE_CACHE", "1")
    with pytest.raises(GtmmError, match="GTMM_NO_COMPILE_CACHE"):
        bench(_tiny(), steps=1, warm_cache=True)


def test_second_process_reuses_the_compilation(tmp_path):
    env = {**os.environ, "GTMM_COMPILE_CACHE": str(tmp_path / "cache")}
    env.pop("GTMM_NO_COMPILE_CACHE", None)
    done = subprocess.run([sys.executable, "-m", "gtmm", "bench", "--model", "vrnn", "--l", "2", "--k", "1",
                           "--batch-size", "2", "--steps", "1", "--no-ceiling", "--warm-cache"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout.strip().splitlines()[-1])
    # The cold first step compiles the whole training step; the warm one only loads it.
    assert 0 < record["first_step_warm_cache_s"] < record["first_step_s"]


def test_no_benchmark_or_script_imports_the_suites_conftest():
    """tests/conftest.py sets the suite's cheap-compile XLA_FLAGS when imported, so a benchmark
    importing it times level-0 programs, not users' (benchmarks/loop_networks_3d.py once did;
    docs/results/speed.md). Shared test data for them is in tests/_fakes.py."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    sources = {p: p.read_text() for folder in ("benchmarks", "scripts") for p in (root / folder).rglob("*.py")}
    offenders = [str(p.relative_to(root)) for p, text in sources.items()
                 if "tests.conftest" in text or "from tests import conftest" in text]
    assert offenders == []
