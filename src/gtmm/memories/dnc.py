"""The DNC memory of paper section 3.2 (Graves et al. 2016): content, usage/allocation and temporal links.

The addressing functions below follow DeepMind's reference implementation (github
deepmind/dnc, `dnc/addressing.py` and `dnc/access.py`) formula for formula, including its
epsilon conventions: `_EPSILON = 1e-6` inside every norm and cosine denominator, usage mapped to
`eps + (1 - eps) u` before the sort of the allocation, and `stop_gradient` on the write weights
in the usage update. `tests/test_addressing.py` checks them against a NumPy port of that file.
The reference works on a batch; these functions work on one sequence (the model vmaps), so
`[batch_size, num_writes, memory_size]` there is `[writes, slots]` here.

Symbols: N slots, W word size, R read heads, `writes` write heads (1 in the DNC paper).
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from gtmm.memories.addressing import _EPSILON, content_weights, erase_and_write, read_memory
from gtmm.memories.base import AbstractMemory, ControllerInput, interface_size, split_interface


class TemporalLinkageState(NamedTuple):
    link: Float[Array, "writes slots slots"]  # L_t[i, j]: how much slot i was written right after slot j
    precedence_weights: Float[Array, "writes slots"]  # p_t: how much each slot was the last one written


class AccessState(NamedTuple):
    memory: Float[Array, "slots word"]  # M_t
    read_weights: Float[Array, "reads slots"]  # w^r_t
    write_weights: Float[Array, "writes slots"]  # w^w_t
    linkage: TemporalLinkageState
    usage: Float[Array, " slots"]  # u_t in [0, 1]


class DNCInterface(NamedTuple):
    """The controller's instructions for one step, already squashed (reference `_read_inputs`)."""

    read_keys: Float[Array, "reads word"]  # k^r
    read_strengths: Float[Array, " reads"]  # raw beta^r; softplus inside `content_weights`
    write_keys: Float[Array, "writes word"]  # k^w
    write_strengths: Float[Array, " writes"]  # raw beta^w
    write_vectors: Float[Array, "writes word"]  # v_t
    erase_vectors: Float[Array, "writes word"]  # e_t in [0, 1]
    free_gate: Float[Array, " reads"]  # f_t in [0, 1]
    allocation_gate: Float[Array, " writes"]  # g^a_t in [0, 1]
    write_gate: Float[Array, " writes"]  # g^w_t in [0, 1]
    read_mode: Float[Array, "reads modes"]  # pi_t: [backward per write head, forward per write head, content]


# ---------------------------------------------------------------- usage and allocation (`Freeness`)

def usage_after_write(prev_usage: Float[Array, " slots"],
                      write_weights: Float[Array, "writes slots"]) -> Float[Array, " slots"]:
    """u' = u_{t-1} + (1 - u_{t-1}) * (1 - prod_i (1 - w^w_i))  (reference `_usage_after_write`)."""
    written = 1 - jnp.prod(1 - write_weights, axis=0)
    return prev_usage + (1 - prev_usage) * written


def usage_after_read(prev_usage: Float[Array, " slots"], free_gate: Float[Array, " reads"],
                     read_weights: Float[Array, "reads slots"]) -> Float[Array, " slots"]:
    """u_t = u' * psi_t,  psi_t = prod_r (1 - f^r w^r_{t-1})  (reference `_usage_after_read`)."""
    retention = jnp.prod(1 - free_gate[:, None] * read_weights, axis=0)
    return prev_usage * retention


def updated_usage(write_weights: Float[Array, "writes slots"], free_gate: Float[Array, " reads"],
                  read_weights: Float[Array, "reads slots"],
                  prev_usage: Float[Array, " slots"]) -> Float[Array, " slots"]:
    """u_t = (u_{t-1} + (1 - u_{t-1}) w^w_{t-1}) * psi_t  (reference `Freeness._build`).

    As in the reference, no gradient flows from the usage into the previous write weights
    (`tf.stop_gradient`); it does flow into the free gates and the previous read weights.
    """
    write_weights = jax.lax.stop_gradient(write_weights)
    return usage_after_read(usage_after_write(prev_usage, write_weights), free_gate, read_weights)


def allocation_weights(usage: Float[Array, " slots"]) -> Float[Array, " slots"]:
    """a_t[phi_t[j]] = (1 - u_t[phi_t[j]]) prod_{i<j} u_t[phi_t[i]], phi_t = slots by increasing usage
    (reference `Freeness._allocation`).

    Usage is first mapped to eps + (1 - eps) u so no factor of the product is exactly zero. The
    sort is by decreasing non-usage with ties in slot order, as `tf.nn.top_k` breaks them; the
    gradient flows through the sorted values, not the order. Sums to at most one.
    """
    usage = _EPSILON + (1 - _EPSILON) * usage
    nonusage = 1 - usage
    order = jnp.argsort(-nonusage, stable=True)
    sorted_nonusage = nonusage[order]
    sorted_usage = 1 - sorted_nonusage
    prod_sorted_usage = jnp.cumprod(jnp.concatenate([jnp.ones(1, usage.dtype), sorted_usage[:-1]]))  # exclusive
    sorted_allocation = sorted_nonusage * prod_sorted_usage
    return jnp.zeros_like(usage).at[order].set(sorted_allocation)


def write_allocation_weights(usage: Float[Array, " slots"],
                             write_gates: Float[Array, " writes"]) -> Float[Array, "writes slots"]:
    """a^i_t = allocation(u^i),  u^{i+1} = u^i + (1 - u^i) g^i a^i_t,  u^0 = u_t
    (reference `Freeness.write_allocation_weights`).

    Each write head allocates against the usage the earlier heads would leave behind;
    `write_gates` is g^a g^w per head. Not yet scaled by the write gate.
    """
    weights = []
    for i in range(write_gates.shape[0]):
        weights.append(allocation_weights(usage))
        usage = usage + (1 - usage) * write_gates[i] * weights[i]
    return jnp.stack(weights)


def write_weights(write_content_weights: Float[Array, "writes slots"], allocation: Float[Array, "writes slots"],
                  allocation_gate: Float[Array, " writes"],
                  write_gate: Float[Array, " writes"]) -> Float[Array, "writes slots"]:
    """w^w_t = g^w (g^a a_t + (1 - g^a) c^w_t)  (reference `MemoryAccess._write_weights`)."""
    g_a, g_w = allocation_gate[:, None], write_gate[:, None]
    return g_w * (g_a * allocation + (1 - g_a) * write_content_weights)


# ---------------------------------------------------------------- temporal links (`TemporalLinkage`)

def updated_link(prev_link: Float[Array, "writes slots slots"], prev_precedence_weights: Float[Array, "writes slots"],
                 write_weights: Float[Array, "writes slots"]) -> Float[Array, "writes slots slots"]:
    """L_t[i, j] = (1 - w_t[i] - w_t[j]) L_{t-1}[i, j] + w_t[i] p_{t-1}[j],  L_t[i, i] = 0
    (reference `TemporalLinkage._link`)."""
    w_i = write_weights[:, :, None]
    w_j = write_weights[:, None, :]
    link = (1 - w_i - w_j) * prev_link + w_i * prev_precedence_weights[:, None, :]
    return link * (1 - jnp.eye(link.shape[-1], dtype=link.dtype))


def updated_precedence(prev_precedence_weights: Float[Array, "writes slots"],
                       write_weights: Float[Array, "writes slots"]) -> Float[Array, "writes slots"]:
    """p_t = (1 - sum_i w_t[i]) p_{t-1} + w_t  (reference `TemporalLinkage._precedence_weights`)."""
    return (1 - jnp.sum(write_weights, axis=-1, keepdims=True)) * prev_precedence_weights + write_weights


def updated_linkage(write_weights: Float[Array, "writes slots"], prev: TemporalLinkageState) -> TemporalLinkageState:
    """The link from the previous precedence, then the new precedence (reference `TemporalLinkage._build`)."""
    return TemporalLinkageState(updated_link(prev.link, prev.precedence_weights, write_weights),
                                updated_precedence(prev.precedence_weights, write_weights))


def directional_read_weights(link: Float[Array, "writes slots slots"], prev_read_weights: Float[Array, "reads slots"],
                             forward: bool) -> Float[Array, "reads writes slots"]:
    """f_t = L_t w^r_{t-1} (forward), b_t = L_t^T w^r_{t-1} (backward), per read and write head
    (reference `TemporalLinkage.directional_read_weights`)."""
    if forward:
        return jnp.einsum("rj,wij->rwi", prev_read_weights, link)
    return jnp.einsum("rj,wji->rwi", prev_read_weights, link)


def read_weights(content: Float[Array, "reads slots"], forward: Float[Array, "reads writes slots"],
                 backward: Float[Array, "reads writes slots"],
                 read_mode: Float[Array, "reads modes"]) -> Float[Array, "reads slots"]:
    """w^r_t = pi[content] c^r_t + sum_i pi[forward_i] f^i_t + sum_i pi[backward_i] b^i_t
    (reference `MemoryAccess._read_weights`; modes ordered backward, forward, content)."""
    writes = forward.shape[1]
    backward_mode = read_mode[:, :writes]
    forward_mode = read_mode[:, writes:2 * writes]
    content_mode = read_mode[:, 2 * writes]
    return (content_mode[:, None] * content + jnp.sum(forward_mode[:, :, None] * forward, axis=1)
            + jnp.sum(backward_mode[:, :, None] * backward, axis=1))


# ---------------------------------------------------------------- one access step (`MemoryAccess._build`)

def access_step(interface: DNCInterface, prev: AccessState,
                top_k: int | None = None) -> tuple[Float[Array, "reads word"], AccessState]:
    """Free, allocate and write, link, then read the memory just written (reference `MemoryAccess._build`).

    1. u_t from the previous write and read weights and the free gates;
    2. w^w_t from content (on M_{t-1}) and allocation (on u_t);
    3. M_t = erase-and-write(M_{t-1});  4. L_t, p_t;
    5. w^r_t from content on M_t and the links from w^r_{t-1};  6. reads phi^r_t = w^r_t M_t (eq. 16).
    """
    usage = updated_usage(prev.write_weights, interface.free_gate, prev.read_weights, prev.usage)
    write_content = content_weights(prev.memory, interface.write_keys, interface.write_strengths, top_k)
    allocation = write_allocation_weights(usage, interface.allocation_gate * interface.write_gate)
    w_write = write_weights(write_content, allocation, interface.allocation_gate, interface.write_gate)
    memory = erase_and_write(prev.memory, w_write, interface.erase_vectors, interface.write_vectors)
    linkage = updated_linkage(w_write, prev.linkage)
    w_read = read_weights(content_weights(memory, interface.read_keys, interface.read_strengths, top_k),
                          directional_read_weights(linkage.link, prev.read_weights, forward=True),
                          directional_read_weights(linkage.link, prev.read_weights, forward=False),
                          interface.read_mode)
    return read_memory(w_read, memory), AccessState(memory, w_read, w_write, linkage, usage)


def initial_access_state(slots: int, word_size: int, read_heads: int, write_heads: int) -> AccessState:
    """Empty memory, no reads or writes yet, no links, zero usage."""
    return AccessState(
        memory=jnp.zeros((slots, word_size)),
        read_weights=jnp.zeros((read_heads, slots)),
        write_weights=jnp.zeros((write_heads, slots)),
        linkage=TemporalLinkageState(jnp.zeros((write_heads, slots, slots)), jnp.zeros((write_heads, slots))),
        usage=jnp.zeros(slots),
    )


# ---------------------------------------------------------------- the memory system

class DNCState(NamedTuple):
    h: Float[Array, " hidden"]  # controller LSTM state h_{t-1}
    c: Float[Array, " hidden"]
    reads: Float[Array, "reads word"]  # phi_{t-1}, fed back to the controller
    access: AccessState


class DNCMemory(AbstractMemory):
    """DNC-GTMM memory (paper section 3.2, eq. 13-16; Graves et al. 2016).

    (h_t, M_t) = f_rnn(h_{t-1}, M_{t-1}, z_{t-1}, c_t)            (eq. 13)
        h_t = LSTM(h_{t-1}, [z_{t-1}, c_t, phi_{t-1}]); the interface (keys, gates, the word
        to write) is a linear map of h_t; M_t = M_{t-1} after freeing, allocating and writing.
    k^r_t = f_key(h_t)                                              (eq. 14)
    w^r_t: content (cosine, eq. 15) mixed with forward/backward links
    phi^r_t = w^r_t . M_t                                            (eq. 16)
    Psi = [phi^1, ..., phi^R, h_t].

    Reads come after this step's write, as in the DNC (the reference's `MemoryAccess`): the
    word written at step t is derived from z_{t-1}, so Psi still holds only what was in memory
    before step t (paper Fig. 2), and z_{t-1} is readable at once.
    """

    lstm: eqx.nn.LSTMCell
    interface: eqx.nn.Linear  # h_t -> every instruction of `DNCInterface`, unsquashed
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
        self.top_k = top_k
        k1, k2 = jax.random.split(key)
        self.word_size = word_size or latent_size
        self.hidden_size, self.slots, self.read_heads, self.write_heads = hidden_size, slots, read_heads, write_heads
        self.lstm = eqx.nn.LSTMCell(latent_size + task_context_size + read_heads * self.word_size, hidden_size, key=k1)
        self.interface = eqx.nn.Linear(hidden_size, interface_size(self._interface_shapes()), key=k2)
        self.context_size = read_heads * self.word_size + hidden_size

    def _interface_shapes(self) -> dict[str, tuple[int, ...]]:
        R, Wh, W = self.read_heads, self.write_heads, self.word_size
        return {"read_keys": (R, W), "read_strengths": (R,), "write_keys": (Wh, W), "write_strengths": (Wh,),
                "write_vectors": (Wh, W), "erase_vectors": (Wh, W), "free_gate": (R,), "allocation_gate": (Wh,),
                "write_gate": (Wh,), "read_mode": (R, 1 + 2 * Wh)}

    def interface_from(self, h: Float[Array, " hidden"]) -> DNCInterface:
        """Squash the controller's outputs as the reference does: sigmoid gates, softmax read modes."""
        p = split_interface(self.interface(h), self._interface_shapes())
        sig = jax.nn.sigmoid
        return DNCInterface(
            read_keys=p["read_keys"], read_strengths=p["read_strengths"], write_keys=p["write_keys"],
            write_strengths=p["write_strengths"], write_vectors=p["write_vectors"],
            erase_vectors=sig(p["erase_vectors"]), free_gate=sig(p["free_gate"]),
            allocation_gate=sig(p["allocation_gate"]), write_gate=sig(p["write_gate"]),
            read_mode=jax.nn.softmax(p["read_mode"], axis=-1))

    def initial_state(self) -> DNCState:
        zeros = jnp.zeros(self.hidden_size)
        return DNCState(zeros, zeros, jnp.zeros((self.read_heads, self.word_size)),
                        initial_access_state(self.slots, self.word_size, self.read_heads, self.write_heads))

    def __call__(self, inputs: ControllerInput, state: DNCState) -> tuple[Float[Array, " psi"], DNCState]:
        x = jnp.concatenate([inputs.latent, inputs.context, state.reads.reshape(-1)])
        h, c = self.lstm(x, (state.h, state.c))  # eq. 13
        reads, access = access_step(self.interface_from(h), state.access, self.top_k)
        psi = jnp.concatenate([reads.reshape(-1), h])
        return psi, DNCState(h, c, reads, access)
