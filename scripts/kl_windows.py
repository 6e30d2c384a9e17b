"""Training-batch KL before and during recall, in windows of steps, from a run's metrics.jsonl:
how a recall effect opens (or is wiped out by a gradient spike) between evaluations.

Usage: python scripts/kl_windows.py RUN_DIR [RUN_DIR ...] [--every 250] [--over 5000]

--over N also prints the run's median gradient norm and every step whose norm is above N (the
spikes the clip at N cut), so a note's spike count comes from the same file as its windows.

The recall phase is taken to start at step `l` of the run's config, which is every task's
`recall_start` (tests/test_tasks.py checks it), so no data set needs loading.
"""

import argparse
import sys
from pathlib import Path

from gtmm.errors import GtmmError
from gtmm.train import read_config, read_metrics


def windows(run: Path, every: int) -> list[tuple[int, int, float, float, float]]:
    """(first step, last step, mean KL over steps 1-l, mean KL over the recall steps, max gradient norm)."""
    l = read_config(run).l
    rows = read_metrics(run)
    if not rows:
        raise GtmmError(f"{run} has no training steps in metrics.jsonl; train it first")
    out = []
    for i in range(0, len(rows), every):
        w = rows[i:i + every]
        before = sum(sum(r["kl_per_step"][:l]) / l for r in w) / len(w)
        recall = sum(sum(r["kl_per_step"][l:]) / len(r["kl_per_step"][l:]) for r in w) / len(w)
        out.append((w[0]["step"], w[-1]["step"], before, recall, max(r["grad_norm"] for r in w)))
    return out


def spikes(run: Path, over: float) -> tuple[float, list[tuple[int, float]]]:
    """(median gradient norm, [(step, norm) for every step whose norm is above `over`])."""
    rows = read_metrics(run)
    if not rows:
        raise GtmmError(f"{run} has no training steps in metrics.jsonl; train it first")
    norms = sorted(r["grad_norm"] for r in rows)
    n = len(norms)
    median = (norms[(n - 1) // 2] + norms[n // 2]) / 2
    return median, [(r["step"], r["grad_norm"]) for r in rows if r["grad_norm"] > over]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--every", type=int, default=250)
    parser.add_argument("--over", type=float, default=None, help="also list steps with gradient norm above this")
    args = parser.parse_args()
    if args.every < 1:
        sys.exit("kl_windows: --every must be at least 1")
    for run in args.runs:
        try:
            table = windows(run, args.every)
            high = spikes(run, args.over) if args.over is not None else None
        except GtmmError as e:
            sys.exit(f"kl_windows: {e}")
        print(run)
        for a, b, before, recall, norm in table:
            print(f"  {a:6d}-{b:6d}  KL 1-l {before:6.2f}  KL recall {recall:6.2f}  max grad norm {norm:8.0f}")
        if high is not None:
            median, high = high
            print(f"  median grad norm {median:.1f}; {len(high)} steps above {args.over:g}:")
            for step, norm in high:
                print(f"    step {step:6d}  grad norm {norm:10.1f}")
