"""scripts/recall_evidence.sh, with a stand-in for gtmm that logs its calls and writes an evaluation:
stages resume where they stopped, and RESULTS keeps each stage's evaluation outside the run."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EVALUATION = ROOT / "docs" / "results" / "perfect-recall-15" / "lru-seed-0-continued" / "step-16000.json"

FAKE_GTMM = """#!/usr/bin/env bash
# train ... --steps N ... --out DIR: logs the call; evaluate DIR: writes evaluation.json and samples.png
echo "$*" >> "$CALLS"
if [[ $1 == train ]]; then
  out=; replicas=; while [[ $# -gt 0 ]]; do
    [[ $1 == --out ]] && out=$2; [[ $1 == --replicas ]] && replicas=$2; shift
  done
  if [[ -n $replicas ]]; then for ((r = 0; r < replicas; r++)); do mkdir -p "$out/replica-$r"; done
  else mkdir -p "$out"; fi
elif [[ $1 == evaluate ]]; then
  cp "$EVALUATION" "$2/evaluation.json"; echo png > "$2/samples.png"
fi
"""


def _run(tmp_path, **env):
    fake = tmp_path / "gtmm"
    fake.write_text(FAKE_GTMM)
    fake.chmod(0o755)
    full = dict(os.environ, GTMM=str(fake), CALLS=str(tmp_path / "calls.txt"), EVALUATION=str(EVALUATION),
                PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", **env)
    return subprocess.run(["bash", str(ROOT / "scripts" / "recall_evidence.sh"), str(tmp_path / "runs"), "2 4", "lru"],
                          env=full, capture_output=True, text=True, timeout=120)


def test_stages_resume_and_results_keeps_each_evaluation(tmp_path):
    results = tmp_path / "results"
    proc = _run(tmp_path, SEEDS="1", RESULTS=str(results))
    assert proc.returncode == 0, proc.stderr
    calls = (tmp_path / "calls.txt").read_text().splitlines()
    assert [c.split()[0] for c in calls] == ["train", "evaluate", "train", "evaluate"]
    assert "--steps 2" in calls[0] and "--seed 1" in calls[0] and "--steps 4" in calls[2]
    run = tmp_path / "runs" / "lru" / "replica-1"
    for stage in (2, 4):
        assert (run / f"evaluation-step-{stage}.json").exists()
        kept = results / "lru-seed-1" / f"step-{stage}.json"
        assert json.loads(kept.read_text()) == json.loads(EVALUATION.read_text())
    assert not list(results.rglob("*.tmp"))
    assert "| lru |" in proc.stdout  # summarize_seeds' table
    # started again: every stage is evaluated already, so nothing is trained
    assert _run(tmp_path, SEEDS="1", RESULTS=str(results)).returncode == 0
    assert len((tmp_path / "calls.txt").read_text().splitlines()) == 4


def test_replicas_together_keep_each_seeds_evaluation(tmp_path):
    proc = _run(tmp_path, RESULTS=str(tmp_path / "results"))
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.relative_to(tmp_path / "results").as_posix() for p in (tmp_path / "results").rglob("*.json")) == \
        [f"lru-seed-{r}/step-{s}.json" for r in range(3) for s in (2, 4)]
