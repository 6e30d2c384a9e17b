"""The hash index for content reads (`gtmm.memories.lsh`) and the associative memory read through it
(`content_index="lsh"`): with an index that returns every filled slot and k = slots it must be the
dense content-and-succession mixture exactly; with a real index it must return precisely the filled
slots whose current bucket matches, and stay finite."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gtmm.errors import GtmmError
from gtmm.memories import ControllerInput
from gtmm.memories.associative import AssociativeMemory, masked_content_weights, successor_weights
from gtmm.memories.introspective import fifo_write, filled_slots
from gtmm.memories.lsh import (candidate_content_weights, empty_index, hash_codes, index_candidates, index_insert,
                               merge_duplicates)
from gtmm.model import ModelConfig

Z, H, R = 6, 10, 3


def _latents(steps, seed=0):
    return jax.random.normal(jax.random.PRNGKey(seed), (steps, Z))


def _inputs(z):
    return ControllerInput(z, jnp.zeros(0), jnp.zeros(0))


def test_hash_codes_are_sign_patterns_and_scale_free():
    planes = jnp.array([[[1.0, 0.0], [0.0, 1.0]]])  # one table, two bits: the signs of x and y
    keys = jnp.array([[1.0, 1.0], [-1.0, 1.0], [1.0, -1.0], [-1.0, -1.0], [3.0, 5.0]])
    np.testing.assert_array_equal(hash_codes(planes, keys)[:, 0], [3, 2, 1, 0, 3])
    assert hash_codes(jnp.zeros((2, 0, 2)), keys).tolist() == [[0, 0]] * 5  # no bits: one bucket


def test_index_returns_exactly_the_filled_slots_whose_current_bucket_matches():
    """Brute force over a sequence that overwrites slots (FIFO wrap) and overfills buckets (ring)."""
    slots, tables, bits, capacity = 9, 3, 2, 3
    planes = jax.random.normal(jax.random.PRNGKey(1), (tables, bits, Z))
    index, codes_of = empty_index(tables, bits, capacity, slots), {}
    inserted = {}  # (table, bucket) -> slots in insertion order
    insert, candidates = jax.jit(index_insert), jax.jit(index_candidates)  # one compile each, not one per op
    for t, z in enumerate(_latents(25)):
        slot, codes = t % slots, hash_codes(planes, z)
        index = insert(index, jnp.array(slot), codes, jnp.array(True))
        codes_of[slot] = [int(c) for c in codes]
        for table in range(tables):
            inserted.setdefault((table, codes_of[slot][table]), []).append(slot)
        query = hash_codes(planes, jax.random.normal(jax.random.PRNGKey(100 + t), (Z,)))
        ids, valid = candidates(index, query)
        got = sorted(int(i) for i in np.asarray(ids)[np.asarray(valid)])
        expected = set()
        for table in range(tables):
            recent = inserted.get((table, int(query[table])), [])[-capacity:]  # the ring keeps the last C
            expected |= {s for s in recent if codes_of[s][table] == int(query[table])}  # not overwritten since
        assert got == sorted(expected)  # each slot once, however many tables found it


def test_insert_is_a_no_op_when_told_not_to():
    index = empty_index(2, 1, 4, 5)
    again = index_insert(index, jnp.array(3), jnp.array([1, 0]), jnp.array(False))
    for a, b in zip(index, again):
        np.testing.assert_array_equal(a, b)


def test_candidate_weights_pick_the_k_most_similar_valid_candidates():
    keys = jnp.array([[1.0, 0.0]])
    candidates = jnp.array([[[1.0, 0.1], [0.0, 1.0], [1.0, 0.0], [-1.0, 0.0], [0.9, 0.0]]])
    valid = jnp.array([[True, True, False, True, True]])  # the exact match is not valid
    positions, weights = candidate_content_weights(keys, jnp.array([100.0]), candidates, valid, 2)
    assert sorted(positions[0].tolist()) == [0, 4]
    np.testing.assert_allclose(weights.sum(), 1.0, rtol=1e-6)
    _, none = candidate_content_weights(keys, jnp.array([1.0]), candidates, jnp.zeros_like(valid), 2)
    assert none.tolist() == [[0.0, 0.0]]  # no valid candidate: reads nothing, no NaN


def test_merge_duplicates_sums_onto_the_first_entry():
    ids, w = jnp.array([[4, 2, 4, 7]]), jnp.array([[0.1, 0.2, 0.3, 0.4]])
    np.testing.assert_allclose(merge_duplicates(ids, w), [[0.4, 0.2, 0.0, 0.4]], rtol=1e-6)


def _indexed(slots, k, **index):
    return AssociativeMemory(latent_size=Z, task_context_size=0, hidden_size=H, slots=slots, read_heads=R,
                             top_k=k, content_index="lsh", key=jax.random.PRNGKey(3), **index)


@eqx.filter_jit  # one compiled step rather than an eager op (a small compile) per operation
def _dense_step(mem, carry, z):
    store, writes, weights, h, c = carry
    store = fifo_write(store, writes, z)
    h_new, c = mem.lstm(z, (h, c))
    mask = filled_slots(mem.slots, writes)
    out = mem.keys(h_new).reshape(R, Z + 1)
    content = masked_content_weights(out[:, :-1], jax.vmap(mem.projection)(store), jax.nn.softplus(out[:, -1]), mask)
    pi = jax.nn.softmax(mem.mixture(h_new).reshape(R, 2), axis=-1)
    weights = pi[:, :1] * content + pi[:, 1:] * successor_weights(weights, mask)
    gates = jax.nn.sigmoid(mem.gate(h)).reshape(R, Z)
    return (store, writes + 1, weights, h_new, c), ((weights @ store) * gates).reshape(-1)


def _dense_reference(mem, latents):
    """The same parameters read densely: pi_content w_content + pi_next w_next over all filled slots;
    Psi at every step and the last step's read weights."""
    carry, psis = (jnp.zeros((mem.slots, Z)), jnp.array(0), jnp.zeros((R, mem.slots)), jnp.zeros(H), jnp.zeros(H)), []
    for z in latents:
        carry, psi = _dense_step(mem, carry, z)
        psis.append(psi)
    return jnp.stack(psis), carry[2]


_step = eqx.filter_jit(lambda mem, z, state: mem(_inputs(z), state))


def _indexed_run(mem, latents):
    """One step at a time, each step one jitted call (the scan's counterpart)."""
    state, psis = mem.initial_state(), []
    for z in latents:
        psi, state = _step(mem, z, state)
        psis.append(psi)
    return jnp.stack(psis), state


def test_index_that_returns_every_slot_with_k_equal_to_slots_is_the_dense_read():
    """One table, one bucket holding every slot, k = slots: nothing is approximated, across the FIFO's wrap."""
    slots = 5
    mem = _indexed(slots, slots, index_tables=1, index_bits=0, index_capacity=slots)
    latents = _latents(13)
    psis, state = _indexed_run(mem, latents)
    dense_psis, dense_weights = _dense_reference(mem, latents)
    np.testing.assert_allclose(psis, dense_psis, rtol=1e-5, atol=1e-6)
    # the k (slot, weight) pairs the index keeps, spread back over the slots (`gtmm reads`)
    np.testing.assert_allclose(mem.read_weights_after(state), dense_weights, rtol=1e-5, atol=1e-6)


def test_indexed_memory_scans_jits_and_has_finite_gradients_with_an_approximate_index():
    mem = _indexed(40, 4, index_tables=2, index_bits=3, index_capacity=8)
    latents = _latents(50, seed=5)

    def loss(m, zs):
        def step(state, z):
            psi, state = m(_inputs(z), state)
            return state, psi
        _, psis = jax.lax.scan(step, m.initial_state(), zs)
        return jnp.sum(psis ** 2), psis

    (value, psis), grads = eqx.filter_jit(eqx.filter_value_and_grad(loss, has_aux=True))(mem, latents)
    stepped, state = _indexed_run(mem, latents)
    np.testing.assert_allclose(psis, stepped, rtol=1e-5, atol=1e-6)  # the scan equals one step at a time
    assert np.isfinite(value)
    leaves = jax.tree_util.tree_leaves(eqx.filter(grads, eqx.is_inexact_array))
    assert all(np.all(np.isfinite(g)) for g in leaves)
    assert float(jnp.abs(grads.keys.weight).sum()) > 0 and float(jnp.abs(grads.projection.weight).sum()) > 0
    assert np.all(np.asarray(state.read_weights) >= 0) and float(state.read_weights.sum(-1).max()) <= 1 + 1e-5
    assert np.all(np.asarray(state.read_slots) < 40)


def test_indexed_memory_finds_a_stored_latent_by_content():
    """Keys set to one stored latent's direction, strong: the content head reads that latent back."""
    mem = _indexed(30, 2, index_tables=4, index_bits=2, index_capacity=30)
    mem = eqx.tree_at(lambda m: m.projection.weight, mem, jnp.eye(Z))
    latents = _latents(12, seed=9)
    target = latents[4]
    bias = jnp.tile(jnp.concatenate([target, jnp.array([200.0])]), R)
    logits = jnp.tile(jnp.array([30.0, -30.0]), R)  # content mode only
    mem = eqx.tree_at(lambda m: (m.keys.weight, m.keys.bias, m.mixture.weight, m.mixture.bias, m.gate.weight, m.gate.bias),
                      mem, (jnp.zeros_like(mem.keys.weight), bias, jnp.zeros_like(mem.mixture.weight), logits,
                            jnp.zeros_like(mem.gate.weight), jnp.full_like(mem.gate.bias, 30.0)))
    psis, _ = _indexed_run(mem, latents)
    np.testing.assert_allclose(psis[-1].reshape(R, Z), jnp.tile(target, (R, 1)), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("settings, words", [
    (dict(model="dnc", content_index="lsh", top_k=4), "cannot read through content index"),
    (dict(model="associative", content_index="lsh"), "give --top-k"),
    (dict(model="associative", content_index="faiss", top_k=4), "unknown content index"),
])
def test_bad_content_index_settings_are_one_line_errors(settings, words):
    model = settings.pop("model")
    with pytest.raises(GtmmError, match=words) as info:
        ModelConfig(model, 20, **settings).resolved()
    assert "\n" not in str(info.value)


def test_indexed_model_has_no_position_network_and_fewer_parameters():
    """Built as training builds it (host initialisation, which must also draw the hash's hyperplanes)."""
    from gtmm.model import count_parameters, init_model

    dense = init_model(ModelConfig("associative", 20, top_k=4), seed=0)
    indexed = init_model(ModelConfig("associative", 20, top_k=4, content_index="lsh"), seed=0)
    assert indexed.memory.attention is None and indexed.memory.planes.shape[0] == 8
    assert np.all(np.isfinite(indexed.memory.planes)) and float(jnp.std(indexed.memory.planes)) > 0.5
    assert count_parameters(indexed) < count_parameters(dense)


def test_content_index_round_trips_through_the_run_config_and_the_command_line():
    import json
    import shlex
    from dataclasses import asdict

    from gtmm.cli import _parser, train_command
    from gtmm.train import TrainConfig

    cfg = ModelConfig("associative", 20, top_k=3, content_index="lsh").resolved()
    assert ModelConfig(**json.loads(json.dumps(asdict(cfg)))) == cfg
    train = TrainConfig(model="associative", task="perfect-recall",
                        model_overrides={"top_k": 3, "content_index": "lsh"}).validate()
    assert train.model_config().content_index == "lsh"
    words = shlex.split(train_command(train, "runs/x"))  # the command a run's README prints
    args = _parser().parse_args(words[1:])
    assert (args.content_index, args.top_k) == ("lsh", 3)
