"""Experiment sweeps on Ray: a grid of models x tasks x settings x replicas, one Ray task per run.

Each run is an ordinary run directory, `OUT/<task>/<model>/<settings>/replica-r` (seed
`seed + r`, as `gtmm.train.train_replicas` numbers them), trained by `gtmm.train.train` and
evaluated on the worker. A worker that dies (a killed process, a lost node) has its task retried by
Ray (`max_retries`), and `train` resumes it from the run's newest checkpoint, so no finished step
is lost; a run that fails in gtmm (a non-finite loss, a bad setting) is not retried but listed. Running
the same sweep again retries the failed and unfinished runs from their checkpoints and leaves the
finished ones as they are. At the end `gtmm.report.write_report` aggregates the finished runs
(mean ± standard error over replicas) into `OUT/report/`; `OUT/sweep.json` lists every run and
its outcome, and `OUT/sweep-log.jsonl` every attempt (process id and host), appended by the workers.

Ray is an optional extra (`pip install 'gtmm[sweep]'`). All workers must see OUT (one machine, or
a shared file system) and the data directory.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import time
import tomllib
from dataclasses import asdict, fields, replace
from pathlib import Path

from gtmm._io import append_jsonl, check_writable, write_json_atomic
from gtmm.errors import GtmmError
from gtmm.model import ModelConfig
from gtmm.train import TrainConfig, lr_drops_text, replica_dirs
from gtmm.units import unit_scale

ALIASES = {"lr": "learning_rate", "lr_drop": "lr_drops"}
# Grid axes that are TrainConfig fields; the rest of the settings are ModelConfig overrides.
_TRAIN_SETTINGS = ("l", "k", "grid", "steps", "batch_size", "learning_rate", "lr_drops", "clip_grad_norm",
                   "clip_memory_grad_norm", "checkpoint_every", "keep_checkpoints")
_MODEL_SETTINGS = tuple(f.name for f in fields(ModelConfig) if f.name not in ("model", "sequence_length"))
LOG_NAME = "sweep-log.jsonl"
# Environment a worker needs to find data and caches as the driver does (forwarded to a cluster).
_FORWARDED_ENV = ("GTMM_DATA", "GTMM_OFFLINE", "GTMM_COMPILE_CACHE", "GTMM_NO_COMPILE_CACHE")


def expand_grid(models: list[str], tasks: list[str], replicas: int, settings: dict[str, list] | None = None,
                seed: int = 0) -> list[tuple[TrainConfig, Path]]:
    """Every run of the grid as (configuration, run directory relative to OUT); validated, so that
    a bad setting fails before anything starts."""
    from gtmm.tasks.base import check_positive

    if not models or not tasks:
        raise GtmmError("a sweep needs at least one model and one task (--models, --tasks)")
    check_positive("replicas", replicas)
    settings = {ALIASES.get(n, n): v if isinstance(v, list) else [v]  # a single value is a one-value axis
                for n, v in ((name.replace("-", "_"), values) for name, values in (settings or {}).items())}
    unknown = sorted(set(settings) - set(_TRAIN_SETTINGS) - set(_MODEL_SETTINGS))
    if unknown:
        raise GtmmError(f"unknown sweep setting(s) {unknown};"
                        f" known: lr, {', '.join(_TRAIN_SETTINGS + _MODEL_SETTINGS)}")
    for name, values in settings.items():
        if not isinstance(values, list) or not values:
            raise GtmmError(f"sweep setting {name} needs one or more values, got {values!r}")
    names = sorted(settings)
    runs = []
    for task, model, values in itertools.product(tasks, models, itertools.product(*(settings[n] for n in names))):
        chosen = dict(zip(names, values))
        if "lr_drops" in chosen:
            chosen["lr_drops"] = _lr_drops(chosen["lr_drops"])
        train_kw = {n: v for n, v in chosen.items() if n in _TRAIN_SETTINGS}
        overrides = {n: v for n, v in chosen.items() if n in _MODEL_SETTINGS}
        # a schedule named as the report names it, not by a tuple's repr
        label = "-".join(f"{n}{lr_drops_text(v) if n == 'lr_drops' else v}" for n, v in chosen.items()) or "default"
        config = TrainConfig(model=model, task=task, seed=seed, model_overrides=overrides, **train_kw)
        try:
            config.validate()
        except TypeError as e:
            raise GtmmError(f"bad sweep value in {label} ({e})") from None
        for r, run_dir in enumerate(replica_dirs(Path(task) / model / label, replicas)):
            runs.append((replace(config, seed=seed + r).validate(), run_dir))
    return runs


def _lr_drops(value) -> tuple:
    """One value of the lr_drops axis as TrainConfig's ((step, lr), ...): from the command line
    "12000:3e-4+14000:1e-4" (or "none" for a constant rate), from a grid file [[12000, 3e-4], ...]."""
    bad = GtmmError(f"lr drops value {value!r} is not STEP:LR[+STEP:LR...] or none"
                    f" (e.g. --set lr-drops=none,12000:3e-4)")
    if isinstance(value, (int, float)):  # "12000" on the command line reads as a number
        raise bad
    if isinstance(value, str):
        if value.strip().lower() in ("none", ""):
            return ()
        from gtmm.cli import parse_lr_drop  # the command line's form of one drop

        try:
            return tuple(parse_lr_drop(part) for part in value.split("+"))
        except ValueError:
            raise bad from None
    if isinstance(value, list) and all(isinstance(d, list) and len(d) == 2 for d in value):
        return tuple((d[0], d[1]) for d in value)  # the pairs' steps and rates: TrainConfig.validate
    raise GtmmError(f"lr drops value {value!r} is not a schedule; in a grid file each value is one:"
                    f' lr_drops = [[], [[12000, 3e-4]]] or ["none", "12000:3e-4"]')


def read_grid(path: str | os.PathLike) -> dict:
    """A grid file, TOML or JSON: `models`, `tasks` (lists), `replicas`, `seed` (numbers) and a
    table `settings` of lists (e.g. `steps = [500]`, `lr = [1e-3, 1e-4]`, `lr_drops = ["none",
    "12000:3e-4"]` or `lr_drops = [[], [[12000, 3e-4]]]`)."""
    path = Path(path)
    try:
        text = path.read_text()
        grid = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except OSError as e:
        raise GtmmError(f"cannot read the grid file {path} ({e.strerror or e})") from None
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        raise GtmmError(f"{path} is not valid {'TOML' if path.suffix == '.toml' else 'JSON'} ({e})") from None
    unknown = sorted(set(grid) - {"models", "tasks", "replicas", "seed", "settings"})
    if unknown:
        raise GtmmError(f"{path}: unknown key(s) {unknown}; a grid has models, tasks, replicas, seed, settings")
    return grid


def parse_setting(text: str) -> tuple[str, list]:
    """`name=v1,v2,...` from the command line; numbers become numbers, true/false booleans."""
    name, sep, values = text.partition("=")
    if not sep or not name or not values:
        raise GtmmError(f"--set {text!r} is not NAME=VALUE[,VALUE...] (e.g. --set lr=1e-3,1e-4)")
    return name.strip().replace("-", "_"), [_number(v.strip()) for v in values.split(",")]


def _number(text: str):
    if text.lower() in ("true", "false"):  # switches such as context-with-controller
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _import_ray():
    try:
        import ray
    except ImportError:
        raise GtmmError("sweeps run on Ray, which is not installed; pip install 'gtmm[sweep]' (or ray)") from None
    return ray


def _run_one(config: dict, run_dir: str, log: str, eval_batches: int) -> dict:
    """One run on a Ray worker: train (resuming from its checkpoint after a retry), then evaluate."""
    from gtmm.memories import load_plugins
    from gtmm.report import ensure_evaluated
    from gtmm.train import train

    load_plugins()  # a worker is a fresh process: the memories of installed plugins, as the command line has
    append_jsonl(log, {"run": run_dir, "event": "start", "pid": os.getpid(), "host": socket.gethostname(),
                       "time": round(time.time(), 3)})
    summary = train(TrainConfig(**config), run_dir, progress=False)
    ensure_evaluated(Path(run_dir), eval_batches)
    append_jsonl(log, {"run": run_dir, "event": "done", "pid": os.getpid(), "resumed_from": summary["resumed_from"],
                       "time": round(time.time(), 3)})
    return summary


def sweep(runs: list[tuple[TrainConfig, Path]], out: str | os.PathLike, address: str | None = None,
          max_retries: int = 3, eval_batches: int = 10, cpus_per_run: float = 1, gpus_per_run: float = 0,
          num_cpus: int | None = None, title: str = "", command: str = "", units: str = "nats") -> dict:
    """Run `runs` (from `expand_grid`) as Ray tasks into `out`, then report the finished ones.

    `address`: a Ray cluster to join ("auto": the one this machine belongs to); None starts a
    local one with `num_cpus` CPUs (default: all). Returns the summary written to `out/sweep.json`:
    every run's outcome, the failed ones with their error, and the report's path. `units`
    ("nats" or "bits") is what the report shows.
    """
    from gtmm.report import write_report

    unit_scale(units)  # before the cluster starts
    out = Path(out).resolve()
    check_writable(out)
    ray = _import_ray()
    out.mkdir(parents=True, exist_ok=True)
    log = out / LOG_NAME
    env = {k: os.environ[k] for k in _FORWARDED_ENV if k in os.environ}
    # "local": a new cluster of this process, never one a `ray start` left running on this machine.
    init = {"address": address} if address else {"address": "local", "num_cpus": num_cpus, "include_dashboard": False}
    started = not ray.is_initialized()
    if started:
        try:
            ray.init(**init, runtime_env={"env_vars": env}, log_to_driver=False, configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise GtmmError(f"cannot start or join the Ray cluster{f' at {address}' if address else ''}"
                            f" ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    t0 = time.time()
    try:
        # max_retries: Ray re-runs a task whose worker died; an exception raised by gtmm is final.
        task = ray.remote(num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=max_retries)(_run_one)
        refs = [task.remote(asdict(config), str(out / rel), str(log), eval_batches) for config, rel in runs]
        results = []
        for (config, rel), ref in zip(runs, refs):
            try:
                summary = ray.get(ref)
                results.append({"run": str(rel), "status": "finished", "final_loss": summary["final_loss"],
                                "resumed_from": summary["resumed_from"]})
            except Exception as e:  # the task's exception, or its worker died more than max_retries times
                cause = getattr(e, "cause", None) or e
                first = (str(cause).strip().splitlines() or [type(cause).__name__])[-1]
                results.append({"run": str(rel), "status": "failed", "error": f"{type(cause).__name__}: {first}"})
    finally:
        if started:
            ray.shutdown()
    finished = [out / r["run"] for r in results if r["status"] == "finished"]
    summary = {"runs": results, "finished": len(finished), "failed": len(results) - len(finished),
               "seconds": round(time.time() - t0, 1), "report": None}
    if finished:
        summary["report"] = str(write_report(finished, out / "report", title=title or f"sweep of {len(results)} runs",
                                             batches=eval_batches, command=command, progress=False, units=units))
    write_json_atomic(out / "sweep.json", summary)
    return summary
