"""The DNC memory of paper section 3.2 (Graves et al. 2016): content, usage/allocation and temporal links.

The addressing functions below follow DeepMind's reference implementation (github
deepmind/dnc, `dnc/addressing.py` and `dnc/access.py`) formula for formula, including its
epsilon conventions: `_EPSILON = 1e-6` inside every norm and cosine denominator, usage mapped to
`eps + (1 - eps) u` before the sort of the allocation, and `stop_gradient` on the write weights
in the usage update. `tests/test_addressing.py` checks them against a NumPy port of that file.
The reference works on a batch; these functions work on one sequence (the model vmaps), so
`[batch_size, num_writes, memory_size]` there is `[writes, slots]` here.

Symbols: N slots, W word size, R read heads, `writes` write heads (1 in the DNC paper).

Optionally the temporal link keeps only K links per slot (`SparseLinkageState`, in the spirit
of Rae et al. 2016, "Scaling memory-augmented neural networks with sparse reads and writes"):
the link then costs O(N K) time and memory per step instead of O(N^2), and with K = N it is
the dense link exactly.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from gtmm.memories.addressing import _EPSILON, content_weights, erase_and_write, read_memory
from gtmm.memories.base import ControllerInput, InterfaceMemory


class TemporalLinkageState(NamedTuple):
    link: Float[Array, "writes slots slots"]  # L_t[i, j]: how much slot i was written right after slot j
    precedence_weights: Float[Array, "writes slots"]  # p_t: how much each slot was the last one written


class SparseLinkageState(NamedTuple):
    """K links per slot: row i of L_t holds only L_t[i, index[i, k]] = link[i, k], zero elsewhere.

    The K indices of a row are distinct; a kept link may be zero (a free place in the row).
    """

    index: Int[Array, "writes slots k"]  # j of the k-th link kept in row i
    link: Float[Array, "writes slots k"]  # L_t[i, index[i, k]]
    precedence_weights: Float[Array, "writes slots"]  # p_t, dense (O(N) per step, like the write weights)


class AccessState(NamedTuple):
    memory: Float[Array, "slots word"]  # M_t
    read_weights: Float[Array, "reads slots"]  # w^r_t
    write_weights: Float[Array, "writes slots"]  # w^w_t
    linkage: TemporalLinkageState | SparseLinkageState
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

def _link_formula(prev_link: Float[Array, "writes slots slots"], prev_precedence_weights: Float[Array, "writes slots"],
                  write_weights: Float[Array, "writes slots"]) -> Float[Array, "writes slots slots"]:
    w_i = write_weights[:, :, None]
    w_j = write_weights[:, None, :]
    link = (1 - w_i - w_j) * prev_link + w_i * prev_precedence_weights[:, None, :]
    return link * (1 - jnp.eye(link.shape[-1], dtype=link.dtype))


@jax.custom_vjp
def updated_link(prev_link: Float[Array, "writes slots slots"], prev_precedence_weights: Float[Array, "writes slots"],
                 write_weights: Float[Array, "writes slots"]) -> Float[Array, "writes slots slots"]:
    """L_t[i, j] = (1 - w_t[i] - w_t[j]) L_{t-1}[i, j] + w_t[i] p_{t-1}[j],  L_t[i, i] = 0
    (reference `TemporalLinkage._link`).

    The gradient is written by hand (`_updated_link_bwd`): autodiff keeps several N x N
    intermediates per step for the backward pass of the scan, this keeps only L_{t-1} (which
    the scan holds anyway) and recomputes the rest: about 25% off the DNC core's gradient at 125
    slots (docs/results/speed.md). `tests/test_addressing.py` checks it against autodiff.
    """
    return _link_formula(prev_link, prev_precedence_weights, write_weights)


def _updated_link_fwd(prev_link, prev_precedence_weights, write_weights):
    return (_link_formula(prev_link, prev_precedence_weights, write_weights),
            (prev_link, prev_precedence_weights, write_weights))


def _updated_link_bwd(residuals, g):
    """With G the cotangent of L_t off the diagonal:
    dL_{t-1} = G (1 - w_i - w_j),  dw[k] = sum_j G[k, j] (p[j] - L[k, j]) - sum_i G[i, k] L[i, k],
    dp[j] = sum_i G[i, j] w[i]."""
    prev_link, prev_precedence_weights, write_weights = residuals
    g = g * (1 - jnp.eye(g.shape[-1], dtype=g.dtype))
    w_i = write_weights[:, :, None]
    w_j = write_weights[:, None, :]
    g_link = g * prev_link
    d_write = (jnp.einsum("wij,wj->wi", g, prev_precedence_weights) - g_link.sum(-1) - g_link.sum(-2))
    d_precedence = jnp.einsum("wij,wi->wj", g, write_weights)
    return g * (1 - w_i - w_j), d_precedence, d_write


updated_link.defvjp(_updated_link_fwd, _updated_link_bwd)


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


# ---------------------------------------------------------------- sparse temporal links (Rae et al. 2016)

def initial_sparse_linkage(slots: int, write_heads: int, k: int) -> SparseLinkageState:
    """No links yet: row i keeps the K zero links to slots i+1, ..., i+K (mod N).

    With K < N the diagonal is not among them; with K = N every slot is, so nothing can be
    dropped and the sparse link is the dense one (`updated_sparse_link`).
    """
    index = (jnp.arange(slots)[:, None] + 1 + jnp.arange(k)[None, :]) % slots
    return SparseLinkageState(jnp.broadcast_to(index, (write_heads, slots, k)).astype(jnp.int32),
                              jnp.zeros((write_heads, slots, k)), jnp.zeros((write_heads, slots)))


def _updated_sparse_link_one_head(index: Int[Array, "slots k"], link: Float[Array, "slots k"],
                                 prev_precedence_weights: Float[Array, " slots"],
                                 write_weights: Float[Array, " slots"]) -> tuple[Int[Array, "slots k"],
                                                                                 Float[Array, "slots k"]]:
    """`updated_sparse_link` for one write head.

    Candidates for row i: its K kept links, updated as the dense link is,
        (1 - w[i] - w[j]) L[i, j] + w[i] p[j],   j = index[i, k],
    and the K largest entries of p_{t-1} as new links w[i] p[j], left out where j is already
    kept in row i (no duplicates) or j = i (zero diagonal). Each row keeps its K largest
    candidates. O(N K log K): the duplicate test scatters each kept index's position among the
    new ones (O(N K)) instead of comparing all pairs (O(N K^2)).
    """
    slots, k = index.shape
    rows = jnp.arange(slots)[:, None]
    w_i = write_weights[:, None]
    kept = (1 - w_i - write_weights[index]) * link + w_i * prev_precedence_weights[index]
    kept = jnp.where(index == rows, 0.0, kept)  # L[i, i] = 0
    p_top, new_index = jax.lax.top_k(prev_precedence_weights, k)
    position = jnp.full(slots, k).at[new_index].set(jnp.arange(k))  # j -> its place among the new, or k
    duplicate = jnp.zeros((slots, k + 1), bool).at[rows, position[index]].set(True)[:, :k]
    new = w_i * p_top[None, :]
    allowed = ~duplicate & (new_index[None, :] != rows)
    candidates = jnp.concatenate([kept, jnp.where(allowed, new, -jnp.inf)], axis=1)
    candidate_index = jnp.concatenate([index, jnp.broadcast_to(new_index, (slots, k))], axis=1)
    value, place = jax.lax.top_k(candidates, k)  # the K kept links are never -inf, so none is chosen
    return jnp.take_along_axis(candidate_index, place, axis=1), value


def updated_sparse_link(prev: SparseLinkageState,
                        write_weights: Float[Array, "writes slots"]) -> tuple[Int[Array, "writes slots k"],
                                                                               Float[Array, "writes slots k"]]:
    """L_t[i, j] = (1 - w_t[i] - w_t[j]) L_{t-1}[i, j] + w_t[i] p_{t-1}[j],  L_t[i, i] = 0, keeping
    the K largest links of each row (the dense `updated_link` restricted to K links per slot;
    sparse link of Rae et al. 2016, with p_{t-1} cut to its K largest entries for new links).

    Exact when nothing is dropped: with K = N it equals `updated_link`.
    """
    return jax.vmap(_updated_sparse_link_one_head)(prev.index, prev.link, prev.precedence_weights, write_weights)


def updated_sparse_linkage(write_weights: Float[Array, "writes slots"], prev: SparseLinkageState) -> SparseLinkageState:
    """`updated_linkage` with K links per slot: the sparse link, then the (dense) new precedence."""
    index, link = updated_sparse_link(prev, write_weights)
    return SparseLinkageState(index, link, updated_precedence(prev.precedence_weights, write_weights))


def sparse_directional_read_weights(index: Int[Array, "writes slots k"], link: Float[Array, "writes slots k"],
                                    prev_read_weights: Float[Array, "reads slots"],
                                    forward: bool) -> Float[Array, "reads writes slots"]:
    """f_t = L_t w^r_{t-1} (forward), b_t = L_t^T w^r_{t-1} (backward) from K links per slot
    (`directional_read_weights` for `SparseLinkageState`), O(R N K):

        f[i] = sum_k L[i, k] w^r[index[i, k]]  (a gather),
        b[j] = sum over (i, k) with index[i, k] = j of L[i, k] w^r[i]  (a scatter-add).
    """
    if forward:
        return jnp.einsum("wik,rwik->rwi", link, prev_read_weights[:, index])
    slots = index.shape[1]

    def one_head(index, link, w):  # [slots, k], [slots, k], [slots] -> [slots]
        return jnp.zeros(slots, link.dtype).at[index.reshape(-1)].add((link * w[:, None]).reshape(-1))

    per_write = jax.vmap(one_head, in_axes=(0, 0, None))  # over write heads
    return jax.vmap(per_write, in_axes=(None, None, 0))(index, link, prev_read_weights)


def sparse_link_to_dense(index: Int[Array, "writes slots k"],
                         link: Float[Array, "writes slots k"]) -> Float[Array, "writes slots slots"]:
    """The dense L_t that K links per slot stand for (tests and inspection; O(N^2))."""
    writes, slots, _ = index.shape
    heads = jnp.arange(writes)[:, None, None]
    rows = jnp.arange(slots)[None, :, None]
    return jnp.zeros((writes, slots, slots), link.dtype).at[heads, rows, index].add(link)


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
    3. M_t = erase-and-write(M_{t-1});  4. L_t, p_t (K links per slot when `prev.linkage` is a
       `SparseLinkageState`);
    5. w^r_t from content on M_t and the links from w^r_{t-1};  6. reads phi^r_t = w^r_t M_t (eq. 16).
    """
    usage = updated_usage(prev.write_weights, interface.free_gate, prev.read_weights, prev.usage)
    write_content = content_weights(prev.memory, interface.write_keys, interface.write_strengths, top_k)
    allocation = write_allocation_weights(usage, interface.allocation_gate * interface.write_gate)
    w_write = write_weights(write_content, allocation, interface.allocation_gate, interface.write_gate)
    memory = erase_and_write(prev.memory, w_write, interface.erase_vectors, interface.write_vectors)
    if isinstance(prev.linkage, SparseLinkageState):
        linkage = updated_sparse_linkage(w_write, prev.linkage)
        directional = functools.partial(sparse_directional_read_weights, linkage.index, linkage.link)
    else:
        linkage = updated_linkage(w_write, prev.linkage)
        directional = functools.partial(directional_read_weights, linkage.link)
    w_read = read_weights(content_weights(memory, interface.read_keys, interface.read_strengths, top_k),
                          directional(prev.read_weights, forward=True),
                          directional(prev.read_weights, forward=False),
                          interface.read_mode)
    return read_memory(w_read, memory), AccessState(memory, w_read, w_write, linkage, usage)


def initial_access_state(slots: int, word_size: int, read_heads: int, write_heads: int,
                         link_k: int | None = None) -> AccessState:
    """Empty memory, no reads or writes yet, no links, zero usage; `link_k`: K links per slot
    (`SparseLinkageState`) instead of the dense N x N link."""
    if link_k is None:
        linkage = TemporalLinkageState(jnp.zeros((write_heads, slots, slots)), jnp.zeros((write_heads, slots)))
    else:
        linkage = initial_sparse_linkage(slots, write_heads, link_k)
    return AccessState(
        memory=jnp.zeros((slots, word_size)),
        read_weights=jnp.zeros((read_heads, slots)),
        write_weights=jnp.zeros((write_heads, slots)),
        linkage=linkage,
        usage=jnp.zeros(slots),
    )


# ---------------------------------------------------------------- the memory system

class DNCState(NamedTuple):
    h: Float[Array, " hidden"]  # controller LSTM state h_{t-1}
    c: Float[Array, " hidden"]
    reads: Float[Array, "reads word"]  # phi_{t-1}, fed back to the controller
    access: AccessState


class DNCMemory(InterfaceMemory):
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

    `link_k`: keep K temporal links per slot (`SparseLinkageState`, O(N K) per step) instead of
    the dense N x N link (O(N^2)); None: dense.
    """

    write_heads: int = eqx.field(static=True)
    link_k: int | None = eqx.field(static=True)
    has_temporal_links = True

    def __init__(self, *, latent_size: int, task_context_size: int, hidden_size: int, slots: int,
                 read_heads: int = 5, write_heads: int = 1, word_size: int | None = None, top_k: int | None = None,
                 link_k: int | None = None, key: PRNGKeyArray, **_: int):
        self.write_heads, self.link_k = write_heads, link_k
        self._build_controller(latent_size=latent_size, task_context_size=task_context_size,
                               hidden_size=hidden_size, slots=slots, read_heads=read_heads,
                               word_size=word_size, top_k=top_k, key=key)

    def _interface_shapes(self) -> dict[str, tuple[int, ...]]:
        R, Wh, W = self.read_heads, self.write_heads, self.word_size
        return {"read_keys": (R, W), "read_strengths": (R,), "write_keys": (Wh, W), "write_strengths": (Wh,),
                "write_vectors": (Wh, W), "erase_vectors": (Wh, W), "free_gate": (R,), "allocation_gate": (Wh,),
                "write_gate": (Wh,), "read_mode": (R, 1 + 2 * Wh)}

    def interface_from(self, h: Float[Array, " hidden"]) -> DNCInterface:
        """Squash the controller's outputs as the reference does: sigmoid gates, softmax read modes."""
        p = self._interface(h)
        sig = jax.nn.sigmoid
        return DNCInterface(
            read_keys=p["read_keys"], read_strengths=p["read_strengths"], write_keys=p["write_keys"],
            write_strengths=p["write_strengths"], write_vectors=p["write_vectors"],
            erase_vectors=sig(p["erase_vectors"]), free_gate=sig(p["free_gate"]),
            allocation_gate=sig(p["allocation_gate"]), write_gate=sig(p["write_gate"]),
            read_mode=jax.nn.softmax(p["read_mode"], axis=-1))

    def read_weights_after(self, state: DNCState) -> Float[Array, "reads slots"]:
        return state.access.read_weights

    def initial_state(self) -> DNCState:
        zeros = jnp.zeros(self.hidden_size)
        return DNCState(zeros, zeros, jnp.zeros((self.read_heads, self.word_size)),
                        initial_access_state(self.slots, self.word_size, self.read_heads, self.write_heads,
                                             self.link_k))

    def __call__(self, inputs: ControllerInput, state: DNCState) -> tuple[Float[Array, " psi"], DNCState]:
        x = jnp.concatenate([inputs.latent, inputs.context, state.reads.reshape(-1)])
        h, c = self.lstm(x, (state.h, state.c))  # eq. 13
        reads, access = access_step(self.interface_from(h), state.access, self.top_k)
        psi = jnp.concatenate([reads.reshape(-1), h])
        return psi, DNCState(h, c, reads, access)
