"""Held-out KL after every training step from a checkpoint: where a model loses its recall, step
by step, and whether skipping some batches or a smaller step size changes that.

From a checkpoint, with the optimiser state saved in it, the run's own next training steps are
taken one at a time (the run's batches and keys, its clip and Adam, each update at the run's
learning rate for it, lr drops included; on one device, so they agree
with a run trained on several devices closely rather than bit for bit), and after each one the
held-out KL over the first l steps and over the recall steps is printed with the step's gradient
norm. `--skip S ...` leaves out the updates of those metrics.jsonl steps (the model and the Adam
state stay as they were); `--lr-scale X` multiplies every update by X, which for Adam is the
learning rate times X. (docs/results/perfect-recall-15.md: LRU seed 2 lost its recall at step
15,926; with that batch skipped it lost it three steps later, with 0.3x the step it kept it.)

Usage: python scripts/heldout_trace.py RUN_DIR [--step N] [--steps 20] [--skip S ...] [--lr-scale 1] [--batch-size 100]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from gtmm.errors import GtmmError

sys.path.insert(0, str(Path(__file__).parent))
from spike_response import load_with_optimizer, stepper  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: the newest)")
    p.add_argument("--steps", type=int, default=20, help="training steps to take from it")
    p.add_argument("--skip", type=int, nargs="*", default=[], help="metrics.jsonl steps whose update is left out")
    p.add_argument("--lr-scale", type=float, default=1.0, help="multiply every update by this")
    p.add_argument("--batch-size", type=int, default=100, help="held-out sequences scored")
    a = p.parse_args()
    try:
        if a.steps < 1 or a.batch_size < 1 or not (np.isfinite(a.lr_scale) and a.lr_scale > 0):
            raise GtmmError(f"--steps and --batch-size must be at least 1 and --lr-scale positive, got {a.steps},"
                            f" {a.batch_size} and {a.lr_scale}")
        config, task, model, opt_state, step = load_with_optimizer(a.run_dir, a.step)
        outside = [s for s in a.skip if not step < s <= step + a.steps]
        if outside:
            raise GtmmError(f"--skip {outside}: the steps traced from the step-{step} checkpoint are"
                            f" {step + 1}-{step + a.steps}")
    except GtmmError as e:
        sys.exit(f"heldout_trace: {e}")
    kl_pair, batch, grad_of, update = stepper(config, task, a.batch_size, a.lr_scale)

    print(f"{a.run_dir}, {config.model}, from the step-{step} checkpoint, updates x {a.lr_scale:g}: held-out KL over"
          f" steps 1-{config.l} / recall steps {config.l + 1}-{config.l + config.k} ({a.batch_size} sequences)\n")
    print(f"| metrics step | gradient norm | held-out KL after it |\n| --- | --- | --- |\n| (checkpoint) | - | {kl_pair(model)} |")
    m, state = model, opt_state
    for s in range(step, step + a.steps):  # the batch of metrics step s + 1 starts from checkpoint s
        if s + 1 in a.skip:
            print(f"| {s + 1} | skipped | {kl_pair(m)} |", flush=True)
            continue
        g, norm = grad_of(m, *batch(s))
        m, state = update(m, state, g, s)  # at the run's rate of this update (its lr drops included)
        print(f"| {s + 1} | {float(norm):.0f} | {kl_pair(m)} |", flush=True)


if __name__ == "__main__":
    main()
