"""A hash index over memory rows, so that a content read costs O(candidates) rather than O(slots).

Random-hyperplane locality-sensitive hashing (Charikar 2002), the kind of approximate
nearest-neighbour index that sparse access memory reads through (Rae et al. 2016, section 3.3).
Each of L tables hashes a key by the signs of `bits` fixed random projections into one of
2^bits buckets; rows of similar direction (high cosine similarity, the comparison of eq. 15)
tend to share a bucket. A bucket keeps the slot ids of its C latest insertions in a ring, so the
index has a fixed size and a read gathers at most L C candidates, whatever the number of slots.

When a slot is overwritten its old entries stay in their buckets; `bucket_of` (each slot's
current bucket per table) tells stale entries apart, so they are never returned. Everything is
pure and works on one sequence; the hash is not differentiated (gradients reach the keys of the
rows the index returns, as in any top-k read).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from gtmm.memories.addressing import cosine_similarity


class LSHIndex(NamedTuple):
    table: Int[Array, "tables buckets capacity"]  # slot ids; -1 where nothing was inserted yet
    fill: Int[Array, "tables buckets"]  # insertions into each bucket so far; the ring's next place is fill mod C
    bucket_of: Int[Array, "tables slots"]  # each slot's current bucket in every table; -1 before its first insert


def empty_index(tables: int, bits: int, capacity: int, slots: int) -> LSHIndex:
    """An index with nothing in it: L tables of 2^bits buckets of C places, for `slots` rows."""
    return LSHIndex(jnp.full((tables, 2 ** bits, capacity), -1, jnp.int32),
                    jnp.zeros((tables, 2 ** bits), jnp.int32), jnp.full((tables, slots), -1, jnp.int32))


def hash_codes(planes: Float[Array, "tables bits key"], keys: Float[Array, "*batch key"]) -> Int[Array, "*batch tables"]:
    """bucket_l(k) = sum_b [a_lb . k > 0] 2^b: the sign pattern of `bits` projections, as an integer.

    Cosine-preserving: two keys at angle theta fall on the same side of a random hyperplane with
    probability 1 - theta / pi (Charikar 2002). With `bits` = 0 every key has bucket 0.
    """
    above = jnp.einsum("lbk,...k->...lb", jax.lax.stop_gradient(planes), jax.lax.stop_gradient(keys)) > 0
    return jnp.sum(above.astype(jnp.int32) << jnp.arange(planes.shape[1], dtype=jnp.int32), axis=-1)


def index_insert(index: LSHIndex, slot: Int[Array, ""], codes: Int[Array, " tables"], insert: Bool[Array, ""]) -> LSHIndex:
    """Put `slot` into bucket codes[l] of every table l (over the bucket's oldest entry once it holds C);
    nothing changes where `insert` is false. O(L) work, whatever the number of slots."""
    rows = jnp.arange(codes.shape[0])
    place = jnp.mod(index.fill[rows, codes], index.table.shape[2])
    table = index.table.at[rows, codes, place].set(jnp.where(insert, slot, index.table[rows, codes, place]))
    fill = index.fill.at[rows, codes].add(insert.astype(jnp.int32))
    bucket_of = index.bucket_of.at[rows, slot].set(jnp.where(insert, codes, index.bucket_of[rows, slot]))
    return LSHIndex(table, fill, bucket_of)


def index_candidates(index: LSHIndex, codes: Int[Array, " tables"]) -> tuple[Int[Array, " candidates"], Bool[Array, " candidates"]]:
    """The slots in bucket codes[l] of table l, for every l, flattened (L C of them), and which are valid:
    filled, still in that bucket (not overwritten since), and the first time that slot appears, so a
    slot found by several tables counts once. Invalid entries have id 0 and must be masked."""
    rows = jnp.arange(codes.shape[0])
    ids = index.table[rows, codes]  # [tables, capacity]
    current = index.bucket_of[rows[:, None], jnp.maximum(ids, 0)] == codes[:, None]
    valid = ((ids >= 0) & current).reshape(-1)
    ids = jnp.maximum(ids, 0).reshape(-1)
    n = ids.shape[0]
    earlier = (ids[:, None] == ids[None, :]) & valid[None, :] & (jnp.arange(n)[None, :] < jnp.arange(n)[:, None])
    return ids, valid & ~jnp.any(earlier, axis=1)


def candidate_content_weights(keys: Float[Array, "heads key"], strengths: Float[Array, " heads"],
                              candidate_keys: Float[Array, "heads candidates key"],
                              valid: Bool[Array, "heads candidates"], k: int
                              ) -> tuple[Int[Array, "heads k"], Float[Array, "heads k"]]:
    """w = softmax over the k best of beta * cos(key, candidate) (eq. 15 restricted to the candidates).

    Returns, per head, the positions of the k chosen candidates and their weights; positions past
    the valid candidates get weight exactly 0, and a head with no valid candidate reads nothing.
    beta is already positive. O(heads x candidates x key), independent of the number of slots.
    """
    similarity = jax.vmap(cosine_similarity)(candidate_keys, keys[:, None])[:, 0]  # per head, its own candidates
    logits = jnp.where(valid, strengths[:, None] * similarity, -jnp.inf)
    values, positions = jax.lax.top_k(logits, k)
    chosen = jnp.isfinite(values)
    safe = jnp.where(jnp.any(chosen, axis=-1, keepdims=True), values, 0.0)  # all -inf would give NaN
    return positions, jnp.where(chosen, jax.nn.softmax(safe, axis=-1), 0.0)


def merge_duplicates(ids: Int[Array, "heads n"], weights: Float[Array, "heads n"]) -> Float[Array, "heads n"]:
    """Sum the weights of entries naming the same slot onto its first entry (later ones get 0), so
    that a sparse weighting holds each slot once. O(n^2) per head with n entries, not O(slots)."""
    n = ids.shape[-1]
    same = ids[:, :, None] == ids[:, None, :]
    first = ~jnp.any(same & (jnp.arange(n)[None, :] < jnp.arange(n)[:, None])[None], axis=-1)
    return jnp.where(first, jnp.einsum("hij,hj->hi", same.astype(weights.dtype), weights), 0.0)
