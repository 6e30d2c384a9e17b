"""Content addressing and erase/add writing shared by the NTM, LRU and DNC memories (paper eq. 14-16).

Conventions follow DeepMind's DNC reference (github deepmind/dnc, `dnc/addressing.py` and
`dnc/access.py`): one module constant `_EPSILON = 1e-6` guards every square root and division,
and strengths reach the softmax through a softplus. Everything works on one sequence (no batch
axis); heads are the leading axis: memory `[slots, word]`, keys `[heads, word]`, weights
`[heads, slots]`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

_EPSILON = 1e-6  # the reference's _EPSILON: inside every norm and every denominator


def vector_norms(m: Float[Array, "... word"]) -> Float[Array, "... 1"]:
    """||m_i|| = sqrt(sum_j m_ij^2 + eps) for every row (the reference's `_vector_norms`).

    The eps inside the square root keeps the norm and its gradient finite at an all-zero row.
    """
    return jnp.sqrt(jnp.sum(m * m, axis=-1, keepdims=True) + _EPSILON)


def cosine_similarity(memory: Float[Array, "slots word"],
                      keys: Float[Array, "heads word"]) -> Float[Array, "heads slots"]:
    """K(k, M_i) = k . M_i / (||k|| ||M_i|| + eps)  (the comparison of eq. 15; reference `CosineWeights`)."""
    dot = keys @ memory.T
    norm = vector_norms(keys) @ vector_norms(memory).T
    return dot / (norm + _EPSILON)


def weighted_softmax(activations: Float[Array, "heads slots"],
                     strengths: Float[Array, " heads"]) -> Float[Array, "heads slots"]:
    """w[i] = exp(beta K[i]) / sum_j exp(beta K[j]), beta already positive (reference `weighted_softmax`)."""
    return jax.nn.softmax(activations * strengths[:, None], axis=-1)


def content_weights(memory: Float[Array, "slots word"], keys: Float[Array, "heads word"],
                    strengths: Float[Array, " heads"], top_k: int | None = None) -> Float[Array, "heads slots"]:
    """Content-based attention w = softmax(softplus(beta_raw) * K(k, M))  (eq. 15; reference `CosineWeights`).

    `strengths` are the controller's raw outputs; the softplus makes beta >= 0. Each row sums
    to one; an all-zero memory or key gives the uniform weighting, never NaN. With `top_k`, only
    the k most similar slots of each head get weight (`sparse_softmax`).
    """
    if top_k is not None and top_k < memory.shape[0]:
        return sparse_softmax(cosine_similarity(memory, keys) * jax.nn.softplus(strengths)[:, None], top_k)
    return weighted_softmax(cosine_similarity(memory, keys), jax.nn.softplus(strengths))


def sparse_softmax(logits: Float[Array, "heads slots"], k: int) -> Float[Array, "heads slots"]:
    """Softmax over the k largest logits of each row, zero elsewhere (sparse reads, Rae et al. 2016).

    Gradients reach only the k selected entries. Ties are broken towards the lower slot index
    (`lax.top_k`). Rows of -inf beyond the k-th finite entry get zero weight; an all -inf row is
    the caller's to mask.
    """
    values, index = jax.lax.top_k(logits, k)
    rows = jnp.arange(logits.shape[0])[:, None]
    return jnp.zeros_like(logits).at[rows, index].set(jax.nn.softmax(values, axis=-1))


def read_memory(weights: Float[Array, "heads slots"], memory: Float[Array, "slots word"]) -> Float[Array, "heads word"]:
    """phi^r = w^r . M  (eq. 16): one weighted sum of the rows of memory per read head."""
    return weights @ memory


def erase_and_write(memory: Float[Array, "slots word"], write_weights: Float[Array, "writes slots"],
                    erase: Float[Array, "writes word"],
                    values: Float[Array, "writes word"]) -> Float[Array, "slots word"]:
    """M_t = M_{t-1} * prod_i (1 - w_i e_i^T) + sum_i w_i a_i^T  (NTM erase and add; reference `_erase_and_write`).

    `erase` e_i in [0, 1] (a sigmoid), `values` a_i the words added, one row per write head.
    """
    reset_gate = jnp.prod(1 - write_weights[:, :, None] * erase[:, None, :], axis=0)
    return memory * reset_gate + write_weights.T @ values
