"""What one large gradient does to a trained model, through the run's own clip and Adam state.

From a checkpoint, with the optimiser state saved in it, the gradient of the batch the run would
train on next is scaled to each of several global norms (in its own direction) and applied as
one update of the run's optimiser (its gradient clipping included), then training goes on over
the run's next --after batches as it would have. "skip" applies no update for that batch. For
each, the held-out KL over the first l steps and over the recall steps is printed right after
the update and after the following steps: whether a gradient of that size, once clipped, is
enough to undo a model's recall (docs/results/perfect-recall-15.md: LRU seed 1 lost its recall
at a step whose gradient norm was 6,918, the next 14,152, with the clip at 5,000).

Usage: python scripts/spike_response.py RUN_DIR [--step N] [--norms 2000 5000 15000] [--after 20] [--batch-size 20]
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from gtmm.errors import GtmmError
from gtmm.model import batch_terms, loss_fn
from gtmm.train import (build_model, enable_compile_cache, load_checkpoint, make_optimizer, read_config,
                        read_model_config, step_key, tree_norm)


def load_with_optimizer(run_dir: Path, step: int | None):
    """(config, task, model, optimiser state, step) of the newest checkpoint, or of the one at `step`."""
    enable_compile_cache()  # these scripts are rerun on one run many times: reuse the compiled steps
    config = read_config(run_dir)
    model = build_model(config, read_model_config(run_dir))
    optimizer = make_optimizer(config)
    loaded = load_checkpoint(run_dir, model, optimizer.init(eqx.filter(model, eqx.is_array)), at_most=step)
    if loaded is None or (step is not None and loaded[0] != step):
        raise GtmmError(f"{run_dir} has no checkpoint at step {step}" if step is not None
                        else f"{run_dir} holds no checkpoint yet; train it first")
    got, model, opt_state = loaded
    return config, config.make_task(), model, opt_state, got


def stepper(config, task, batch_size: int, lr_scale: float = 1.0):
    """The pieces to retrace a run's training steps outside its loop, for these scripts:
    `kl_pair(model)`, the held-out KL over the first l steps and over the recall steps
    ("a / b", `batch_size` sequences); `batch(s)`, the run's training batch and key of metrics
    step s + 1; `grad_of(model, *batch)`, the loss's gradient and its global norm;
    `update(model, state, grads, s)`, the run's optimiser step (its clip, and Adam at the run's
    learning rate of the update from step s, lr drops included) with the update times
    `lr_scale`. Everything is jitted: an eager op per leaf would compile dozens of small programs.
    """
    held_out = task.batch("eval", batch_size, 0, 0)
    # passed as arguments, not closed over: XLA would constant-fold a closed-over batch, slowly
    held_out = (jnp.asarray(held_out.frames), jnp.asarray(held_out.context), jax.random.PRNGKey(0))
    kl_of = eqx.filter_jit(lambda m, f, c, k: jnp.mean(batch_terms(m, f, c, k).kl, axis=0))

    @eqx.filter_jit
    def grad_of(m, f, c, k):
        g = eqx.filter_grad(lambda m: loss_fn(m, f, c, k)[0])(m)
        return g, tree_norm(g)

    def batch(s):
        b = task.batch("train", config.batch_size, config.seed, s)
        return jnp.asarray(b.frames), jnp.asarray(b.context), step_key(config.seed, s)

    @functools.cache  # one jitted update per learning rate (make_optimizer returns one object per rate)
    def update_with(optimizer):
        @eqx.filter_jit
        def apply(m, state, grads):
            updates, state = optimizer.update(grads, state, eqx.filter(m, eqx.is_array))
            if lr_scale != 1.0:  # Adam's update is proportional to its learning rate
                updates = jax.tree_util.tree_map(lambda u: u * lr_scale, updates)
            return eqx.apply_updates(m, updates), state

        return apply

    def update(m, state, grads, s):
        return update_with(make_optimizer(config, s))(m, state, grads)

    def kl_pair(m) -> str:
        kl = np.asarray(kl_of(m, *held_out))
        return f"{kl[:config.l].mean():.2f} / {kl[config.l:].mean():.2f}"

    return kl_pair, batch, grad_of, update


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: the newest)")
    p.add_argument("--norms", type=float, nargs="+", default=[2000.0, 5000.0, 15000.0],
                   help="global gradient norms to scale the batch's gradient to, before the run's clip")
    p.add_argument("--after", type=int, default=20, help="ordinary training steps after the update")
    p.add_argument("--batch-size", type=int, default=20, help="held-out sequences scored")
    a = p.parse_args()
    try:
        if a.after < 0 or a.batch_size < 1:
            raise GtmmError(f"--after must be at least 0 and --batch-size at least 1, got {a.after} and {a.batch_size}")
        if any(not np.isfinite(n) or n <= 0 for n in a.norms):
            raise GtmmError(f"--norms must be positive numbers, got {a.norms}")
        config, task, model, opt_state, step = load_with_optimizer(a.run_dir, a.step)
    except GtmmError as e:
        sys.exit(f"spike_response: {e}")
    kl_pair, batch, grad_of, update = stepper(config, task, a.batch_size)

    g, norm = grad_of(model, *batch(step))
    norm = float(norm)
    scaled = eqx.filter_jit(lambda g, factor: jax.tree_util.tree_map(lambda x: x * factor, g))
    clip = config.clip_grad_norm
    print(f"{a.run_dir}, {config.model}, step {step}: held-out KL over steps 1-{config.l} / recall steps "
          f"{config.l + 1}-{config.l + config.k} ({a.batch_size} sequences): {kl_pair(model)} before the update; "
          f"next batch's gradient norm {norm:.0f}, clip {clip if clip is not None else 'none'}")
    print(f"\n| gradient norm | after the clip | KL right after | after {a.after} more steps |\n| --- | --- | --- | --- |")
    for target in [None, norm, *a.norms]:
        m, state = model, opt_state
        if target is not None:
            m, state = update(m, state, scaled(g, target / max(norm, 1e-12)), step)
        right_after = kl_pair(m)
        for s in range(step + 1, step + 1 + a.after):
            m, state = update(m, state, grad_of(m, *batch(s))[0], s)
        label = "skip" if target is None else f"{target:.0f}" + (" (its own)" if target == norm else "")
        clipped = "-" if target is None else f"{min(target, clip) if clip is not None else target:.0f}"
        print(f"| {label} | {clipped} | {right_after} | {kl_pair(m)} |")


if __name__ == "__main__":
    main()
