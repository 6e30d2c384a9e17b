"""Figures: KL per step with models side by side (left panel of Fig. 4) and sample grids."""

from __future__ import annotations

import io
import json
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from gtmm._io import write_bytes_atomic  # noqa: E402
from gtmm.errors import GtmmError  # noqa: E402

MODEL_COLOURS = {"vrnn": "tab:gray", "introspective": "tab:red", "ntm": "tab:blue", "lru": "tab:green",
                 "dnc": "tab:purple"}


def _save(fig, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    write_bytes_atomic(path, buf.getvalue())
    return path


def _evaluation(run_dir: Path) -> dict:
    path = Path(run_dir) / "evaluation.json"
    if not path.exists():
        raise GtmmError(f"{run_dir} has no evaluation.json; run `gtmm evaluate {run_dir}` first")
    return json.loads(path.read_text())


def plot_kl_per_step(run_dirs: list[str | Path], out: str | Path) -> Path:
    """KL at every step after training, one line per model; runs of the same model (seeds,
    replicas) give the mean and its standard error across runs (paper section 4.1)."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for d in run_dirs:
        ev = _evaluation(Path(d))
        groups[ev["model"]].append(ev)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    recall = None
    for model, evs in groups.items():
        kl = np.array([e["kl_per_step"] for e in evs])
        mean = kl.mean(0)
        steps = np.arange(1, kl.shape[1] + 1)
        label = f"{model} (n={len(evs)})" if len(evs) > 1 else model
        ax.plot(steps, mean, marker="o", ms=3, label=label, color=MODEL_COLOURS.get(model))
        if len(evs) > 1:
            se = kl.std(0, ddof=1) / np.sqrt(len(evs))
            ax.fill_between(steps, mean - se, mean + se, alpha=0.25, color=MODEL_COLOURS.get(model))
        recall = evs[0]["recall_start"]
    if recall is not None:
        ax.axvline(recall + 0.5, color="k", ls=":", lw=1, label="recall starts")
    ev0 = next(iter(groups.values()))[0]
    ax.set(xlabel="time step", ylabel="KL (nats)", title=f"{ev0['task']} l={ev0['l']} k={ev0['k']}: KL per step")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, Path(out))


def save_sample_grid(path: Path, frames: np.ndarray, recon: np.ndarray, generated: np.ndarray, recall_start: int,
                     title: str = "") -> Path:
    """Rows per sequence: input, reconstruction, continual generation (prior from `recall_start` on)."""
    n, T = frames.shape[:2]
    fig, axes = plt.subplots(3 * n, T, figsize=(T * 0.55, 3 * n * 0.6))
    axes = np.atleast_2d(axes)
    names = ("input", "recon.", "generated")
    for i in range(n):
        for row, data in enumerate((frames, recon, generated)):
            for t in range(T):
                ax = axes[3 * i + row, t]
                ax.imshow(data[i, t, 0], cmap="gray", vmin=0, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
                if row == 2 and t >= recall_start:
                    for s in ax.spines.values():
                        s.set_color("tab:red")
                        s.set_linewidth(1.5)
                if t == 0:
                    ax.set_ylabel(names[row], fontsize=6, rotation=0, ha="right", va="center")
    fig.suptitle(title + "\n(red frames: generated from the prior)", fontsize=8)
    fig.subplots_adjust(wspace=0.05, hspace=0.05)
    return _save(fig, Path(path))
