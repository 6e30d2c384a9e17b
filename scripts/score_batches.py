"""Score a run's own training batches, or another seed's, under a trained model: is a batch hard?

Training batches are a function of (seed, step): the metrics.jsonl line of step s records the
batch `task.batch("train", B, seed, s - 1)` with key `step_key(seed, s - 1)` (gtmm.train). This
rebuilds the batches of the given metrics steps for stream --seed (default: the run's own) and
prints, under RUN's checkpoint, the mean KL over the first l steps, the recall KL, and the recall
KL of each sequence. Scoring one run's batches under another run's model tells a batch that no
model recalls from a model that stopped recalling it.

Usage: python scripts/score_batches.py RUN_DIR --steps 15600 15605 [--seed S] [--step N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from gtmm.errors import GtmmError
from gtmm.model import batch_terms
from gtmm.train import load_trained, step_key


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--steps", type=int, nargs=2, required=True, metavar=("FIRST", "LAST"),
                   help="metrics.jsonl steps whose batches are scored (both included)")
    p.add_argument("--seed", type=int, default=None, help="the batch stream (default: the run's own seed)")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: the newest)")
    a = p.parse_args()
    try:
        first, last = a.steps
        if not 1 <= first <= last:
            raise GtmmError(f"--steps must be FIRST LAST with 1 <= FIRST <= LAST, got {first} {last}")
        config, task, model, step = load_trained(a.run_dir, a.step)
    except GtmmError as e:
        sys.exit(f"score_batches: {e}")
    seed = config.seed if a.seed is None else a.seed
    kl_of = eqx.filter_jit(lambda m, f, c, k: batch_terms(m, f, c, k).kl)
    l = config.l
    print(f"{a.run_dir}, {config.model}, step {step}: training batches of seed {seed} (B = {config.batch_size})")
    print("\n| metrics step | KL steps 1-l | recall KL | recall KL per sequence |\n| --- | --- | --- | --- |")
    for s in range(first, last + 1):
        b = task.batch("train", config.batch_size, seed, s - 1)
        kl = np.asarray(kl_of(model, jnp.asarray(b.frames), jnp.asarray(b.context), step_key(seed, s - 1)))
        per_sequence = kl[:, l:].mean(axis=1)
        print(f"| {s} | {kl[:, :l].mean():.2f} | {per_sequence.mean():.2f} | "
              + " ".join(f"{x:.1f}" for x in per_sequence) + " |")


if __name__ == "__main__":
    main()
