"""scripts/score_batches.py rebuilds a run's training batches: under the checkpoint a step started from, it
gives the KL that step logged."""

import json
import sys

import pytest

from gtmm.train import TrainConfig, train
from tests._scripts import load_script

score_batches = load_script("score_batches")


def _main(monkeypatch, *args):
    monkeypatch.setattr(sys, "argv", ["score_batches.py", *map(str, args)])
    score_batches.main()


@pytest.fixture(scope="module")
def run(tmp_path_factory, recall_task):
    run = tmp_path_factory.mktemp("score") / "run"
    train(TrainConfig(model="lru", l=3, k=2, steps=3, batch_size=2, checkpoint_every=1, keep_every=1,
                      model_overrides={"hidden_size": 16}), run, progress=False, task=recall_task)
    return run


def test_a_step_scored_from_its_starting_checkpoint_is_what_it_logged(run, monkeypatch, capsys):
    logged = {r["step"]: r["kl_per_step"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())}
    _main(monkeypatch, run, "--step", 2, "--steps", 3, 3)
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| 3 |")).split(" | ")
    assert float(row[1]) == pytest.approx(sum(logged[3][:3]) / 3, abs=0.006)
    assert float(row[2]) == pytest.approx(sum(logged[3][3:]) / 2, abs=0.006)
    assert len(row[3].strip(" |").split()) == 2  # one recall KL per sequence of the batch


def test_bad_steps_are_a_one_line_error(run, monkeypatch):
    with pytest.raises(SystemExit, match="--steps must be FIRST LAST"):
        _main(monkeypatch, run, "--steps", 5, 2)
