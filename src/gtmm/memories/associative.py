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

With `content_index="lsh"` (and `top_k`) every step costs the same whatever the number of slots:
content reads go through a hash index (`gtmm.memories.lsh`) and score only the rows it returns,
each head's weighting is kept as k (slot, weight) pairs, succession moves those pairs, and reads
gather the rows they name. The position mode is left out there: the introspective attention
scores every slot by construction (its network has one output per slot), so it cannot be sparse.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from gtmm.memories.addressing import cosine_similarity, sparse_softmax
from gtmm.memories.base import AbstractMemory, ControllerInput, check_stores_latents
from gtmm.memories.introspective import filled_slots, fifo_write, normalised_attention
from gtmm.memories.lsh import (LSHIndex, candidate_content_weights, empty_index, hash_codes, index_candidates,
                               index_insert, merge_duplicates)

MODES = ("position", "content", "next")
SPARSE_MODES = ("content", "next")  # with a content index: the position mode is dense by nature
CONTENT_INDEXES = ("lsh",)


class AssociativeState(NamedTuple):
    h: Float[Array, " hidden"]  # controller LSTM state h_{t-1}
    c: Float[Array, " hidden"]
    store: Float[Array, "slots latent"]  # M_{t-1}: the latents themselves, as the introspective memory
    writes: Int[Array, ""]  # steps taken so far; z_n sits in slot (n - 1) mod L
    weights: Float[Array, "heads slots"]  # w_{t-1}: what each head read last step


class IndexedAssociativeState(NamedTuple):
    """The state with `content_index`: as AssociativeState, but w_{t-1} as k (slot, weight) pairs per head."""

    h: Float[Array, " hidden"]
    c: Float[Array, " hidden"]
    store: Float[Array, "slots latent"]
    stored_keys: Float[Array, "slots key"]  # P z_i, computed once when z_i is written
    writes: Int[Array, ""]
    index: LSHIndex
    read_slots: Int[Array, "heads k"]  # the slots w_{t-1} names; -1: none
    read_weights: Float[Array, "heads k"]  # their weights


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
    attention: eqx.nn.MLP | None  # k(h_t), softplus outputs (position); None with a content index
    keys: eqx.nn.Linear  # h_t -> R keys and R raw strengths (content)
    projection: eqx.nn.Linear  # P: a stored latent -> the space keys are compared in
    mixture: eqx.nn.Linear  # h_t -> R x 3 mode logits (R x 2 with a content index: no position mode)
    gate: eqx.nn.Linear  # g^r(h_{t-1}) (eq. 12)
    hidden_size: int = eqx.field(static=True)
    slots: int = eqx.field(static=True)
    read_heads: int = eqx.field(static=True)
    latent_size: int = eqx.field(static=True)
    key_size: int = eqx.field(static=True)
    context_size: int = eqx.field(static=True)
    top_k: int | None = eqx.field(static=True)
    content_index: str | None = eqx.field(static=True)
    planes: Float[Array, "tables bits key"] | None  # the hash's random hyperplanes (never trained)
    index_capacity: int = eqx.field(static=True)
    content_addressed = True
    content_indexes = CONTENT_INDEXES

    def __init__(self, *, latent_size: int, task_context_size: int, hidden_size: int, slots: int,
                 read_heads: int = 5, attention_hidden: int = 128, top_k: int | None = None,
                 content_index: str | None = None, index_tables: int = 8, index_capacity: int | None = None,
                 index_bits: int | None = None, key: PRNGKeyArray, **_: int):
        if content_index is not None and (content_index not in CONTENT_INDEXES or top_k is None):
            raise ValueError(f"content_index must be one of {CONTENT_INDEXES} and needs top_k")  # ModelConfig says why
        self.top_k, self.content_index = top_k, content_index
        k = jax.random.split(key, 7)
        self.key_size = latent_size
        self.lstm = eqx.nn.LSTMCell(latent_size + task_context_size, hidden_size, key=k[0])
        modes = MODES if content_index is None else SPARSE_MODES
        self.attention = None if content_index else eqx.nn.MLP(
            hidden_size, read_heads * slots, attention_hidden, depth=2, activation=jax.nn.relu,
            final_activation=jax.nn.softplus, key=k[1])
        self.keys = eqx.nn.Linear(hidden_size, read_heads * (self.key_size + 1), key=k[2])
        self.projection = eqx.nn.Linear(latent_size, self.key_size, use_bias=False, key=k[3])
        self.mixture = eqx.nn.Linear(hidden_size, read_heads * len(modes), key=k[4])
        self.gate = eqx.nn.Linear(hidden_size, read_heads * latent_size, key=k[5])
        self.hidden_size, self.slots, self.read_heads, self.latent_size = hidden_size, slots, read_heads, latent_size
        self.context_size = read_heads * latent_size
        # Index sizes: C places per bucket (at least 2k, so a bucket can fill the k reads), and
        # at least 2 slots / C buckets, so a bucket holds C / 2 rows on average and few are
        # pushed out of its ring; 8 tables, so a near match shares a bucket in at least one.
        self.index_capacity = index_capacity or max(16, 2 * (top_k or 0))
        bits = index_bits if index_bits is not None else max(0, min(12, math.ceil(math.log2(max(1, 2 * slots / self.index_capacity)))))
        self.planes = jax.random.normal(k[6], (index_tables, bits, self.key_size)) if content_index else None

    def host_init(self, rng: np.random.Generator) -> "AssociativeMemory":
        """`gtmm.init`'s host initialisation, and the hash's hyperplanes ~ N(0, 1) as the constructor draws them."""
        from gtmm.init import fill_layers

        filled = fill_layers(self, rng)
        if self.planes is None:
            return filled
        return eqx.tree_at(lambda m: m.planes, filled, jnp.asarray(rng.standard_normal(self.planes.shape), jnp.float32))

    @classmethod
    def check_settings(cls, *, word_size: int | None, latent_size: int, **_: int) -> None:
        check_stores_latents("associative", word_size=word_size, latent_size=latent_size)

    def read_weights_after(self, state: AssociativeState | IndexedAssociativeState) -> Float[Array, "heads slots"]:
        if not self.content_index:
            return state.weights
        # the index keeps each head's k (slot, weight) pairs; -1 marks an empty pair
        rows = jnp.arange(self.read_heads)[:, None]
        kept = jnp.where(state.read_slots >= 0, state.read_weights, 0.0)
        return jnp.zeros((self.read_heads, self.slots)).at[rows, jnp.maximum(state.read_slots, 0)].add(kept)

    def initial_state(self) -> AssociativeState | IndexedAssociativeState:
        zeros = jnp.zeros(self.hidden_size)
        if self.content_index:
            tables, bits = self.planes.shape[:2]
            return IndexedAssociativeState(
                zeros, zeros, jnp.zeros((self.slots, self.latent_size)), jnp.zeros((self.slots, self.key_size)),
                jnp.array(0, jnp.int32), empty_index(tables, bits, self.index_capacity, self.slots),
                jnp.full((self.read_heads, self.top_k), -1, jnp.int32), jnp.zeros((self.read_heads, self.top_k)))
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

    def indexed_weights(self, h: Float[Array, " hidden"], state: IndexedAssociativeState, index: LSHIndex,
                        stored_keys: Float[Array, "slots key"]) -> tuple[Int[Array, "heads n"], Float[Array, "heads n"]]:
        """The mixed weighting pi_content w_content + pi_next w_next as (slot, weight) pairs, n = 2k per head.

        Content: the k best of the candidates the index returns for each head's key; next: last
        step's pairs moved one slot forward (slot i -> (i + 1) mod L, as `successor_weights`),
        kept where that slot is filled. A slot may appear twice; `merge_duplicates` folds them.
        """
        out = self.keys(h).reshape(self.read_heads, self.key_size + 1)
        queries, strengths = out[:, :-1], jax.nn.softplus(out[:, -1])
        ids, valid = jax.vmap(index_candidates, in_axes=(None, 0))(index, hash_codes(self.planes, queries))
        positions, content = candidate_content_weights(queries, strengths, stored_keys[ids], valid, self.top_k)
        following = jnp.mod(state.read_slots + 1, self.slots)
        follows = (state.read_slots >= 0) & (following < jnp.minimum(state.writes, self.slots))
        pi = jax.nn.softmax(self.mixture(h).reshape(self.read_heads, len(SPARSE_MODES)), axis=-1)
        slots = jnp.concatenate([jnp.take_along_axis(ids, positions, axis=1), jnp.where(follows, following, 0)], axis=1)
        weights = jnp.concatenate([pi[:, :1] * content, pi[:, 1:] * jnp.where(follows, state.read_weights, 0.0)], axis=1)
        return slots, weights

    def indexed_step(self, inputs: ControllerInput, state: IndexedAssociativeState
                     ) -> tuple[Float[Array, " psi"], IndexedAssociativeState]:
        """One step with the content index: O(heads x (L C + k) x key) work, whatever the number of slots."""
        write = state.writes > 0  # nothing is written at the first step (there is no z_0), as `fifo_write`
        slot = jnp.mod(state.writes - 1, self.slots)
        latent_key = self.projection(inputs.latent)
        store = fifo_write(state.store, state.writes, inputs.latent)
        stored_keys = fifo_write(state.stored_keys, state.writes, latent_key)  # P z beside z, same slot
        index = index_insert(state.index, slot, hash_codes(self.planes, latent_key), write)
        h, c = self.lstm(jnp.concatenate([inputs.latent, inputs.context]), (state.h, state.c))
        slots, weights = self.indexed_weights(h, state, index, stored_keys)
        reads = jnp.einsum("hn,hnd->hd", weights, store[slots])  # eq. 11 over the named rows
        gates = jax.nn.sigmoid(self.gate(state.h)).reshape(self.read_heads, self.latent_size)
        psi = (reads * gates).reshape(-1)  # eq. 12
        # Keep each head's k largest (merged) pairs for the next step's succession.
        kept, where = jax.lax.top_k(merge_duplicates(slots, weights), self.top_k)
        kept_slots = jnp.where(kept > 0, jnp.take_along_axis(slots, where, axis=1), -1)
        return psi, IndexedAssociativeState(h, c, store, stored_keys, state.writes + 1, index, kept_slots, kept)

    def __call__(self, inputs: ControllerInput, state: AssociativeState) -> tuple[Float[Array, " psi"], AssociativeState]:
        if self.content_index:
            return self.indexed_step(inputs, state)
        store = fifo_write(state.store, state.writes, inputs.latent)
        h, c = self.lstm(jnp.concatenate([inputs.latent, inputs.context]), (state.h, state.c))
        # `state.writes` latents are stored after this step's write (z_1 .. z_{t-1}).
        weights = self.read_weights(h, store, state.writes, state.weights)
        reads = weights @ store  # eq. 11
        gates = jax.nn.sigmoid(self.gate(state.h)).reshape(self.read_heads, self.latent_size)
        psi = (reads * gates).reshape(-1)  # eq. 12
        return psi, AssociativeState(h, c, store, state.writes + 1, weights)
