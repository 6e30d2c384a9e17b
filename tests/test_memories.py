import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

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
        psi, state = step(mem, ControllerInput(z, jnp.zeros(0), jnp.zeros(0)), state)
    # at step 5 the store holds z_1..z_4 in slots 0..3: head 0 reads z_3, head 1 reads z_1
    np.testing.assert_allclose(np.asarray(psi[:3]), np.asarray(latents[3]), rtol=1e-3)
    np.testing.assert_allclose(np.asarray(psi[3:]), np.asarray(latents[1]), rtol=1e-3)


# ------------------------------------------------------------------ every memory in the registry

SMALL = dict(latent_size=3, observation_size=4, task_context_size=2, hidden_size=8, slots=6, read_heads=2)
T_SMALL = 5


@functools.cache
def _memory(name):
    """A small memory of each kind, built once (building is eager and slow to compile on CPU)."""
    return MEMORIES[name](**SMALL, key=jax.random.PRNGKey(1))


def _sequence(key, T=T_SMALL):
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(key), 3)
    return ControllerInput(jax.random.normal(k1, (T, 3)), jax.random.normal(k2, (T, 4)), jax.random.normal(k3, (T, 2)))


def _unroll(mem, inputs):
    """Psi for every step of one sequence, one `lax.scan` (as the model runs it), and the states."""
    def body(state, x):
        psi, state = mem(x, state)
        return state, (psi, state)

    return jax.lax.scan(body, mem.initial_state(), inputs)[1]


# One compiled function each, shared by the tests (compiling dominates their run time).
unroll_with_states = eqx.filter_jit(_unroll)
unroll = lambda m, inputs: unroll_with_states(m, inputs)[0]  # noqa: E731
states_over_time = lambda m, inputs: unroll_with_states(m, inputs)[1]  # noqa: E731
step = eqx.filter_jit(lambda m, x, s: m(x, s))
grads = eqx.filter_jit(eqx.filter_grad(lambda m, inputs: jnp.sum(jnp.sin(_unroll(m, inputs)[0]))))


@pytest.fixture(scope="module", params=list(MEMORIES))
def memory(request):
    return request.param, _memory(request.param)


def test_shapes_jit_and_scan_equals_stepping(memory):
    name, mem = memory
    inputs = _sequence(0)
    scanned = unroll(mem, inputs)
    assert scanned.shape == (T_SMALL, mem.context_size), name
    state, stepped = mem.initial_state(), []
    for t in range(T_SMALL):
        psi, new_state = step(mem, jax.tree_util.tree_map(lambda a: a[t], inputs), state)
        shapes = lambda s: [a.shape for a in jax.tree_util.tree_leaves(s)]  # noqa: E731
        assert shapes(new_state) == shapes(state), name
        stepped.append(psi)
        state = new_state
    np.testing.assert_allclose(np.asarray(scanned), np.asarray(jnp.stack(stepped)), rtol=1e-5, atol=1e-6)
    assert np.all(np.isfinite(np.asarray(scanned))), name


def test_context_depends_only_on_the_past(memory):
    """Step t receives z_{t-1}; changing the inputs from step j on leaves Psi of steps before j alone (Fig. 2)."""
    name, mem = memory
    inputs = _sequence(0)
    changed = jax.tree_util.tree_map(lambda a: a.at[3:].add(5.0), inputs)
    before, after = unroll(mem, inputs), unroll(mem, changed)
    np.testing.assert_array_equal(np.asarray(before[:3]), np.asarray(after[:3]), err_msg=name)
    assert not np.allclose(np.asarray(before[3:]), np.asarray(after[3:])), name


def test_batch_equals_separate_runs(memory):
    name, mem = memory
    batch = jax.vmap(_sequence)(jnp.arange(3))
    together = eqx.filter_jit(eqx.filter_vmap(lambda m, x: _unroll(m, x)[0], in_axes=(None, 0)))(mem, batch)
    for b in range(3):
        alone = unroll(mem, jax.tree_util.tree_map(lambda a: a[b], batch))
        np.testing.assert_allclose(np.asarray(together[b]), np.asarray(alone), rtol=1e-5, atol=1e-6, err_msg=name)


def _grads(mem, inputs):
    return jax.tree_util.tree_leaves(grads(mem, inputs))


def test_gradients_are_finite_and_reach_every_parameter(memory):
    name, mem = memory
    leaves = _grads(mem, _sequence(1))
    assert all(np.all(np.isfinite(np.asarray(g))) for g in leaves), name
    assert all(float(np.abs(np.asarray(g)).sum()) > 0 for g in leaves), name


def test_zero_memory_zero_keys_zero_inputs_stay_finite(memory):
    """Interface outputs all zero (zero keys, zero words, so the memory stays all zero) and zero inputs."""
    name, mem = memory
    if hasattr(mem, "interface"):
        mem = eqx.tree_at(lambda m: (m.interface.weight, m.interface.bias), mem,
                          (jnp.zeros_like(mem.interface.weight), jnp.zeros_like(mem.interface.bias)))
    zeros = jax.tree_util.tree_map(jnp.zeros_like, _sequence(2))
    psi = unroll(mem, zeros)
    assert np.all(np.isfinite(np.asarray(psi))), name
    assert all(np.all(np.isfinite(np.asarray(g))) for g in _grads(mem, zeros)), name


def _assert_attention(w, what):
    w = np.asarray(w)
    assert w.min() >= 0, what
    assert w.sum(-1).max() <= 1 + 1e-5, what


@pytest.mark.parametrize("name", ["ntm", "lru", "dnc"])
def test_attention_weights_are_non_negative_and_sum_to_at_most_one(name):
    states = states_over_time(_memory(name), _sequence(3))
    access = states.access if name == "dnc" else states
    _assert_attention(access.read_weights, f"{name} read")
    if name != "lru":
        _assert_attention(access.write_weights, f"{name} write")


def test_introspective_attention_sums_to_at_most_one():
    mem = _memory("introspective")
    read_weights = eqx.filter_jit(lambda m, h, n: m.read_weights(h, n))
    for writes in range(4):
        h = jax.random.normal(jax.random.PRNGKey(writes), (8,))
        _assert_attention(read_weights(mem, h, jnp.array(writes)), "introspective")


# ------------------------------------------------------------------ NTM

from gtmm.memories import ntm  # noqa: E402

circular_shift, sharpen, ntm_weights = jax.jit(ntm.circular_shift), jax.jit(ntm.sharpen), jax.jit(ntm.ntm_weights)


def test_ntm_shift_moves_a_one_hot_weighting_by_one_slot():
    w = jnp.eye(5)[jnp.array([0, 4])]  # heads on slots 0 and 4
    up, stay, down = jnp.array([[0.0, 0, 1]] * 2), jnp.array([[0.0, 1, 0]] * 2), jnp.array([[1.0, 0, 0]] * 2)
    np.testing.assert_array_equal(np.asarray(circular_shift(w, up)), np.eye(5)[[1, 0]])  # wraps around
    np.testing.assert_array_equal(np.asarray(circular_shift(w, stay)), np.asarray(w))
    np.testing.assert_array_equal(np.asarray(circular_shift(w, down)), np.eye(5)[[4, 3]])
    half = circular_shift(w[:1], jnp.array([[0.5, 0, 0.5]]))
    np.testing.assert_allclose(np.asarray(half), [[0, 0.5, 0, 0, 0.5]])


def test_ntm_sharpening_never_flattens():
    rng = np.random.default_rng(0)
    w = rng.random((50, 7)).astype(np.float32)
    w /= w.sum(-1, keepdims=True)
    w[:, 3] = 0  # zero entries stay zero
    gamma = (1 + 10 * rng.random(50)).astype(np.float32)
    s = np.asarray(sharpen(jnp.asarray(w), jnp.asarray(gamma)))
    assert np.all(s.max(-1) >= w.max(-1) - 1e-6)
    assert np.all(s[:, 3] == 0)
    np.testing.assert_allclose(s.sum(-1), 1, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(sharpen(jnp.eye(4)[:2], jnp.array([1.0, 30.0]))), np.eye(4)[:2])
    # flat stays flat; a large gamma on many small weights does not underflow to an empty weighting
    np.testing.assert_allclose(np.asarray(sharpen(jnp.full((1, 100), 0.01), jnp.array([40.0]))), 0.01, atol=1e-6)


def test_ntm_sharpening_of_zero_weights_is_finite():
    for w in (jnp.zeros((2, 4)), jnp.eye(4)[:2]):
        grads = jax.jit(jax.grad(lambda w, g: jnp.sum(ntm.sharpen(w, g) * jnp.arange(4.0)), argnums=(0, 1)))(
            w, jnp.array([1.0, 3.0]))
        assert all(np.all(np.isfinite(np.asarray(g))) for g in grads)
    assert np.all(np.asarray(sharpen(jnp.zeros((2, 4)), jnp.array([1.0, 3.0]))) == 0)


def test_ntm_location_addressing_walks_one_slot_per_step():
    """Gate 0 (ignore content), shift +1, sharp: the weighting moves from slot j to j + 1 (eq. 7-9)."""
    memory = jax.random.normal(jax.random.PRNGKey(0), (5, 3))
    w = jnp.eye(5)[:1]
    for j in range(1, 7):
        w = ntm_weights(memory, jnp.ones((1, 3)), jnp.zeros(1), jnp.zeros(1), jnp.array([[0.0, 0, 1]]),
                            jnp.array([5.0]), w)
        np.testing.assert_allclose(np.asarray(w), np.eye(5)[[j % 5]], atol=1e-6)
    # gate 1: content focus alone (a strong key picks its slot)
    w = ntm_weights(memory, memory[3:4], jnp.array([50.0]), jnp.ones(1), jnp.array([[0.0, 1, 0]]),
                        jnp.array([1.0]), w)
    assert int(jnp.argmax(w)) == 3


def test_ntm_walk_bias_starts_the_write_head_walking_forward():
    """ModelConfig.ntm_walk_bias: with b = 3 the untrained write head moves one slot per step
    (slot t after step t); b = 0 is the default initialisation, and other pieces are untouched."""
    from gtmm.memories.base import interface_offsets

    kw = dict(latent_size=4, task_context_size=0, hidden_size=8, slots=6, read_heads=2, key=jax.random.PRNGKey(0))
    plain, walking = ntm.NTMMemory(**kw), ntm.NTMMemory(walk_bias=3.0, **kw)
    assert eqx.tree_equal(plain, ntm.NTMMemory(walk_bias=0.0, **kw))
    offsets = interface_offsets(walking._interface_shapes())
    changed = np.flatnonzero(np.asarray(plain.interface.bias != walking.interface.bias))
    gate, shift = offsets["write_gate"][0], offsets["write_shift"][0]
    np.testing.assert_array_equal(changed, [gate, shift, shift + 1, shift + 2])
    np.testing.assert_array_equal(np.asarray(walking.interface.bias[changed]), [-3, 0, 0, 3])
    state = walking.initial_state()
    for t in range(1, 5):
        _, state = step(walking, ControllerInput(jnp.zeros(4), jnp.zeros(0), jnp.zeros(0)), state)
        assert int(jnp.argmax(state.write_weights[0])) == t and float(state.write_weights[0, t]) > 0.6
    _, still = step(plain, ControllerInput(jnp.zeros(4), jnp.zeros(0), jnp.zeros(0)), plain.initial_state())
    assert float(jnp.max(still.write_weights)) < 0.6  # the default start blurs instead


def test_ntm_erase_and_add_replaces_a_slot():
    from gtmm.memories.addressing import erase_and_write

    memory = jax.random.normal(jax.random.PRNGKey(0), (4, 3))
    new = jax.jit(erase_and_write)(memory, jnp.eye(4)[jnp.array([2])], jnp.ones((1, 3)), jnp.array([[7.0, 8, 9]]))
    np.testing.assert_allclose(np.asarray(new[2]), [7, 8, 9])
    np.testing.assert_array_equal(np.asarray(new)[[0, 1, 3]], np.asarray(memory)[[0, 1, 3]])


# ------------------------------------------------------------------ LRU

from gtmm.memories import lru  # noqa: E402

lru_write_weights = jax.jit(lru.lru_write_weights)


def test_lru_least_used_heads_take_the_least_used_slots_in_order():
    usage = jnp.array([0.5, 0.1, 0.9, 0.1, 0.0])
    least_used = jax.jit(lru.least_used_weights, static_argnums=1)(usage, 3)
    np.testing.assert_array_equal(np.asarray(least_used), np.eye(5)[[4, 1, 3]])


def test_lru_write_weights_mix_previous_read_and_least_used():
    prev, lu = jnp.eye(4)[jnp.array([1])], jnp.eye(4)[jnp.array([3])]
    np.testing.assert_array_equal(np.asarray(lru_write_weights(prev, lu, jnp.zeros(1))), np.eye(4)[[3]])
    np.testing.assert_array_equal(np.asarray(lru_write_weights(prev, lu, jnp.ones(1))), np.eye(4)[[1]])
    np.testing.assert_allclose(np.asarray(lru_write_weights(prev, lu, jnp.full(1, 0.25))), [[0, 0.25, 0, 0.75]])


def test_lru_usage_decays_and_grows_with_reads_and_writes():
    u = jax.jit(lru.lru_usage)(jnp.array([1.0, 0.0]), jnp.array([[0.5, 0.5]]), jnp.array([[0.0, 1.0]]), decay=0.9)
    np.testing.assert_allclose(np.asarray(u), [1.4, 1.5])


def test_lru_memory_clears_and_writes_the_least_used_slot():
    """Write gate closed (sigma(alpha) = 0): head h writes its word into the h-th least-used slot, and
    the least-used slot is cleared first (Santoro et al. 2016)."""
    mem = _memory("lru")
    bias = mem.interface.bias
    gate = slice(2 * 3 + 2, 2 * 3 + 4)  # keys (2 x 3), strengths (2), then the write gates (2)
    mem = eqx.tree_at(lambda m: m.interface.bias, mem, bias.at[gate].set(-40.0))
    state = mem.initial_state()
    old = jax.random.normal(jax.random.PRNGKey(5), (6, 3))
    state = state._replace(memory=old, usage=jnp.array([5.0, 4.0, 0.1, 3.0, 0.2, 6.0]),
                           read_weights=jnp.eye(6)[jnp.array([0, 1])])
    _, new = step(mem, jax.tree_util.tree_map(lambda a: a[0], _sequence(0)), state)
    words = (mem.interface.weight @ new.h + mem.interface.bias)[-6:].reshape(2, 3)
    np.testing.assert_allclose(np.asarray(new.memory[2]), np.asarray(words[0]), rtol=1e-5, atol=1e-6)  # cleared
    np.testing.assert_allclose(np.asarray(new.memory[4]), np.asarray(old[4] + words[1]), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(new.memory)[[0, 1, 3, 5]], np.asarray(old)[[0, 1, 3, 5]])


# ------------------------------------------------------------------ DNC

from gtmm.memories import dnc  # noqa: E402


def test_dnc_usage_and_links_keep_their_invariants_over_a_sequence():
    states = states_over_time(_memory("dnc"), _sequence(4))
    usage, link = np.asarray(states.access.usage), np.asarray(states.access.linkage.link)
    assert usage.min() >= 0 and usage.max() <= 1
    assert np.all(link[..., range(6), range(6)] == 0)
    assert link.min() >= 0 and link.sum(-1).max() <= 1 + 1e-5 and link.sum(-2).max() <= 1 + 1e-5
    _assert_attention(states.access.linkage.precedence_weights, "precedence")


def _interface(R=2, Wh=1, W=3, **over):
    base = dict(read_keys=jnp.zeros((R, W)), read_strengths=jnp.zeros(R), write_keys=jnp.zeros((Wh, W)),
                write_strengths=jnp.zeros(Wh), write_vectors=jnp.zeros((Wh, W)), erase_vectors=jnp.zeros((Wh, W)),
                free_gate=jnp.zeros(R), allocation_gate=jnp.zeros(Wh), write_gate=jnp.zeros(Wh),
                read_mode=jnp.zeros((R, 1 + 2 * Wh)).at[:, -1].set(1.0))
    return dnc.DNCInterface(**{**base, **over})


def test_dnc_one_hot_write_lands_in_the_least_used_slot():
    state = dnc.initial_access_state(6, 3, 2, 1)
    state = state._replace(usage=jnp.array([1.0, 1.0, 1.0, 0.0, 1.0, 1.0]),
                           memory=jax.random.normal(jax.random.PRNGKey(0), (6, 3)))
    word = jnp.array([[1.0, -2.0, 3.0]])
    _, new = jax.jit(dnc.access_step)(_interface(write_vectors=word, erase_vectors=jnp.ones((1, 3)),
                                                 allocation_gate=jnp.ones(1), write_gate=jnp.ones(1)), state)
    np.testing.assert_allclose(np.asarray(new.write_weights), np.eye(6)[[3]], atol=1e-5)
    np.testing.assert_allclose(np.asarray(new.memory[3]), np.asarray(word[0]), atol=1e-5)
    np.testing.assert_allclose(np.asarray(new.memory)[[0, 1, 2, 4, 5]], np.asarray(state.memory)[[0, 1, 2, 4, 5]],
                               atol=1e-5)


def test_dnc_forward_read_follows_the_write_order():
    """Write slots 2, 0, 4 in turn; a head on slot 2 reading forward goes to 0, then 4."""
    state = dnc.initial_access_state(5, 3, 1, 1)
    step = jax.jit(dnc.access_step)
    for slot in (2, 0, 4):
        usage = jnp.ones(5).at[slot].set(0.0)
        state = state._replace(usage=usage, write_weights=jnp.zeros((1, 5)), read_weights=jnp.zeros((1, 5)))
        _, state = step(_interface(R=1, allocation_gate=jnp.ones(1), write_gate=jnp.ones(1)), state)
    forward = jnp.zeros((1, 3)).at[0, 1].set(1.0)  # modes: backward, forward, content
    state = state._replace(read_weights=jnp.eye(5)[jnp.array([2])], write_weights=jnp.zeros((1, 5)))
    for expected in (0, 4):
        _, state = step(_interface(R=1, read_mode=forward), state)
        np.testing.assert_allclose(np.asarray(state.read_weights), np.eye(5)[[expected]], atol=1e-4)


def test_dnc_saturated_usage_and_empty_memory_have_finite_gradients():
    state = dnc.initial_access_state(6, 3, 2, 1)._replace(usage=jnp.ones(6))
    iface = _interface(allocation_gate=jnp.ones(1), write_gate=jnp.ones(1), free_gate=jnp.ones(2))

    def loss(iface):
        reads, new = dnc.access_step(iface, state)
        return jnp.sum(reads) + jnp.sum(new.usage) + jnp.sum(new.write_weights * jnp.arange(6.0))

    grads = jax.jit(jax.grad(loss))(iface)
    assert all(np.all(np.isfinite(np.asarray(g))) for g in jax.tree_util.tree_leaves(grads))


# ------------------------------------------------------------------ configuration errors

@pytest.mark.parametrize("settings,words", [
    (dict(model="dnc", read_heads=0), ["read heads must be positive"]),
    (dict(model="ntm", word_size=0), ["word size must be positive"]),
    (dict(model="lru", slots=3), ["lru", "slots (3)", "read heads (5)"]),
    (dict(model="ntm", slots=2), ["ntm", "3 memory slots"]),
    (dict(model="introspective", word_size=16), ["latent size (32)"]),
    (dict(model="vrnn", word_size=16), ["vrnn", "no word size"]),
    (dict(model="ntm", link_k=2), ["ntm has no temporal links", "leave it out", "dnc"]),
    (dict(model="dnc", link_k=21), ["link k (21)", "memory slots (20)", "at most 20"]),
    (dict(model="dnc", slots=4, link_k=5), ["link k (5)", "memory slots (4)"]),
    (dict(model="dnc", link_k=0), ["link k must be positive"]),
    (dict(model="dnc", top_k=21), ["top k (21)", "memory slots (20)", "at most 20"]),
    (dict(model="lru", top_k=101), ["top k (101)", "memory slots (100)"]),  # 5 T slots
    (dict(model="associative", top_k=30, content_index="lsh"), ["top k (30)", "memory slots (20)"]),
])
def test_bad_memory_settings_are_one_line_errors(settings, words):
    from gtmm.errors import GtmmError
    from gtmm.model import ModelConfig

    with pytest.raises(GtmmError) as e:
        ModelConfig(sequence_length=20, **settings).resolved()
    message = str(e.value)
    assert "\n" not in message and all(w in message for w in words), message


def test_lru_gets_five_slots_per_step_and_others_one():
    from gtmm.model import ModelConfig

    assert {m: ModelConfig(m, 20).resolved().slots for m in MEMORIES} == {
        "vrnn": 20, "introspective": 20, "ntm": 20, "lru": 100, "dnc": 20, "associative": 20}
    assert ModelConfig("lru", 20, slots=7).resolved().slots == 7
    assert ModelConfig("dnc", 20).resolved().word_size == 32


def test_read_weights_after_are_the_weights_each_step_read_with(memory):
    """`read_weights_after(state)` (what `gtmm reads` plots) is a weighting per head over the slots
    at every step, and the reads each memory returned are made with it: phi = w M for the NTM, LRU
    and DNC, Psi = (w M) * sigmoid(g) for the introspective and associative memories (eq. 11-12)."""
    name, mem = memory
    psi, states = unroll_with_states(mem, _sequence(0))
    if name == "vrnn":
        assert mem.read_weights_after(mem.initial_state()) is None
        return
    w = np.asarray(jax.vmap(mem.read_weights_after)(states))
    assert w.shape == (T_SMALL, SMALL["read_heads"], SMALL["slots"]), name
    assert w.min() >= 0 and w.sum(-1).max() <= 1 + 1e-5 and w.sum(-1).max() > 0, name
    if hasattr(states, "reads"):  # interface memories: the reads fed back to the controller
        store = states.access.memory if name == "dnc" else states.memory
        np.testing.assert_allclose(np.asarray(states.reads), np.einsum("trs,tsw->trw", w, np.asarray(store)),
                                   rtol=1e-4, atol=1e-5, err_msg=name)
    else:  # the latents' memories: gated reads, the gate from the controller state before the step
        prev_h = jnp.concatenate([mem.initial_state().h[None], states.h[:-1]])
        gates = np.asarray(jax.nn.sigmoid(jax.vmap(mem.gate)(prev_h))).reshape(T_SMALL, SMALL["read_heads"], -1)
        reads = np.einsum("trs,tsl->trl", w, np.asarray(states.store)) * gates
        np.testing.assert_allclose(np.asarray(psi)[:, :reads[0].size], reads.reshape(T_SMALL, -1), rtol=1e-4,
                                   atol=1e-5, err_msg=name)
