"""The generative temporal model with memory (paper sections 2-3, eq. 5-8), shared by every memory.

Data flow for one sequence (STYLE.md): the encoder runs over all T frames at once, the
recurrent part (memory, prior, posterior, sampling) runs in one `lax.scan`, and the observation
map runs over all T steps at once after it. Batching is one `jax.vmap` at the edge.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from gtmm.distributions import (
    MIN_STD,
    DiagGaussian,
    bernoulli_log_likelihood,
    gaussian_from_raw,
    gaussian_kl,
    gaussian_sample,
)
from gtmm.errors import GtmmError
from gtmm.memories import (
    DEFAULT_HIDDEN,
    DEFAULT_HIDDEN_BY_NETWORK,
    DEFAULT_HIDDEN_WITH_CONTROLLER,
    MEMORIES,
    AbstractMemory,
    ControllerInput,
    check_model,
)
from gtmm.memories.vrnn import VRNNMemory
from gtmm.networks import FRAME_SIZE, NETWORKS, Decoder, Encoder, check_frame_shape
from gtmm.tasks.base import check_positive_number


@dataclass(frozen=True)
class ModelConfig:
    """Everything that fixes a model's architecture (paper section 4.1 defaults)."""

    model: str
    sequence_length: int
    latent_size: int = 32
    embed_size: int = 64  # the "vector of length 64" of appendix B.1
    hidden_size: int | None = None  # controller LSTM width; None: the model's default
    read_heads: int = 5
    slots: int | None = None  # memory slots; None: T, or 5 T for lru (paper section 4.1)
    word_size: int | None = None  # width of a memory word; None: the latent size (none for vrnn)
    map_hidden: int = 256  # width of the prior and posterior maps' hidden layer
    frame_channels: int = 1
    task_context_size: int = 0
    top_k: int | None = None  # sparse content reads: only the k most similar slots (content memories)
    link_k: int | None = None  # sparse temporal link: K links kept per slot (dnc); None: the dense slots x slots link
    # "lsh": content reads through a hash index, every head's weighting as top_k (slot, weight)
    # pairs, so a step's cost does not grow with the slots (associative; drops its position mode).
    content_index: str | None = None
    # Gradient checkpointing: keep the recurrent state only every `remat_chunk` steps and
    # recompute the steps between in the backward pass (memory ~ T / chunk + chunk states instead
    # of T; about sqrt(T) is best), and run the encoder and decoder over the frames in blocks of
    # `remat_chunk`, recomputed likewise. None: keep everything.
    remat_chunk: int | None = None
    # introspective only: the memory context Psi also carries the controller state h_t, as the
    # NTM, LRU and DNC contexts do (eq. 13-16); not the paper's eq. 12, which gives the reads
    # alone. Lets the prior tell the phases of a task apart (docs/results/recall-diagnostic.md).
    context_with_controller: bool = False
    # Floor on the prior's and posterior's standard deviations (distributions.MIN_STD = 1e-3 by
    # default): no division by zero in the KL. A setting so that its effect can be measured (a
    # floor of 0.1 did not remove the gradient spikes of docs/results/recall-diagnostic.md).
    min_std: float = MIN_STD
    # ntm only: start the write heads walking forward one slot per step (interface biases: gate
    # -b, so the previous weighting is kept; shift logits (0, 0, b), so it moves by +1). Without
    # it the NTM found no recall in the reduced setting (docs/results/recall-diagnostic.md).
    # 0 keeps the default initialisation; not in the paper or Graves et al. 2014.
    ntm_walk_bias: float = 0.0
    # Visual networks (gtmm.networks.NETWORKS): "inception" (appendix B.1, digits and characters)
    # or "two-pathway" (appendix B.2, 3D frames); the task chooses (AbstractTask.model_defaults).
    network: str = "inception"
    frame_size: int = FRAME_SIZE  # height = width of the frames; the networks take 32

    def resolved(self) -> "ModelConfig":
        check_model(self.model)
        for name in ("sequence_length", "latent_size", "embed_size", "read_heads", "map_hidden", "frame_channels"):
            if getattr(self, name) < 1:
                raise GtmmError(f"{name.replace('_', ' ')} must be positive, got {getattr(self, name)}")
        for name in ("hidden_size", "slots", "word_size", "top_k", "link_k", "remat_chunk"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise GtmmError(f"{name.replace('_', ' ')} must be positive, got {value}")
        check_positive_number("min std", self.min_std)
        if not isinstance(self.context_with_controller, bool):
            raise GtmmError(f"context_with_controller must be true or false, got {self.context_with_controller!r}")
        if self.context_with_controller and self.model != "introspective":
            raise GtmmError(f"context_with_controller applies to the introspective memory only; the {self.model}"
                            " context already carries the controller state (drop --context-with-controller)")
        check_positive_number("ntm walk bias", self.ntm_walk_bias, zero_ok=True)
        if self.ntm_walk_bias and self.model != "ntm":
            raise GtmmError(f"ntm walk bias applies to the ntm memory only, not {self.model}; drop --ntm-walk-bias")
        if self.network not in NETWORKS:
            raise GtmmError(f"unknown network {self.network!r}; choose one of: {', '.join(NETWORKS)}")
        check_frame_shape(self.network, (self.frame_channels, self.frame_size, self.frame_size), self.frame_channels)
        memory = MEMORIES[self.model]
        slots = self.slots or memory.default_slots(self.sequence_length)
        word_size = self.word_size or memory.default_word_size(self.latent_size)
        memory.check_settings(slots=slots, read_heads=self.read_heads, word_size=word_size,
                              latent_size=self.latent_size)
        if self.top_k is not None and not memory.content_addressed:
            raise GtmmError(f"{self.model} does not read by content, so top k does not apply to it; leave it out"
                            f" or use one of: {', '.join(m for m, c in MEMORIES.items() if c.content_addressed)}")
        if self.link_k is not None and not memory.has_temporal_links:
            raise GtmmError(f"{self.model} has no temporal links, so link k does not apply to it; leave it out"
                            f" or use one of: {', '.join(m for m, c in MEMORIES.items() if c.has_temporal_links)}")
        if self.content_index is not None:
            known = sorted({i for c in MEMORIES.values() for i in c.content_indexes})
            if self.content_index not in known:
                raise GtmmError(f"unknown content index {self.content_index!r}; choose one of: {', '.join(known)}")
            if self.content_index not in memory.content_indexes:
                able = [m for m, c in MEMORIES.items() if self.content_index in c.content_indexes]
                raise GtmmError(f"{self.model} cannot read through content index {self.content_index}; leave"
                                f" --content-index out or use: {', '.join(able)}")
            if self.top_k is None:
                raise GtmmError(f"content index {self.content_index} reads the k most similar slots; give --top-k K too")
        for name, value in (("top k", self.top_k), ("link k", self.link_k)):
            if value is not None and value > slots:
                raise GtmmError(f"{name} ({value}) cannot exceed the memory slots ({slots}); lower {name} to at"
                                f" most {slots} or raise slots")
        if self.context_with_controller:
            default_hidden = DEFAULT_HIDDEN_WITH_CONTROLLER[self.network]
        else:
            default_hidden = DEFAULT_HIDDEN_BY_NETWORK.get(self.network, DEFAULT_HIDDEN)[self.model]
        return ModelConfig(**{
            **asdict(self),
            "hidden_size": self.hidden_size or default_hidden,
            "slots": slots,
            "word_size": word_size,
        })


def chunked_scan(step, carry, xs, chunk: int | None):
    """`lax.scan(step, carry, xs)`, with gradient checkpointing every `chunk` steps when given.

    The first `chunk * (T // chunk)` steps run as an outer scan over blocks, each block an inner
    scan under `jax.checkpoint`: the backward pass keeps only the carry at block boundaries and
    recomputes a block's steps when it needs them. The remainder runs as a plain scan. The
    values, and the gradients up to floating-point order, are those of the plain scan.
    """
    T = jax.tree_util.tree_leaves(xs)[0].shape[0]
    if chunk is None or chunk >= T:
        return jax.lax.scan(step, carry, xs)
    n = T // chunk
    head = jax.tree_util.tree_map(lambda x: x[:n * chunk].reshape(n, chunk, *x.shape[1:]), xs)
    carry, ys = jax.lax.scan(jax.checkpoint(lambda c, block: jax.lax.scan(step, c, block)), carry, head)
    ys = jax.tree_util.tree_map(lambda y: y.reshape(n * chunk, *y.shape[2:]), ys)
    if T % chunk:
        carry, tail = jax.lax.scan(step, carry, jax.tree_util.tree_map(lambda x: x[n * chunk:], xs))
        ys = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b]), ys, tail)
    return carry, ys


def chunked_vmap(f, xs, chunk: int | None, loop_f=None):
    """`jax.vmap(f)(xs)` over the leading (time) axis, in blocks of `chunk` items under
    `jax.checkpoint` when `chunk` is given.

    The blocks run one after another (`lax.map`), and the backward pass recomputes a block's
    activations when it reaches it instead of keeping them for all T frames: the image networks'
    activation memory then grows with `chunk`, not T. Values and gradients are unchanged.
    `loop_f`: the same function written for a loop body, used for the blocks (the image networks
    with `in_loop=True`: matrix-product convolutions, which XLA's CPU backend runs as fast inside a
    loop body as outside it, where its convolutions are 4-40x slower).
    """
    T = jax.tree_util.tree_leaves(xs)[0].shape[0]
    if chunk is None or chunk >= T:
        return jax.vmap(f)(xs)
    n = T // chunk
    head = jax.tree_util.tree_map(lambda x: x[:n * chunk].reshape(n, chunk, *x.shape[1:]), xs)
    ys = jax.lax.map(jax.checkpoint(jax.vmap(loop_f or f)), head)
    ys = jax.tree_util.tree_map(lambda y: y.reshape(n * chunk, *y.shape[2:]), ys)
    if T % chunk:
        tail = jax.vmap(f)(jax.tree_util.tree_map(lambda x: x[n * chunk:], xs))
        ys = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b]), ys, tail)
    return ys


class StepTerms(NamedTuple):
    """The two terms of the per-step free energy F_t = log_likelihood_t - kl_t (eq. 6)."""

    log_likelihood: Float[Array, "... time"]
    kl: Float[Array, "... time"]


class Unroll(NamedTuple):
    context: Float[Array, "time psi"]  # Psi_{t-1}
    latent: Float[Array, "time latent"]  # z_t
    kl: Float[Array, " time"]
    prior: DiagGaussian
    posterior: DiagGaussian


class GTMM(eqx.Module):
    """A temporal VAE whose prior and posterior read from a memory system (eq. 7-8)."""

    encoder: eqx.Module  # networks.NETWORKS[config.network][0]: Encoder or TwoPathwayEncoder
    decoder: eqx.Module  # its mirror: Decoder or TwoPathwayDecoder
    memory: AbstractMemory
    prior_map: eqx.nn.MLP  # f_z(Psi_{t-1}) -> (mu, sigma) of p(z_t | z_<t, x_<t)   (eq. 7)
    posterior_map: eqx.nn.MLP  # f_q(Psi_{t-1}, e(x_t)) -> (mu, sigma) of q(z_t | z_<t, x_<=t)   (eq. 8)
    latent_size: int = eqx.field(static=True)
    embed_size: int = eqx.field(static=True)
    network: str = eqx.field(static=True, default="inception")
    frame_channels: int = eqx.field(static=True, default=1)
    remat_chunk: int | None = eqx.field(static=True, default=None)
    min_std: float = eqx.field(static=True, default=MIN_STD)

    def __init__(self, config: ModelConfig, *, key: PRNGKeyArray):
        cfg = config.resolved()
        k = jax.random.split(key, 5)
        self.latent_size, self.embed_size, self.remat_chunk = cfg.latent_size, cfg.embed_size, cfg.remat_chunk
        self.network, self.frame_channels, self.min_std = cfg.network, cfg.frame_channels, float(cfg.min_std)
        encoder_cls, decoder_cls = NETWORKS[cfg.network]
        self.encoder = encoder_cls(cfg.frame_channels, cfg.embed_size, key=k[0])
        self.memory = MEMORIES[cfg.model](
            latent_size=cfg.latent_size, observation_size=cfg.embed_size, task_context_size=cfg.task_context_size,
            hidden_size=cfg.hidden_size, slots=cfg.slots, read_heads=cfg.read_heads, word_size=cfg.word_size,
            **({"top_k": cfg.top_k} if cfg.top_k is not None else {}),
            **({"link_k": cfg.link_k} if cfg.link_k is not None else {}),
            **({"content_index": cfg.content_index} if cfg.content_index is not None else {}),
            **({"context_with_controller": True} if cfg.context_with_controller else {}),
            **({"walk_bias": float(cfg.ntm_walk_bias)} if cfg.ntm_walk_bias else {}), key=k[1],
        )
        psi = self.memory.context_size
        self.prior_map = eqx.nn.MLP(psi, 2 * cfg.latent_size, cfg.map_hidden, depth=1, activation=jnp.tanh, key=k[2])
        self.posterior_map = eqx.nn.MLP(psi + cfg.embed_size, 2 * cfg.latent_size, cfg.map_hidden, depth=1,
                                        activation=jnp.tanh, key=k[3])
        self.decoder = decoder_cls(cfg.latent_size + psi, cfg.frame_channels, key=k[4])

    @property
    def reads_observation(self) -> bool:
        """Whether the memory consumes x_{t-1}: then generation must feed back generated frames."""
        return isinstance(self.memory, VRNNMemory)

    def embed(self, frames: Float[Array, "time c h w"]) -> Float[Array, "time embed"]:
        check_frame_shape(self.network, frames.shape[1:], self.frame_channels)  # at trace time
        return chunked_vmap(self.encoder, frames, self.remat_chunk, functools.partial(self.encoder, in_loop=True))

    def decode(self, latent: Float[Array, "time latent"], context: Float[Array, "time psi"]) -> Float[Array, "time c h w"]:
        """Bernoulli logits of p(x_t | z_t, Psi_{t-1}) for every step at once."""
        return chunked_vmap(self.decoder, jnp.concatenate([latent, context], axis=-1), self.remat_chunk,
                            functools.partial(self.decoder, in_loop=True))

    def unroll(
        self,
        embeddings: Float[Array, "time embed"],
        task_context: Float[Array, "time ctx"],
        noise: Float[Array, "time latent"],
        observed: Bool[Array, " time"],
        feedback: bool = False,
    ) -> Unroll:
        """The recurrent part, one `lax.scan` over time.

        At observed steps z_t comes from the posterior, elsewhere from the prior (continual
        generation). With `feedback`, unobserved steps re-encode the generated mean frame so a
        memory that reads x_{t-1} (the VRNN) sees its own generation.
        """

        step = lambda carry, xs: self.step(carry, xs, feedback)  # noqa: E731
        _, (psi, z, kl, prior, posterior) = chunked_scan(step, self.initial_carry(),
                                                         (embeddings, task_context, noise, observed),
                                                         self.remat_chunk)
        return Unroll(psi, z, kl, prior, posterior)

    def initial_carry(self):
        """(memory state, z_0 = 0, e(x_0) = 0)."""
        return self.memory.initial_state(), jnp.zeros(self.latent_size), jnp.zeros(self.embed_size)

    def step(self, carry, xs, feedback: bool = False):
        """One time step of the recurrent part: memory read, prior (eq. 7), posterior (eq. 8),
        sample, KL. `xs` = (e(x_t), c_t, noise_t, observed_t)."""
        state, z_prev, e_prev = carry
        e_t, c_t, eps_t, obs_t = xs
        psi, state = self.memory(ControllerInput(z_prev, e_prev, c_t), state)
        prior = gaussian_from_raw(self.prior_map(psi), self.min_std)
        posterior = gaussian_from_raw(self.posterior_map(jnp.concatenate([e_t, psi])), self.min_std)
        z = jnp.where(obs_t, gaussian_sample(posterior, eps_t), gaussian_sample(prior, eps_t))
        kl = gaussian_kl(posterior, prior)
        if feedback:
            generated = jax.nn.sigmoid(self.decoder(jnp.concatenate([z, psi]), in_loop=True))
            e_t = jnp.where(obs_t, e_t, self.encoder(generated, in_loop=True))
        return (state, z, e_t), (psi, z, kl, prior, posterior)

    def __call__(
        self, frames: Float[Array, "time c h w"], task_context: Float[Array, "time ctx"], key: PRNGKeyArray
    ) -> StepTerms:
        """Per-step free-energy terms of one sequence under the posterior (eq. 5-6)."""
        noise = jax.random.normal(key, (frames.shape[0], self.latent_size))
        observed = jnp.ones(frames.shape[0], bool)
        out = self.unroll(self.embed(frames), task_context, noise, observed)
        logits = self.decode(out.latent, out.context)
        log_lik = jax.vmap(bernoulli_log_likelihood)(logits, frames)
        return StepTerms(log_lik, out.kl)

    def generate(
        self, frames: Float[Array, "time c h w"], task_context: Float[Array, "time ctx"], n_observed: int,
        key: PRNGKeyArray,
    ) -> tuple[Float[Array, "time c h w"], Float[Array, "time c h w"]]:
        """Reconstructions (all steps observed) and continual generation (first `n_observed`
        steps observed through the posterior, the rest sampled from the prior); mean frames."""
        T = frames.shape[0]
        noise = jax.random.normal(key, (T, self.latent_size))
        embeddings = self.embed(frames)
        recon = self.unroll(embeddings, task_context, noise, jnp.ones(T, bool))
        observed = jnp.arange(T) < n_observed
        gen = self.unroll(embeddings, task_context, noise, observed, feedback=self.reads_observation)
        mean = lambda u: jax.nn.sigmoid(self.decode(u.latent, u.context))  # noqa: E731
        return mean(recon), mean(gen)


def batch_terms(model: GTMM, frames: Float[Array, "batch time c h w"], task_context: Float[Array, "batch time ctx"],
                key: PRNGKeyArray) -> StepTerms:
    """`model` over a batch of sequences, one key each."""
    keys = jax.random.split(key, frames.shape[0])
    return jax.vmap(model)(frames, task_context, keys)


def check_mask(mask, frames) -> None:
    """A sequence mask must be `[batch, time]` like the frames and, where its values are known
    (outside jit), 1 for each sequence's steps and 0 only for padding after its end."""
    if tuple(jnp.shape(mask)) != tuple(frames.shape[:2]):
        raise GtmmError(f"the mask has shape {tuple(jnp.shape(mask))}, the frames {tuple(frames.shape)}; give one"
                        f" value per sequence and step, shape {tuple(frames.shape[:2])}")
    if isinstance(mask, jax.core.Tracer):
        return
    m = jnp.asarray(mask)
    if not bool(jnp.all((m == 0) | (m == 1))) or bool(jnp.any(jnp.diff(m.astype(jnp.int32), axis=1) > 0)):
        raise GtmmError("the mask must be 1 for a sequence's steps and 0 for padding after its end (no gaps);"
                        " a step's frame enters the memory, so missing frames inside a sequence are not masking")


def loss_fn(model: GTMM, frames, task_context, key,
            mask: Bool[Array, "batch time"] | None = None) -> tuple[Float[Array, ""], StepTerms]:
    """Negative variational lower bound per sequence, averaged over the batch: -sum_t F_t (eq. 5).

    With `mask` (SPEC section 1's optional `[B, T]` mask, for sequences of different lengths
    padded at the end with any valid frames, zeros for instance), the sum runs over each sequence's
    own steps. A step's terms depend only on the frames up to it, so a padded sequence's loss and
    gradient do not depend on what the padding holds. The tasks' sequences all have one length and
    the training loop passes no mask; this is for custom training loops over such data."""
    terms = batch_terms(model, frames, task_context, key)
    per_step = terms.log_likelihood - terms.kl
    if mask is not None:
        check_mask(mask, frames)
        per_step = jnp.where(jnp.asarray(mask, bool), per_step, 0.0)
    return -jnp.mean(jnp.sum(per_step, axis=-1)), terms


def count_parameters(model: eqx.Module) -> int:
    """Number of trainable scalars; works on a model or its `eqx.filter_eval_shape` skeleton."""
    is_param = lambda x: eqx.is_array(x) or isinstance(x, jax.ShapeDtypeStruct)  # noqa: E731
    return int(sum(x.size for x in jax.tree_util.tree_leaves(model) if is_param(x)))


def init_model(config: ModelConfig, seed: int) -> GTMM:
    """A freshly initialised GTMM, its parameters drawn on the host (`gtmm.init.host_init`):
    Equinox's default distributions, without compiling a random-number kernel per weight shape."""
    from gtmm.init import host_init

    return host_init(lambda key: GTMM(config, key=key), seed)
