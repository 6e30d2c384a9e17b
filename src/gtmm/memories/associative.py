"""The associative-introspective memory: the combined model the paper's conclusion proposes.

The paper ends (section 6) by noting that no single memory wins every task: the introspective
memory, which stores the latents themselves, learns fastest, while content-addressed memories win
similarity-cued recall and the maze. This memory keeps the introspective FIFO of latents (nothing
about writing is learned) and reads it with heads that mix three ways of addressing:

- by position: the introspective attention, softplus scores normalised over filled slots (eq. 10);
- by content: a key from the controller compared, by cosine similarity with a learned strength,
  with a learned projection of every stored latent (the comparison of eq. 15, masked to filled
  slots);
- by temporal succession: the slot after the one the head read last step, so a cue found by
  content can be followed forward in time (what similarity-cued recall needs).

Per head, a softmax over the three modes, computed from the controller state, mixes them:
w_t^r = pi_pos w_pos + pi_content w_content + pi_next w_next. The read and its gate are the
introspective model's (eq. 11-12); Psi = [gated reads].
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from gtmm.errors import GtmmError
from gtmm.memories.addressing import cosine_similarity, sparse_softmax
from gtmm.memories.base import AbstractMemory, ControllerInput
from gtmm.memories.introspective import filled_slots, fifo_write, normalised_attention

MODES = ("position", "content", "next")


class AssociativeState(NamedTuple):
    h: Float[Array, " hidden"]  # controller LSTM state h_{t-1}
    c: Float[Array, " hidden"]
    store: Float[Array, "slots latent"]  # M_{t-1}: the latents themselves, as the introspective memory
    writes: Int[Array, ""]  # steps taken so far; z_n sits in slot (n - 1) mod L
    weights: Float[Array, "heads slots"]  # w_{t-1}: what each head read last step


def masked_content_weights(keys: Float[Array, "heads key"], stored: Float[Array, "slots key"],
                           strengths: Float[Array, " heads"], mask: Bool[Array, " slots"],
                           top_k: int | None = None) -> Float[Array, "heads slots"]:
    """softmax over filled slots of beta * cos(k, P z_i); empty slots get exactly 0, and with no
    filled slot every weight is 0 (beta already positive). With `top_k`, only the k most similar
    filled slots of each head get weight."""
    logits = jnp.where(mask, strengths[:, None] * cosine_similarity(stored, keys), -jnp.inf)
    safe = jnp.where(jnp.any(mask), logits, 0.0)  # all -inf would give NaN in the softmax
    if top_k is not None and top_k < stored.shape[0]:
        return jnp.where(mask, sparse_softmax(safe, top_k), 0.0)
    return jnp.where(mask, jax.nn.softmax(safe, axis=-1), 0.0)


def successor_weights(previous: Float[Array, "heads slots"], mask: Bool[Array, " slots"]) -> Float[Array, "heads slots"]:
    """Move each head's last weighting one slot forward in time: slot i -> slot (i + 1) mod L,
    restricted to filled slots.

    In the FIFO, slot (i + 1) mod L always holds the latent written right after the one slot i held
    when it was read (before the memory is full the newest slot follows the one before it; once
    it wraps, the slot just overwritten followed the previous newest, and the oldest follows the
    one overwritten), so the roll needs no special case.
    """
    return jnp.roll(previous, 1, axis=-1) * mask


class AssociativeMemory(AbstractMemory):
    """A FIFO of latents read by position, by content and by temporal succession (see module docstring).

    h_t = LSTM(h_{t-1}, [z_{t-1}, c_t])                                    (eq. 9)
    w_pos = k(h_t) / sum_u k(h_t)[u] over filled slots                     (eq. 10)
    w_content = softmax_i(beta * cos(key(h_t), P z_i)) over filled slots   (eq. 15's comparison)
    w_next[i] = w_{t-1}[i - 1]                                             (temporal succession)
    w_t = pi_pos w_pos + pi_content w_content + pi_next w_next, pi = softmax(f_pi(h_t))
    Psi_t^r = (w_t^r . M_{t-1}) * sigmoid(g^r(h_{t-1}))                    (eq. 11-12)
    """

    lstm: eqx.nn.LSTMCell
    attention: eqx.nn.MLP  # k(h_t), softplus outputs (position)
    keys: eqx.nn.Linear  # h_t -> R keys and R raw strengths (content)
    projection: eqx.nn.Linear  # P: a stored latent -> the space keys are compared in
    mixture: eqx.nn.Linear  # h_t -> R x 3 mode logits
    gate: eqx.nn.Linear  # g^r(h_{t-1}) (eq. 12)
    hidden_size: int = eqx.field(static=True)
    slots: int = eqx.field(static=True)
    read_heads: int = eqx.field(static=True)
    latent_size: int = eqx.field(static=True)
    key_size: int = eqx.field(static=True)
    context_size: int = eqx.field(static=True)
    top_k: int | None = eqx.field(static=True)
    content_addressed = True

    def __init__(self, *, latent_size: int, task_context_size: int, hidden_size: int, slots: int,
                 read_heads: int = 5, attention_hidden: int = 128, top_k: int | None = None, key: PRNGKeyArray,
                 **_: int):
        self.top_k = top_k
        k = jax.random.split(key, 6)
        self.key_size = latent_size
        self.lstm = eqx.nn.LSTMCell(latent_size + task_context_size, hidden_size, key=k[0])
        self.attention = eqx.nn.MLP(hidden_size, read_heads * slots, attention_hidden, depth=2,
                                    activation=jax.nn.relu, final_activation=jax.nn.softplus, key=k[1])
        self.keys = eqx.nn.Linear(hidden_size, read_heads * (self.key_size + 1), key=k[2])
        self.projection = eqx.nn.Linear(latent_size, self.key_size, use_bias=False, key=k[3])
        self.mixture = eqx.nn.Linear(hidden_size, read_heads * len(MODES), key=k[4])
        self.gate = eqx.nn.Linear(hidden_size, read_heads * latent_size, key=k[5])
        self.hidden_size, self.slots, self.read_heads, self.latent_size = hidden_size, slots, read_heads, latent_size
        self.context_size = read_heads * latent_size

    @classmethod
    def check_settings(cls, *, word_size: int | None, latent_size: int, **_: int) -> None:
        if word_size != latent_size:
            raise GtmmError(f"associative stores the latents themselves, so its word size is the latent size "
                            f"({latent_size}), not {word_size}")

    def initial_state(self) -> AssociativeState:
        zeros = jnp.zeros(self.hidden_size)
        return AssociativeState(zeros, zeros, jnp.zeros((self.slots, self.latent_size)), jnp.array(0, jnp.int32),
                                jnp.zeros((self.read_heads, self.slots)))

    def mode_weights(self, h: Float[Array, " hidden"], store: Float[Array, "slots latent"], writes: Int[Array, ""],
                     previous: Float[Array, "heads slots"]) -> Float[Array, "modes heads slots"]:
        """The three weightings of every head, before mixing: position, content, next."""
        mask = filled_slots(self.slots, writes)
        position = normalised_attention(self.attention(h).reshape(self.read_heads, self.slots), mask)
        out = self.keys(h).reshape(self.read_heads, self.key_size + 1)
        stored = jax.vmap(self.projection)(store)
        content = masked_content_weights(out[:, :-1], stored, jax.nn.softplus(out[:, -1]), mask, self.top_k)
        following = successor_weights(previous, mask)
        return jnp.stack([position, content, following])

    def read_weights(self, h: Float[Array, " hidden"], store: Float[Array, "slots latent"], writes: Int[Array, ""],
                     previous: Float[Array, "heads slots"]) -> Float[Array, "heads slots"]:
        modes = self.mode_weights(h, store, writes, previous)
        pi = jax.nn.softmax(self.mixture(h).reshape(self.read_heads, len(MODES)), axis=-1)  # [heads, modes]
        return jnp.einsum("hm,mhs->hs", pi, modes)

    def __call__(self, inputs: ControllerInput, state: AssociativeState) -> tuple[Float[Array, " psi"], AssociativeState]:
        store = fifo_write(state.store, state.writes, inputs.latent)
        h, c = self.lstm(jnp.concatenate([inputs.latent, inputs.context]), (state.h, state.c))
        # `state.writes` latents are stored after this step's write (z_1 .. z_{t-1}).
        weights = self.read_weights(h, store, state.writes, state.weights)
        reads = weights @ store  # eq. 11
        gates = jax.nn.sigmoid(self.gate(state.h)).reshape(self.read_heads, self.latent_size)
        psi = (reads * gates).reshape(-1)  # eq. 12
        return psi, AssociativeState(h, c, store, state.writes + 1, weights)
