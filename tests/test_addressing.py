"""DNC addressing against DeepMind's reference (github deepmind/dnc, `dnc/addressing.py`, `dnc/access.py`).

TensorFlow is not a dependency, so the reference is ported below to NumPy, batch axis and all,
line by line and loop-based where that is clearer; each function names the one it ports. It
computes in float32 like the reference: the allocation's sort depends on which usages round to
ties (an empty memory is all ties). The JAX functions (one sequence each) are vmapped over the
batch and must agree to 1e-5. The last
tests port the hand-computed cases of the reference's `dnc/addressing_test.py`.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from gtmm.memories import dnc
from gtmm.memories.addressing import content_weights, cosine_similarity, erase_and_write

EPS = 1e-6  # addressing.py: _EPSILON
TOL = dict(rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ NumPy port of the reference

def ref_vector_norms(m):  # addressing._vector_norms
    squared_norms = np.sum(m * m, axis=2, keepdims=True)
    return np.sqrt(squared_norms + EPS)


def ref_softplus(x):  # tf.nn.softplus
    return np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0)


def ref_softmax(x):  # tf.nn.softmax over the last axis
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def ref_weighted_softmax(activations, strengths, strengths_op):  # addressing.weighted_softmax
    transformed_strengths = strengths_op(strengths)[..., None]
    return ref_softmax(activations * transformed_strengths)


def ref_cosine_weights(memory, keys, strengths):  # addressing.CosineWeights._build
    dot = keys @ memory.transpose(0, 2, 1)
    memory_norms = ref_vector_norms(memory)
    key_norms = ref_vector_norms(keys)
    norm = key_norms @ memory_norms.transpose(0, 2, 1)
    similarity = dot / (norm + EPS)
    return ref_weighted_softmax(similarity, strengths, ref_softplus)


def ref_link(prev_link, prev_precedence_weights, write_weights):  # addressing.TemporalLinkage._link
    write_weights_i = write_weights[:, :, :, None]
    write_weights_j = write_weights[:, :, None, :]
    prev_precedence_weights_j = prev_precedence_weights[:, :, None, :]
    prev_link_scale = 1 - write_weights_i - write_weights_j
    new_link = write_weights_i * prev_precedence_weights_j
    link = prev_link_scale * prev_link + new_link
    for i in range(link.shape[-1]):  # tf.linalg.set_diag(link, zeros)
        link[:, :, i, i] = 0
    return link


def ref_precedence_weights(prev_precedence_weights, write_weights):  # TemporalLinkage._precedence_weights
    write_sum = np.sum(write_weights, axis=2, keepdims=True)
    return (1 - write_sum) * prev_precedence_weights + write_weights


def ref_directional_read_weights(link, prev_read_weights, forward):  # TemporalLinkage.directional_read_weights
    num_writes = link.shape[1]
    expanded_read_weights = np.stack([prev_read_weights] * num_writes, 1)  # [batch, writes, reads, memory]
    other = link.transpose(0, 1, 3, 2) if forward else link  # matmul(..., adjoint_b=forward)
    result = expanded_read_weights @ other
    return result.transpose(0, 2, 1, 3)  # [batch, reads, writes, memory]


def ref_usage_after_write(prev_usage, write_weights):  # Freeness._usage_after_write
    write_weights = 1 - np.prod(1 - write_weights, axis=1)
    return prev_usage + (1 - prev_usage) * write_weights


def ref_usage_after_read(prev_usage, free_gate, read_weights):  # Freeness._usage_after_read
    free_gate = free_gate[..., None]
    free_read_weights = free_gate * read_weights
    phi = np.prod(1 - free_read_weights, axis=1)
    return prev_usage * phi


def ref_freeness(write_weights, free_gate, read_weights, prev_usage):  # Freeness._build (stop_gradient is a no-op here)
    usage = ref_usage_after_write(prev_usage, write_weights)
    return ref_usage_after_read(usage, free_gate, read_weights)


def ref_allocation(usage):  # Freeness._allocation
    usage = EPS + (1 - EPS) * usage
    nonusage = 1 - usage
    batch_size, memory_size = usage.shape
    result = np.zeros_like(usage)
    for b in range(batch_size):
        # tf.nn.top_k(nonusage, k=memory_size): descending, equal values in index order
        indices = sorted(range(memory_size), key=lambda i: (-nonusage[b, i], i))
        sorted_nonusage = nonusage[b, indices]
        sorted_usage = 1 - sorted_nonusage
        prod_sorted_usage = np.ones(memory_size, usage.dtype)  # tf.cumprod(exclusive=True)
        for j in range(1, memory_size):
            prod_sorted_usage[j] = prod_sorted_usage[j - 1] * sorted_usage[j - 1]
        sorted_allocation = sorted_nonusage * prod_sorted_usage
        for j, i in enumerate(indices):  # batch_gather(sorted_allocation, batch_invert_permutation(indices))
            result[b, i] = sorted_allocation[j]
    return result


def ref_write_allocation_weights(usage, write_gates, num_writes):  # Freeness.write_allocation_weights
    write_gates = write_gates[..., None]
    allocation_weights = []
    for i in range(num_writes):
        allocation_weights.append(ref_allocation(usage))
        usage = usage + ((1 - usage) * write_gates[:, i, :] * allocation_weights[i])
    return np.stack(allocation_weights, axis=1)


def ref_erase_and_write(memory, address, reset_weights, values):  # access._erase_and_write
    expand_address = address[:, :, :, None]
    reset_weights = reset_weights[:, :, None, :]
    weighted_resets = expand_address * reset_weights
    reset_gate = np.prod(1 - weighted_resets, axis=1)
    memory = memory * reset_gate
    add_matrix = address.transpose(0, 2, 1) @ values
    return memory + add_matrix


def ref_write_weights(inputs, memory, usage):  # MemoryAccess._write_weights
    num_writes = inputs["write_gate"].shape[1]
    write_content_weights = ref_cosine_weights(memory, inputs["write_content_keys"], inputs["write_content_strengths"])
    write_allocation_weights = ref_write_allocation_weights(
        usage, inputs["allocation_gate"] * inputs["write_gate"], num_writes)
    allocation_gate = inputs["allocation_gate"][..., None]
    write_gate = inputs["write_gate"][..., None]
    return write_gate * (allocation_gate * write_allocation_weights + (1 - allocation_gate) * write_content_weights)


def ref_read_weights(inputs, memory, prev_read_weights, link):  # MemoryAccess._read_weights
    num_writes = link.shape[1]
    content_weights_ = ref_cosine_weights(memory, inputs["read_content_keys"], inputs["read_content_strengths"])
    forward_weights = ref_directional_read_weights(link, prev_read_weights, forward=True)
    backward_weights = ref_directional_read_weights(link, prev_read_weights, forward=False)
    backward_mode = inputs["read_mode"][:, :, :num_writes]
    forward_mode = inputs["read_mode"][:, :, num_writes:2 * num_writes]
    content_mode = inputs["read_mode"][:, :, 2 * num_writes]
    return (content_mode[:, :, None] * content_weights_
            + np.sum(forward_mode[:, :, :, None] * forward_weights, 2)
            + np.sum(backward_mode[:, :, :, None] * backward_weights, 2))


def ref_access_build(inputs, prev):  # MemoryAccess._build, from the interface on
    usage = ref_freeness(prev["write_weights"], inputs["free_gate"], prev["read_weights"], prev["usage"])
    write_weights = ref_write_weights(inputs, prev["memory"], usage)
    memory = ref_erase_and_write(prev["memory"], write_weights, inputs["erase_vectors"], inputs["write_vectors"])
    link = ref_link(prev["link"], prev["precedence_weights"], write_weights)
    precedence_weights = ref_precedence_weights(prev["precedence_weights"], write_weights)
    read_weights = ref_read_weights(inputs, memory, prev["read_weights"], link)
    read_words = read_weights @ memory
    return read_words, dict(memory=memory, read_weights=read_weights, write_weights=write_weights, link=link,
                            precedence_weights=precedence_weights, usage=usage)


# ------------------------------------------------------------------ helpers

def _rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def _weights(rng, *shape):
    """Random weightings that sum to less than one over the last axis (as in addressing_test.py)."""
    w = rng.random(shape)
    return (w / (w.sum(-1, keepdims=True) + 1)).astype(np.float32)


def _close(jax_value, ref_value):
    np.testing.assert_allclose(np.asarray(jax_value, np.float64), ref_value, **TOL)


B, N, W, R, WH = 3, 7, 5, 4, 2  # batch, slots, word, read heads, write heads


# ------------------------------------------------------------------ function-by-function agreement

def test_cosine_weights_match_reference():
    rng = np.random.default_rng(0)
    memory, keys, strengths = _rand(rng, B, N, W), _rand(rng, B, R, W), _rand(rng, B, R)
    memory[0, 2] = 0  # an all-zero row
    keys[1, 0] = 0  # an all-zero key
    _close(jax.jit(jax.vmap(content_weights))(memory, keys, strengths), ref_cosine_weights(memory, keys, strengths))


def test_usage_update_matches_reference():
    rng = np.random.default_rng(1)
    ww, rw = _weights(rng, B, WH, N), _weights(rng, B, R, N)
    free_gate, usage = rng.random((B, R)).astype(np.float32), rng.random((B, N)).astype(np.float32)
    _close(jax.jit(jax.vmap(dnc.usage_after_write))(usage, ww), ref_usage_after_write(usage, ww))
    _close(jax.jit(jax.vmap(dnc.usage_after_read))(usage, free_gate, rw), ref_usage_after_read(usage, free_gate, rw))
    _close(jax.jit(jax.vmap(dnc.updated_usage))(ww, free_gate, rw, usage), ref_freeness(ww, free_gate, rw, usage))


def test_allocation_matches_reference():
    rng = np.random.default_rng(2)
    usage = rng.random((B, N)).astype(np.float32)
    usage[0, [1, 4]] = 0.0  # ties: the reference's top_k takes the lower slot first
    usage[1] = 1.0  # saturated
    usage[2, 3] = 1e-4
    _close(jax.jit(jax.vmap(dnc.allocation_weights))(usage), ref_allocation(usage))
    gates = rng.random((B, WH)).astype(np.float32)
    ours = jax.jit(jax.vmap(dnc.write_allocation_weights))(usage, gates)
    _close(ours, ref_write_allocation_weights(usage, gates, WH))


def test_link_and_precedence_match_reference():
    rng = np.random.default_rng(3)
    link, prec, ww = _weights(rng, B, WH, N, N), _weights(rng, B, WH, N), _weights(rng, B, WH, N)
    _close(jax.jit(jax.vmap(dnc.updated_link))(link, prec, ww), ref_link(link.copy(), prec, ww))
    _close(jax.jit(jax.vmap(dnc.updated_precedence))(prec, ww), ref_precedence_weights(prec, ww))
    rw = _weights(rng, B, R, N)
    for forward in (True, False):
        ours = jax.jit(jax.vmap(lambda lk, r: dnc.directional_read_weights(lk, r, forward)))(link, rw)
        _close(ours, ref_directional_read_weights(link, rw, forward))


def test_link_hand_written_gradient_equals_autodiff():
    """`updated_link`'s custom backward pass against autodiff of the same formula, batched and jitted."""
    rng = np.random.default_rng(13)
    link, prec, ww = _weights(rng, B, WH, N, N), _weights(rng, B, WH, N), _weights(rng, B, WH, N)
    cotangent = _rand(rng, B, WH, N, N)
    def pullback(fn):
        return jax.jit(jax.vmap(lambda lk, p, w, c: jax.vjp(fn, lk, p, w)[1](c)))(link, prec, ww, cotangent)

    ours, auto = pullback(dnc.updated_link), pullback(dnc._link_formula)
    for o, a in zip(ours, auto):
        assert np.abs(np.asarray(a)).max() > 0.1  # a vanishing gradient would pass trivially
        np.testing.assert_allclose(np.asarray(o), np.asarray(a), rtol=1e-5, atol=1e-6)


def test_erase_and_write_matches_reference():
    rng = np.random.default_rng(4)
    memory, ww = _rand(rng, B, N, W), _weights(rng, B, WH, N)
    erase, values = rng.random((B, WH, W)).astype(np.float32), _rand(rng, B, WH, W)
    ours = jax.jit(jax.vmap(erase_and_write))(memory, ww, erase, values)
    _close(ours, ref_erase_and_write(memory, ww, erase, values))


def _random_interface(rng):
    sig = lambda x: (1 / (1 + np.exp(-x))).astype(np.float32)  # noqa: E731
    return {
        "read_content_keys": _rand(rng, B, R, W), "read_content_strengths": _rand(rng, B, R),
        "write_content_keys": _rand(rng, B, WH, W), "write_content_strengths": _rand(rng, B, WH),
        "write_vectors": _rand(rng, B, WH, W), "erase_vectors": sig(_rand(rng, B, WH, W)),
        "free_gate": sig(_rand(rng, B, R)), "allocation_gate": sig(_rand(rng, B, WH)),
        "write_gate": sig(_rand(rng, B, WH)), "read_mode": ref_softmax(_rand(rng, B, R, 1 + 2 * WH)).astype(np.float32),
    }


def _to_interface(inputs) -> dnc.DNCInterface:
    return dnc.DNCInterface(
        read_keys=inputs["read_content_keys"], read_strengths=inputs["read_content_strengths"],
        write_keys=inputs["write_content_keys"], write_strengths=inputs["write_content_strengths"],
        write_vectors=inputs["write_vectors"], erase_vectors=inputs["erase_vectors"], free_gate=inputs["free_gate"],
        allocation_gate=inputs["allocation_gate"], write_gate=inputs["write_gate"], read_mode=inputs["read_mode"])


def test_six_access_steps_match_reference():
    """The whole `MemoryAccess._build` (free, allocate, write, link, read), six steps from an empty memory."""
    rng = np.random.default_rng(5)
    state = jax.jit(jax.vmap(lambda _: dnc.initial_access_state(N, W, R, WH)))(jnp.arange(B))
    zeros = lambda *shape: np.zeros(shape, np.float32)  # noqa: E731
    ref = dict(memory=zeros(B, N, W), read_weights=zeros(B, R, N), write_weights=zeros(B, WH, N),
               link=zeros(B, WH, N, N), precedence_weights=zeros(B, WH, N), usage=zeros(B, N))
    step = jax.jit(jax.vmap(dnc.access_step))
    for _ in range(6):
        inputs = _random_interface(rng)
        reads, state = step(_to_interface(inputs), state)
        ref_reads, ref = ref_access_build(inputs, ref)
        assert ref_reads.dtype == np.float32
        _close(reads, ref_reads)
        for name in ("memory", "read_weights", "write_weights", "usage"):
            _close(getattr(state, name), ref[name])
        _close(state.linkage.link, ref["link"])
        _close(state.linkage.precedence_weights, ref["precedence_weights"])


def test_usage_update_blocks_the_gradient_into_write_weights():
    """The reference puts tf.stop_gradient on the write weights in `Freeness._build`."""
    rng = np.random.default_rng(6)
    ww, rw = _weights(rng, WH, N), _weights(rng, R, N)
    free_gate, usage = rng.random(R).astype(np.float32), rng.random(N).astype(np.float32)
    loss = lambda *a: jnp.sum(dnc.updated_usage(*a) ** 2)  # noqa: E731
    grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)))(ww, free_gate, rw, usage)
    assert np.all(np.asarray(grads[0]) == 0)
    assert all(float(np.abs(np.asarray(g)).sum()) > 0 for g in grads[1:])
    # without the stop_gradient the write weights would receive gradient
    g = jax.jit(jax.grad(lambda w: jnp.sum(dnc.usage_after_write(usage, w) ** 2)))(ww)
    assert float(jnp.abs(g).sum()) > 0


# ------------------------------------------------------------------ the reference's own test cases

def test_cosine_weights_hand_computed():
    """addressing_test.py CosineWeightsTest.testValues: explicit cosine, softplus strength, softmax."""
    rng = np.random.default_rng(7)
    batch_size, num_heads, memory_size, word_size = 5, 4, 10, 2
    mem = rng.standard_normal((batch_size, memory_size, word_size)).astype(np.float32)
    mem[0, 0], mem[0, 1], mem[0, 2] = [1, 2], [3, 4], [5, 6]
    keys = rng.standard_normal((batch_size, num_heads, word_size)).astype(np.float32)
    keys[0, 0], keys[0, 1], keys[0, 2], keys[0, 3] = [5, 6], [1, 2], [5, 6], [3, 4]
    strengths = rng.standard_normal((batch_size, num_heads)).astype(np.float32)
    result = np.asarray(jax.jit(jax.vmap(content_weights))(mem, keys, strengths))
    strengths_softplus = np.log(1 + np.exp(strengths))
    for b in range(batch_size):
        for h in range(num_heads):
            key = keys[b, h]
            similarity = np.array([np.dot(key, row) / (np.linalg.norm(key) * np.linalg.norm(row)) for row in mem[b]])
            similarity = np.exp(similarity * strengths_softplus[b, h])
            np.testing.assert_allclose(result[b, h], similarity / similarity.sum(), atol=1e-4, rtol=1e-4)


def test_cosine_weights_divide_by_zero():
    """addressing_test.py CosineWeightsTest.testDivideByZero: one non-zero row, the rest zero."""
    keys = jax.random.normal(jax.random.PRNGKey(0), (4, 2))
    strengths = jax.random.normal(jax.random.PRNGKey(1), (4,))
    mem = jnp.zeros((10, 2)).at[0].set(1.0)
    out = jax.jit(content_weights)(mem, keys, strengths)
    loss = lambda m, k, s: jnp.sum(content_weights(m, k, s) * jnp.arange(10.0))  # noqa: E731
    grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(mem, keys, strengths)
    assert np.all(np.isfinite(np.asarray(out)))
    assert all(np.all(np.isfinite(np.asarray(g))) for g in grads)


def test_temporal_linkage_hand_computed():
    """addressing_test.py TemporalLinkageTest.testModule: links 0->1 in head 0 and 3->2 in head 1."""
    rng = np.random.default_rng(8)
    batch_size, memory_size, num_reads, num_writes = 7, 4, 11, 5
    one_hot = lambda i: np.eye(memory_size, dtype=np.float32)[i]  # noqa: E731
    state = dnc.TemporalLinkageState(jnp.zeros((batch_size, num_writes, memory_size, memory_size)),
                                     jnp.zeros((batch_size, num_writes, memory_size)))
    num_steps = 5
    for i in range(num_steps):
        write_weights = rng.random((batch_size, num_writes, memory_size)).astype(np.float32)
        write_weights /= write_weights.sum(2, keepdims=True) + 1
        if i == num_steps - 2:
            write_weights[0, 0], write_weights[0, 1] = one_hot(0), one_hot(3)
        elif i == num_steps - 1:
            write_weights[0, 0], write_weights[0, 1] = one_hot(1), one_hot(2)
        state = jax.jit(jax.vmap(dnc.updated_linkage))(jnp.asarray(write_weights), state)
    link = np.asarray(state.link)
    assert link.min() >= 0 and link.max() <= 1
    assert np.all(link[:, :, range(memory_size), range(memory_size)] == 0)
    assert link.sum(2).max() <= 1 + 1e-6 and link.sum(3).max() <= 1 + 1e-6
    np.testing.assert_array_equal(link[0, 0, :, 0], one_hot(1))
    np.testing.assert_array_equal(link[0, 1, :, 3], one_hot(2))

    prev_read_weights = rng.random((batch_size, num_reads, memory_size)).astype(np.float32)
    prev_read_weights[0, 5], prev_read_weights[0, 6] = one_hot(0), one_hot(2)
    directional = jax.jit(jax.vmap(dnc.directional_read_weights, in_axes=(0, 0, None)), static_argnums=2)
    fwd = np.asarray(directional(state.link, prev_read_weights, True))
    bwd = np.asarray(directional(state.link, prev_read_weights, False))
    np.testing.assert_array_equal(fwd[0, 5, 0], one_hot(1))
    np.testing.assert_array_equal(bwd[0, 6, 1], one_hot(3))


def test_precedence_hand_computed():
    """addressing_test.py TemporalLinkageTest.testPrecedenceWeights."""
    rng = np.random.default_rng(9)
    prev = rng.random((7, 5, 3)).astype(np.float32)
    ww = rng.random((7, 5, 3)).astype(np.float32)
    ww /= ww.sum(2, keepdims=True) + 1
    prev /= prev.sum(2, keepdims=True) + 1
    ww[0, 1] = 0  # no writing
    ww[1, 2] /= ww[1, 2].sum()  # all writing
    p = np.asarray(jax.jit(jax.vmap(dnc.updated_precedence))(prev, ww))
    assert p.min() >= 0 and p.max() <= 1
    np.testing.assert_allclose(p[0, 1], prev[0, 1], atol=1e-6)
    np.testing.assert_allclose(p[1, 2], ww[1, 2], atol=1e-6)


def test_freeness_hand_computed():
    """addressing_test.py FreenessTest.testModule: a full write makes a slot used, a full free frees it."""
    rng = np.random.default_rng(10)
    batch_size, memory_size, num_reads, num_writes = 5, 11, 3, 7
    free_gate = rng.random((batch_size, num_reads))
    rw = rng.random((batch_size, num_reads, memory_size))
    rw[1, :, 3] = 0
    rw /= rw.sum(2, keepdims=True)
    ww = rng.random((batch_size, num_writes, memory_size))
    ww /= ww.sum(2, keepdims=True)
    usage = rng.random((batch_size, memory_size))
    ww[1, 2, 3] = 1
    rw[2, 0, 4] = 1
    free_gate[2, 0] = 1
    f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    u = np.asarray(jax.jit(jax.vmap(dnc.updated_usage))(f32(ww), f32(free_gate), f32(rw), f32(usage)))
    assert u.min() >= 0 and u.max() <= 1
    assert u[1, 3] == 1
    assert u[2, 4] == 0


def test_write_allocation_hand_computed():
    """addressing_test.py FreenessTest.testWriteAllocationWeights."""
    rng = np.random.default_rng(11)
    batch_size, memory_size, num_writes = 7, 23, 5
    usage = rng.random((batch_size, memory_size))
    gates = rng.random((batch_size, num_writes))
    gates[0, 1] = gates[0, 3] = 0
    gates[0, 0] = gates[0, 2] = 1
    usage[1] = usage[1] * 0.9 + 0.1
    usage[1][4], usage[1][3] = 0, 1e-4
    gates[1, 0] = gates[1, 1] = 1
    f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    w = np.asarray(jax.jit(jax.vmap(dnc.write_allocation_weights))(f32(usage), f32(gates)))
    assert w.min() >= 0 and w.max() <= 1
    np.testing.assert_allclose(w.sum(2), np.ones((batch_size, num_writes)), atol=1e-3)
    assert np.abs(w[0, 0] - w[0, 1]).max() > 0.1
    np.testing.assert_array_equal(w[0, 1], w[0, 2])
    assert np.abs(w[0, 2] - w[0, 3]).max() > 0.1
    np.testing.assert_array_equal(w[0, 3], w[0, 4])
    np.testing.assert_allclose(w[1, 0], np.eye(memory_size)[4], atol=1e-3)
    np.testing.assert_allclose(w[1, 1], np.eye(memory_size)[3], atol=1e-3)


def test_allocation_picks_the_least_used_slot():
    """addressing_test.py FreenessTest.testAllocation: max allocation at min usage and vice versa."""
    usage = np.random.default_rng(12).random((7, 13)).astype(np.float32)
    a = np.asarray(jax.jit(jax.vmap(dnc.allocation_weights))(usage))
    np.testing.assert_array_equal(np.argmin(usage, 1), np.argmax(a, 1))
    np.testing.assert_array_equal(np.argmax(usage, 1), np.argmin(a, 1))
    np.testing.assert_allclose(a.sum(1), np.ones(7), atol=0.01)


@pytest.mark.parametrize("fn", ["allocation", "write_allocation"])
def test_allocation_gradient_matches_finite_differences(fn):
    """addressing_test.py testAllocationGradient / testWriteAllocationWeightsGradient (error < 0.01)."""
    rng = np.random.default_rng(13)
    usage = jnp.asarray(rng.random(5), jnp.float32)
    gates = jnp.asarray(rng.random(3), jnp.float32)
    f = jax.jit((lambda u, g: dnc.allocation_weights(u)) if fn == "allocation" else dnc.write_allocation_weights)
    check_grads(f, (usage, gates), order=1, modes=["rev"], eps=1e-3, atol=1e-2, rtol=1e-2)


# ------------------------------------------------------------------ shared addressing: division by zero

def test_all_zero_memory_and_keys_give_finite_values_and_gradients():
    mem, keys = jnp.zeros((6, 4)), jnp.zeros((3, 4))
    assert np.all(np.asarray(jax.jit(cosine_similarity)(mem, keys)) == 0)
    w = jax.jit(content_weights)(mem, keys, jnp.zeros(3))
    np.testing.assert_allclose(np.asarray(w), np.full((3, 6), 1 / 6), atol=1e-6)  # uniform
    loss = lambda m, k, s: jnp.sum(content_weights(m, k, s) * jnp.arange(6.0))  # noqa: E731
    grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(mem, keys, jnp.zeros(3))
    assert all(np.all(np.isfinite(np.asarray(g))) for g in grads)


def test_saturated_usage_gives_finite_allocation_and_gradients():
    alloc = jax.jit(lambda u: dnc.write_allocation_weights(u, jnp.ones(2)))
    grad = jax.jit(jax.grad(lambda u: jnp.sum(dnc.write_allocation_weights(u, jnp.ones(2)) * jnp.arange(6.0))))
    for usage in (jnp.ones(6), jnp.zeros(6)):
        a, g = alloc(usage), grad(usage)
        assert np.all(np.isfinite(np.asarray(a))) and np.all(np.isfinite(np.asarray(g)))
        assert float(a.sum(-1).max()) <= 1 + 1e-6
