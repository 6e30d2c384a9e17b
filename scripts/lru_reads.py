"""Where a trained LRU model keeps, and whether it reads, the frames perfect recall asks for.

For a run of the `lru` model on perfect recall, one held-out batch is run through the model
(latents from the posterior, as in training) and, for each recalled step l + j (steps counted
from 1, as in the docs; it repeats frame j):
- "kept": the cosine between the slots written when frame j's latent entered memory (step j + 1,
  since the word written at step t derives from z_{t-1}) and the same slots at step l + j, so 1
  when nothing overwrote them;
- "read mass": the largest read head's total weight on those slots at step l + j; reads spread
  evenly over the memory give heads / slots (about 0.05 at 5 heads and 100 slots).
Also the largest single read weight (1 / slots when flat), the read strengths beta, the write gates
sigma(alpha) and the mean cosine between distinct slots at the start of recall.

Usage: python scripts/lru_reads.py RUN_DIR [--step N] [--batch-size 10]
"""

import argparse
import sys
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from gtmm.errors import GtmmError
from gtmm.train import load_trained, read_config


def trace(model, frames, context, key):
    """Per step of one sequence: memory, read weights, usage, write gates, read strengths."""
    T = frames.shape[0]
    noise = jax.random.normal(key, (T, model.latent_size))

    def step(carry, xs):
        carry, _ = model.step(carry, xs)
        state = carry[0]
        p = model.memory._interface(state.h)  # the interface the memory used at this step
        return carry, (state.memory, state.read_weights, state.usage, jax.nn.sigmoid(p["write_gate"]),
                       jax.nn.softplus(p["strengths"]))

    _, out = jax.lax.scan(step, model.initial_carry(), (model.embed(frames), context, noise, jnp.ones(T, bool)))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: the newest)")
    p.add_argument("--batch-size", type=int, default=10)
    a = p.parse_args()
    try:
        config = read_config(a.run_dir)
        if config.model != "lru" or config.task != "perfect-recall":
            raise GtmmError(f"{a.run_dir} is a {config.model} run on {config.task}; this reads lru runs on perfect-recall")
        config, task, model, step = load_trained(a.run_dir, a.step)
    except GtmmError as e:
        sys.exit(f"lru_reads: {e}")
    batch = task.batch("eval", a.batch_size, 0, 0)
    keys = jax.random.split(jax.random.PRNGKey(0), a.batch_size)
    run = eqx.filter_jit(jax.vmap(trace, in_axes=(None, 0, 0, 0)))
    memory, reads, usage, gates, strengths = map(np.asarray, run(model, jnp.asarray(batch.frames),
                                                                  jnp.asarray(batch.context), keys))
    heads, slots = reads.shape[2], reads.shape[3]
    print(f"{a.run_dir}, step {step}: {slots} slots, {heads} heads, {a.batch_size} held-out sequences")
    for j in range(config.k):
        written, recalled = j + 1, config.l + j  # 0-based indices of steps j + 2 and l + j + 1
        kept, mass = [], []
        for b in range(a.batch_size):
            change = np.linalg.norm(memory[b, written] - memory[b, written - 1], axis=1)
            top = np.argsort(-change)[:heads]  # each head writes one word; the slots it changed most
            top = top[change[top] > 1e-3 * max(change.max(), 1e-12)]
            before, after = memory[b, written, top], memory[b, recalled, top]
            cos = (before * after).sum(1) / np.maximum(np.linalg.norm(before, axis=1) * np.linalg.norm(after, axis=1),
                                                       1e-12)
            kept.append(cos.mean())
            mass.append(reads[b, recalled][:, top].sum(1).max())
        print(f"frame {j + 1}: written at step {written + 1}, recalled at step {recalled + 1}: kept {np.mean(kept):.3f},"
              f" read mass {np.mean(mass):.3f} (flat: {heads / slots:.3f})")
    print(f"largest read weight, mean over heads and steps: {reads.max(-1).mean():.4f} (flat: {1 / slots:.4f})")
    print("read strength beta by head, mean:", np.round(strengths.mean((0, 1)), 2))
    print("write gate sigma(alpha) by head, mean:", np.round(gates.mean((0, 1)), 3))
    at = memory[:, config.l]
    unit = at / np.maximum(np.linalg.norm(at, axis=-1, keepdims=True), 1e-12)
    cos = np.einsum("bsw,btw->bst", unit, unit)
    off = (cos.sum((1, 2)) - np.trace(cos, axis1=1, axis2=2)) / (slots * (slots - 1))
    print(f"mean cosine between distinct slots at step {config.l + 1}: {off.mean():.3f};"
          f" usage there min/median/max {np.round(np.percentile(usage[:, config.l], [0, 50, 100]), 3)}")


if __name__ == "__main__":
    main()
