"""Figures: the paper's three metrics with models side by side (Fig. 4), sample grids, task examples."""

from __future__ import annotations

import io
import json
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402

from gtmm._io import write_bytes_atomic  # noqa: E402
from gtmm.errors import GtmmError  # noqa: E402
from gtmm.units import unit_scale  # noqa: E402

MODEL_COLOURS = {"vrnn": "tab:gray", "introspective": "tab:red", "ntm": "tab:blue", "lru": "tab:green",
                 "dnc": "tab:purple", "associative": "tab:orange"}


def _save(fig, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    write_bytes_atomic(path, buf.getvalue())
    return path


def _check_run_dir(run_dir: Path) -> None:
    if not (Path(run_dir) / "config.json").exists():
        raise GtmmError(f"{run_dir} is not a gtmm run directory (no config.json); give run directories")


def _evaluation(run_dir: Path) -> dict:
    path = Path(run_dir) / "evaluation.json"
    _check_run_dir(run_dir)
    if not path.exists():
        raise GtmmError(f"{run_dir} has no evaluation.json; run `gtmm evaluate {run_dir}` first")
    return json.loads(path.read_text())


def _training_record(run_dir: Path) -> dict:
    """What an evaluation record says of a run's experiment, from its config.json: for the training
    curves of runs not yet evaluated."""
    from gtmm.train import read_config

    config = read_config(run_dir)
    return {"model": config.model, "task": config.task, "l": config.l, "k": config.k, "grid": config.grid}


def _by_model(run_dirs: list[str | Path], evaluated: bool = True) -> dict[str, list[tuple[Path, dict]]]:
    """Evaluated runs grouped by model, in the paper's model order; they must be of one experiment
    as `gtmm report` defines it (`report.group_experiments`), so that no curve averages runs of
    different tasks or settings. `evaluated=False`: runs not yet evaluated, by their config.json."""
    from gtmm.report import experiment_label, group_experiments

    evals = {Path(d): _evaluation(Path(d)) if evaluated else _training_record(Path(d)) for d in run_dirs}
    # runs still training may be headed for different step counts; their curves are comparable
    experiments = group_experiments(evals, ignore=() if evaluated else ("steps",))
    if len(experiments) > 1:
        raise GtmmError(f"these runs span {len(experiments)} experiments"
                        f" ({'; '.join(sorted(map(experiment_label, experiments)))}); a plot draws one:"
                        " give the runs of one, or use gtmm report, which draws one figure each")
    (models,) = experiments.values()
    order = list(MODEL_COLOURS)
    return {m: [(run, evals[run]) for run in models[m]]
            for m in sorted(models, key=lambda m: order.index(m) if m in order else len(order))}


def _band(ax, x: np.ndarray, runs: np.ndarray, model: str, label: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean over runs (rows) with a band of one standard error when there are several; returns
    the lower and upper edges drawn."""
    mean = runs.mean(0)
    ax.plot(x, mean, label=label, color=MODEL_COLOURS.get(model), lw=1.3)
    se = runs.std(0, ddof=1) / np.sqrt(runs.shape[0]) if runs.shape[0] > 1 else np.zeros_like(mean)
    if runs.shape[0] > 1:
        ax.fill_between(x, mean - se, mean + se, alpha=0.25, color=MODEL_COLOURS.get(model), lw=0)
    return mean - se, mean + se


def _label(model: str, n: int) -> str:
    return f"{model} (n={n})" if n > 1 else model


def _draw_kl_per_step(ax, groups: dict[str, list[tuple[Path, dict]]], units: str = "nats") -> None:
    recall = None
    for model, runs in groups.items():
        kl = np.array([ev["kl_per_step"] for _, ev in runs]) * unit_scale(units)
        _band(ax, np.arange(1, kl.shape[1] + 1), kl, model, _label(model, len(runs)))
        recall = runs[0][1]["recall_start"]
    if recall is not None:
        ax.axvline(recall + 0.5, color="k", ls=":", lw=1, label="recall starts")
    ax.set(xlabel="time step", ylabel=f"KL ({units})", title="KL per step after training")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
    ax.grid(alpha=0.3)


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average (the first points average what there is)."""
    c = np.cumsum(np.insert(values, 0, 0.0))
    n = np.minimum(np.arange(1, len(values) + 1), window)
    return (c[1:] - c[np.arange(1, len(values) + 1) - n]) / n


def _draw_training_curve(ax, groups: dict[str, list[tuple[Path, dict]]], key: str, title: str,
                         units: str = "nats") -> None:
    from gtmm.train import read_metrics

    edges = []
    for model, runs in groups.items():
        curves = [np.array([m[key] for m in read_metrics(d)], float) * unit_scale(units) for d, _ in runs]
        length = min(len(c) for c in curves)
        if length == 0:
            continue
        window = max(1, length // 50)
        smoothed = np.array([_smooth(c[:length], window) for c in curves])
        edges.append(_band(ax, np.arange(1, length + 1), smoothed, model, _label(model, len(runs))))
    ax.set(xlabel="training step", ylabel=units, title=title)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))  # more 5-digit steps run into each other
    ax.grid(alpha=0.3)
    _fit_after_the_start(ax, edges)


def _fit_after_the_start(ax, edges: list[tuple[np.ndarray, np.ndarray]], start: float = 0.05,
                         ratio: float = 4.0) -> None:
    """Where the first `start` of training spans over `ratio` times the range of the rest (the
    bound falls from about 14,000 nats to 2,000 in the first few hundred steps, and then the
    differences between models are tens of nats), fit the y axis to the rest and say so."""
    def finite(a: np.ndarray) -> np.ndarray:  # a diverged run's nan and inf stay gaps in the curve
        return a[np.isfinite(a)]

    lows = [finite(lo) for lo, _ in edges]
    highs = [finite(hi) for _, hi in edges]
    rest = [finite(hi[int(len(hi) * start):]) for _, hi in edges]
    if not any(r.size for r in rest):
        return
    low = min(float(a.min()) for a in lows if a.size)
    top = max(float(a.max()) for a in highs if a.size)
    rest_top = max(float(a.max()) for a in rest if a.size)
    if rest_top <= low or top - low <= ratio * (rest_top - low):
        return
    pad = 0.05 * (rest_top - low)
    ax.set_ylim(low - pad, rest_top + pad)
    ax.text(0.98, 0.97, f"the first {start:.0%} of training is cut off the axis (up to {top:,.0f})",
            transform=ax.transAxes, ha="right", va="top", fontsize=7, color="0.35")


def plot_kl_per_step(run_dirs: list[str | Path], out: str | Path, units: str = "nats") -> Path:
    """KL at every step after training, one line per model; runs of the same model (seeds,
    replicas) give the mean and its standard error across runs (paper section 4.1). `units`:
    "nats" or "bits"."""
    unit_scale(units)
    groups = _by_model(run_dirs)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    _draw_kl_per_step(ax, groups, units)
    from gtmm.report import experiment_label, experiment_of

    ax.set_title(f"{experiment_label((*experiment_of(next(iter(groups.values()))[0][1]), ()))}: KL per step")
    ax.legend(fontsize=8)
    return _save(fig, Path(out))


def plot_three_metrics(run_dirs: list[str | Path], out: str | Path, title: str = "", units: str = "nats") -> Path:
    """The paper's three metrics side by side (Fig. 4, 6, 8, 10, 12, 14): KL at every step after
    training, last-step KL over training and the negative bound over training, each the mean and
    standard error over the runs of a model; training curves are smoothed by a trailing mean over
    a fiftieth of the run. `units`: "nats" or "bits".

    Where some run is not evaluated yet (still training, say), every run gets the two training
    panels alone, and the title says how many are not evaluated: the first panel would leave
    those out."""
    unit_scale(units)  # a bad name fails before any run is read
    runs = [Path(d) for d in run_dirs]
    for run in runs:
        _check_run_dir(run)
    missing = [run for run in runs if not (run / "evaluation.json").exists()]
    evaluated = not missing
    if not evaluated and not any((run / "metrics.jsonl").exists() and (run / "metrics.jsonl").stat().st_size
                                 for run in runs):
        raise GtmmError("none of these runs is evaluated or has logged a training step yet (metrics.jsonl);"
                        " plot them once training has begun")
    groups = _by_model(runs, evaluated)
    fig, axes = plt.subplots(1, 3 if evaluated else 2, figsize=(14 if evaluated else 9.5, 3.6))
    if evaluated:
        _draw_kl_per_step(axes[0], groups, units)
    _draw_training_curve(axes[-2], groups, "last_step_kl", "last-step KL over training", units)
    _draw_training_curve(axes[-1], groups, "negative_bound", "negative lower bound over training", units)
    axes[0].legend(fontsize=8)
    if not evaluated:
        which = "not evaluated yet" if len(missing) == len(runs) else f"{len(missing)} of {len(runs)} runs not evaluated yet"
        title = f"{title}{': ' if title else ''}{which}: training curves only (gtmm evaluate adds KL per step)"
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, Path(out))


def _show_frame(ax, image: np.ndarray, highlight: bool = False) -> None:
    """One frame (`[c, h, w]` or `[h, w]`, values in [0, 1]) in `ax`, no ticks: grey levels for
    one channel, colour for three; a red border where `highlight` (recall or generated phase)."""
    image = np.asarray(image)
    if image.ndim == 3:
        image = image[0] if image.shape[0] == 1 else np.clip(image.transpose(1, 2, 0), 0.0, 1.0)
    ax.imshow(image, cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    if highlight:
        for s in ax.spines.values():
            s.set_color("tab:red")
            s.set_linewidth(1.5)


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """A frame (`[c, h, w]` or `[h, w]`, values in [0, 1]) as `[h, w, 3]`."""
    image = np.asarray(image, np.float32)
    if image.ndim == 3:
        image = image.transpose(1, 2, 0)
        return np.clip(np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image, 0.0, 1.0)
    return np.clip(np.repeat(image[:, :, None], 3, axis=2), 0.0, 1.0)


HIGHLIGHT_RGB = (0.84, 0.15, 0.16)  # matplotlib's tab:red


def save_sample_grid(path: Path, frames: np.ndarray, recon: np.ndarray, generated: np.ndarray, recall_start: int,
                     title: str = "", above: list[list[str]] | None = None) -> Path:
    """Rows per sequence: input, reconstruction, continual generation (prior from `recall_start` on).
    `above[i][t]`, when given, is written above sequence i's frame t (the maze's actions, as the
    paper's Fig. 15 shows them).

    Drawn as one mosaic image (one axes): a subplot per frame took ~6 s per grid, most of a
    run's evaluation at smoke scale.
    """
    n, T = frames.shape[:2]
    h, w = _as_rgb(frames[0, 0]).shape[:2]
    pad, gap = 2, 8  # pixels around each frame (red where generated), and between sequences
    top = gap if above is not None else 0  # room for the first sequence's notes
    cell_h, cell_w = h + 2 * pad, w + 2 * pad
    canvas = np.ones((top + 3 * n * cell_h + (n - 1) * gap, T * cell_w, 3), np.float32)
    centres, notes = [], []
    for i in range(n):
        for row, data in enumerate((frames, recon, generated)):
            y0 = top + (3 * i + row) * cell_h + i * gap
            if row == 0 and above is not None:
                notes += [((t + 0.5) * cell_w, y0 - gap / 2, above[i][t]) for t in range(T)]
            centres.append((y0 + cell_h / 2, ("input", "recon.", "generated")[row]))
            for t in range(T):
                x0 = t * cell_w
                if row == 2 and t >= recall_start:
                    canvas[y0:y0 + cell_h, x0:x0 + cell_w] = HIGHLIGHT_RGB
                canvas[y0 + pad:y0 + pad + h, x0 + pad:x0 + pad + w] = _as_rgb(data[i, t])
    fig = plt.figure(figsize=(T * 0.55 + 0.9, 3 * n * 0.6 + 0.6))
    ax = fig.add_axes((0.9 / (T * 0.55 + 0.9), 0.0, 1 - 0.9 / (T * 0.55 + 0.9), 3 * n * 0.6 / (3 * n * 0.6 + 0.6)))
    ax.imshow(canvas, interpolation="nearest")
    ax.set_axis_off()
    for y, name in centres:
        ax.text(-3, y, name, fontsize=6, ha="right", va="center")
    for x, y, text in notes:
        ax.text(x, y, text, fontsize=6, ha="center", va="center")
    fig.suptitle(title + "\n(red frames: generated from the prior)", fontsize=8)
    return _save(fig, Path(path))


def save_read_weights(path: Path, weights: np.ndarray, frames: np.ndarray, recall_start: int, title: str = "") -> Path:
    """One heat map per read head of `weights` (`[time, heads, slots]`): row t is where the head
    read at step t + 1; beside them the sequence's frames, one per row, and a line where recall
    starts."""
    T, heads, slots = weights.shape
    panel = min(3.5, max(1.6, slots * 0.06))  # inches per head: 100 LRU slots stay legible
    height = 1.2 + T * 0.16
    fig = plt.figure(figsize=(1.0 + heads * panel, height))
    spec = fig.add_gridspec(1, heads + 1, width_ratios=[0.45] + [panel] * heads, wspace=0.12,
                            top=1 - 0.75 / height)  # room for the title above the heads' names
    strip = np.concatenate([_as_rgb(f) for f in frames], axis=0)  # the frames, top to bottom
    ax = fig.add_subplot(spec[0, 0])
    ax.imshow(strip, aspect="auto", interpolation="nearest", extent=(0, 1, T + 0.5, 0.5))
    ax.set_xticks([])
    ax.set_ylabel("step")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    top = float(weights.max()) or 1.0
    for r in range(heads):
        ax = fig.add_subplot(spec[0, r + 1])
        image = ax.imshow(weights[:, r, :], aspect="auto", interpolation="nearest", cmap="viridis", vmin=0.0,
                          vmax=top, extent=(-0.5, slots - 0.5, T + 0.5, 0.5))
        ax.axhline(recall_start + 0.5, color="tab:red", lw=0.8, ls=":")
        ax.set_title(f"read head {r + 1}", fontsize=7)
        ax.set_xlabel("slot", fontsize=7)
        ax.set_yticks([])
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=6)
    fig.colorbar(image, ax=fig.axes, fraction=0.02, pad=0.01, label="read weight")
    fig.suptitle(title + "\n(dotted red: recall starts)", fontsize=8)
    return _save(fig, Path(path))


def action_label(context: np.ndarray) -> str:
    """The maze's one-hot action c_t as an arrow ("start" for the zero action at t = 0)."""
    from gtmm.tasks.mnist_maze import ACTIONS, ARROWS

    return ARROWS[ACTIONS[int(np.argmax(context))][0]] if context.sum() > 0 else "start"


def _frame_notes(batch, i: int, t: int, copies_source: bool) -> tuple[str, str]:
    """(above, below) a frame: the step and the maze's action above; label, cell, source below."""
    above = str(t)
    below = str(int(batch.labels[i, t]))
    if batch.context.shape[-1]:
        above += " " + action_label(batch.context[i, t])
    if batch.positions is not None:
        r, c = batch.positions[i, t]
        below += f" ({r},{c})"
    src = int(batch.source_index[i, t])
    if src >= 0:
        below += f"\n={src}" if copies_source else f"\n{int(batch.labels[i, src])}%2"
    return above, below


def _draw_map(ax, batch, i: int, grid: int) -> None:
    """The maze of sequence `i`: each visited cell's digit, unvisited cells grey, and the walk."""
    size = batch.frames.shape[-1]
    canvas = np.full((grid * size, grid * size), 0.25, np.float32)
    for t in range(batch.frames.shape[1]):
        r, c = batch.positions[i, t]
        canvas[r * size:(r + 1) * size, c * size:(c + 1) * size] = batch.frames[i, t, 0]
    ax.imshow(canvas, cmap="gray", vmin=0, vmax=1)
    path = (batch.positions[i].astype(float) + 0.5) * size
    ax.plot(path[:, 1], path[:, 0], color="tab:orange", lw=1.2, alpha=0.8)
    ax.plot(path[0, 1], path[0, 0], "o", color="tab:green", ms=4)
    ax.plot(path[-1, 1], path[-1, 0], "s", color="tab:red", ms=4)
    for k in range(1, grid):
        ax.axhline(k * size - 0.5, color="tab:blue", lw=0.5)
        ax.axvline(k * size - 0.5, color="tab:blue", lw=0.5)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title("map: start o, end \u25a0", fontsize=6)


def save_sequences(path: str | Path, batch, copies_source: bool = True, grid: int | None = None,
                   title: str = "") -> Path:
    """One row per sequence of a task's `Batch` (the layout of the paper's Fig. 3, 5, 7, 9, 11);
    with `grid`, the maze of each sequence on the left (Fig. 13). Above each frame its step (and
    the action c_t that led there); below it the label (and cell), and, where the frame reproduces
    an earlier step s, "=s" (the same image) or "d%2" (parity recall: the parity of s's digit d)."""
    n, T = batch.frames.shape[:2]
    extra = 4 if grid else 0
    fig = plt.figure(figsize=((T + extra) * 0.6, n * 1.05 + 0.5))
    spec = fig.add_gridspec(n, T + extra, wspace=0.08, hspace=0.75)
    for i in range(n):
        if grid:
            _draw_map(fig.add_subplot(spec[i, :extra - 1]), batch, i, grid)
        for t in range(T):
            ax = fig.add_subplot(spec[i, extra + t])
            _show_frame(ax, batch.frames[i, t], highlight=t >= batch.recall_start)
            above, below = _frame_notes(batch, i, t, copies_source)
            ax.set_title(above, fontsize=6, pad=2)
            ax.set_xlabel(below, fontsize=6, labelpad=2)
    fig.suptitle(title, fontsize=8)
    return _save(fig, Path(path))


def draw_task_examples(task, out: str | Path, sequences: int = 3, seed: int = 0, split: str = "train") -> Path:
    """PNG of `sequences` example sequences of `task` (batch `seed`, step 0 of `split`)."""
    batch = task.batch(split, sequences, seed, 0)
    params = ", ".join(f"{p}={getattr(task, p)}" for p in task.defaults)
    phase = "generated after observing the first" if task.context_size else "recall phase after"
    title = (f"{task.name} ({params}), {split} split, seed {seed}: red frames = {phase} l={task.recall_start} steps;"
             f" source {task.dataset.name}")
    return save_sequences(out, batch, copies_source=task.copies_source, grid=getattr(task, "grid", None),
                          title=title)
