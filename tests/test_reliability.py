"""Issue 8: no NaN, no lost run, exact resume, clear errors.

The fast part; scripts/reliability.py runs the long sweeps (every model and task for many steps,
ten kills, every bad input).
"""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import numpy as np
import pytest

import gtmm
import gtmm.train as gt
from gtmm._io import read_jsonl, repair_jsonl
from gtmm.errors import GtmmError
from gtmm.train import (
    CHECKPOINT_FORMAT,
    TrainConfig,
    _checkpoint_paths,
    fork_run,
    load_trained,
    make_optimizer,
    read_checkpoint,
    read_config,
    read_metrics,
    train,
)
from tests._scripts import load_script
from tests.conftest import LEVEL_0, LOOP_EMITTERS, SHARED_DATA

ROOT = Path(__file__).resolve().parents[1]
EVERY = 2


def _tiny(steps: int, **kw) -> TrainConfig:
    """The configuration of test_train's tiny runs (one compiled step for the whole session)."""
    return TrainConfig(model="introspective", l=3, k=2, steps=steps, batch_size=2, checkpoint_every=EVERY,
                       model_overrides={"hidden_size": 16, "map_hidden": 16}, **kw)


def _numbers(run: Path, up_to: int | None = None) -> list[dict]:
    """Metrics by step, wall-clock time aside: what must be bit-identical."""
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in read_metrics(run)
            if up_to is None or r["step"] <= up_to]


def _files(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def _params(run: Path) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(eqx.filter(load_trained(run)[2], eqx.is_array))]


@pytest.fixture(scope="module")
def straight(tmp_path_factory, recall_task) -> Path:
    """8 steps never interrupted: the reference every other run here must equal."""
    run = tmp_path_factory.mktemp("straight") / "run"
    train(_tiny(8), run, progress=False, task=recall_task)
    return run


def test_resume_is_bit_identical(straight, tmp_path, recall_task):
    """Stopped after 5 steps and resumed to 8: every metric and parameter equals the straight run's."""
    run = tmp_path / "run"
    train(_tiny(5), run, progress=False, task=recall_task)
    assert train(_tiny(8), run, progress=False, task=recall_task)["resumed_from"] == 5
    assert _numbers(run) == _numbers(straight)
    assert all(np.array_equal(a, b) for a, b in zip(_params(run), _params(straight)))


def test_same_seed_same_metrics(straight, tmp_path, recall_task):
    train(_tiny(8), tmp_path / "again", progress=False, task=recall_task)
    assert _numbers(tmp_path / "again") == _numbers(straight)
    assert _numbers(straight)[0]["grad_norm"] > 0


def test_checkpoints_hold_what_a_run_needs(straight):
    assert [s for s, _ in _checkpoint_paths(straight)] == [4, 6, 8]  # keep_checkpoints = 3
    assert not [p for p in straight.rglob("*") if p.name.endswith(".tmp")]
    model = load_trained(straight)[2]
    opt = make_optimizer(_tiny(8)).init(eqx.filter(model, eqx.is_array))
    for step, path in _checkpoint_paths(straight):
        header, _, _ = read_checkpoint(path, model, opt)
        assert header["format"] == CHECKPOINT_FORMAT and header["gtmm_version"] == gtmm.__version__
        assert header["step"] == step and header["next_batch"] == {"seed": 0, "step": step}
        assert TrainConfig(**header["train"]) == _tiny(8)
        assert header["model"]["model"] == "introspective" and header["model"]["hidden_size"] == 16
        assert {"jax_version", "equinox_version", "optax_version", "payload_sha256"} <= set(header)


def test_damaged_checkpoint_falls_back_and_another_format_is_refused(straight, tmp_path, recall_task, capsys):
    run = tmp_path / "run"
    shutil.copytree(straight, run)
    newest = _checkpoint_paths(run)[-1][1]
    data = bytearray(newest.read_bytes())
    data[-5] ^= 0xFF  # one flipped bit in the arrays
    newest.write_bytes(bytes(data))
    assert load_trained(run)[3] == 6
    assert "damaged" in capsys.readouterr().err

    newest.write_bytes(bytes(data).replace(b'"format": 1', b'"format": 2', 1))
    before = _files(run)
    for attempt in (lambda: train(_tiny(10), run, progress=False, task=recall_task), lambda: load_trained(run)):
        with pytest.raises(GtmmError, match="checkpoint format 2") as err:
            attempt()
        assert "\n" not in str(err.value) and "train into a new --out" in str(err.value)
    assert _files(run) == before  # config.json included: nothing is written before checkpoints load


def test_checkpoints_of_gtmm_before_headers_still_load(straight, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(straight, run)
    newest = _checkpoint_paths(run)[-1][1]
    data = newest.read_bytes()
    newest.write_bytes(data[data.index(b"\n", len(gt._MAGIC)) + 1:])  # arrays only, as before format 1
    assert load_trained(run)[3] == 8
    assert all(np.array_equal(a, b) for a, b in zip(_params(run), _params(straight)))


def _enospc(*_):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_full_disk_while_saving_keeps_the_last_checkpoint(straight, tmp_path, recall_task, monkeypatch):
    run = tmp_path / "run"
    train(_tiny(2), run, progress=False, task=recall_task)
    kept = _files(run / "checkpoints")
    real_write = gt.write_bytes_atomic

    def full_disk(path, data):  # the real atomic write, on a disk that fills up before its fsync
        with monkeypatch.context() as m:
            m.setattr(os, "fsync", _enospc)
            real_write(path, data)

    monkeypatch.setattr(gt, "write_bytes_atomic", full_disk)
    with pytest.raises(GtmmError, match="no space left") as err:
        train(_tiny(4), run, progress=False, task=recall_task)
    assert "\n" not in str(err.value) and "resumes from the last checkpoint (step 2)" in str(err.value)
    assert _files(run / "checkpoints") == kept  # no temporary file left, the old checkpoint untouched
    monkeypatch.undo()
    assert train(_tiny(4), run, progress=False, task=recall_task)["resumed_from"] == 2
    assert _numbers(run) == _numbers(straight, up_to=4)


def test_full_disk_while_logging_leaves_a_torn_line_that_resume_cuts_off(straight, tmp_path, recall_task,
                                                                          monkeypatch):
    run = tmp_path / "run"
    real_append = gt.append_jsonl

    def append(path, record):
        if record["step"] == 3:  # half the line reaches the disk, then the disk is full
            with open(path, "a") as f:
                f.write(json.dumps(record)[:25])
            _enospc()
        real_append(path, record)

    monkeypatch.setattr(gt, "append_jsonl", append)
    with pytest.raises(GtmmError, match="no space left"):
        train(_tiny(4), run, progress=False, task=recall_task)
    assert not (run / "metrics.jsonl").read_bytes().endswith(b"\n")
    assert [r["step"] for r in read_metrics(run)] == [1, 2]  # readers skip the torn line
    monkeypatch.undo()
    train(_tiny(4), run, progress=False, task=recall_task)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3, 4]  # every line parses again
    assert _numbers(run) == _numbers(straight, up_to=4)


def test_repair_jsonl_cuts_only_a_torn_tail(tmp_path):
    log = tmp_path / "m.jsonl"
    log.write_text('{"step": 1}\n{"step": 2}\n')
    assert not repair_jsonl(log) and log.read_text() == '{"step": 1}\n{"step": 2}\n'
    log.write_text('{"step": 1}\n{"step": 2}\n{"st')
    assert repair_jsonl(log) and log.read_text() == '{"step": 1}\n{"step": 2}\n'
    log.write_text('{"st')
    assert repair_jsonl(log) and log.read_text() == ""
    assert read_jsonl(log) == []


def test_nonfinite_loss_stops_before_anything_is_saved(tmp_path, recall_task):
    class Poisoned(type(recall_task)):
        def __init__(self):
            self.__dict__.update(recall_task.__dict__)

        def batch(self, split, batch_size, seed, step):
            b = super().batch(split, batch_size, seed, step)
            return b._replace(frames=b.frames * np.nan) if step >= 2 else b

    run = tmp_path / "run"
    with pytest.raises(GtmmError, match="non-finite at step 3") as err:
        train(_tiny(4), run, progress=False, task=Poisoned())
    assert "the last checkpoint (step 2) is kept" in str(err.value) and "\n" not in str(err.value)
    assert [r["step"] for r in read_metrics(run)] == [1, 2]
    assert [s for s, _ in _checkpoint_paths(run)] == [2]


def test_overwrite_replaces_a_run_only_when_asked(tmp_path, recall_task):
    run = tmp_path / "run"
    train(_tiny(1), run, progress=False, task=recall_task)
    (run / "evaluation.json").write_text("{}")
    with pytest.raises(GtmmError, match="different run .*--overwrite"):
        train(_tiny(1, seed=1), run, progress=False, task=recall_task)
    train(_tiny(1, seed=1), run, progress=False, task=recall_task, overwrite=True)
    assert json.loads((run / "config.json").read_text())["train"]["seed"] == 1
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "config.json", "metrics.jsonl"]
    assert not [p for p in tmp_path.iterdir() if p.name != "run"]  # the old run is gone, not left aside
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(GtmmError, match="not a gtmm run directory"):
        train(_tiny(1), other, progress=False, task=recall_task, overwrite=True)
    assert (other / "notes.txt").read_text() == "mine"


def test_a_fork_with_the_same_settings_repeats_the_source_and_a_changed_clip_branches(straight, tmp_path,
                                                                                     recall_task):
    """fork_run: from step 4 of the straight run, unchanged settings train on to its very numbers and
    parameters; a tiny clip gives the same numbers up to step 4 and others after; the source is not
    touched and the fork's provenance survives its resumes."""
    before = _files(straight)
    same = tmp_path / "same"
    assert fork_run(straight, same, 4)["changed"] == {}
    assert _numbers(same) == _numbers(straight, 4) and [s for s, _ in _checkpoint_paths(same)] == [4]
    assert train(_tiny(8), same, progress=False, task=recall_task)["resumed_from"] == 4
    assert _numbers(same) == _numbers(straight)
    assert all(np.array_equal(a, b) for a, b in zip(_params(same), _params(straight)))

    clipped = tmp_path / "clipped"
    summary = fork_run(straight, clipped, 4, clip_grad_norm=1e-3, steps=6)
    assert summary["changed"] == {"clip_grad_norm": [None, 1e-3], "steps": [8, 6]}
    with pytest.raises(GtmmError, match="different run .*clip_grad_norm"):  # it is another run now
        train(_tiny(6), clipped, progress=False, task=recall_task)
    train(_tiny(6, clip_grad_norm=1e-3), clipped, progress=False, task=recall_task)
    ours, theirs = _numbers(clipped), _numbers(straight, 6)
    assert ours[:5] == theirs[:5]  # step 5's loss is computed before the first clipped update
    assert ours[5]["negative_bound"] != theirs[5]["negative_bound"]
    meta = json.loads((clipped / "config.json").read_text())
    assert meta["forked_from"] == {"run": str(straight.resolve()), "step": 4,
                                   "changed": {"clip_grad_norm": [None, 1e-3], "steps": [8, 6]}}
    assert meta["train"]["clip_grad_norm"] == 1e-3
    assert _files(straight) == before


def test_an_lr_drop_equals_training_to_it_and_forking_with_the_new_rate(straight, tmp_path, recall_task):
    """lr_drops ((4, 1e-4)): the straight run's numbers to step 5 (its loss comes before the first
    update at the new rate), then those of a fork of the straight run at step 4 with lr 1e-4, to the
    bit; a run stopped after the drop resumes at the new rate; a resume with other drops is refused."""
    dropped = tmp_path / "dropped"
    train(_tiny(8, lr_drops=((4, 1e-4),)), dropped, progress=False, task=recall_task)
    ours, theirs = _numbers(dropped), _numbers(straight)
    assert ours[:5] == theirs[:5] and ours[5]["negative_bound"] != theirs[5]["negative_bound"]
    forked = tmp_path / "forked"
    fork_run(straight, forked, 4, learning_rate=1e-4)
    train(_tiny(8, learning_rate=1e-4), forked, progress=False, task=recall_task)
    assert _numbers(forked) == ours
    assert all(np.array_equal(a, b) for a, b in zip(_params(forked), _params(dropped)))
    resumed = tmp_path / "resumed"
    train(_tiny(6, lr_drops=[[4, 1e-4]]), resumed, progress=False, task=recall_task)  # as config.json holds it
    assert train(_tiny(8, lr_drops=((4, 1e-4),)), resumed, progress=False, task=recall_task)["resumed_from"] == 6
    assert _numbers(resumed) == ours
    with pytest.raises(GtmmError, match="different run .*lr_drops"):
        train(_tiny(10, lr_drops=((4, 1e-5),)), resumed, progress=False, task=recall_task)
    # a fork with a new --lr keeps only the drops after its step; one without keeps them all
    assert read_config(fork_run(dropped, tmp_path / "relr", 6, learning_rate=1e-5)["run_dir"]).lr_drops == ()
    assert read_config(fork_run(dropped, tmp_path / "reclip", 6, clip_grad_norm=1.0)["run_dir"]).lr_drops == ((4, 1e-4),)
    # a report never averages runs of different schedules or clipping together
    from gtmm.report import _settings
    assert ("lr_drops", "0.0001@4") in _settings(dropped) and not any(k == "lr_drops" for k, _ in _settings(straight))
    reclipped = _settings(tmp_path / "reclip")
    assert ("clip", 1.0) in reclipped and not any(k == "clip" for k, _ in _settings(dropped))


def test_the_memory_clip_changes_the_memory_alone_and_only_where_it_binds(straight, tmp_path, recall_task):
    """clip_memory_grad_norm: a clip far above the memory's gradient norm leaves the run as it was
    (scaled by exactly 1; XLA may fuse the program differently, so to float rounding, not bit for
    bit); one that binds changes the numbers after the first update; a fork adds it to a run (the
    optimiser state is Adam's either way), and a resume with another value is refused."""
    loose = tmp_path / "loose"
    train(_tiny(8, clip_memory_grad_norm=1e9), loose, progress=False, task=recall_task)
    for key in ("negative_bound", "grad_norm"):
        np.testing.assert_allclose([r[key] for r in _numbers(loose)], [r[key] for r in _numbers(straight)], rtol=1e-5)
    for a, b in zip(_params(loose), _params(straight)):  # Adam moves a parameter with a tiny gradient by ~lr
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)  # per step, so rounding shows at a tenth of lr
    tight = tmp_path / "tight"
    assert fork_run(straight, tight, 4, clip_memory_grad_norm=1e-6)["changed"] == {
        "clip_memory_grad_norm": [None, 1e-6]}
    with pytest.raises(GtmmError, match="different run .*clip_memory_grad_norm"):
        train(_tiny(8), tight, progress=False, task=recall_task)
    train(_tiny(8, clip_memory_grad_norm=1e-6), tight, progress=False, task=recall_task)
    ours, theirs = _numbers(tight), _numbers(straight)
    assert ours[:5] == theirs[:5] and ours[5]["negative_bound"] != theirs[5]["negative_bound"]
    from gtmm.report import _settings
    assert ("clip_memory", 1e-6) in _settings(tight)


def test_the_memory_clip_scales_the_memory_gradient_alone():
    from gtmm.model import ModelConfig, init_model
    from gtmm.train import clip_memory_by_global_norm, tree_norm

    model = init_model(ModelConfig(model="lru", hidden_size=8, map_hidden=8, sequence_length=4).resolved(), 0)
    grads = jax.tree_util.tree_map(lambda x: np.full(x.shape, 3.0, x.dtype), eqx.filter(model, eqx.is_array))
    clip = clip_memory_by_global_norm(2.0)
    clipped, _ = clip.update(grads, clip.init(grads))
    assert float(tree_norm(grads.memory)) > 2.0 and float(tree_norm(clipped.memory)) == pytest.approx(2.0, rel=1e-5)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(clipped.decoder),
                                                    jax.tree_util.tree_leaves(grads.decoder)))  # the rest untouched
    zero = jax.tree_util.tree_map(np.zeros_like, grads)
    assert float(tree_norm(clip.update(zero, clip.init(zero))[0])) == 0.0  # no 0/0
    for bad in (0.0, -1.0, float("inf")):
        with pytest.raises(GtmmError, match="clip memory grad norm must be a positive number"):
            _tiny(4, clip_memory_grad_norm=bad).validate()


@pytest.mark.parametrize("drops,words", [
    (((5, 1e-4), (3, 1e-5)), "positive and increasing, got \\[5, 3\\]"),
    (((0, 1e-4),), "positive and increasing"),
    (((5, -1.0),), "learning rates must be positive numbers, got \\[-1.0\\]"),
    (((5, float("nan")),), "learning rates must be positive numbers"),
    ((("5", 1e-4),), "must be \\(step, learning rate\\) pairs"),
    ("5:1e-4", "must be \\(step, learning rate\\) pairs"),
])
def test_bad_lr_drops_are_refused(drops, words):
    with pytest.raises(GtmmError, match=words):
        _tiny(4, lr_drops=drops).validate()


@pytest.mark.parametrize("kwargs,words", [
    ({"step": 5}, "no checkpoint at step 5; it has steps 4, 6, 8"),
    ({"model": "dnc"}, "can change only"),
    ({"learning_rate": -1.0}, "learning rate must be a positive number"),
    ({"out": "exists"}, "exists; a fork goes into a new directory"),
])
def test_a_bad_fork_is_refused_with_nothing_written(straight, tmp_path, kwargs, words):
    before = _files(straight)
    out = tmp_path / kwargs.pop("out", "fork")
    if out.name == "exists":
        out.mkdir()
    with pytest.raises(GtmmError, match=words):
        fork_run(straight, out, **kwargs)
    assert _files(straight) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == (["exists"] if out.name == "exists" else [])


def test_killed_run_resumes_losing_at_most_a_checkpoint_interval(straight, tmp_path, recall_task):
    """SIGKILL a training process at a random moment: every checkpoint loads, the log parses, at
    most EVERY steps are redone, and the resumed run equals the one never interrupted."""
    run = tmp_path / "run"
    code = (  # the tiny run, 0.1 s slower a step so that it is surely mid-run when killed
        "import sys, time\n"
        "from gtmm.tasks import make_task\n"
        "from gtmm.train import TrainConfig, train\n"
        "task = make_task('perfect-recall', l=3, k=2)\n"
        "batch = task.batch\n"
        "task.batch = lambda *a: (time.sleep(0.1), batch(*a))[1]\n"
        f"train(TrainConfig(**{_tiny(40).__dict__!r}), sys.argv[1], progress=False, task=task)\n")
    env = dict(os.environ, GTMM_DATA=str(SHARED_DATA), GTMM_OFFLINE="1",
               PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-c", code, str(run)], env=env, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while len(read_metrics(run)) < 3 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(np.random.default_rng().uniform(0, 0.3))
    assert proc.poll() is None, proc.stderr.read().decode()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()

    logged = max(r["step"] for r in read_metrics(run))
    model = load_trained(run)[2]
    opt = make_optimizer(_tiny(8)).init(eqx.filter(model, eqx.is_array))
    for step, path in _checkpoint_paths(run):
        assert read_checkpoint(path, model, opt)[0]["step"] == step  # every checkpoint loads
    newest = _checkpoint_paths(run)[-1][0]
    assert 0 <= logged - newest <= EVERY and newest < 8, (logged, newest)
    assert train(_tiny(8), run, progress=False, task=recall_task)["resumed_from"] == newest
    assert all(json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines())
    assert _numbers(run) == _numbers(straight)  # across processes, too


def test_every_model_trains_under_debug_nans_on_adversarial_frames():
    """A tiny configuration of every model, two steps on batches of the four adversarial inputs
    (all-black, all-white, one frame repeated, maximum-contrast noise: one sequence each), under
    jax_debug_nans; in a fresh process, where XLA optimises less so that it compiles faster.
    Real digits under debug_nans, every task and longer runs: scripts/reliability.py."""
    env = dict(os.environ, GTMM_DATA=str(SHARED_DATA), GTMM_OFFLINE="1",
               XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " " + LEVEL_0).strip())
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "reliability.py"), "--checks", "numerics",
                           "--debug-nans", "--seeds", "1", "--steps", "2", "--batch-size", "4", "--tasks", "",
                           "--adversarial", "mixed"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "6 models x 1 inputs" in proc.stdout and "no NaN or Inf anywhere" in proc.stdout, proc.stdout


def test_the_suites_cheap_compile_gives_the_losses_of_xlas_default_compile(tmp_path):
    """The suite compiles at XLA's optimisation level 0 with its loop emitters (conftest.py);
    users' runs compile at XLA's defaults. The same short DNC run (the memory with the most
    kinds of operation: sort, cumulative product, link matrix) under both must give the same
    losses to float tolerance, so what the suite checks holds for the programs users run."""
    from gtmm.cli import main

    argv = ["train", "--model", "dnc", "--l", "3", "--k", "2", "--batch-size", "2", "--hidden-size", "16",
            "--steps", "3", "--no-progress"]
    assert main(argv + ["--out", str(tmp_path / "suite")]) == 0  # in this process, at the suite's flags
    default_flags = " ".join(f for f in os.environ.get("XLA_FLAGS", "").split() if f not in (LEVEL_0, LOOP_EMITTERS))
    # no compile cache there: it must compile at these flags, whatever JAX puts in a cache key
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env.update(GTMM_DATA=str(SHARED_DATA), GTMM_OFFLINE="1", XLA_FLAGS=default_flags, GTMM_NO_COMPILE_CACHE="1")
    proc = subprocess.run([sys.executable, "-m", "gtmm", *argv, "--out", str(tmp_path / "default")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    losses = {name: [m["negative_bound"] for m in read_metrics(tmp_path / name)] for name in ("suite", "default")}
    assert len(losses["suite"]) == 3 and np.all(np.isfinite(losses["suite"]))
    np.testing.assert_allclose(losses["suite"], losses["default"], rtol=1e-5)  # seen: 1.1e-7


def test_numerics_ledger_skips_finished_runs_and_survives_a_torn_line(tmp_path):
    """The full numerics sweep runs in pieces: a model-input run in the ledger is not rerun, a torn
    last line (a killed writer) is cut before the next entry, and coverage counts seeds per pair."""
    import argparse

    rel = load_script("reliability")
    path = tmp_path / "ledger.jsonl"
    key = {"model": "vrnn", "input": "adversarial-black", "seeds": [0, 10], "steps": 300, "batch_size": 2,
           "hidden": 16, "debug_nans": False}
    ledger = rel.Ledger(path)
    assert ledger.find(key) is None
    ledger.add({**key, "status": "ok"})
    with open(path, "a") as f:
        f.write('{"model": "vrnn", "inp')  # killed mid-write
    ledger = rel.Ledger(path)
    assert ledger.find(key)["status"] == "ok" and ledger.find({**key, "seeds": [10, 20]}) is None
    ledger.add({**key, "seeds": [10, 20], "status": "ok"})
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and all(json.loads(line)["model"] == "vrnn" for line in lines)
    args = argparse.Namespace(models=["vrnn", "dnc"], steps=300, batch_size=2, hidden=16)
    text = rel.Ledger(path).coverage(args, ["adversarial-black"])
    assert "min 0, max 20" in text and "pairs with >= 20 seeds: 1" in text, text


def test_the_kill_checks_reading_of_a_resumed_log():
    """scripts/reliability.py's kill check: a resume from step 25 after steps 26-28 were logged
    rewrites them, so the log is 1..n once each; a log that kept them, or skipped steps, is wrong."""

    rel = load_script("reliability")
    log = lambda steps: [{"step": s} for s in steps]  # noqa: E731
    assert rel.resume_problems(log(range(1, 53)), 25) == []
    assert rel.resume_problems(log([*range(1, 29), *range(26, 53)]), 25) == ["the log's steps are not 1..55, each once"]
    assert rel.resume_problems(log([*range(1, 26), *range(28, 53)]), 25) == [
        "resumed at step 28, not 26", "the log's steps are not 1..50, each once"]


def test_keep_every_keeps_milestones_across_resumes_and_evaluates_them(tmp_path, recall_task):
    from gtmm.evaluate import evaluate_run

    run = tmp_path / "run"
    train(_tiny(12, keep_every=4), run, progress=False, task=recall_task)
    assert [s for s, _ in _checkpoint_paths(run)] == [4, 8, 10, 12]  # the newest 3 and the multiples of 4
    train(_tiny(14), run, progress=False, task=recall_task)  # resumed without keep_every: the run's 4 holds
    assert [s for s, _ in _checkpoint_paths(run)] == [4, 8, 10, 12, 14]  # without the 4: [10, 12, 14]
    assert gt.read_config(run).keep_every == 4

    ev = evaluate_run(run, batches=1, samples=2, step=4)
    assert ev["step"] == 4 and np.isfinite(ev["negative_bound"])
    assert json.loads((run / "evaluation-step-4.json").read_text())["kl_recall"] == ev["kl_recall"]
    assert (run / "samples-step-4.png").read_bytes()[:4] == b"\x89PNG"
    assert not (run / "evaluation.json").exists()  # the run's result is the newest step's, not rewritten
    assert load_trained(run, 4)[3] == 4 and load_trained(run)[3] == 14

    before = _files(run)
    with pytest.raises(GtmmError, match=r"no checkpoint at step 6; it has steps 4, 8, 10, 12, 14") as err:
        evaluate_run(run, batches=1, step=6)
    assert "\n" not in str(err.value) and _files(run) == before
    with pytest.raises(GtmmError, match=r"keep every \(3\) must be a multiple of checkpoint every \(2\)"):
        _tiny(12, keep_every=3).validate()
