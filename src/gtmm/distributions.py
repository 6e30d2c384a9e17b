"""Diagonal Gaussians, their analytic KL, and the Bernoulli likelihood (paper eq. 5-8).

All quantities are in nats. Standard deviations come from a softplus with a floor, so no
division or log below ever sees zero and nothing overflows the way `exp(log_std)` can.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

MIN_STD = 1e-3  # floor on every standard deviation: KL and log-densities stay finite


class DiagGaussian(NamedTuple):
    mean: Float[Array, "... latent"]
    std: Float[Array, "... latent"]


def gaussian_from_raw(raw: Float[Array, "... twice_latent"], min_std: float = MIN_STD) -> DiagGaussian:
    """Split a network's output into mean and std = softplus(raw) + min_std."""
    mean, raw_std = jnp.split(raw, 2, axis=-1)
    return DiagGaussian(mean, jax.nn.softplus(raw_std) + min_std)


def gaussian_sample(dist: DiagGaussian, noise: Float[Array, "... latent"]) -> Float[Array, "... latent"]:
    """Reparameterised sample z = mu + sigma * eps (pathwise gradient, paper section 2.1)."""
    return dist.mean + dist.std * noise


def gaussian_kl(q: DiagGaussian, p: DiagGaussian) -> Float[Array, "..."]:
    """KL[q || p] of diagonal Gaussians, summed over the latent axis (the KL term of eq. 6).

    KL = sum_i log(s_p / s_q) + (s_q^2 + (m_q - m_p)^2) / (2 s_p^2) - 1/2.
    """
    var_ratio = jnp.square(q.std / p.std)
    mean_term = jnp.square((q.mean - p.mean) / p.std)
    return 0.5 * jnp.sum(var_ratio + mean_term - 1.0 - jnp.log(var_ratio), axis=-1)


def gaussian_log_prob(dist: DiagGaussian, z: Float[Array, "... latent"]) -> Float[Array, "..."]:
    """log N(z | mean, diag(std^2)), summed over the latent axis."""
    u = (z - dist.mean) / dist.std
    return jnp.sum(-0.5 * jnp.square(u) - jnp.log(dist.std) - 0.5 * jnp.log(2 * jnp.pi), axis=-1)


def bernoulli_log_likelihood(
    logits: Float[Array, "*frame"], target: Float[Array, "*frame"]
) -> Float[Array, ""]:
    """log p(x | logits) of a Bernoulli per pixel, grey levels in [0, 1] as soft targets (eq. 6).

    x * l - softplus(l) == x log sigmoid(l) + (1 - x) log(1 - sigmoid(l)), without logs of zero.
    """
    return jnp.sum(target * logits - jax.nn.softplus(logits))


def standard_normal(key: PRNGKeyArray, shape: tuple[int, ...]) -> Float[Array, "..."]:
    return jax.random.normal(key, shape)
