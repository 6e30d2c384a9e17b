"""The full model at the paper's size on short sequences (T = 5).

Every memory is checked alone in test_memories.py (scan = stepping, batch = separate runs,
gradients reach every parameter). Here the model core around it: each memory is wired into the
bound (gradients), and the core's own properties on two unlike memories (the VRNN, which reads
the previous frame, and the DNC) to keep compile time, which dominates, in bounds.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gtmm.errors import GtmmError
from gtmm.memories import MEMORIES
from gtmm.model import GTMM, ModelConfig, batch_terms, count_parameters, init_model, loss_fn

MODELS = list(MEMORIES)


CORE_MODELS = ["vrnn", "dnc"]


@pytest.fixture(scope="module", params=MODELS)
def model(request):
    return init_model(ModelConfig(request.param, 5).resolved(), 0)


@pytest.fixture(scope="module", params=CORE_MODELS)
def core_model(request):
    return init_model(ModelConfig(request.param, 5).resolved(), 0)


@pytest.fixture(scope="module")
def batch(recall_task):
    b = recall_task.batch("train", 3, 0, 0)
    return jnp.asarray(b.frames), jnp.asarray(b.context)


def test_scan_equals_stepping_one_step_at_a_time(core_model, batch):
    frames, ctx = batch[0][0], batch[1][0]
    noise = jax.random.normal(jax.random.PRNGKey(1), (5, core_model.latent_size))
    observed = jnp.array([True, True, True, False, False])
    emb = core_model.embed(frames)
    scanned = eqx.filter_jit(lambda m: m.unroll(emb, ctx, noise, observed))(core_model)
    step = eqx.filter_jit(lambda m, c, xs: m.step(c, xs))
    carry, kls, zs = core_model.initial_carry(), [], []
    for t in range(5):
        carry, (psi, z, kl, _, _) = step(core_model, carry, (emb[t], ctx[t], noise[t], observed[t]))
        kls.append(kl)
        zs.append(z)
    np.testing.assert_allclose(np.asarray(scanned.kl), np.asarray(jnp.stack(kls)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(scanned.latent), np.asarray(jnp.stack(zs)), rtol=1e-4, atol=1e-5)


def test_batch_equals_separate_runs(core_model, batch):
    frames, ctx = batch
    key = jax.random.PRNGKey(2)
    together = eqx.filter_jit(batch_terms)(core_model, frames, ctx, key)
    keys = jax.random.split(key, frames.shape[0])
    one = eqx.filter_jit(lambda m, f, c, k: m(f, c, k))
    for i in range(frames.shape[0]):
        alone = one(core_model, frames[i], ctx[i], keys[i])
        np.testing.assert_allclose(np.asarray(together.kl[i]), np.asarray(alone.kl), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(np.asarray(together.log_likelihood[i]), np.asarray(alone.log_likelihood),
                                   rtol=1e-4)


def test_gradients_are_finite_and_nonzero(model, batch):
    frames, ctx = batch
    (loss, _), grads = eqx.filter_jit(eqx.filter_value_and_grad(loss_fn, has_aux=True))(
        model, frames, ctx, jax.random.PRNGKey(3))
    leaves = jax.tree_util.tree_leaves(eqx.filter(grads, eqx.is_array))
    assert np.isfinite(float(loss))
    assert all(np.all(np.isfinite(np.asarray(g))) for g in leaves)
    assert sum(float(np.abs(np.asarray(g)).sum()) for g in leaves) > 0
    # the memory's parameters receive gradient (it is connected to the bound)
    mem = jax.tree_util.tree_leaves(eqx.filter(grads.memory, eqx.is_array))
    assert sum(float(np.abs(np.asarray(g)).sum()) for g in mem) > 0


def test_generation_shapes_and_observed_prefix(core_model, batch):
    frames, ctx = batch
    recon, gen = eqx.filter_jit(lambda m, f, c: m.generate(f, c, 3, jax.random.PRNGKey(4)))(core_model, frames[0], ctx[0])
    assert recon.shape == gen.shape == frames[0].shape
    assert float(recon.min()) >= 0 and float(recon.max()) <= 1
    # observed steps use the same posterior sample in both passes
    np.testing.assert_allclose(np.asarray(recon[:3]), np.asarray(gen[:3]), atol=1e-5)


class _Networks(eqx.Module):
    """An encoder or decoder that records the `in_loop` it is called with and may ignore it."""
    net: eqx.Module
    honour: bool = eqx.field(static=True)
    calls: list = eqx.field(static=True)

    def __call__(self, x, *, in_loop=False):
        self.calls.append(in_loop)
        return self.net(x, in_loop=in_loop) if self.honour else self.net(x)


def test_generation_feeds_frames_back_through_the_loop_networks(recall_task):
    """The VRNN re-encodes its generated frames inside the scan; there it must use the in-loop
    (matrix-product) networks, since XLA's CPU convolutions in a loop body are many times slower
    (one batch of a VRNN maze run's generation: 15 s against 3 s at the suite's compile level),
    and give the frames of XLA's convolutions."""
    model = init_model(ModelConfig("vrnn", 5, hidden_size=16, map_hidden=16), 0)
    b = recall_task.batch("eval", 1, 0, 0)
    frames, ctx = jnp.asarray(b.frames[0]), jnp.asarray(b.context[0])
    out, calls = {}, {}
    for honour in (True, False):
        calls[honour] = []
        nets = tuple(_Networks(net, honour, calls[honour]) for net in (model.encoder, model.decoder))
        wrapped = eqx.tree_at(lambda m: (m.encoder, m.decoder), model, nets)
        out[honour] = eqx.filter_jit(lambda m, f, c: m.generate(f, c, 2, jax.random.PRNGKey(4)))(wrapped, frames, ctx)
    assert True in calls[True]  # the fed-back frames went through the in-loop networks
    for a, c in zip(out[True], out[False]):
        np.testing.assert_allclose(np.asarray(a), np.asarray(c), atol=1e-4)


def test_parameter_counts_match_table_1():
    counts = {m: count_parameters(eqx.filter_eval_shape(GTMM, ModelConfig(m, 20), key=jax.random.PRNGKey(0)))
              for m in MODELS}
    # h_t in the introspective context widens the maps; the default width makes up for it
    counts["introspective with h_t"] = count_parameters(eqx.filter_eval_shape(
        GTMM, ModelConfig("introspective", 20, context_with_controller=True), key=jax.random.PRNGKey(0)))
    assert abs(counts["introspective with h_t"] / counts["introspective"] - 1) < 0.01, counts
    lo, hi = min(counts.values()), max(counts.values())
    assert hi / lo < 1.05, counts
    assert all(1.80e6 < c < 1.95e6 for c in counts.values()), counts


@pytest.mark.parametrize("name", MODELS)
def test_task_context_reaches_the_controller(mnist, name):
    """The maze's actions c_t flow from the task into the model config and change the free energy."""
    from gtmm.tasks import make_task
    from gtmm.train import TrainConfig

    task = make_task("mnist-maze", dataset=mnist, l=3, k=3)
    cfg = TrainConfig(model=name, task="mnist-maze", l=3, k=3,
                      model_overrides={"hidden_size": 32, "map_hidden": 32}).model_config(task)
    assert cfg.task_context_size == 4
    model = init_model(cfg, 0)
    b = task.batch("train", 2, 0, 0)
    frames, ctx = jnp.asarray(b.frames), jnp.asarray(b.context)
    terms = eqx.filter_jit(batch_terms)
    with_actions = terms(model, frames, ctx, jax.random.PRNGKey(1))
    other_actions = terms(model, frames, jnp.roll(ctx, 1, axis=-1), jax.random.PRNGKey(1))
    assert with_actions.kl.shape == (2, 6) and np.isfinite(np.asarray(with_actions.kl)).all()
    # c_0 is zero, so step 0 cannot differ; later steps read the actions
    np.testing.assert_allclose(np.asarray(with_actions.kl[:, 0]), np.asarray(other_actions.kl[:, 0]), rtol=1e-5)
    assert not np.allclose(np.asarray(with_actions.kl[:, 1:]), np.asarray(other_actions.kl[:, 1:]))


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(recall_task, chunk=2):
    """remat_chunk only changes what the backward pass keeps, in the scan and in the encoder and
    decoder (T = 5, chunk 2: two blocks and a remainder step); the loss and every gradient are
    those of the plain model."""
    small = dict(hidden_size=16, map_hidden=16, slots=5)
    plain = init_model(ModelConfig("dnc", 5, **small), 0)
    remat = init_model(ModelConfig("dnc", 5, remat_chunk=chunk, **small), 0)
    b = recall_task.batch("train", 2, 0, 0)
    grad = eqx.filter_jit(eqx.filter_value_and_grad(loss_fn, has_aux=True))
    (l1, _), g1 = grad(plain, jnp.asarray(b.frames), jnp.asarray(b.context), jax.random.PRNGKey(0))
    (l2, _), g2 = grad(remat, jnp.asarray(b.frames), jnp.asarray(b.context), jax.random.PRNGKey(0))
    np.testing.assert_allclose(float(l1), float(l2), rtol=1e-6)
    for a, c in zip(jax.tree_util.tree_leaves(eqx.filter(g1, eqx.is_array)),
                    jax.tree_util.tree_leaves(eqx.filter(g2, eqx.is_array))):
        # blocks sum the encoder's and decoder's weight gradients in another order: float32
        # round-off, so the absolute tolerance scales with the leaf's largest gradient
        np.testing.assert_allclose(np.asarray(a), np.asarray(c), rtol=1e-4, atol=1e-6 * max(1.0, np.abs(a).max()))


@pytest.mark.parametrize("chunk", [None, 2, 3, 7])
def test_chunked_vmap_equals_vmap_in_value_and_gradient(chunk):
    """Blocks of `chunk` (with a remainder for 2 and 3, one block for 7 >= T) under checkpoint."""
    from gtmm.model import chunked_vmap

    xs = jax.random.normal(jax.random.PRNGKey(0), (7, 3))
    f = lambda w, x: jnp.tanh(x * w).sum()  # noqa: E731
    total = lambda w, fn: fn(lambda x: f(w, x), xs).sum()  # noqa: E731
    w = jnp.arange(3.0)
    ref = jax.value_and_grad(total)(w, lambda g, x: jax.vmap(g)(x))
    got = jax.value_and_grad(total)(w, lambda g, x: chunked_vmap(g, x, chunk))
    np.testing.assert_allclose(float(got[0]), float(ref[0]), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(got[1]), np.asarray(ref[1]), rtol=1e-5)  # summed in blocks: round-off
    assert chunked_vmap(lambda x: x * 2, xs, chunk).shape == xs.shape


def test_context_with_controller_adds_the_controller_state_to_the_introspective_context(batch):
    """Psi = [gated reads, h_t] instead of eq. 12's reads alone: R x latent + hidden wide, its last
    `hidden` entries the controller state, and a finite loss and gradient through it. Refused for
    the other memories, whose contexts already carry the controller state."""
    from gtmm.memories.base import ControllerInput

    small = dict(hidden_size=16, map_hidden=16)
    model = init_model(ModelConfig("introspective", 5, context_with_controller=True, **small), 0)
    memory = model.memory
    assert memory.context_size == 5 * 32 + 16
    state = memory.initial_state()
    psi, new_state = memory(ControllerInput(jnp.ones(32), jnp.zeros(0), jnp.zeros(0)), state)
    assert psi.shape == (5 * 32 + 16,)
    np.testing.assert_array_equal(np.asarray(psi[-16:]), np.asarray(new_state.h))
    (loss, _), grads = eqx.filter_jit(eqx.filter_value_and_grad(loss_fn, has_aux=True))(
        model, *batch, jax.random.PRNGKey(0))
    assert np.isfinite(float(loss))
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree_util.tree_leaves(eqx.filter(grads, eqx.is_array)))
    for other in ("vrnn", "dnc"):
        with pytest.raises(GtmmError, match="introspective memory only"):
            ModelConfig(other, 5, context_with_controller=True).resolved()
    with pytest.raises(GtmmError, match="true or false"):
        ModelConfig("introspective", 5, context_with_controller="false").resolved()


def test_ntm_walk_bias_reaches_the_memory_and_is_checked():
    model = init_model(ModelConfig("ntm", 5, ntm_walk_bias=2, hidden_size=8, map_hidden=8), 0)
    plain = init_model(ModelConfig("ntm", 5, hidden_size=8, map_hidden=8), 0)
    assert int(jnp.sum(model.memory.interface.bias != plain.memory.interface.bias)) == 4
    for bad in (-1.0, float("nan"), float("inf"), True, "3"):
        with pytest.raises(GtmmError, match="ntm walk bias must be a number >= 0"):
            ModelConfig("ntm", 5, ntm_walk_bias=bad).resolved()
    with pytest.raises(GtmmError, match="applies to the ntm memory only, not dnc"):
        ModelConfig("dnc", 5, ntm_walk_bias=3.0).resolved()


def test_min_std_floors_both_gaussians_and_is_checked(batch):
    """ModelConfig.min_std (default distributions.MIN_STD = 1e-3) is the floor of the prior's and
    the posterior's standard deviations; it changes the loss, and a non-positive value is refused."""
    from gtmm.distributions import MIN_STD, gaussian_from_raw
    from gtmm.errors import GtmmError

    raw = jnp.concatenate([jnp.zeros(4), jnp.full(4, -50.0)])  # softplus(-50) ~ 0: the floor itself
    np.testing.assert_allclose(np.asarray(gaussian_from_raw(raw).std), MIN_STD, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(gaussian_from_raw(raw, 0.5).std), 0.5, rtol=1e-6)
    small = dict(hidden_size=16, map_hidden=16)
    losses = {}
    for floor in (MIN_STD, 0.5):
        model = init_model(ModelConfig("vrnn", 5, min_std=floor, **small), 0)
        assert model.min_std == floor
        losses[floor] = float(eqx.filter_jit(loss_fn)(model, *batch, jax.random.PRNGKey(0))[0])
    assert all(np.isfinite(v) for v in losses.values()) and losses[0.5] != losses[MIN_STD]
    for bad in (0.0, -1.0, float("nan"), float("inf"), True):
        with pytest.raises(GtmmError, match="min std must be a positive number"):
            ModelConfig("vrnn", 5, min_std=bad).resolved()


def test_mask_leaves_out_padding_and_nothing_leaks_from_it(recall_task):
    """SPEC 1's optional [B, T] mask: the second sequence ends after 3 of 5 steps. Whatever its
    padding holds, the masked loss and every gradient are the same, and the loss is minus the
    mean over sequences of each one's own steps' free energy; unmasked, the padding counts."""
    model = init_model(ModelConfig("dnc", 5, hidden_size=16, map_hidden=16, slots=5), 0)
    b = recall_task.batch("train", 2, 0, 0)
    frames, ctx = jnp.asarray(b.frames), jnp.asarray(b.context)
    noise = jnp.asarray(np.random.default_rng(0).uniform(size=frames.shape[2:]), frames.dtype)
    other = frames.at[1, 3:].set(noise)  # other padding after the second sequence's end
    mask = jnp.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], bool)
    grad = eqx.filter_jit(eqx.filter_value_and_grad(loss_fn, has_aux=True))
    key = jax.random.PRNGKey(0)
    (l1, terms), g1 = grad(model, frames, ctx, key, mask)
    (l2, _), g2 = grad(model, other, ctx, key, mask)
    (l3, _), _ = grad(model, other, ctx, key)
    free = np.asarray(terms.log_likelihood - terms.kl)
    np.testing.assert_allclose(float(l1), -(free[0].sum() + free[1, :3].sum()) / 2, rtol=1e-6)
    np.testing.assert_allclose(float(l1), float(l2), rtol=1e-6)
    assert abs(float(l3) - float(l2)) > 1.0  # the check above could fail: padding counts without the mask
    for a, c in zip(jax.tree_util.tree_leaves(eqx.filter(g1, eqx.is_array)),
                    jax.tree_util.tree_leaves(eqx.filter(g2, eqx.is_array))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(c), rtol=1e-5, atol=1e-6 * max(1.0, np.abs(a).max()))
    (full, _), _ = grad(model, frames, ctx, key, jnp.ones((2, 5), bool))
    np.testing.assert_allclose(float(full), float(grad(model, frames, ctx, key)[0][0]), rtol=1e-6)

    for bad, words in ((jnp.ones((2, 4)), "shape (2, 4)"), (jnp.array([[1, 0, 1, 1, 1]] * 2), "no gaps"),
                       (jnp.full((2, 5), 0.5), "1 for a sequence's steps")):
        with pytest.raises(GtmmError, match=words.replace("(", r"\(").replace(")", r"\)")):
            loss_fn(model, frames, ctx, key, bad)
