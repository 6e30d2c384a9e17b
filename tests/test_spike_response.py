"""scripts/spike_response.py: its "own" update is the run's next training step, and "skip" leaves the model as it was."""

import shutil
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gtmm.model import batch_terms
from gtmm.train import TrainConfig, load_trained, train
from tests._scripts import load_script

spike_response = load_script("spike_response")
CONFIG = TrainConfig(model="lru", l=3, k=2, steps=1, batch_size=2, clip_grad_norm=50.0,
                     model_overrides={"hidden_size": 16})


def _main(monkeypatch, *args):
    monkeypatch.setattr(sys, "argv", ["spike_response.py", *map(str, args)])
    spike_response.main()


def _held_out_kl(run, batch_size):
    """The script's score: mean held-out KL over steps 1-l and over the recall steps."""
    _, task, model, _ = load_trained(run)
    b = task.batch("eval", batch_size, 0, 0)
    kl = np.asarray(jnp.mean(batch_terms(model, jnp.asarray(b.frames), jnp.asarray(b.context),
                                         jax.random.PRNGKey(0)).kl, axis=0))
    return kl[:3].mean(), kl[3:].mean()


def test_own_update_is_the_next_training_step_and_skip_changes_nothing(tmp_path, recall_task, monkeypatch, capsys):
    run = tmp_path / "run"
    train(CONFIG, run, progress=False, task=recall_task)
    _main(monkeypatch, run, "--after", 0, "--batch-size", 2, "--norms", 1e6)
    out = capsys.readouterr().out
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in out.splitlines() if line.startswith("| ")}
    before = tuple(float(x) for x in out.split("): ")[1].split(" before")[0].split(" / "))
    skip = tuple(float(x) for x in rows["skip"][2].split(" / "))
    assert skip == before and rows["skip"][1] == "-"
    assert rows["1000000"][1] == "50"  # the run's clip bounds what the scaled gradient can do
    own_label = next(k for k in rows if k.endswith("(its own)"))
    own = tuple(float(x) for x in rows[own_label][2].split(" / "))
    # the same update through gtmm's own training loop: the copy trained one step further
    further = tmp_path / "further"
    shutil.copytree(run, further)
    train(TrainConfig(**{**CONFIG.__dict__, "steps": 2}), further, progress=False, task=recall_task)
    np.testing.assert_allclose(own, _held_out_kl(further, 2), atol=0.011)
    assert own != before


@pytest.mark.parametrize("args, message", [
    (["--after", -1], "--after must be at least 0"),
    (["--norms", 0], "--norms must be positive"),
    (["--step", 7], "has no checkpoint at step 7"),
])
def test_bad_arguments_are_one_line_errors(tmp_path, recall_task, monkeypatch, args, message):
    run = tmp_path / "run"
    train(CONFIG, run, progress=False, task=recall_task)
    with pytest.raises(SystemExit, match=message):
        _main(monkeypatch, run, *args)
