"""KL at every step from evaluation.json files (or copies of them), one colour per group; for
results whose run directories are gone (`gtmm plot` needs the runs themselves).

Usage: python scripts/plot_kl_evaluations.py --out kl.png "LABEL=GLOB" ["LABEL=GLOB" ...]
"""

import argparse
import glob
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--out", required=True)
parser.add_argument("--title", default="")
parser.add_argument("groups", nargs="+", help="LABEL=GLOB of evaluation JSON files")
args = parser.parse_args()
fig, ax = plt.subplots(figsize=(6, 3.5))
recall_start = None
for g, group in enumerate(args.groups):
    label, pattern = group.split("=", 1)
    paths = sorted(glob.glob(pattern))
    if not paths:
        raise SystemExit(f"plot_kl_evaluations: no file matches {pattern}")
    for i, path in enumerate(paths):
        ev = json.load(open(path))
        kl = np.array(ev["kl_per_step"])
        recall_start = ev.get("recall_start", recall_start)
        ax.plot(np.arange(1, len(kl) + 1), kl, color=f"C{g}", alpha=0.8, label=label if i == 0 else None)
if recall_start:
    ax.axvline(recall_start + 0.5, color="grey", ls=":", lw=1)
ax.set_xlabel(f"step t (recall from t = {recall_start + 1})" if recall_start else "step t")
ax.set_ylabel("KL at step t (nats)")
ax.legend(fontsize=8)
ax.set_title(args.title, fontsize=9)
fig.tight_layout()
fig.savefig(args.out, dpi=110)
