"""The NTM memory of paper section 3.2 (Graves et al. 2014): content and location addressing, erase and add.

Every head, read or write, addresses the memory in four stages (Graves et al. 2014, section 3.3):
content focus with a key strength (their eq. 5-6), interpolation with the head's previous
weighting (eq. 7), a circular shift over {-1, 0, +1} (eq. 8) and sharpening with gamma >= 1
(eq. 9). Write heads then erase and add (eq. 3-4); read heads take a weighted sum (eq. 2).
Read and write heads are separate and keep their own previous weightings.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from gtmm.errors import GtmmError
from gtmm.memories.addressing import content_weights, erase_and_write, read_memory
from gtmm.memories.base import AbstractMemory, ControllerInput, interface_size, split_interface

SHIFTS = (-1, 0, 1)  # the allowed integer shifts, in the order of the shift distribution's entries


def interpolate(content: Float[Array, "heads slots"], previous: Float[Array, "heads slots"],
                gate: Float[Array, " heads"]) -> Float[Array, "heads slots"]:
    """w^g_t = g_t w^c_t + (1 - g_t) w_{t-1}, g in [0, 1]  (Graves et al. 2014, eq. 7)."""
    return gate[:, None] * content + (1 - gate[:, None]) * previous


def circular_shift(weights: Float[Array, "heads slots"], shift: Float[Array, "heads 3"]) -> Float[Array, "heads slots"]:
    """w~_t(i) = sum_j w^g_t(j) s_t(i - j mod N), s_t a distribution over {-1, 0, +1}  (eq. 8).

    s_t[2] (shift +1) moves weight from slot j to slot j + 1; indices wrap around.
    """
    return sum(shift[:, k, None] * jnp.roll(weights, offset, axis=-1) for k, offset in enumerate(SHIFTS))


def sharpen(weights: Float[Array, "heads slots"], gamma: Float[Array, " heads"]) -> Float[Array, "heads slots"]:
    """w_t(i) = w~_t(i)^gamma / sum_j w~_t(j)^gamma, gamma >= 1  (eq. 9).

    Computed as a softmax of gamma log w~ over the positive entries, so a large gamma cannot
    underflow every power to zero; zero entries stay exactly zero, an all-zero weighting stays
    all-zero, and neither value nor gradient (in w or gamma) is NaN. With gamma >= 1 the
    largest entry's share never falls: sharpening never flattens a weighting.
    """
    positive = weights > 0
    logits = gamma[:, None] * jnp.log(jnp.where(positive, weights, 1.0))
    top = jax.lax.stop_gradient(jnp.max(jnp.where(positive, logits, -jnp.inf), axis=-1, keepdims=True))
    powered = jnp.where(positive, jnp.exp(jnp.where(positive, logits - top, 0.0)), 0.0)
    total = jnp.sum(powered, axis=-1, keepdims=True)
    return powered / jnp.where(total > 0, total, 1.0)


def ntm_weights(memory: Float[Array, "slots word"], keys: Float[Array, "heads word"], strengths: Float[Array, " heads"],
                gate: Float[Array, " heads"], shift: Float[Array, "heads 3"], gamma: Float[Array, " heads"],
                previous: Float[Array, "heads slots"], top_k: int | None = None) -> Float[Array, "heads slots"]:
    """The NTM addressing pipeline: content focus -> interpolation -> shift -> sharpening (Fig. 2 of Graves et al.).

    `strengths` are raw (softplus inside `content_weights`); `gate` in [0, 1]; `shift` rows sum
    to one; `gamma` >= 1. Rows sum to at most one.
    """
    w = content_weights(memory, keys, strengths, top_k)
    w = interpolate(w, previous, gate)
    w = circular_shift(w, shift)
    return sharpen(w, gamma)


class NTMState(NamedTuple):
    h: Float[Array, " hidden"]  # controller LSTM state h_{t-1}
    c: Float[Array, " hidden"]
    reads: Float[Array, "reads word"]  # phi_{t-1}, fed back to the controller
    memory: Float[Array, "slots word"]  # M_{t-1}
    read_weights: Float[Array, "reads slots"]  # w^r_{t-1}
    write_weights: Float[Array, "writes slots"]  # w^w_{t-1}


def _head_shapes(heads: int, word: int) -> dict[str, tuple[int, ...]]:
    return {"keys": (heads, word), "strengths": (heads,), "gate": (heads,), "shift": (heads, len(SHIFTS)),
            "gamma": (heads,)}


class NTMMemory(AbstractMemory):
    """NTM-GTMM memory (paper section 3.2, eq. 13-16; Graves et al. 2014).

    (h_t, M_t) = f_rnn(h_{t-1}, M_{t-1}, z_{t-1}, c_t)             (eq. 13)
        h_t = LSTM(h_{t-1}, [z_{t-1}, c_t, phi_{t-1}]); the write heads' keys, gates, erase
        and add vectors are a linear map of h_t; M_t = erase-and-add(M_{t-1}).
    k^r_t = f_key(h_t)                                               (eq. 14)
    w^r_t = content focus -> interpolate -> shift -> sharpen        (eq. 15, NTM form)
    phi^r_t = w^r_t . M_t                                             (eq. 16)
    Psi = [phi^1, ..., phi^R, h_t].

    Reads follow this step's write (the NTM/DNC order); the word written at step t derives from
    z_{t-1}, so Psi holds only what was in memory before step t (paper Fig. 2). Every head's
    previous weighting starts on slot 0, so pure location addressing (gate 0, shift +1) walks
    through the memory one slot per step.
    """

    lstm: eqx.nn.LSTMCell
    interface: eqx.nn.Linear  # h_t -> all head parameters, unsquashed
    hidden_size: int = eqx.field(static=True)
    slots: int = eqx.field(static=True)
    read_heads: int = eqx.field(static=True)
    write_heads: int = eqx.field(static=True)
    word_size: int = eqx.field(static=True)
    context_size: int = eqx.field(static=True)
    top_k: int | None = eqx.field(static=True)
    content_addressed = True

    def __init__(self, *, latent_size: int, task_context_size: int, hidden_size: int, slots: int,
                 read_heads: int = 5, write_heads: int = 1, word_size: int | None = None, top_k: int | None = None,
                 key: PRNGKeyArray, **_: int):
        self.check_settings(slots=slots)
        self.top_k = top_k
        k1, k2 = jax.random.split(key)
        self.word_size = word_size or latent_size
        self.hidden_size, self.slots, self.read_heads, self.write_heads = hidden_size, slots, read_heads, write_heads
        self.lstm = eqx.nn.LSTMCell(latent_size + task_context_size + read_heads * self.word_size, hidden_size, key=k1)
        self.interface = eqx.nn.Linear(hidden_size, interface_size(self._interface_shapes()), key=k2)
        self.context_size = read_heads * self.word_size + hidden_size

    @classmethod
    def check_settings(cls, *, slots: int, **_: int) -> None:
        if slots < len(SHIFTS):
            raise GtmmError(f"ntm needs at least {len(SHIFTS)} memory slots for its shifts by -1, 0 and +1, "
                            f"got {slots}")

    def _interface_shapes(self) -> dict[str, tuple[int, ...]]:
        R, Wh, W = self.read_heads, self.write_heads, self.word_size
        read = {f"read_{k}": v for k, v in _head_shapes(R, W).items()}
        write = {f"write_{k}": v for k, v in _head_shapes(Wh, W).items()}
        return {**read, **write, "erase": (Wh, W), "add": (Wh, W)}

    def _addressing(self, p: dict, prefix: str, memory, previous):
        """Squash one kind of head's parameters (sigmoid gate, softmax shift, gamma = 1 + softplus) and address."""
        return ntm_weights(memory, p[f"{prefix}_keys"], p[f"{prefix}_strengths"], jax.nn.sigmoid(p[f"{prefix}_gate"]),
                           jax.nn.softmax(p[f"{prefix}_shift"], axis=-1), 1 + jax.nn.softplus(p[f"{prefix}_gamma"]),
                           previous, self.top_k)

    def initial_state(self) -> NTMState:
        zeros = jnp.zeros(self.hidden_size)
        on_first = lambda heads: jnp.zeros((heads, self.slots)).at[:, 0].set(1.0)  # noqa: E731
        return NTMState(zeros, zeros, jnp.zeros((self.read_heads, self.word_size)),
                        jnp.zeros((self.slots, self.word_size)), on_first(self.read_heads), on_first(self.write_heads))

    def __call__(self, inputs: ControllerInput, state: NTMState) -> tuple[Float[Array, " psi"], NTMState]:
        x = jnp.concatenate([inputs.latent, inputs.context, state.reads.reshape(-1)])
        h, c = self.lstm(x, (state.h, state.c))  # eq. 13
        p = split_interface(self.interface(h), self._interface_shapes())
        w_write = self._addressing(p, "write", state.memory, state.write_weights)
        memory = erase_and_write(state.memory, w_write, jax.nn.sigmoid(p["erase"]), p["add"])
        w_read = self._addressing(p, "read", memory, state.read_weights)  # eq. 14-15
        reads = read_memory(w_read, memory)  # eq. 16
        psi = jnp.concatenate([reads.reshape(-1), h])
        return psi, NTMState(h, c, reads, memory, w_read, w_write)
