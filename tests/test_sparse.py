"""The DNC's sparse temporal link (`ModelConfig.link_k`, K links per slot; Rae et al. 2016).

With K = slots nothing can be dropped, so it must be the dense link of `dnc.updated_link`
exactly; with K < slots it keeps at most K links per row, never the diagonal, and never more
than the dense link holds (each kept link is updated as the dense one is, so 0 <= sparse <=
dense entry by entry, hence rows and columns still sum to at most one).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gtmm.memories import dnc

SLOTS, WRITES, READS, STEPS = 7, 2, 3, 8


def _write_and_read_weights(seed):
    """Soft write weights (each head sums to at most one) and read weights for STEPS steps."""
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
    gate = jax.random.uniform(k2, (STEPS, WRITES, 1))
    writes = jax.nn.softmax(3 * jax.random.normal(k1, (STEPS, WRITES, SLOTS)), axis=-1) * gate
    reads = jax.nn.softmax(2 * jax.random.normal(k3, (STEPS, READS, SLOTS)), axis=-1)
    return writes, reads


@jax.jit
def _run_both(writes, reads, sparse):
    """Dense and sparse linkage over the sequence; the links and directional weights of every step."""
    def step(carry, xs):
        dense, sparse = carry
        w, r = xs
        dense, sparse = dnc.updated_linkage(w, dense), dnc.updated_sparse_linkage(w, sparse)
        out = (dense.link, dnc.sparse_link_to_dense(sparse.index, sparse.link), sparse.index,
               *(dnc.directional_read_weights(dense.link, r, forward=f) for f in (True, False)),
               *(dnc.sparse_directional_read_weights(sparse.index, sparse.link, r, forward=f) for f in (True, False)))
        return (dense, sparse), out

    dense = dnc.TemporalLinkageState(jnp.zeros((WRITES, SLOTS, SLOTS)), jnp.zeros((WRITES, SLOTS)))
    return jax.lax.scan(step, (dense, sparse), (writes, reads))[1]


@pytest.mark.parametrize("seed", [0, 1])
def test_sparse_link_with_k_equal_to_slots_is_the_dense_link(seed):
    writes, reads = _write_and_read_weights(seed)
    dense, sparse, _, fwd, bwd, sfwd, sbwd = _run_both(writes, reads, dnc.initial_sparse_linkage(SLOTS, WRITES, SLOTS))
    assert np.asarray(dense).max() > 0.05  # the sequence does build links
    np.testing.assert_allclose(np.asarray(sparse), np.asarray(dense), atol=1e-6)
    np.testing.assert_allclose(np.asarray(sfwd), np.asarray(fwd), atol=1e-6)
    np.testing.assert_allclose(np.asarray(sbwd), np.asarray(bwd), atol=1e-6)


@pytest.mark.parametrize("k", [1, 3])
def test_sparse_link_keeps_k_links_per_row_no_diagonal_and_never_more_than_dense(k):
    writes, reads = _write_and_read_weights(2)
    dense, sparse, index, fwd, _, sfwd, _ = _run_both(writes, reads, dnc.initial_sparse_linkage(SLOTS, WRITES, k))
    dense, sparse, index = np.asarray(dense), np.asarray(sparse), np.asarray(index)
    assert index.shape == (STEPS, WRITES, SLOTS, k)
    assert np.all(np.count_nonzero(sparse, axis=-1) <= k)
    assert all(len(set(row)) == k for row in index.reshape(-1, k))  # distinct links in every row
    assert np.all(sparse[..., range(SLOTS), range(SLOTS)] == 0)
    assert sparse.min() >= 0 and np.all(sparse <= dense + 1e-6)
    assert sparse.sum(-1).max() <= 1 + 1e-5 and sparse.sum(-2).max() <= 1 + 1e-5
    assert np.count_nonzero(sparse[-1]) > 0 and np.all(np.asarray(sfwd) <= np.asarray(fwd) + 1e-6)


def _interface(R=1, Wh=1, W=3, **over):
    base = dict(read_keys=jnp.zeros((R, W)), read_strengths=jnp.zeros(R), write_keys=jnp.zeros((Wh, W)),
                write_strengths=jnp.zeros(Wh), write_vectors=jnp.zeros((Wh, W)), erase_vectors=jnp.zeros((Wh, W)),
                free_gate=jnp.zeros(R), allocation_gate=jnp.zeros(Wh), write_gate=jnp.zeros(Wh),
                read_mode=jnp.zeros((R, 1 + 2 * Wh)).at[:, -1].set(1.0))
    return dnc.DNCInterface(**{**base, **over})


@pytest.mark.parametrize("mode,expected", [(1, (0, 4)), (0, (3,))])
def test_one_link_per_slot_follows_one_hot_writes_both_ways(mode, expected):
    """Write slots 3, 2, 0, 4 in turn with K = 1; a head on slot 2 reading forward goes to 0, then
    4; reading backward it goes to 3 (modes: backward, forward, content)."""
    state = dnc.initial_access_state(5, 3, 1, 1, link_k=1)
    step = jax.jit(dnc.access_step)
    for slot in (3, 2, 0, 4):
        state = state._replace(usage=jnp.ones(5).at[slot].set(0.0), write_weights=jnp.zeros((1, 5)),
                               read_weights=jnp.zeros((1, 5)))
        _, state = step(_interface(allocation_gate=jnp.ones(1), write_gate=jnp.ones(1)), state)
    state = state._replace(read_weights=jnp.eye(5)[jnp.array([2])], write_weights=jnp.zeros((1, 5)))
    for slot in expected:
        _, state = step(_interface(read_mode=jnp.zeros((1, 3)).at[0, mode].set(1.0)), state)
        np.testing.assert_allclose(np.asarray(state.read_weights), np.eye(5)[[slot]], atol=1e-4)


def test_dnc_memory_with_k_equal_to_slots_gives_the_dense_contexts():
    """The whole DNC memory (controller, reads, links) over a random sequence: same Psi."""
    from gtmm.memories import ControllerInput

    small = dict(latent_size=3, observation_size=4, task_context_size=2, hidden_size=8, slots=6, read_heads=2)
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(5), 3)
    inputs = ControllerInput(jax.random.normal(k1, (6, 3)), jax.random.normal(k2, (6, 4)),
                             jax.random.normal(k3, (6, 2)))

    @eqx.filter_jit
    def unroll(mem):
        return jax.lax.scan(lambda s, x: mem(x, s)[::-1], mem.initial_state(), inputs)[1]

    dense = unroll(dnc.DNCMemory(**small, key=jax.random.PRNGKey(1)))
    sparse = unroll(dnc.DNCMemory(**small, link_k=6, key=jax.random.PRNGKey(1)))
    np.testing.assert_allclose(np.asarray(sparse), np.asarray(dense), atol=1e-5)


def test_tiny_dnc_model_with_sparse_link_and_reads_has_finite_loss_and_gradients(recall_task):
    from gtmm.model import ModelConfig, init_model, loss_fn

    cfg = ModelConfig("dnc", 5, latent_size=4, embed_size=8, hidden_size=8, map_hidden=8, read_heads=2,
                      top_k=2, link_k=2)
    model = init_model(cfg, 0)
    assert model.memory.link_k == 2 and model.memory.initial_state().access.linkage.index.shape == (1, 5, 2)
    b = recall_task.batch("train", 2, 0, 0)
    (loss, _), grads = eqx.filter_jit(eqx.filter_value_and_grad(loss_fn, has_aux=True))(
        model, jnp.asarray(b.frames), jnp.asarray(b.context), jax.random.PRNGKey(0))
    leaves = jax.tree_util.tree_leaves(eqx.filter(grads.memory, eqx.is_array))
    assert np.isfinite(float(loss))
    assert all(np.all(np.isfinite(np.asarray(g))) for g in leaves)
    assert sum(float(np.abs(np.asarray(g)).sum()) for g in leaves) > 0


def test_link_k_round_trips_through_the_run_config_and_the_command_line():
    import json
    from dataclasses import asdict

    from gtmm.cli import _parser
    from gtmm.model import ModelConfig
    from gtmm.train import TrainConfig

    cfg = ModelConfig("dnc", 20, link_k=4, top_k=3).resolved()
    assert ModelConfig(**json.loads(json.dumps(asdict(cfg)))) == cfg
    args = _parser().parse_args(["train", "--model", "dnc", "--link-k", "4", "--out", "x"])
    assert args.link_k == 4
    train = TrainConfig(model="dnc", task="perfect-recall", model_overrides={"link_k": 4}).validate()
    assert train.model_config().link_k == 4
