"""A self-contained report over run directories: Markdown beside its PNGs (paper section 4, SPEC 5).

For every experiment (task, l, k, and the maze's grid; split by settings where a sweep varied
them, see `group_experiments`) among the runs: a table of models by metrics, each the mean and
standard error over that model's runs (replicas or seeds), the three-panel figure of the paper's
metrics, and one sample grid per model (observed, reconstructed, generated).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

import gtmm
from gtmm._io import check_writable, write_bytes_atomic
from gtmm.errors import GtmmError
from gtmm.memories import MEMORIES
from gtmm.units import evaluation_in, unit_scale

REPORT_NAME = "report.md"
_MARK = "<!-- written by gtmm report -->"


def find_runs(paths: list[str | Path]) -> list[Path]:
    """Every run directory (one holding config.json) at or below each of `paths`."""
    runs: list[Path] = []
    for p in map(Path, paths):
        if not p.is_dir():
            raise GtmmError(f"{p} is not a directory; give run directories or folders that hold them")
        found = [p] if (p / "config.json").exists() else sorted(c.parent for c in p.rglob("config.json"))
        if not found:
            raise GtmmError(f"{p} is not a gtmm run directory and holds none (no config.json at or below it)")
        runs += [r for r in found if r not in runs]
    return runs


def _newest_checkpoint_step(run: Path) -> int | None:
    from gtmm.train import _checkpoint_paths

    paths = _checkpoint_paths(run)
    return max(step for step, _ in paths) if paths else None


def ensure_evaluated(run: Path, batches: int = 10) -> dict:
    """The run's evaluation.json, (re)computed when missing, older than the newest checkpoint, or
    older than this metric set; and its samples.png."""
    from gtmm.evaluate import evaluate_run, sample_run

    step = _newest_checkpoint_step(run)
    if step is None:
        raise GtmmError(f"{run} holds no checkpoint yet; train it first or leave it out of the report")
    path = run / "evaluation.json"
    ev = json.loads(path.read_text()) if path.exists() else None
    if ev is None or ev.get("step") != step or "generation_scored" not in ev:
        ev = evaluate_run(run, batches)  # writes samples.png too
    if not (run / "samples.png").exists():
        sample_run(run)
    return ev


def evaluate_runs(runs: list[Path], batches: int = 10, progress: bool = True) -> dict[Path, dict]:
    """`ensure_evaluated` for every run, with a progress bar (evaluating and sampling takes a while)."""
    from tqdm import tqdm

    return {run: ensure_evaluated(run, batches)
            for run in tqdm(runs, desc="evaluating", unit="run", disable=not progress, dynamic_ncols=True)}


def _settings(run: Path) -> tuple:
    """What besides the experiment (`experiment_of`) and the seed sets a run apart (steps, batch,
    learning rate and its drops, gradient clipping, model settings): runs of one model that differ
    in it are never averaged together."""
    from gtmm.train import lr_drops_text, read_config

    config = read_config(run)
    drops = (("lr_drops", lr_drops_text(config.lr_drops)),) if config.lr_drops else ()
    clip = (("clip", config.clip_grad_norm),) if config.clip_grad_norm is not None else ()
    clip += (("clip_memory", config.clip_memory_grad_norm),) if config.clip_memory_grad_norm is not None else ()
    return (("steps", config.steps), ("batch", config.batch_size), ("lr", config.lr), *drops, *clip,
            *sorted(config.model_overrides.items()))


def experiment_of(ev: dict) -> tuple:
    """The experiment an evaluation belongs to: task, l, k and the maze's grid (None for tasks
    without one; evaluations older than the grid setting read as the task's default)."""
    return ev["task"], ev["l"], ev["k"], ev.get("grid", _default_grid(ev["task"]))


def _default_grid(task: str) -> int | None:
    """The paper's grid of a task that has one (the maze's 4), else None."""
    from gtmm.tasks import TASKS

    return TASKS[task].defaults.get("grid") if task in TASKS else None


def group_experiments(evals: dict[Path, dict], ignore: tuple[str, ...] = ()) -> dict[tuple, dict[str, list[Path]]]:
    """Runs by experiment, then by model: {(task, l, k, grid, differs): {model: [run, ...]}}.

    The one definition of "one experiment" that `gtmm report` (a section each) and `gtmm plot`
    (one figure) share. Where a model ran an experiment with several settings (a sweep), that
    experiment is split by settings and `differs` names those in which its parts differ (the
    settings all its runs share are left out); otherwise `differs` is empty, and models of one
    experiment may differ in settings (each model's own training length, say). Settings named in
    `ignore` do not split (a training curve does not depend on the step count a run is headed for).
    """
    settings = {run: tuple(s for s in _settings(run) if s[0] not in ignore) for run in evals}
    found: dict[tuple, set] = defaultdict(set)
    for run, ev in evals.items():
        found[(experiment_of(ev), ev["model"])].add(settings[run])
    vary = {experiment for (experiment, _), kinds in found.items() if len(kinds) > 1}
    shared = {experiment: set.intersection(*(set(settings[run]) for run, ev in evals.items()
                                             if experiment_of(ev) == experiment)) for experiment in vary}
    groups: dict[tuple, dict[str, list[Path]]] = defaultdict(lambda: defaultdict(list))
    for run, ev in evals.items():
        experiment = experiment_of(ev)
        differs = tuple(s for s in settings[run] if s not in shared[experiment]) if experiment in vary else ()
        groups[(*experiment, differs)][ev["model"]].append(run)
    return {key: dict(models) for key, models in groups.items()}


def experiment_label(key: tuple, style: str = "text") -> str:
    """A group key of `group_experiments` as "text" (mnist-maze l=13 k=12 grid=6 lr=0.001), a
    "heading" (mnist-maze, l = 13, k = 12, grid = 6, lr = 0.001) or a "file" name stem
    (mnist-maze-l13-k12-grid6-lr0.001). The grid shows where it is not the paper's."""
    task, l, k, grid, differs = key
    parts = [("l", l), ("k", k)] + ([("grid", grid)] if grid != _default_grid(task) else []) + list(differs)
    if style == "heading":
        return task + "".join(f", {name.replace('_', ' ')} = {value}" for name, value in parts)
    if style == "file":
        return task + "".join(f"-{name}{value}" for name, value in parts)
    return task + "".join(f" {name}={value}" for name, value in parts)


def mean_se(values: list[float | None], digits: int = 2) -> str:
    """Mean ± standard error of the values that are not None, as text (one value alone; "n/a" for none)."""
    v = np.array([x for x in values if x is not None], float)
    if v.size == 0:
        return "n/a"
    if v.size == 1:
        return f"{v[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1) / np.sqrt(v.size):.{digits}f}"


def _check_out(out: Path, runs: list[Path]) -> None:
    if any(r == out or r in out.parents for r in runs):
        raise GtmmError(f"the report directory {out} is inside a run directory; choose another --out")
    report = out / REPORT_NAME
    if report.exists() and _MARK not in report.read_text(errors="replace"):
        raise GtmmError(f"{report} exists and was not written by gtmm report; choose another --out")


def write_report(paths: list[str | Path], out: str | Path, title: str = "", batches: int = 10,
                 command: str = "", progress: bool = True, units: str = "nats") -> Path:
    """Write `out/report.md` and its PNGs for the runs at or below `paths`; returns the report's path.

    Runs are evaluated (and sampled) first where they have not been since their newest checkpoint.
    `units` ("nats" or "bits") is what the tables and figures show; the runs' files stay in nats.
    """
    from gtmm.plots import plot_three_metrics

    unit_scale(units)  # a bad name fails before anything is evaluated
    out = Path(out)
    check_writable(out)
    runs = find_runs(paths)
    _check_out(out, runs)
    evals = evaluate_runs(runs, batches, progress)
    experiments = group_experiments(evals)
    out.mkdir(parents=True, exist_ok=True)

    lines = [_MARK, f"# {title or 'gtmm report'}", "",
             f"gtmm {gtmm.__version__}; {len(runs)} runs. Every number is the mean ± standard error over a"
             " model's runs (replicas or seeds), each run evaluated on the same held-out sequences;"
             f" KL and bounds in {units} per sequence step or per sequence as labelled.", ""]
    if command:
        lines += ["Produced by:", "", f"```\n{command}\n```", ""]
    for key, models in sorted(experiments.items(), key=lambda kv: (kv[0][:3], repr(kv[0][3:]))):
        known = list(MEMORIES)
        order = sorted(models, key=lambda m: known.index(m) if m in known else len(known))
        name, heading = experiment_label(key, "file"), experiment_label(key, "heading")
        first = evals[models[order[0]][0]]
        with_gen = first.get("generation_accuracy") is not None or any(
            evals[r].get("generation_scored") for m in order for r in models[m])
        with_mse = any(evals[r].get("generation_mse") is not None for m in order for r in models[m])
        lines += [f"## {heading}", "",
                  f"Evaluated on {first['sequences']} held-out sequences per run; recall starts at step"
                  f" {first['recall_start'] + 1}.", "",
                  "| model | runs | steps | negative bound | KL before recall | KL in recall | last-step KL |"
                  + (" generation accuracy | chance |" if with_gen else "")
                  + (" pixel MSE of generated frames | copying the true earlier view | mean observed frame |"
                     if with_mse else ""),
                  "| --- " * (7 + 2 * with_gen + 3 * with_mse) + "|"]
        for m in order:
            ev = [evaluation_in(evals[r], units) for r in models[m]]
            steps = sorted({e["step"] for e in ev})
            row = f"| {m} | {len(ev)} | {', '.join(map(str, steps))} |" + "".join(
                f" {mean_se([e[key] for e in ev])} |" for key in ("negative_bound", "kl_before_recall", "kl_recall",
                                                                     "last_step_kl"))
            if with_gen:
                row += (f" {mean_se([e.get('generation_accuracy') for e in ev])} |"
                        f" {mean_se([e.get('generation_chance') for e in ev])} |")
            if with_mse:
                row += "".join(f" {mean_se([e.get(key) for e in ev], digits=4)} |" for key in
                               ("generation_mse", "generation_mse_copy", "generation_mse_mean_frame"))
            lines.append(row)
        figure = plot_three_metrics([r for m in order for r in models[m]], out / f"{name}-metrics.png",
                                    title=heading.replace(" = ", "="), units=units)
        lines += ["", f"![the three metrics]({figure.name})", "",
                  "Left: KL at every step after training. Middle: last-step KL over training."
                  " Right: negative lower bound over training. Bands: one standard error over runs.", "",
                  "Samples of one run per model: rows of input, reconstruction, and generation (red"
                  " frames come from the prior after observing the frames before the recall).", ""]
        for m in order:
            grid = out / f"{name}-{m}-samples.png"
            write_bytes_atomic(grid, (models[m][0] / "samples.png").read_bytes())
            lines += [f"![{m} samples]({grid.name})", ""]
    lines += ["## Runs", ""] + [f"- `{r}`" for r in runs] + [""]
    report = out / REPORT_NAME
    before = _figures(report)
    write_bytes_atomic(report, "\n".join(lines).encode())
    for name in before - _figures(report):  # an earlier report's figures that this one no longer shows
        (out / name).unlink(missing_ok=True)
    return report


def _figures(report: Path) -> set[str]:
    """The PNGs a report written by gtmm report shows (file names in its folder); none for another file."""
    text = report.read_text(errors="replace") if report.exists() else ""
    if _MARK not in text:
        return set()
    return {name for name in re.findall(r"!\[[^\]]*\]\(([^)/\\]+\.png)\)", text)}

