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
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from gtmm.errors import GtmmError
from gtmm.memories.addressing import content_weights, erase_and_write, read_memory
from gtmm.memories.base import ControllerInput, InterfaceMemory, interface_offsets

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


def walk_forward_bias(bias: Float[Array, " interface"], offsets: dict[str, tuple[int, tuple[int, ...]]],
                      prefix: str, strength: float) -> Float[Array, " interface"]:
    """Interface biases that start `prefix` heads walking forward by location: gate -b (keep the
    previous weighting, eq. 7) and shift logits (0, 0, b) (move by +1, eq. 8). At b = 3 the gate
    is sigmoid(-3) = 0.05 and the shift +1 has probability e^3 / (e^3 + 2) = 0.91.
    """
    start, shape = offsets[f"{prefix}_gate"]
    bias = bias.at[start:start + shape[0]].set(-strength)
    start, shape = offsets[f"{prefix}_shift"]
    shift = jnp.zeros(shape).at[:, SHIFTS.index(1)].set(strength)
    return bias.at[start:start + shift.size].set(shift.reshape(-1))


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


class NTMMemory(InterfaceMemory):
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
    through the memory one slot per step. `walk_bias` b > 0 (not in the papers; ModelConfig.ntm_walk_bias)
    starts the write heads doing so (`walk_forward_bias`).
    """

    write_heads: int = eqx.field(static=True)
    walk_bias: float = eqx.field(static=True, default=0.0)

    def __init__(self, *, latent_size: int, task_context_size: int, hidden_size: int, slots: int,
                 read_heads: int = 5, write_heads: int = 1, word_size: int | None = None, top_k: int | None = None,
                 walk_bias: float = 0.0, key: PRNGKeyArray, **_: int):
        self.check_settings(slots=slots)
        self.write_heads = write_heads
        self._build_controller(latent_size=latent_size, task_context_size=task_context_size,
                               hidden_size=hidden_size, slots=slots, read_heads=read_heads,
                               word_size=word_size, top_k=top_k, key=key)
        self.walk_bias = walk_bias
        self.interface = self._walking(self.interface)

    def _walking(self, interface: eqx.nn.Linear) -> eqx.nn.Linear:
        if not self.walk_bias:
            return interface
        return eqx.tree_at(lambda lin: lin.bias, interface, walk_forward_bias(
            interface.bias, interface_offsets(self._interface_shapes()), "write", self.walk_bias))

    def host_init(self, rng: np.random.Generator) -> "NTMMemory":
        """`gtmm.init`'s host initialisation, then the walk bias (as the constructor applies it)."""
        from gtmm.init import fill_layers

        filled = fill_layers(self, rng)
        return eqx.tree_at(lambda m: m.interface, filled, self._walking(filled.interface))

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

    def read_weights_after(self, state) -> Float[Array, "heads slots"]:
        return state.read_weights

    def initial_state(self) -> NTMState:
        zeros = jnp.zeros(self.hidden_size)
        on_first = lambda heads: jnp.zeros((heads, self.slots)).at[:, 0].set(1.0)  # noqa: E731
        return NTMState(zeros, zeros, jnp.zeros((self.read_heads, self.word_size)),
                        jnp.zeros((self.slots, self.word_size)), on_first(self.read_heads), on_first(self.write_heads))

    def __call__(self, inputs: ControllerInput, state: NTMState) -> tuple[Float[Array, " psi"], NTMState]:
        x = jnp.concatenate([inputs.latent, inputs.context, state.reads.reshape(-1)])
        h, c = self.lstm(x, (state.h, state.c))  # eq. 13
        p = self._interface(h)
        w_write = self._addressing(p, "write", state.memory, state.write_weights)
        memory = erase_and_write(state.memory, w_write, jax.nn.sigmoid(p["erase"]), p["add"])
        w_read = self._addressing(p, "read", memory, state.read_weights)  # eq. 14-15
        reads = read_memory(w_read, memory)  # eq. 16
        psi = jnp.concatenate([reads.reshape(-1), h])
        return psi, NTMState(h, c, reads, memory, w_read, w_write)
