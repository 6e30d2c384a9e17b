import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from gtmm.memories import MEMORIES, ControllerInput
from gtmm.memories.introspective import IntrospectiveMemory, fifo_write, normalised_attention


def _intro(slots=4, latent=3, heads=2):
    return IntrospectiveMemory(latent_size=latent, task_context_size=0, hidden_size=8, slots=slots,
                               read_heads=heads, attention_hidden=6, key=jax.random.PRNGKey(0))


def test_fifo_writes_in_order_and_overwrites_oldest():
    store, writes = jnp.zeros((3, 1)), jnp.array(0)
    store = fifo_write(store, writes, jnp.array([9.0]))  # first step: nothing to write
    assert np.all(np.asarray(store) == 0)
    for n, v in enumerate([1.0, 2.0, 3.0, 4.0], start=1):
        store = fifo_write(store, jnp.array(n), jnp.array([v]))
    assert np.asarray(store)[:, 0].tolist() == [4.0, 2.0, 3.0]


def test_empty_slots_get_no_attention():
    scores = jnp.ones((2, 5))
    w = normalised_attention(scores, jnp.arange(5) < 2)
    np.testing.assert_allclose(np.asarray(w), [[0.5, 0.5, 0, 0, 0]] * 2, atol=1e-5)
    w0 = normalised_attention(scores, jnp.zeros(5, bool))  # nothing stored yet: zero reads, no NaN
    assert np.all(np.asarray(w0) == 0)


def test_attention_can_select_one_exact_slot():
    """Drive the attention network so head 0 puts (almost) all its weight on slot 2 (eq. 10-11)."""
    mem = _intro()
    last = mem.attention.layers[-1]
    bias = jnp.full((2, 4), -30.0).at[0, 2].set(30.0).at[1, 0].set(30.0).reshape(-1)
    mem = eqx.tree_at(lambda m: (m.attention.layers[-1].weight, m.attention.layers[-1].bias), mem,
                      (jnp.zeros_like(last.weight), bias))
    w = mem.read_weights(jnp.ones(8), jnp.array(4))
    assert float(w[0, 2]) > 0.999 and float(w[1, 0]) > 0.999
    # and the read returns that slot's latent, gated by sigmoid(g) (eq. 11-12)
    mem = eqx.tree_at(lambda m: (m.gate.weight, m.gate.bias), mem,
                      (jnp.zeros_like(mem.gate.weight), jnp.full_like(mem.gate.bias, 30.0)))
    state = mem.initial_state()
    # step t receives z_{t-1}: a dummy z_0 first (never stored), then z_1 .. z_4
    latents = [jnp.array([1.0, 2.0, 3.0]) * i for i in range(5)]
    for z in latents:
        psi, state = mem(ControllerInput(z, jnp.zeros(0), jnp.zeros(0)), state)
    # at step 5 the store holds z_1..z_4 in slots 0..3: head 0 reads z_3, head 1 reads z_1
    np.testing.assert_allclose(np.asarray(psi[:3]), np.asarray(latents[3]), rtol=1e-3)
    np.testing.assert_allclose(np.asarray(psi[3:]), np.asarray(latents[1]), rtol=1e-3)


def test_every_memory_returns_a_finite_context_of_its_size():
    for name, cls in MEMORIES.items():
        mem = cls(latent_size=3, observation_size=4, task_context_size=0, hidden_size=8, slots=4, read_heads=2,
                  key=jax.random.PRNGKey(1))
        psi, state = mem(ControllerInput(jnp.zeros(3), jnp.zeros(4), jnp.zeros(0)), mem.initial_state())
        assert psi.shape == (mem.context_size,), name
        assert np.all(np.isfinite(np.asarray(psi))), name
