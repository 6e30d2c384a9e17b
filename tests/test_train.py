import json
from dataclasses import replace

import jax
import numpy as np
import pytest

from gtmm.errors import GtmmError
from gtmm.train import TrainConfig, read_metrics, train


def _tiny(task, steps):
    return TrainConfig(model="introspective", l=task.l, k=task.k, steps=steps, batch_size=2, checkpoint_every=steps,
                       model_overrides={"hidden_size": 16, "map_hidden": 16})


def test_short_training_lowers_the_loss(tmp_path, recall_task):
    cfg = TrainConfig(model="introspective", l=3, k=2, steps=24, batch_size=4, checkpoint_every=24)
    train(cfg, tmp_path / "run", progress=False, task=recall_task)
    losses = [r["negative_bound"] for r in read_metrics(tmp_path / "run")]
    assert len(losses) == 24 and all(np.isfinite(losses))
    assert np.mean(losses[-4:]) < 0.8 * np.mean(losses[:4])


def test_resume_continues_the_same_run(tmp_path, recall_task, capsys):
    """4 steps straight equals 2 steps, stop, resume to 4 (same data stream and keys)."""
    straight = TrainConfig(model="vrnn", l=3, k=2, steps=4, checkpoint_every=2)
    train(straight, tmp_path / "a", progress=False, task=recall_task)
    first = TrainConfig(model="vrnn", l=3, k=2, steps=2, checkpoint_every=2)
    train(first, tmp_path / "b", progress=False, task=recall_task)
    assert "resuming" not in capsys.readouterr().err
    out = train(straight, tmp_path / "b", progress=False, task=recall_task)
    assert out["resumed_from"] == 2
    assert f"resuming from the step-2 checkpoint in {tmp_path / 'b'}" in capsys.readouterr().err
    a = [r["negative_bound"] for r in read_metrics(tmp_path / "a")]
    b = [r["negative_bound"] for r in read_metrics(tmp_path / "b")]
    assert [r["step"] for r in read_metrics(tmp_path / "b")] == [1, 2, 3, 4]
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_fewer_steps_than_trained_is_refused_and_equal_steps_train_nothing(tmp_path, recall_task, capsys):
    """--steps below the run's newest checkpoint is an error that changes nothing (it once rewrote the
    config, trained nothing and reported a NaN loss); --steps equal to it is a no-op that reports the
    loss logged at that step."""
    run = tmp_path / "run"
    train(TrainConfig(model="vrnn", l=3, k=2, steps=4, checkpoint_every=2), run, progress=False, task=recall_task)
    before = {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with pytest.raises(GtmmError, match="trained to step 4, past --steps 2; pass --steps 4 or more"):
        train(TrainConfig(model="vrnn", l=3, k=2, steps=2, checkpoint_every=2), run, progress=False, task=recall_task)
    assert {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    capsys.readouterr()
    out = train(TrainConfig(model="vrnn", l=3, k=2, steps=4, checkpoint_every=2), run, progress=False,
                task=recall_task)
    assert "already at step 4; nothing to train" in capsys.readouterr().err
    assert out["resumed_from"] == 4
    assert out["final_loss"] == read_metrics(run)[-1]["negative_bound"]
    assert [r["step"] for r in read_metrics(run)] == [1, 2, 3, 4]


def test_a_run_being_trained_elsewhere_is_refused(tmp_path, recall_task):
    """While another process trains a run (holds its lock), training it again, or --overwrite of it,
    is an error that changes nothing; once that process is gone the run resumes."""
    import subprocess
    import sys

    run = tmp_path / "run"
    config = TrainConfig(model="vrnn", l=3, k=2, steps=2, checkpoint_every=2)
    train(config, run, progress=False, task=recall_task)
    before = {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    holder = subprocess.Popen(  # stands in for a gtmm train of this run in another process
        [sys.executable, "-c", "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDONLY);"
         " fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); sys.stdin.read()", str(run)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        for overwrite in (False, True):
            with pytest.raises(GtmmError, match="is being trained by another process; let it finish or stop it"):
                train(replace(config, steps=4), run, progress=False, task=recall_task, overwrite=overwrite)
        assert {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    finally:
        holder.communicate("")
    assert train(replace(config, steps=4), run, progress=False, task=recall_task)["resumed_from"] == 2


def test_conflicting_run_directory_is_not_touched(tmp_path, recall_task):
    run = tmp_path / "run"
    train(TrainConfig(model="vrnn", l=3, k=2, steps=1), run, progress=False, task=recall_task)
    before = {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with pytest.raises(GtmmError, match="different run"):
        train(TrainConfig(model="introspective", l=3, k=2, steps=1), run, progress=False, task=recall_task)
    after = {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert before == after
    assert json.loads((run / "config.json").read_text())["train"]["model"] == "vrnn"


def test_torn_metrics_line_is_skipped(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "negative_bound": 3.0}\n{"step": 2, "nega')
    assert [r["step"] for r in read_metrics(tmp_path)] == [1]


def test_atomic_writes_get_ordinary_file_permissions(tmp_path):
    """Files written atomically are as readable as any other file the user writes (umask)."""
    import os

    from gtmm._io import write_bytes_atomic

    write_bytes_atomic(tmp_path / "a.bin", b"x")
    (tmp_path / "b.bin").write_bytes(b"x")
    assert os.stat(tmp_path / "a.bin").st_mode & 0o777 == os.stat(tmp_path / "b.bin").st_mode & 0o777


@pytest.mark.parametrize("strategy", ["loop", "vmap"])
def test_replicas_trained_together_equal_each_trained_alone(tmp_path, recall_task, strategy):
    """Replica r is the run seed + r would be on its own: same losses, same parameters."""
    import equinox as eqx

    from gtmm.train import load_trained, read_metrics, train_replicas

    config = _tiny(recall_task, steps=3)
    together = train_replicas(config, tmp_path / "together", 2, progress=False, task=recall_task, strategy=strategy)
    assert [s["run_dir"] for s in together] == [str(tmp_path / "together" / f"replica-{r}") for r in range(2)]
    for r in range(2):
        alone = tmp_path / f"alone-{r}"
        train(replace(config, seed=config.seed + r), alone, progress=False, task=recall_task)
        ours = [m["negative_bound"] for m in read_metrics(tmp_path / "together" / f"replica-{r}")]
        theirs = [m["negative_bound"] for m in read_metrics(alone)]
        # loop: the very same computation; vmap: the same maths batched, so float rounding differs
        np.testing.assert_allclose(ours, theirs, rtol=0 if strategy == "loop" else 1e-4)
        a = eqx.filter(load_trained(tmp_path / "together" / f"replica-{r}")[2], eqx.is_array)
        b = eqx.filter(load_trained(alone)[2], eqx.is_array)
        diff = np.concatenate([np.abs(np.asarray(x) - np.asarray(y)).ravel()
                               for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b))])
        if strategy == "loop":
            assert diff.max() == 0
        else:
            # Adam's normalised step turns the rounding of a near-zero gradient into up to 2 lr a
            # step (seen: 1.5e-4 to 3.7e-4 on one weight of 128), so: nearly every weight agrees to
            # 1e-5 (a replica trained on another's data would move almost all of them), and none
            # is further off than Adam's bound. Agreeing: 0.9985 of 1,211,738 weights under the
            # tests' XLA flags (conftest.py), whose loop emitters round differently batched and not.
            assert np.mean(diff <= 1e-5) > 0.995
            assert diff.max() <= 2 * config.lr * config.steps
    # the two replicas really differ (own seed, own data stream)
    assert read_metrics(tmp_path / "together" / "replica-0")[0]["negative_bound"] != \
        read_metrics(tmp_path / "together" / "replica-1")[0]["negative_bound"]


def test_compiling_ahead_of_the_first_step_compiles_once():
    """`compile_then_release` compiles the step; the first real call must reuse that compilation."""
    import equinox as eqx
    import jax.numpy as jnp

    from gtmm.train import compile_then_release

    @eqx.filter_jit
    def step(w, x):
        return jnp.tanh(x @ w).sum() * 1.2345  # a function no other test compiles

    w, x = jnp.ones((7, 3)), jnp.ones((5, 7))
    expected = float(np.tanh(np.ones((5, 7)) @ np.ones((7, 3))).sum() * 1.2345)
    compiles = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, duration, **kw: compiles.append(event) if event == "/jax/core/compile/backend_compile_duration"
        else None)
    compile_then_release(step, w, x)
    assert len(compiles) == 1
    assert float(step(w, x)) == pytest.approx(expected, rel=1e-6)
    assert len(compiles) == 1, "the first call compiled again instead of reusing the ahead-of-time compilation"


def test_clip_grad_norm_tames_a_spike_trains_and_is_part_of_the_run(tmp_path, recall_task):
    """--clip-grad-norm (not in the paper): a gradient spike after steady small gradients moves the
    parameters less than under plain Adam; a clipped run trains with finite losses, records the
    setting, and its directory refuses a resume without it."""
    import jax.numpy as jnp

    from gtmm.train import make_optimizer

    plain, clipped = (make_optimizer(TrainConfig(model="vrnn", clip_grad_norm=c)) for c in (None, 2.0))
    assert make_optimizer(TrainConfig(model="vrnn", clip_grad_norm=2.0)) is clipped  # one compiled step per setting
    params = {"w": jnp.zeros(4)}
    pushes = []  # how far the parameters move in the spike's direction over the spike and 30 steps after
    for opt in (plain, clipped):
        state = opt.init(params)
        for _ in range(20):
            _, state = opt.update({"w": jnp.full(4, 0.5)}, state, params)  # norm 1, under the clip
        push = 0.0
        for g in [-5e3] + [0.5] * 30:  # norm 1e4: a spike, then the steady gradient again
            update, state = opt.update({"w": jnp.full(4, g)}, state, params)
            push += float(update["w"][0])
        pushes.append(push)
    assert pushes[0] > 0 and pushes[1] < 0.1 * pushes[0], pushes  # Adam's momentum carries a spike on; clipped, not

    run = tmp_path / "run"
    cfg = TrainConfig(model="vrnn", l=3, k=2, steps=3, batch_size=2, checkpoint_every=3, clip_grad_norm=10.0)
    train(cfg, run, progress=False, task=recall_task)
    records = read_metrics(run)
    assert len(records) == 3 and all(np.isfinite(r["negative_bound"]) for r in records)
    assert json.loads((run / "config.json").read_text())["train"]["clip_grad_norm"] == 10.0
    with pytest.raises(GtmmError, match="different run .*clip_grad_norm"):
        train(replace(cfg, clip_grad_norm=None, steps=4), run, progress=False, task=recall_task)
    for bad in (0.0, -1.0, float("nan"), True):
        with pytest.raises(GtmmError, match="clip grad norm must be a positive number"):
            replace(cfg, clip_grad_norm=bad).validate()


def test_the_maze_grid_is_part_of_the_run(tmp_path, mnist, capsys):
    """`grid` (mnist-maze's side, not in the paper beyond its 4): trained on, recorded in the run and its
    evaluation, part of the run's identity; the default is the paper's 4, and other tasks take none."""
    from gtmm.evaluate import evaluate_run
    from gtmm.train import read_config

    assert TrainConfig(model="vrnn", task="mnist-maze").grid == 4
    assert TrainConfig(model="vrnn").grid is None
    with pytest.raises(GtmmError, match="takes no parameter grid"):
        TrainConfig(model="vrnn", grid=3).validate()
    with pytest.raises(GtmmError, match="cannot hold a walk"):
        TrainConfig(model="vrnn", task="mnist-maze", grid=1).validate()
    config = TrainConfig(model="vrnn", task="mnist-maze", grid=3, l=4, k=3, steps=1, batch_size=2)
    run = tmp_path / "maze"
    train(config, run, progress=False)
    assert read_config(run).grid == 3
    assert evaluate_run(run, batches=1)["grid"] == 3
    with pytest.raises(GtmmError, match="grid: 3 on disk vs 4"):
        train(replace(config, grid=4), run, progress=False)
