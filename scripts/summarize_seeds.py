"""Table of KL before and during recall for runs made by scripts/perfect_recall_seeds.sh or
scripts/recall_evidence.sh: every evaluation.json under each RUNS_DIR (at any depth), and any
evaluation file named directly (e.g. copies such as docs/results/.../dnc-seed-2-step-8000.json).

Usage: python scripts/summarize_seeds.py RUNS_DIR_OR_EVALUATION_JSON [...] > table.md
"""

import json
import sys
from collections import defaultdict
from pathlib import Path

from gtmm.report import mean_se

if len(sys.argv) < 2:
    sys.exit(__doc__.strip().splitlines()[-1])
if sys.argv[1] in ("-h", "--help"):
    print(__doc__.strip())
    sys.exit(0)
paths = []
for arg in map(Path, sys.argv[1:]):
    if not arg.exists():
        sys.exit(f"summarize_seeds: {arg} does not exist; name a run directory or an evaluation .json file")
    paths += sorted(arg.rglob("evaluation.json")) if arg.is_dir() else [arg]
REQUIRED = ("model", "seed", "step", "negative_bound", "kl_before_recall", "kl_recall", "last_step_kl")
evaluations = []
for ev_path in paths:  # all read before anything is printed, so a bad file leaves no half table
    try:
        ev = json.loads(ev_path.read_text())
        missing = [key for key in REQUIRED if key not in ev]
    except (ValueError, TypeError) as e:
        missing = [f"{type(e).__name__}: {e}"]
    if missing:
        sys.exit(f"summarize_seeds: {ev_path} is not a gtmm evaluation file (missing or unreadable: {missing});"
                 " name evaluation.json files or the run directories that hold them")
    evaluations.append(ev)
rows = defaultdict(list)
print("| model | seed | steps | negative bound | KL steps 1-l (mean) | KL recall steps (mean) | last-step KL"
      " | generation accuracy |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for ev in evaluations:
    rows[(ev["model"], ev["step"])].append(ev)
    print(f"| {ev['model']} | {ev['seed']} | {ev['step']} | {ev['negative_bound']:.1f} | {ev['kl_before_recall']:.3f}"
          f" | {ev['kl_recall']:.3f} | {ev['last_step_kl']:.3f} | {ev.get('generation_accuracy', float('nan')):.3f} |")
print()
print("| model | steps | runs | negative bound | KL steps 1-l | KL recall steps | last-step KL | generation accuracy |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for (model, step), evs in sorted(rows.items()):
    def ms(key, digits=3):  # the report's formatter, so both print the same way
        return mean_se([e.get(key) for e in evs], digits)
    print(f"| {model} | {step} | {len(evs)} | {ms('negative_bound', 1)} | {ms('kl_before_recall')} | {ms('kl_recall')}"
          f" | {ms('last_step_kl')} | {ms('generation_accuracy')} |")
