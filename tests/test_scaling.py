"""Issue 11: data-parallel training over devices and processes, and sweeps on Ray.

Every run here is test_reliability's tiny configuration (one compiled step per program for the
whole session, through the persistent compile cache that subprocesses share).
"""

import functools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from gtmm.cli import main
from gtmm.errors import GtmmError
from gtmm.parallel import DataParallel, data_parallel, init_distributed
from gtmm.report import ensure_evaluated
from gtmm.sweep import expand_grid, parse_setting, read_grid
from gtmm.tasks import make_task
from gtmm.train import _checkpoint_paths, read_metrics, train
from tests.conftest import SHARED_DATA
from tests.test_reliability import _tiny

ROOT = Path(__file__).resolve().parents[1]
STEPS = 3
# Float sums over a split batch run in another order: equal to about single precision.
RTOL = 1e-5


def _env(**extra) -> dict:
    return dict(os.environ, GTMM_DATA=str(SHARED_DATA), GTMM_OFFLINE="1",
                PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")]),
                **extra)


def _trainer(run: Path, devices: str, distributed: tuple | None = None) -> list[str]:
    """A command training the tiny run in a fresh process; prints its summary as JSON."""
    join = f"init_distributed{distributed!r}\n" if distributed else ""
    code = ("import json, sys\n"
            "from gtmm.parallel import init_distributed\n"
            f"{join}"
            "from gtmm.train import TrainConfig, train\n"
            f"config = TrainConfig(**{asdict(_tiny(STEPS))!r})\n"
            f"print(json.dumps(train(config, sys.argv[1], progress=False, devices={devices!r})))\n")
    return [sys.executable, "-c", code, str(run)]


def _bounds(run: Path) -> list[float]:
    return [r["negative_bound"] for r in read_metrics(run)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def one_device(tmp_path_factory, recall_task) -> Path:
    run = tmp_path_factory.mktemp("one-device") / "run"
    train(_tiny(STEPS), run, progress=False, task=recall_task)
    return run


def test_two_forced_host_devices_give_the_one_device_losses(one_device, tmp_path):
    run = tmp_path / "run"
    # the suite's cheap-compile flags too: without them this process compiled at XLA's defaults
    # (this test alone: 28.7 s against 16.5)
    env = _env(XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2".strip())
    out = subprocess.run(_trainer(run, 2), env=env, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads(out.stdout.splitlines()[-1])
    assert summary["devices"] == 2
    assert json.loads((run / "config.json").read_text())["devices"] == 2
    np.testing.assert_allclose(_bounds(run), _bounds(one_device), rtol=RTOL)
    assert [s for s, _ in _checkpoint_paths(run)] == [2, 3]


def test_two_processes_train_together_and_agree(one_device, tmp_path):
    """Two processes on localhost joined by jax.distributed (gloo on CPU), one device each, no
    --devices (several processes train one run on all their devices by default): one
    run, written by process 0, with the one-device losses; both processes saw the same losses."""
    run = tmp_path / "run"
    address = f"127.0.0.1:{_free_port()}"
    procs = [subprocess.Popen(_trainer(run, None, (address, 2, i)), env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    try:
        outs = [p.communicate(timeout=240) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
    summaries = [json.loads(stdout.splitlines()[-1]) for stdout, _ in outs]
    assert [s["process"] for s in summaries] == [0, 1] and all(s["devices"] == 2 for s in summaries)
    assert summaries[0]["losses_sha256"] == summaries[1]["losses_sha256"]  # every step's loss, bit for bit
    assert summaries[0]["final_loss"] == summaries[1]["final_loss"]
    np.testing.assert_allclose(_bounds(run), _bounds(one_device), rtol=RTOL)
    assert [r["step"] for r in read_metrics(run)] == [1, 2, 3]  # one writer: each step logged once
    assert json.loads((run / "config.json").read_text())["processes"] == 2


def test_bad_parallel_settings_are_one_line_errors(tmp_path, capsys):
    with pytest.raises(GtmmError, match="2 devices asked for but 1 cpu device"):
        data_parallel(2)
    with pytest.raises(GtmmError, match="multiple of 2"):
        DataParallel.check_batch(SimpleNamespace(size=2), 3)  # a 2-device mesh needs 2 devices; the check does not
    for args, message in ((("localhost", 2, 0), "HOST:PORT"), (("localhost:1234", 2, 2), "not in 0..1"),
                          ((None, 2, 0), "need --coordinator")):
        with pytest.raises(GtmmError, match=message):
            init_distributed(*args)
    base = ["train", "--model", "introspective", "--l", "3", "--k", "2", "--steps", "1", "--out", str(tmp_path / "r")]
    for extra, message in ((["--devices", "3"], "3 devices asked for"), (["--process-id", "0"], "need --coordinator")):
        assert main(base + extra) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    with pytest.raises(SystemExit):
        main(base + ["--devices", "0"])
    err = capsys.readouterr().err
    assert "positive integer" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "r").exists()


def test_grid_file_is_read(tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text('models = ["vrnn", "dnc"]\ntasks = ["perfect-recall"]\nreplicas = 3\n'
                    '[settings]\nsteps = [1500]\nlr = [1e-3, 1e-4]\nhidden-size = [128]\n')
    spec = read_grid(grid)
    assert len(expand_grid(spec["models"], spec["tasks"], spec["replicas"], spec["settings"])) == 12
    grid.write_text('models = ["vrnn"]\ncolour = 1\n')
    with pytest.raises(GtmmError, match="unknown key"):
        read_grid(grid)
    grid.write_text("models = [")
    with pytest.raises(GtmmError, match="not valid TOML"):
        read_grid(grid)


def test_grid_expands_and_refuses_bad_settings():
    runs = expand_grid(["vrnn", "ntm"], ["perfect-recall"], 2, {"lr": [1e-3, 1e-4], "steps": [5]})
    assert len(runs) == 8
    dirs = {str(d) for _, d in runs}
    assert "perfect-recall/ntm/learning_rate0.0001-steps5/replica-1" in dirs
    assert {c.seed for c, _ in runs} == {0, 1}
    assert parse_setting("hidden-size=16,32") == ("hidden_size", [16, 32])
    assert parse_setting("context-with-controller=true,False") == ("context_with_controller", [True, False])
    assert len(expand_grid(["introspective"], ["perfect-recall"], 1, {"context_with_controller": [True, False]})) == 2
    assert {str(d) for _, d in expand_grid(["vrnn"], ["parity-recall"], 1, {"hidden-size": 8})} == {
        "parity-recall/vrnn/hidden_size8/replica-0"}
    mazes = expand_grid(["vrnn"], ["mnist-maze"], 1, {"grid": [3, 5]})
    assert sorted(c.grid for c, _ in mazes) == [3, 5]
    with pytest.raises(GtmmError, match="takes no parameter grid"):
        expand_grid(["vrnn"], ["perfect-recall"], 1, {"grid": [3]})
    clipped = expand_grid(["vrnn"], ["perfect-recall"], 1, {"clip-grad-norm": [100.0, 5000.0]})
    assert sorted(c.clip_grad_norm for c, _ in clipped) == [100.0, 5000.0]
    for bad, message in (({"colour": [1]}, "unknown sweep setting"), ({"steps": []}, "one or more values"),
                         ({"steps": 0}, "steps must be"), ({"steps": [0]}, "steps must be"),
                         ({"clip-grad-norm": [-1.0]}, "clip grad norm must be")):
        with pytest.raises(GtmmError, match=message):
            expand_grid(["vrnn"], ["perfect-recall"], 1, bad)
    with pytest.raises(GtmmError, match="unknown"):
        expand_grid(["nope"], ["perfect-recall"], 1)


def test_grid_varies_the_lr_schedule():
    """lr drops as a sweep axis, from the command line and from a grid file, one run directory
    per schedule; a malformed schedule fails before anything runs."""
    name, values = parse_setting("lr-drop=none,12000:3e-4,12000:3e-4+14000:1e-4")
    runs = expand_grid(["lru"], ["perfect-recall"], 1, {name: values})
    assert {str(d): c.lr_drops for c, d in runs} == {
        "perfect-recall/lru/lr_dropsnone/replica-0": (),
        "perfect-recall/lru/lr_drops0.0003@12000/replica-0": ((12000, 3e-4),),
        "perfect-recall/lru/lr_drops0.0003@12000+0.0001@14000/replica-0": ((12000, 3e-4), (14000, 1e-4))}
    from_file = expand_grid(["lru"], ["perfect-recall"], 1, {"lr_drops": [[], [[12000, 3e-4]]]})
    assert [c.lr_drops for c, _ in from_file] == [(), ((12000, 3e-4),)]
    assert [c.lr_at(12001) for c, _ in from_file] == [1e-3, 3e-4]
    for bad, message in (("12000", "not STEP:LR"), ("x:1e-3", "not STEP:LR"), ("0:1e-4", "positive and increasing"),
                         ("14000:1e-4+12000:3e-4", "positive and increasing"), ("12000:-1", "positive numbers")):
        with pytest.raises(GtmmError, match=message):
            expand_grid(["lru"], ["perfect-recall"], 1, {"lr_drops": [bad]})
    with pytest.raises(GtmmError, match="not STEP:LR"):  # a step without its rate reads as a number
        expand_grid(["lru"], ["perfect-recall"], 1, dict([parse_setting("lr-drops=none,12000")]))
    with pytest.raises(GtmmError, match="not a schedule"):  # one schedule written without its outer list
        expand_grid(["lru"], ["perfect-recall"], 1, {"lr_drops": [[12000, 3e-4]]})
    with pytest.raises(GtmmError, match="NAME=VALUE"):
        parse_setting("lr")


LONG = 12  # steps of the runs one of which is killed: long enough to kill one between checkpoints


def test_sweep_on_a_local_ray_cluster_survives_a_killed_worker(one_device, tmp_path):
    """4 runs (steps 2 or 12 x 2 replicas) on a local Ray cluster of 2 CPUs. One worker is
    SIGKILLed while its run is between checkpoints: Ray retries the run, which resumes from its
    checkpoint and ends with every step logged once and the numbers of an uninterrupted run; the
    report aggregates all 4 runs. (One task: the grid over tasks is expand_grid's, tested above.)"""
    pytest.importorskip("ray", reason="the sweep extra (pip install 'gtmm[sweep]') is not installed")
    # The tiny run evaluated here first puts its programs in the persistent compile cache the
    # workers share; otherwise both workers compile the same step and evaluation at once (most of
    # this test's time, and nothing it checks).
    ensure_evaluated(one_device, 1)
    out = tmp_path / "sweep"
    tiny = _tiny(1)
    command = [sys.executable, "-m", "gtmm.cli", "sweep", "--models", tiny.model,
               "--tasks", "perfect-recall", "--replicas", "2", "--set", f"steps=2,{LONG}",
               "--set", f"l={tiny.l}", "--set", f"k={tiny.k}", "--set", f"batch-size={tiny.batch_size}",
               "--set", f"checkpoint-every={tiny.checkpoint_every}",
               *(a for name, value in tiny.model_overrides.items() for a in ("--set", f"{name}={value}")),
               "--eval-batches", "1", "--cpus", "2", "--units", "bits", "--out", str(out)]
    proc = subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = None
    try:
        # hang guards, not timings (the kill within 300 s, the end within 600 s more): a loaded 2-core machine is slow
        deadline = time.time() + 300
        while killed is None and proc.poll() is None and time.time() < deadline:
            for run in sorted(out.glob(f"*/*/*steps{LONG}/replica-*")):
                steps = [s for s, _ in _checkpoint_paths(run)]
                if steps and LONG not in steps:
                    starts = [e for e in _log(out) if e["run"] == str(run) and e["event"] == "start"]
                    os.kill(starts[-1]["pid"], signal.SIGKILL)  # the Ray worker this sweep started for it
                    killed = (run, max(steps))
                    break
            time.sleep(0.01)
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # lets the driver shut its Ray cluster down
            proc.wait(30)
    assert killed is not None, "no run was caught between checkpoints"
    assert proc.returncode == 0, (stdout + stderr)[-3000:]
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["finished"] == 4 and summary["failed"] == 0

    run, saved = killed
    events = [e for e in _log(out) if e["run"] == str(run)]
    assert [e["event"] for e in events] == ["start", "start", "done"]  # killed once, retried once
    assert events[-1]["resumed_from"] >= saved > 0
    logged = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert logged == list(range(1, LONG + 1))  # every step once, none lost
    assert LONG in [s for s, _ in _checkpoint_paths(run)]
    config = json.loads((run / "config.json").read_text())["train"]
    reference = tmp_path / "reference"
    train(replace(_tiny(LONG), task=config["task"], seed=config["seed"]), reference, progress=False,
          task=make_task(config["task"], l=config["l"], k=config["k"]))
    assert read_metrics(run) and [{k: v for k, v in r.items() if k != "wall_s"} for r in read_metrics(run)] == [
        {k: v for k, v in r.items() if k != "wall_s"} for r in read_metrics(reference)]

    report = Path(summary["report"]).read_text()
    for steps in (2, LONG):
        assert f"## perfect-recall, l = {tiny.l}, k = {tiny.k}, steps = {steps}\n" in report  # only what differs
    assert report.count(f"| {tiny.model} | 2 |") == 2  # mean ± s.e. over the 2 replicas of each grid point
    assert "KL and bounds in bits" in report  # --units reaches the report
    assert "4 of 4 runs finished" in stdout


def _log(out: Path) -> list[dict]:
    from gtmm._io import read_jsonl

    path = out / "sweep-log.jsonl"
    return read_jsonl(path) if path.exists() else []


def test_reproduce_splits_every_batch_over_the_devices_it_is_given(tmp_path, monkeypatch):
    """`gtmm reproduce --devices N` hands N to every model's training and names it in the report's
    command; a scale whose batch does not split over N is refused before anything is trained."""
    import gtmm.experiments as experiments

    calls, reports = [], []
    def fake_parallel(devices):  # a mesh of N devices without N devices; its batch check is the real one
        fake = SimpleNamespace(size=devices)
        fake.check_batch = functools.partial(DataParallel.check_batch, fake)
        return fake

    monkeypatch.setattr(experiments, "data_parallel", fake_parallel)
    monkeypatch.setattr(experiments, "train_replicas", lambda config, out, replicas, **kw: calls.append(
        (config.model, config.batch_size, kw["devices"])))
    monkeypatch.setattr(experiments, "evaluate_runs", lambda *args: None)
    monkeypatch.setattr(experiments, "write_report", lambda runs, out, **kw: reports.append(kw["command"]) or out)
    experiments.reproduce("perfect-recall", "cpu", tmp_path / "exp", models=("vrnn", "dnc"), devices=2,
                          progress=False)
    assert calls == [("vrnn", 10, 2), ("dnc", 10, 2)]
    assert " --devices 2 " in reports[0]
    calls.clear()
    with pytest.raises(GtmmError, match="smoke scale's batch of 5 does not split evenly over 2 devices"):
        experiments.reproduce("perfect-recall", "smoke", tmp_path / "smoke", models=("vrnn",), devices=2)
    assert calls == [] and not (tmp_path / "smoke").exists()
