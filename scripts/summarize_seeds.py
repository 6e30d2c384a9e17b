"""Table of KL before and during recall for runs made by scripts/perfect_recall_seeds.sh or
scripts/recall_evidence.sh (every evaluation.json under RUNS_DIR, at any depth).

Usage: python scripts/summarize_seeds.py RUNS_DIR > table.md
"""

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

root = Path(sys.argv[1])
rows = defaultdict(list)
print("| model | seed | steps | negative bound | KL steps 1-l (mean) | KL recall steps (mean) | last-step KL |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for ev_path in sorted(root.rglob("evaluation.json")):
    ev = json.loads(ev_path.read_text())
    rows[(ev["model"], ev["step"])].append(ev)
    print(f"| {ev['model']} | {ev['seed']} | {ev['step']} | {ev['negative_bound']:.1f} | {ev['kl_before_recall']:.3f}"
          f" | {ev['kl_recall']:.3f} | {ev['last_step_kl']:.3f} |")
print()
print("| model | steps | runs | KL steps 1-l, mean +- s.e. | KL recall steps, mean +- s.e. |")
print("| --- | --- | --- | --- | --- |")
for (model, step), evs in rows.items():
    def ms(key):
        v = np.array([e[key] for e in evs])
        if len(v) < 2:  # no standard error from one run
            return f"{v.mean():.3f}"
        return f"{v.mean():.3f} +- {v.std(ddof=1) / np.sqrt(len(v)):.3f}"
    print(f"| {model} | {step} | {len(evs)} | {ms('kl_before_recall')} | {ms('kl_recall')} |")
