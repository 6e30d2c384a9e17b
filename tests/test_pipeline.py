"""train -> evaluate -> sample -> plot, as the README's main job runs it, on a tiny run."""

import json

import numpy as np

from gtmm.evaluate import evaluate_run, sample_run
from gtmm.plots import plot_kl_per_step
from gtmm.train import TrainConfig, train


def test_evaluate_sample_and_plot(tmp_path, recall_task):
    runs = []
    for model in ("vrnn", "introspective"):
        run = tmp_path / model
        train(TrainConfig(model=model, l=3, k=2, steps=1), run, progress=False, task=recall_task)
        ev = evaluate_run(run, batches=1)
        assert ev["step"] == 1 and len(ev["kl_per_step"]) == 5
        assert all(np.isfinite(ev["kl_per_step"])) and np.isfinite(ev["negative_bound"])
        assert json.loads((run / "evaluation.json").read_text())["kl_recall"] == ev["kl_recall"]
        png = sample_run(run, sequences=2)
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        runs.append(run)
    plot = plot_kl_per_step(runs, tmp_path / "kl.png")
    assert plot.stat().st_size > 5000
