"""The associative-introspective memory: each addressing mode does what it says, and the mixture
lets a cue found by content be followed forward in time."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from gtmm.memories import ControllerInput
from gtmm.memories.associative import AssociativeMemory, masked_content_weights, successor_weights
from tests.test_memories import step  # one jitted step (not an eager op per operation)

L, Z, H, R = 5, 4, 8, 2


def _memory(top_k=None):
    mem = AssociativeMemory(latent_size=Z, task_context_size=0, hidden_size=H, slots=L, read_heads=R,
                            attention_hidden=6, top_k=top_k, key=jax.random.PRNGKey(0))
    # P = identity, so keys are compared with the latents themselves
    return eqx.tree_at(lambda m: m.projection.weight, mem, jnp.eye(Z))


def _force(mem, *, mode: int, key=None, strength=50.0):
    """Every head uses `mode` (0 position, 1 content, 2 next); content keys set to `key`."""
    logits = jnp.full((R, 3), -30.0).at[:, mode].set(30.0).reshape(-1)
    mem = eqx.tree_at(lambda m: (m.mixture.weight, m.mixture.bias), mem,
                      (jnp.zeros_like(mem.mixture.weight), logits))
    if key is not None:
        bias = jnp.tile(jnp.concatenate([key, jnp.array([strength])]), R)
        mem = eqx.tree_at(lambda m: (m.keys.weight, m.keys.bias), mem, (jnp.zeros_like(mem.keys.weight), bias))
    return eqx.tree_at(lambda m: (m.gate.weight, m.gate.bias), mem,
                       (jnp.zeros_like(mem.gate.weight), jnp.full_like(mem.gate.bias, 30.0)))


LATENTS = jnp.eye(Z + 1)[:, :Z] * 2.0 + 0.1  # distinct directions; row 4 is the all-0.1 vector


def _run(mem, latents):
    state, psis = mem.initial_state(), []
    for z in latents:
        psi, state = step(mem, ControllerInput(z, jnp.zeros(0), jnp.zeros(0)), state)
        psis.append(psi)
    return psis, state


def test_content_weights_ignore_empty_slots_and_are_finite_when_nothing_is_stored():
    stored = jnp.concatenate([jnp.eye(3), jnp.zeros((2, 3))])
    w = masked_content_weights(jnp.eye(3)[:1], stored, jnp.array([100.0]), jnp.arange(5) < 3)
    np.testing.assert_allclose(np.asarray(w), [[1, 0, 0, 0, 0]], atol=1e-6)
    w0 = masked_content_weights(jnp.eye(3)[:1], stored, jnp.array([1.0]), jnp.zeros(5, bool))
    assert np.all(np.asarray(w0) == 0)
    g = jax.grad(lambda k: jnp.sum(masked_content_weights(k, stored, jnp.array([1.0]), jnp.zeros(5, bool))))
    assert np.all(np.isfinite(np.asarray(g(jnp.ones((1, 3))))))


def test_successor_moves_one_slot_forward_and_wraps_when_full():
    prev = jnp.zeros((1, L)).at[0, 1].set(1.0)
    np.testing.assert_array_equal(np.asarray(successor_weights(prev, jnp.arange(L) < 3)), [[0, 0, 1, 0, 0]])
    last = jnp.zeros((1, L)).at[0, L - 1].set(1.0)
    np.testing.assert_array_equal(np.asarray(successor_weights(last, jnp.ones(L, bool))), [[1, 0, 0, 0, 0]])


def test_content_read_finds_the_matching_latent():
    # steps receive z_0 (dummy, never stored), then z_1..z_4 into slots 0..3
    mem = _force(_memory(), mode=1, key=LATENTS[2])
    psis, _ = _run(mem, [jnp.zeros(Z)] + [LATENTS[i] for i in range(4)])
    np.testing.assert_allclose(np.asarray(psis[-1][:Z]), np.asarray(LATENTS[2]), atol=1e-3)


def test_a_cue_found_by_content_is_followed_forward_in_time():
    mem = _memory()
    inputs = [jnp.zeros(Z)] + [LATENTS[i] for i in range(4)]
    # find LATENTS[0] by content at the last step, then switch every head to succession
    psis, state = _run(_force(mem, mode=1, key=LATENTS[0]), inputs)
    np.testing.assert_allclose(np.asarray(psis[-1][:Z]), np.asarray(LATENTS[0]), atol=1e-3)
    follow = _force(mem, mode=2)
    for expected in (1, 2, 3):
        psi, state = step(follow, ControllerInput(LATENTS[4], jnp.zeros(0), jnp.zeros(0)), state)
        np.testing.assert_allclose(np.asarray(psi[:Z]), np.asarray(LATENTS[expected]), atol=1e-3)


def test_mixture_of_modes_is_a_weighting_over_filled_slots():
    mem = _memory()
    inputs = [jnp.zeros(Z)] + [LATENTS[i] for i in range(3)]
    state = mem.initial_state()
    for z in inputs:
        _, new = step(mem, ControllerInput(z, jnp.zeros(0), jnp.zeros(0)), state)
        w = np.asarray(new.weights)
        stored = int(state.writes)
        assert np.all(w >= 0) and np.all(w[:, stored:] == 0)
        if stored:
            assert np.all(w.sum(-1) <= 1 + 1e-5) and np.all(w.sum(-1) > 0.3)
        state = new


# ------------------------------------------------------------------ sparse top-k content reads

def test_sparse_softmax_keeps_the_k_largest_and_sums_to_one():
    from gtmm.memories.addressing import sparse_softmax

    logits = jnp.array([[0.1, 3.0, -1.0, 2.0, 0.5]])
    w = np.asarray(sparse_softmax(logits, 2))
    assert np.count_nonzero(w) == 2 and w[0, 1] > w[0, 3] > 0
    np.testing.assert_allclose(w.sum(), 1.0, rtol=1e-6)
    g = np.asarray(jax.grad(lambda x: jnp.sum(sparse_softmax(x, 2) * jnp.arange(5.0)))(logits))
    assert np.all(g[0, [0, 2, 4]] == 0) and np.all(np.isfinite(g))  # gradients only through the selected


def test_top_k_applies_to_every_content_memory_and_is_refused_elsewhere():
    from gtmm.errors import GtmmError
    from gtmm.model import ModelConfig, init_model
    import pytest

    for name in ("ntm", "lru", "dnc", "associative"):
        cfg = ModelConfig(name, 6, hidden_size=8, map_hidden=8, top_k=2).resolved()
        model = init_model(cfg, 0)
        assert model.memory.top_k == 2
        state = model.memory.initial_state()
        x = ControllerInput(jnp.ones(32), jnp.ones(64), jnp.zeros(0))
        for _ in range(4):
            psi, state = step(model.memory, x, state)
        assert np.all(np.isfinite(np.asarray(psi)))
        weights = state.weights if name == "associative" else getattr(state, "read_weights", None)
        if name == "lru":  # pure content reads: at most k slots per head
            assert np.all(np.count_nonzero(np.asarray(weights), axis=-1) <= 2)
    for name in ("vrnn", "introspective"):
        with pytest.raises(GtmmError, match="does not read by content"):
            ModelConfig(name, 6, top_k=2).resolved()


def test_associative_content_mode_with_top_1_reads_one_slot():
    mem = _force(_memory(top_k=1), mode=1, key=LATENTS[2], strength=0.5)
    psis, _ = _run(mem, [jnp.zeros(Z)] + [LATENTS[i] for i in range(4)])
    np.testing.assert_allclose(np.asarray(psis[-1][:Z]), np.asarray(LATENTS[2]), atol=1e-5)  # low strength, still exact
