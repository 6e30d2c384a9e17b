"""Training-batch KL before and during recall, in windows of steps, from a run's metrics.jsonl:
how a recall effect opens (or is wiped out by a gradient spike) between evaluations.

Usage: python scripts/kl_windows.py RUN_DIR [RUN_DIR ...] [--every 250]

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
    out = []
    for i in range(0, len(rows), every):
        w = rows[i:i + every]
        before = sum(sum(r["kl_per_step"][:l]) / l for r in w) / len(w)
        recall = sum(sum(r["kl_per_step"][l:]) / len(r["kl_per_step"][l:]) for r in w) / len(w)
        out.append((w[0]["step"], w[-1]["step"], before, recall, max(r["grad_norm"] for r in w)))
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--every", type=int, default=250)
    args = parser.parse_args()
    for run in args.runs:
        try:
            table = windows(run, args.every)
        except GtmmError as e:
            sys.exit(f"kl_windows: {e}")
        print(run)
        for a, b, before, recall, norm in table:
            print(f"  {a:6d}-{b:6d}  KL 1-l {before:6.2f}  KL recall {recall:6.2f}  max grad norm {norm:8.0f}")
