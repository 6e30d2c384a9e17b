"""scripts/state_swap.py: a swap changes nothing before it, does change what follows, and without a swap the
script steps the model exactly as the library's own unroll does."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gtmm.train import TrainConfig, load_trained, train
from tests._scripts import load_script

state_swap = load_script("state_swap")


@pytest.fixture(scope="module")
def lru_run(tmp_path_factory, recall_task):
    run = tmp_path_factory.mktemp("swap") / "run"
    train(TrainConfig(model="lru", l=3, k=2, steps=1, batch_size=2, model_overrides={"hidden_size": 16}), run,
          progress=False, task=recall_task)
    return run


def test_swaps_touch_only_later_steps_and_no_swap_is_the_library_unroll(lru_run):
    _, task, model, _ = load_trained(lru_run)
    batch = task.batch("eval", 3, 0, 0)
    T = batch.frames.shape[1]
    noise = jax.random.normal(jax.random.PRNGKey(1), (3, T, model.latent_size))
    embeddings = jax.vmap(model.embed)(jnp.asarray(batch.frames))
    context = jnp.asarray(batch.context)
    base = np.asarray(state_swap.swapped_kl(model, embeddings, context, noise, jnp.asarray(-1), ()))
    own = jax.vmap(lambda e, c, n: model.unroll(e, c, n, jnp.ones(T, bool)).kl)(embeddings, context, noise)
    np.testing.assert_allclose(base, np.asarray(own).mean(0), rtol=1e-5, atol=1e-5)
    for fields, carried in [(("memory",), ()), (("h", "c"), ()), ((), ("latent",))]:
        kl = np.asarray(state_swap.swapped_kl(model, embeddings, context, noise, jnp.asarray(2), fields, carried))
        np.testing.assert_array_equal(kl[:2], base[:2])  # steps 1-2 come before the swap
        assert np.abs(kl[2:] - base[2:]).max() > 1e-4, (fields, carried)  # another sequence's state changes the KL


def test_parts_group_the_controller_and_leave_out_counters(lru_run):
    _, _, model, _ = load_trained(lru_run)
    parts = state_swap.state_parts(model.initial_carry()[0])
    assert parts == {"controller (h, c)": ("h", "c"), "reads": ("reads",), "memory": ("memory",),
                     "read_weights": ("read_weights",), "usage": ("usage",)}
    from gtmm.memories.introspective import IntrospectiveState

    state = IntrospectiveState(jnp.zeros(2), jnp.zeros(2), jnp.zeros((3, 2)), jnp.asarray(0))
    assert state_swap.state_parts(state) == {"controller (h, c)": ("h", "c"), "store": ("store",)}


def _main(monkeypatch, *args):
    monkeypatch.setattr(sys, "argv", ["state_swap.py", *map(str, args)])
    state_swap.main()


def test_prints_a_table_per_part(lru_run, monkeypatch, capsys):
    _main(monkeypatch, lru_run, "--batch-size", 2, "--at", 4, 5)
    out = capsys.readouterr().out
    assert "recall steps 4-5" in out
    for part in ("controller (h, c)", "memory", "usage", "previous latent z"):
        assert f"\n{part} swapped\n" in out
    rows = [line for line in out.splitlines() if line.startswith("| 4 |") or line.startswith("| 5 |")]
    assert len(rows) == 2 * 6  # two swap steps for each of the 6 parts
    # A swap entering step 5 leaves step 4's KL as it was without one.
    none = [line for line in out.splitlines() if line.startswith("| none |")]
    at5 = [line for line in out.splitlines() if line.startswith("| 5 |")]
    assert [r.split("|")[2] for r in at5] == [r.split("|")[2] for r in none]


@pytest.mark.parametrize("args, message", [
    (("--batch-size", 1), "--batch-size must be at least 2"),
    (("--at", 9), r"--at steps must lie in 1..5"),
])
def test_bad_arguments_are_one_line_errors(lru_run, monkeypatch, args, message):
    with pytest.raises(SystemExit, match=message):
        _main(monkeypatch, lru_run, *args)
