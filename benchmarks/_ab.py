"""Shared by the before/after benchmarks that swap a layer's implementation in one process."""

from __future__ import annotations

import argparse

import equinox as eqx
import jax
import jax.numpy as jnp

from gtmm.model import ModelConfig, init_model
from gtmm.train import TrainConfig, make_optimizer, make_train_step


def add_step_arguments(parser: argparse.ArgumentParser) -> None:
    """The training step the A/B benchmarks time: model, batch, sequence length."""
    parser.add_argument("--model", default="vrnn")
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--T", type=int, default=20)


def step_inputs(args: argparse.Namespace):
    """(optimizer, (model, opt_state, frames, context, key)): one digits batch of random binary frames."""
    model = init_model(ModelConfig(args.model, args.T), 0)
    optimizer = make_optimizer(TrainConfig(model=args.model))
    opt_state = optimizer.init(eqx.filter(model, eqx.is_array))
    key = jax.random.PRNGKey(0)
    frames = (jax.random.uniform(key, (args.batch, args.T, 1, 32, 32)) > 0.7).astype(jnp.float32)
    return optimizer, (model, opt_state, frames, jnp.zeros((args.batch, args.T, 0)), key)


def fresh_train_step(optimizer, *args):
    """The training step compiled ahead of time for `args`, traced with the code as it is now.

    Equinox caches a jitted closure by its code and closure contents, so a second
    `make_train_step(optimizer)` after a monkeypatch would reuse the first trace and time the
    same program twice: the caches are cleared first, and the compiled executable that is
    returned is the variant's own, which no later clearing or patching can change.
    """
    eqx.clear_caches()
    jax.clear_caches()
    return make_train_step(optimizer).lower(*args).compile()
