"""scripts/heldout_trace.py: its steps are the run's own next training steps, a skipped step changes
nothing, and --lr-scale scales the step.

The script runs in its own process, as a user runs it, wherever it compiles. (With these tests
the whole suite in one process died in a later test inside XLA's compile-cache serialisation;
README, Reliability.) Its refusals, which come before any compiling, are checked in-process.
"""

import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from gtmm.train import TrainConfig, read_metrics, train
from tests._scripts import SCRIPTS, load_script
from tests.test_spike_response import _held_out_kl

heldout_trace = load_script("heldout_trace")
CONFIG = TrainConfig(model="lru", l=3, k=2, steps=1, batch_size=2, clip_grad_norm=50.0,
                     model_overrides={"hidden_size": 16})


def _run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPTS / "heldout_trace.py"), *map(str, args)], capture_output=True,
                          text=True, timeout=600)


def _rows(*args):
    """The printed table as {metrics step: (gradient norm, (KL 1-l, KL recall))}."""
    done = _run(*args)
    assert done.returncode == 0, done.stderr
    rows = {}
    for line in done.stdout.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| ") and cells[0] not in ("metrics step", "---"):
            rows[cells[0]] = (cells[1], tuple(float(x) for x in cells[2].split(" / ")))
    return rows


@pytest.fixture(scope="module")
def run(tmp_path_factory, recall_task):
    """One trained step, shared: the script only reads the run (test_steps... trains a copy)."""
    path = tmp_path_factory.mktemp("heldout") / "run"
    train(CONFIG, path, progress=False, task=recall_task)
    return path


def _refused(monkeypatch, capsys, *args) -> str:
    """The script's one-line refusal, in-process (it stops before compiling anything)."""
    monkeypatch.setattr(sys, "argv", ["heldout_trace.py", *map(str, args)])
    with pytest.raises(SystemExit) as stop:
        heldout_trace.main()
    assert stop.value.code != 0 and "Traceback" not in capsys.readouterr().err
    return str(stop.value.code)


@pytest.fixture(scope="module")
def traced(run):
    """The script's table for the run's next two steps, shared (each run of it is a process)."""
    return _rows(run, "--steps", 2, "--batch-size", 2)


def test_steps_are_the_runs_next_steps(tmp_path, run, traced, recall_task):
    rows = traced
    assert rows["(checkpoint)"][1] == pytest.approx(_held_out_kl(run, 2), abs=0.006)
    further = tmp_path / "further"
    shutil.copytree(run, further)
    train(TrainConfig(**{**CONFIG.__dict__, "steps": 3}), further, progress=False, task=recall_task)
    logged = {r["step"]: r["grad_norm"] for r in read_metrics(further)}
    # gtmm's own loop trained the same two steps: the same gradient norms and the same model after them
    assert float(rows["2"][0]) == pytest.approx(logged[2], rel=1e-3)
    assert float(rows["3"][0]) == pytest.approx(logged[3], rel=1e-3)
    np.testing.assert_allclose(rows["3"][1], _held_out_kl(further, 2), atol=0.011)


def test_skip_leaves_the_model_and_lr_scale_scales_the_step(run, traced):
    # one process for both options: step 2 skipped, then step 3 at a millionth of its size
    rows = _rows(run, "--steps", 2, "--batch-size", 2, "--skip", 2, "--lr-scale", 1e-6)
    assert rows["2"] == ("skipped", rows["(checkpoint)"][1]) and rows["(checkpoint)"] == traced["(checkpoint)"]
    start, full, small = np.array(traced["(checkpoint)"][1]), np.array(traced["2"][1]), np.array(rows["3"][1])
    assert np.abs(full - start).max() > 0.01  # a whole step moves the held-out KL; a millionth of it does not
    np.testing.assert_allclose(small, start, atol=0.006)


@pytest.mark.parametrize("args, message", [
    (["--steps", 0], "--steps and --batch-size must be at least 1"),
    (["--lr-scale", -1], "--lr-scale positive"),
    (["--skip", 30], "--skip \\[30\\]: the steps traced from the step-1 checkpoint are 2-21"),
    (["--step", 7], "has no checkpoint at step 7"),
])
def test_bad_arguments_are_one_line_errors(run, monkeypatch, capsys, args, message):
    refusal = _refused(monkeypatch, capsys, run, *args)
    assert refusal.startswith("heldout_trace:") and len(refusal.splitlines()) == 1 and re.search(message, refusal)


def test_steps_over_an_lr_drop_are_the_runs_own(tmp_path, recall_task):
    """Each update at the run's rate for it: traced from step 1 over a drop after step 2, the
    gradient norms are those the run logged, and they differ from a run without the drop."""
    dropped = TrainConfig(**{**CONFIG.__dict__, "lr_drops": ((2, 1e-5),)})
    run, further, plain = tmp_path / "dropped", tmp_path / "further", tmp_path / "plain"
    train(dropped, run, progress=False, task=recall_task)
    shutil.copytree(run, further)
    train(TrainConfig(**{**dropped.__dict__, "steps": 4}), further, progress=False, task=recall_task)
    train(TrainConfig(**{**CONFIG.__dict__, "steps": 4}), plain, progress=False, task=recall_task)
    rows = _rows(run, "--steps", 3, "--batch-size", 2)
    logged = {r["step"]: r["grad_norm"] for r in read_metrics(further)}
    without = {r["step"]: r["grad_norm"] for r in read_metrics(plain)}
    for s in (2, 3, 4):
        assert float(rows[str(s)][0]) == pytest.approx(logged[s], rel=1e-3)
    # the update from state 2 (metrics step 3) is the first at 1e-5, so the gradient logged at step 4,
    # taken after it, is the first to tell the rates apart
    assert abs(logged[4] / without[4] - 1) > 1e-2
