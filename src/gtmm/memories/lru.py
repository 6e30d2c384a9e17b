"""The LRU memory of paper section 3.2: least-recently-used access (Santoro et al. 2016, section 3.2).

Reads are purely content-based (cosine similarity). Writes go either to the slot a head read
at the previous step or to a least-used slot, mixed by a learned sigmoid gate; usage decays by
gamma and grows with every read and write. The least-used slot is cleared before writing. There
is one write head per read head (paper section 4.1), and head i writes to the i-th least-used
slot, as in the widely used Theano implementation (tristandeleu/ntm-one-shot); the paper gives
LRU-GTMM 5 T slots because so many heads fill a small memory quickly (`ModelConfig.resolved`
chooses that count, so `gtmm info` and config.json show the true one).
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from gtmm.errors import GtmmError
from gtmm.memories.addressing import content_weights, read_memory
from gtmm.memories.base import ControllerInput, InterfaceMemory

USAGE_DECAY = 0.95  # gamma, as in tristandeleu/ntm-one-shot; Santoro et al. leave it open


def least_used_weights(usage: Float[Array, " slots"], heads: int) -> Float[Array, "heads slots"]:
    """w^lu: row i is one-hot on the i-th least-used slot (ties in slot order).

    The rows' sum is Santoro et al.'s w^lu_t(i) = 1 if w^u_t(i) <= m(w^u_t, n) else 0, with n
    the number of heads. A hard choice: no gradient flows through it.
    """
    order = jnp.argsort(jax.lax.stop_gradient(usage), stable=True)[:heads]
    return jax.nn.one_hot(order, usage.shape[0], dtype=usage.dtype)


def lru_write_weights(prev_read_weights: Float[Array, "heads slots"], least_used: Float[Array, "heads slots"],
                      write_gate: Float[Array, " heads"]) -> Float[Array, "heads slots"]:
    """w^w_t = sigma(alpha) w^r_{t-1} + (1 - sigma(alpha)) w^lu_{t-1}  (Santoro et al. 2016)."""
    return write_gate[:, None] * prev_read_weights + (1 - write_gate[:, None]) * least_used


def clear_least_used(memory: Float[Array, "slots word"],
                     least_used: Float[Array, "heads slots"]) -> Float[Array, "slots word"]:
    """M_{t-1}(i) <- 0 for the least-used slot i (row 0 of w^lu_{t-1}), before writing (Santoro et al. 2016)."""
    return memory * (1 - least_used[0])[:, None]


def lru_write(memory: Float[Array, "slots word"], write_weights: Float[Array, "heads slots"],
              values: Float[Array, "heads word"]) -> Float[Array, "slots word"]:
    """M_t(i) = M_{t-1}(i) + sum_h w^w_{t,h}(i) a_{t,h}  (Santoro et al. 2016; additive, no erase)."""
    return memory + write_weights.T @ values


def lru_usage(prev_usage: Float[Array, " slots"], read_weights: Float[Array, "heads slots"],
              write_weights: Float[Array, "heads slots"], decay: float = USAGE_DECAY) -> Float[Array, " slots"]:
    """w^u_t = gamma w^u_{t-1} + sum_h w^r_{t,h} + sum_h w^w_{t,h}  (Santoro et al. 2016)."""
    return decay * prev_usage + jnp.sum(read_weights, axis=0) + jnp.sum(write_weights, axis=0)


class LRUState(NamedTuple):
    h: Float[Array, " hidden"]  # controller LSTM state h_{t-1}
    c: Float[Array, " hidden"]
    reads: Float[Array, "heads word"]  # phi_{t-1}, fed back to the controller
    memory: Float[Array, "slots word"]  # M_{t-1}
    read_weights: Float[Array, "heads slots"]  # w^r_{t-1}
    usage: Float[Array, " slots"]  # w^u_{t-1}


class LRUMemory(InterfaceMemory):
    """LRU-GTMM memory (paper section 3.2, eq. 13-16; Santoro et al. 2016).

    (h_t, M_t) = f_rnn(h_{t-1}, M_{t-1}, z_{t-1}, c_t)             (eq. 13)
        h_t = LSTM(h_{t-1}, [z_{t-1}, c_t, phi_{t-1}]); per head a write gate alpha and a word
        a_t (a linear map of h_t); w^lu from w^u_{t-1}; clear, then M_t = M_{t-1} + w^w a^T.
    k^r_t = f_key(h_t)                                               (eq. 14)
    w^r_t = softmax(softplus(beta) K(k^r_t, M_t))                   (eq. 15, cosine K)
    phi^r_t = w^r_t . M_t                                             (eq. 16)
    Psi = [phi^1, ..., phi^R, h_t].

    Reads follow this step's write (as in Santoro et al.); the written word derives from
    z_{t-1}, so Psi holds only what was in memory before step t (paper Fig. 2).
    Differences from Santoro et al.: a separate word a_t is written rather than the read key
    (here reading and writing serve different steps), and each read key has a learned strength
    beta (their softmax has none; cosine similarities in [-1, 1] give flat weights over 5 T slots).
    """

    usage_decay: float = eqx.field(static=True)

    def __init__(self, *, latent_size: int, task_context_size: int, hidden_size: int, slots: int,
                 read_heads: int = 5, word_size: int | None = None, usage_decay: float = USAGE_DECAY,
                 top_k: int | None = None, key: PRNGKeyArray, **_: int):
        self.check_settings(slots=slots, read_heads=read_heads)
        self.usage_decay = usage_decay
        self._build_controller(latent_size=latent_size, task_context_size=task_context_size,
                               hidden_size=hidden_size, slots=slots, read_heads=read_heads,
                               word_size=word_size, top_k=top_k, key=key)

    @classmethod
    def default_slots(cls, sequence_length: int) -> int:
        """5 T: the paper's LRU-GTMM count (section 4.1), since every step writes with R heads."""
        return 5 * sequence_length

    @classmethod
    def check_settings(cls, *, slots: int, read_heads: int, **_: int) -> None:
        if slots < read_heads:
            raise GtmmError(f"lru needs at least one memory slot per head: slots ({slots}) must be at least "
                            f"read heads ({read_heads})")

    def _interface_shapes(self) -> dict[str, tuple[int, ...]]:
        R, W = self.read_heads, self.word_size
        return {"keys": (R, W), "strengths": (R,), "write_gate": (R,), "values": (R, W)}

    def read_weights_after(self, state) -> Float[Array, "heads slots"]:
        return state.read_weights

    def initial_state(self) -> LRUState:
        zeros = jnp.zeros(self.hidden_size)
        return LRUState(zeros, zeros, jnp.zeros((self.read_heads, self.word_size)),
                        jnp.zeros((self.slots, self.word_size)), jnp.zeros((self.read_heads, self.slots)),
                        jnp.zeros(self.slots))

    def __call__(self, inputs: ControllerInput, state: LRUState) -> tuple[Float[Array, " psi"], LRUState]:
        x = jnp.concatenate([inputs.latent, inputs.context, state.reads.reshape(-1)])
        h, c = self.lstm(x, (state.h, state.c))  # eq. 13
        p = self._interface(h)
        least_used = least_used_weights(state.usage, self.read_heads)
        w_write = lru_write_weights(state.read_weights, least_used, jax.nn.sigmoid(p["write_gate"]))
        memory = lru_write(clear_least_used(state.memory, least_used), w_write, p["values"])
        w_read = content_weights(memory, p["keys"], p["strengths"], self.top_k)  # eq. 14-15
        reads = read_memory(w_read, memory)  # eq. 16
        usage = lru_usage(state.usage, w_read, w_write, self.usage_decay)
        psi = jnp.concatenate([reads.reshape(-1), h])
        return psi, LRUState(h, c, reads, memory, w_read, usage)
