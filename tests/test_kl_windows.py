"""scripts/kl_windows.py: the windows and the spike list a note quotes come out of metrics.jsonl as stated."""

import json

import pytest

from gtmm.errors import GtmmError
from tests._scripts import load_script

kl_windows = load_script("kl_windows")


def _run(tmp_path, norms):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"train": {"model": "vrnn", "l": 2, "k": 1}}))
    with open(run / "metrics.jsonl", "w") as f:
        for step, norm in enumerate(norms, 1):
            # KL 1.0 on the two steps before recall, 3.0 on the recall step, so the windows are known
            f.write(json.dumps({"step": step, "kl_per_step": [1.0, 1.0, 3.0 * step], "grad_norm": norm}) + "\n")
    return run


def test_windows_and_spikes(tmp_path):
    run = _run(tmp_path, [10.0, 7000.0, 20.0, 30.0, 9000.0])
    table = kl_windows.windows(run, 2)
    assert [(a, b) for a, b, *_ in table] == [(1, 2), (3, 4), (5, 5)]
    assert table[0][2:] == (1.0, 4.5, 7000.0)  # recall KL: mean of 3 and 6
    median, high = kl_windows.spikes(run, 5000)
    assert median == 30.0
    assert high == [(2, 7000.0), (5, 9000.0)]


def test_a_run_without_steps_is_refused(tmp_path):
    run = _run(tmp_path, [])
    with pytest.raises(GtmmError, match="no training steps"):
        kl_windows.spikes(run, 5000)
    with pytest.raises(GtmmError, match="no training steps"):
        kl_windows.windows(run, 10)
