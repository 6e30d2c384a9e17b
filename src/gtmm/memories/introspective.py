"""The introspective memory of paper section 3.1: a FIFO of the latents themselves, read by position."""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from gtmm.memories.base import AbstractMemory, ControllerInput, check_stores_latents

_EPSILON = 1e-6  # guards the attention normaliser


class IntrospectiveState(NamedTuple):
    h: Float[Array, " hidden"]  # controller LSTM state h_{t-1}
    c: Float[Array, " hidden"]
    store: Float[Array, "slots latent"]  # M_{t-1}
    writes: Int[Array, ""]  # steps taken so far; z_{n} sits in slot (n - 1) mod L


def fifo_write(store: Float[Array, "slots latent"], writes: Int[Array, ""],
               latent: Float[Array, " latent"]) -> Float[Array, "slots latent"]:
    """Write z_{t-1} into the next slot; once all L slots are full the oldest is overwritten.

    Nothing is written at the first step (there is no z_0).
    """
    slots = store.shape[0]
    slot = jnp.mod(writes - 1, slots)
    # Select within the one row, not over the whole store: O(latent) per step rather than O(slots x latent).
    return store.at[slot].set(jnp.where(writes > 0, latent, store[slot]))


def filled_slots(slots: int, writes: Int[Array, ""]) -> Bool[Array, " slots"]:
    """Which slots hold a latent: the first min(writes, L) after `fifo_write`."""
    return jnp.arange(slots) < jnp.minimum(writes, slots)


def normalised_attention(scores: Float[Array, "heads slots"], mask: Bool[Array, " slots"]) -> Float[Array, "heads slots"]:
    """w^r = k_r(h_t) / sum_u k_r(h_t)[u] over filled slots only (eq. 10); empty slots get 0.

    `scores` are the softplus outputs of the attention network (non-negative).
    """
    scores = jnp.where(mask, scores, 0.0)
    return scores / (jnp.sum(scores, axis=-1, keepdims=True) + _EPSILON)


class IntrospectiveMemory(AbstractMemory):
    """Introspective-GTMM memory (eq. 9-12).

    h_t = LSTM(h_{t-1}, [z_{t-1}, c_t])                       (eq. 9)
    w_t^r = f_att(h_t), ||w_t^r|| = 1, w_t^r[i] > 0           (eq. 10; softplus, then normalised)
    phi_t^r = w_t^r . M_{t-1}                                  (eq. 11)
    Psi_t^r = phi_t^r * sigmoid(g_{t-1}^r)                     (eq. 12; g from h_{t-1})
    Psi = [Psi^1, ..., Psi^R]. Nothing about writing is learned.
    With `context_with_controller` (not the paper's eq. 12): Psi = [Psi^1, ..., Psi^R, h_t], as the
    content memories' contexts (eq. 13-16), so the prior sees the controller state too.
    """

    lstm: eqx.nn.LSTMCell
    attention: eqx.nn.MLP  # k(h_t): a small feed-forward net, softplus outputs
    gate: eqx.nn.Linear  # g^r(h): per-head, per-dimension correction biases
    hidden_size: int = eqx.field(static=True)
    slots: int = eqx.field(static=True)
    read_heads: int = eqx.field(static=True)
    latent_size: int = eqx.field(static=True)
    context_size: int = eqx.field(static=True)
    context_with_controller: bool = eqx.field(static=True)

    def __init__(self, *, latent_size: int, task_context_size: int, hidden_size: int, slots: int,
                 read_heads: int = 5, attention_hidden: int = 128, context_with_controller: bool = False,
                 key: PRNGKeyArray, **_: int):
        k1, k2, k3 = jax.random.split(key, 3)
        self.lstm = eqx.nn.LSTMCell(latent_size + task_context_size, hidden_size, key=k1)
        self.attention = eqx.nn.MLP(hidden_size, read_heads * slots, attention_hidden, depth=2,
                                    activation=jax.nn.relu, final_activation=jax.nn.softplus, key=k2)
        self.gate = eqx.nn.Linear(hidden_size, read_heads * latent_size, key=k3)
        self.hidden_size, self.slots, self.read_heads, self.latent_size = hidden_size, slots, read_heads, latent_size
        self.context_with_controller = context_with_controller
        self.context_size = read_heads * latent_size + (hidden_size if context_with_controller else 0)

    @classmethod
    def check_settings(cls, *, word_size: int | None, latent_size: int, **_: int) -> None:
        check_stores_latents("introspective", word_size=word_size, latent_size=latent_size)

    def initial_state(self) -> IntrospectiveState:
        zeros = jnp.zeros(self.hidden_size)
        return IntrospectiveState(zeros, zeros, jnp.zeros((self.slots, self.latent_size)), jnp.array(0, jnp.int32))

    def read_weights_after(self, state: IntrospectiveState) -> Float[Array, "heads slots"]:
        # the step read with its new h over the slots filled before its write (eq. 10)
        return self.read_weights(state.h, state.writes - 1)

    def read_weights(self, h: Float[Array, " hidden"], writes: Int[Array, ""]) -> Float[Array, "heads slots"]:
        scores = self.attention(h).reshape(self.read_heads, self.slots)
        return normalised_attention(scores, filled_slots(self.slots, writes))

    def __call__(self, inputs: ControllerInput, state: IntrospectiveState) -> tuple[Float[Array, " psi"], IntrospectiveState]:
        store = fifo_write(state.store, state.writes, inputs.latent)
        h, c = self.lstm(jnp.concatenate([inputs.latent, inputs.context]), (state.h, state.c))
        weights = self.read_weights(h, state.writes)
        reads = weights @ store  # eq. 11
        gates = jax.nn.sigmoid(self.gate(state.h)).reshape(self.read_heads, self.latent_size)
        psi = (reads * gates).reshape(-1)  # eq. 12
        if self.context_with_controller:
            psi = jnp.concatenate([psi, h])
        return psi, IntrospectiveState(h, c, store, state.writes + 1)
