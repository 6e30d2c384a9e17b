"""Where a trained perfect-recall model keeps what it recalls: swap one part of its state with another sequence's.

One held-out batch is run through the model (latents from the posterior, as in training). At one
step s, one part of the recurrent state carried into step s (the controller's LSTM state (h, c),
the memory, the previous reads, the previous latent z_{s-1}, for the VRNN the previous frame, ...)
is replaced by the same part of another sequence of the batch, at the same step; everything else
runs on unchanged. Every sequence has the same layout in time, so a swap moves only what is
particular to a sequence. The KL at a recall step l + j rises when the swapped part held what
step l + j recalls; it stays as it was when the model kept it elsewhere. Steps before s are untouched by construction.

Prints, for each part, a table: rows are the step s the swap enters, columns the KL (mean over the
batch) at the recall steps l + 1 .. T.

Usage: python scripts/state_swap.py RUN_DIR [--step N] [--batch-size 20] [--at S ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from gtmm.errors import GtmmError
from gtmm.train import load_trained, read_config


def state_parts(state) -> dict[str, tuple[str, ...]]:
    """The swappable parts of a memory state: (h, c) together as the controller, every other
    floating-point field alone. Integer fields (step counters) are the same in every sequence."""
    fields = [f for f in state._fields
              if all(jnp.issubdtype(x.dtype, jnp.floating) for x in jax.tree_util.tree_leaves(getattr(state, f)))]
    parts = {"controller (h, c)": ("h", "c")} if {"h", "c"} <= set(fields) else {}
    parts.update({f: (f,) for f in fields if f not in ("h", "c")})
    return parts


def swapped_kl(model, embeddings, context, noise, swap_at, memory_fields: tuple[str, ...],
               carry_fields: tuple[str, ...] = ()):
    """Per-step KL, mean over the batch, with the named memory-state fields (and of "latent" and "frame", the
    previous latent z and frame embedding e(x) named in `carry_fields`) replaced by the previous
    sequence's as they enter step `swap_at` (0-based; -1: no swap)."""
    B, T = embeddings.shape[:2]
    carry = jax.vmap(lambda _: model.initial_carry())(jnp.arange(B))
    roll = lambda x: jnp.roll(x, 1, axis=0)  # noqa: E731

    def body(carry, xs):
        t, e, c, eps = xs
        state, z, e_prev = carry
        here = t == swap_at
        swap = lambda x: jnp.where(here, roll(x), x)  # noqa: E731
        state = state._replace(**{f: jax.tree_util.tree_map(swap, getattr(state, f)) for f in memory_fields})
        z = swap(z) if "latent" in carry_fields else z
        e_prev = swap(e_prev) if "frame" in carry_fields else e_prev
        carry, out = jax.vmap(model.step)((state, z, e_prev), (e, c, eps, jnp.ones(B, bool)))
        return carry, out[2].mean(0)

    time_major = lambda x: jnp.swapaxes(x, 0, 1)  # noqa: E731
    _, kl = jax.lax.scan(body, carry, (jnp.arange(T), time_major(embeddings), time_major(context),
                                       time_major(noise)))
    return kl


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: the newest)")
    p.add_argument("--batch-size", type=int, default=20, help="held-out sequences (at least 2)")
    p.add_argument("--at", type=int, nargs="+", default=None,
                   help="steps (from 1) the swap enters (default: every step from k + 2, after the last recalled"
                        " frame is seen, to T)")
    a = p.parse_args()
    try:
        config = read_config(a.run_dir)
        if config.task != "perfect-recall":
            raise GtmmError(f"{a.run_dir} is a run on {config.task}; this reads perfect-recall runs")
        if a.batch_size < 2:
            raise GtmmError(f"--batch-size must be at least 2 (a swap needs another sequence), got {a.batch_size}")
        T = config.l + config.k
        at = a.at if a.at is not None else list(range(config.k + 2, T + 1))
        if any(not 1 <= s <= T for s in at):
            raise GtmmError(f"--at steps must lie in 1..{T} (the sequence's steps), got {at}")
        config, task, model, step = load_trained(a.run_dir, a.step)
    except GtmmError as e:
        sys.exit(f"state_swap: {e}")
    batch = task.batch("eval", a.batch_size, 0, 0)
    keys = jax.random.split(jax.random.PRNGKey(0), a.batch_size)
    noise = jax.vmap(lambda k: jax.random.normal(k, (T, model.latent_size)))(keys)
    embeddings = eqx.filter_jit(lambda m, f: jax.vmap(m.embed)(f))(model, jnp.asarray(batch.frames))
    context = jnp.asarray(batch.context)
    parts = {name: (fields, ()) for name, fields in state_parts(model.initial_carry()[0]).items()}
    parts["previous latent z"] = ((), ("latent",))
    if model.reads_observation:  # the VRNN's step also reads the previous frame
        parts["previous frame e(x)"] = ((), ("frame",))
    run = eqx.filter_jit(swapped_kl)  # compiled once per part: the swap step is an array argument
    l = config.l
    base = np.asarray(run(model, embeddings, context, noise, jnp.asarray(-1), ()))
    print(f"{a.run_dir}, {config.model}, step {step}: KL (nats, mean over {a.batch_size} held-out sequences) at the"
          f" recall steps {l + 1}-{T}; mean KL over steps 1-{l} without a swap: {base[:l].mean():.2f}")
    header = "| swap enters step | " + " | ".join(f"KL step {t}" for t in range(l + 1, T + 1)) + " |"
    rule = "| --- " * (T - l + 1) + "|"
    row = lambda label, kl: f"| {label} | " + " | ".join(f"{v:.2f}" for v in kl[l:]) + " |"  # noqa: E731
    for name, (fields, carried) in parts.items():
        print(f"\n{name} swapped\n\n{header}\n{rule}\n{row('none', base)}")
        for s in at:
            print(row(s, np.asarray(run(model, embeddings, context, noise, jnp.asarray(s - 1), fields, carried))))


if __name__ == "__main__":
    main()
