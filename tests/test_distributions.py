import jax
import jax.numpy as jnp
import numpy as np

from gtmm.distributions import (
    DiagGaussian,
    bernoulli_log_likelihood,
    gaussian_from_raw,
    gaussian_kl,
    gaussian_log_prob,
)
from gtmm.model import StepTerms


def test_kl_matches_monte_carlo():
    rng = np.random.default_rng(0)
    q = DiagGaussian(jnp.asarray(rng.normal(size=4)), jnp.asarray(rng.uniform(0.3, 1.5, 4)))
    p = DiagGaussian(jnp.asarray(rng.normal(size=4)), jnp.asarray(rng.uniform(0.3, 1.5, 4)))
    z = q.mean + q.std * jax.random.normal(jax.random.PRNGKey(0), (400_000, 4))
    mc = jnp.mean(gaussian_log_prob(q, z) - gaussian_log_prob(p, z))
    assert abs(float(mc) - float(gaussian_kl(q, p))) < 0.02 * max(1.0, float(gaussian_kl(q, p)))


def test_kl_zero_for_identical_and_positive_otherwise():
    g = DiagGaussian(jnp.ones(3), jnp.full(3, 0.5))
    assert abs(float(gaussian_kl(g, g))) < 1e-6
    assert float(gaussian_kl(g, DiagGaussian(jnp.zeros(3), jnp.ones(3)))) > 0


def _np_kl(mq, sq, mp, sp):
    return np.sum(np.log(sp / sq) + (sq**2 + (mq - mp) ** 2) / (2 * sp**2) - 0.5, axis=-1)


def test_free_energy_against_numpy_reference():
    """-sum_t F_t with F_t = E_q log p(x_t|z_t) - KL[q_t || p_t] (eq. 5-6), averaged over the batch."""
    rng = np.random.default_rng(1)
    B, T, Z = 3, 5, 4
    raw_q, raw_p = rng.normal(size=(B, T, 2 * Z)), rng.normal(size=(B, T, 2 * Z))
    logits = rng.normal(size=(B, T, 1, 6, 6)) * 3
    x = rng.uniform(size=(B, T, 1, 6, 6))
    x[0, 0] = 0.0  # hard 0/1 pixels must not produce log(0)
    x[0, 1] = 1.0

    q, p = gaussian_from_raw(jnp.asarray(raw_q)), gaussian_from_raw(jnp.asarray(raw_p))
    kl = gaussian_kl(q, p)
    ll = jax.vmap(jax.vmap(bernoulli_log_likelihood))(jnp.asarray(logits), jnp.asarray(x))
    terms = StepTerms(ll, kl)
    loss = -jnp.mean(jnp.sum(terms.log_likelihood - terms.kl, axis=-1))

    softplus = lambda a: np.log1p(np.exp(a))  # noqa: E731
    sq, sp = softplus(raw_q[..., Z:]) + 1e-3, softplus(raw_p[..., Z:]) + 1e-3
    np_kl = _np_kl(raw_q[..., :Z], sq, raw_p[..., :Z], sp)
    prob = 1 / (1 + np.exp(-logits))
    np_ll = np.sum(x * np.log(prob) + (1 - x) * np.log(1 - prob), axis=(2, 3, 4))
    np_loss = -np.mean(np.sum(np_ll - np_kl, axis=1))
    np.testing.assert_allclose(np.asarray(kl), np_kl, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(ll), np_ll, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(float(loss), np_loss, rtol=1e-5)
    assert np.isfinite(float(loss))


def test_extreme_logits_stay_finite():
    logits = jnp.array([[-1e4, 1e4, 0.0]])
    x = jnp.array([[1.0, 0.0, 0.5]])
    val, grad = jax.value_and_grad(bernoulli_log_likelihood)(logits, x)
    assert np.isfinite(float(val)) and np.all(np.isfinite(np.asarray(grad)))
