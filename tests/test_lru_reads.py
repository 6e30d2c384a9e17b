"""scripts/lru_reads.py: on a trained LRU run it reads the model's own memory state; other runs are refused."""

import json
import sys
from dataclasses import asdict

import pytest

from gtmm.train import TrainConfig, train
from tests._scripts import load_script

lru_reads = load_script("lru_reads")


def _main(monkeypatch, *args):
    monkeypatch.setattr(sys, "argv", ["lru_reads.py", *map(str, args)])
    lru_reads.main()


def test_reads_a_trained_lru_run(tmp_path, recall_task, monkeypatch, capsys):
    run = tmp_path / "run"
    train(TrainConfig(model="lru", l=3, k=2, steps=1, batch_size=2, model_overrides={"hidden_size": 16}), run,
          progress=False, task=recall_task)
    _main(monkeypatch, run, "--batch-size", 2)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("step 1: 25 slots, 5 heads, 2 held-out sequences")  # 5 T slots, T = 5
    frames = [line for line in lines if line.startswith("frame ")]
    assert [f.split(":")[0] for f in frames] == ["frame 1", "frame 2"]
    assert "written at step 2, recalled at step 4" in frames[0]
    for line in frames:
        kept = float(line.split("kept ")[1].split(",")[0])
        mass = float(line.split("read mass ")[1].split(" ")[0])
        assert -1.0 <= kept <= 1.0 + 1e-6 and 0.0 <= mass <= 5.0 + 1e-6  # a cosine; at most one per head
    largest = float(next(line for line in lines if line.startswith("largest read weight")).split(": ")[1].split(" ")[0])
    assert 1 / 25 - 1e-6 <= largest <= 1.0  # a row of 25 weights summing to one has its largest at least 1/25


def test_refuses_a_run_of_another_model(tmp_path, monkeypatch):
    """Refused from the run's config.json alone, before any model is built: a vrnn run's is enough."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"train": asdict(TrainConfig(model="vrnn", l=3, k=2))}))
    with pytest.raises(SystemExit, match="is a vrnn run on perfect-recall; this reads lru runs"):
        _main(monkeypatch, run)
