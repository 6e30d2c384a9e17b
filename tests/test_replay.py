"""scripts/replay_steps.py: retraining a stretch of a run from a checkpoint gives the run's own steps."""

import sys

import numpy as np
import pytest

from gtmm.errors import GtmmError
from gtmm.memories.base import InterfaceMemory
from gtmm.train import TrainConfig, train
from tests._scripts import SCRIPTS, load_script

sys.path.insert(0, str(SCRIPTS))  # the script imports recall_diagnostic beside it
replay_steps = load_script("replay_steps")
recall_diagnostic = load_script("recall_diagnostic")


def test_replay_matches_the_logged_steps_and_names_the_interface(tmp_path, recall_task):
    run = tmp_path / "run"
    config = TrainConfig(model="ntm", l=recall_task.l, k=recall_task.k, steps=4, batch_size=2, checkpoint_every=2,
                         model_overrides={"hidden_size": 16, "map_hidden": 16})
    train(config, run, progress=False, task=recall_task)
    original = InterfaceMemory._interface
    records = list(replay_steps.replay(run, run / "checkpoints" / "step_00000002.eqx", 4, task=recall_task))
    assert InterfaceMemory._interface is original  # the watch is undone
    assert [r["step"] for r in records] == [3, 4]
    # the same batches, keys and parameters as the run: the same gradients
    np.testing.assert_allclose([r["grad_norm"] for r in records], [r["logged"] for r in records], rtol=1e-5)
    for r in records:
        assert r["interface"]["1+softplus read_gamma"] >= 1.0  # gamma = 1 + softplus >= 1 (eq. 9)
        assert r["interface"]["softplus write_strengths"] >= 0.0
        assert "interface bias read_gamma" in r["parts"] and r["parts"]["controller lstm"] > 0
        modules = replay_steps.module_norms(r["parts"])  # the three modules hold every part: their norms make the whole
        assert np.hypot.reduce(list(modules.values())) == pytest.approx(r["grad_norm"], rel=1e-4)
    # the step comes from the checkpoint's header: a renamed copy replays the same steps
    copy = tmp_path / "kept.eqx"
    copy.write_bytes((run / "checkpoints" / "step_00000002.eqx").read_bytes())
    assert [r["step"] for r in replay_steps.replay(run, copy, 4, task=recall_task)] == [3, 4]
    with pytest.raises(GtmmError, match="not after the checkpoint"):  # nothing to replay after step 4
        next(replay_steps.replay(run, run / "checkpoints" / "step_00000004.eqx", 4, task=recall_task))


def test_recall_diagnostic_drops_the_rate_as_gtmm_train_does():
    config = TrainConfig(model="lru", lr_drops=((4, 1e-4), (6, 1e-5)))
    rate = recall_diagnostic.learning_rate(config.lr, config.lr_drops)
    assert [float(rate(s)) for s in range(8)] == pytest.approx([config.lr_at(s) for s in range(8)], rel=1e-6)
    assert config.lr_at(3) == 1e-3 and config.lr_at(4) == 1e-4 and config.lr_at(7) == 1e-5
    assert recall_diagnostic.learning_rate(1e-3, ()) == 1e-3  # no schedule: optax's constant rate, as before

