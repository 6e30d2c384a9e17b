"""A self-contained report over run directories: Markdown beside its PNGs (paper section 4, SPEC 5).

For every experiment (task, l, k) among the runs: a table of models by metrics, each the mean and
standard error over that model's runs (replicas or seeds), the three-panel figure of the paper's
metrics, and one sample grid per model (observed, reconstructed, generated).
"""

from __future__ import annotations

import json
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
            raise GtmmError(f"no gtmm run directory (with config.json) at or below {p}")
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
    """What besides task, l, k and seed sets a run apart (steps, batch, learning rate and its
    drops, gradient clipping, model settings): runs that differ in it are different experiments,
    never averaged together."""
    from gtmm.train import lr_drops_text, read_config

    config = read_config(run)
    drops = (("lr_drops", lr_drops_text(config.lr_drops)),) if config.lr_drops else ()
    clip = (("clip", config.clip_grad_norm),) if config.clip_grad_norm is not None else ()
    clip += (("clip_memory", config.clip_memory_grad_norm),) if config.clip_memory_grad_norm is not None else ()
    grid = (("grid", config.grid),) if config.grid is not None else ()
    return (*grid, ("steps", config.steps), ("batch", config.batch_size), ("lr", config.lr), *drops, *clip,
            *sorted(config.model_overrides.items()))


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
    # One section per task, l, k; split by settings where a model ran there with several (a sweep).
    settings = {run: _settings(run) for run in runs}
    by_model: dict[tuple, set] = defaultdict(set)
    for run, ev in evals.items():
        by_model[(ev["task"], ev["l"], ev["k"], ev["model"])].add(settings[run])
    settings_vary = {key[:3] for key, found in by_model.items() if len(found) > 1}
    experiments: dict[tuple, dict[str, list[Path]]] = defaultdict(lambda: defaultdict(list))
    for run, ev in evals.items():
        key = (ev["task"], ev["l"], ev["k"])
        experiments[key + (settings[run] if key in settings_vary else (),)][ev["model"]].append(run)
    out.mkdir(parents=True, exist_ok=True)

    lines = [_MARK, f"# {title or 'gtmm report'}", "",
             f"gtmm {gtmm.__version__}; {len(runs)} runs. Every number is the mean ± standard error over a"
             " model's runs (replicas or seeds), each run evaluated on the same held-out sequences;"
             f" KL and bounds in {units} per sequence step or per sequence as labelled.", ""]
    if command:
        lines += ["Produced by:", "", f"```\n{command}\n```", ""]
    for (task, l, k, differs), models in sorted(experiments.items()):
        known = list(MEMORIES)
        order = sorted(models, key=lambda m: known.index(m) if m in known else len(known))
        name, heading = f"{task}-l{l}-k{k}", f"{task}, l = {l}, k = {k}"
        name += "".join(f"-{key}{value}" for key, value in differs)
        heading += "".join(f", {key.replace('_', ' ')} {value}" for key, value in differs)
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
    write_bytes_atomic(report, "\n".join(lines).encode())
    return report

