"""Named experiments of the paper at several scales, run end to end: train replicas, evaluate, sample, report."""

from __future__ import annotations

import time
from pathlib import Path

from gtmm.errors import GtmmError
from gtmm.memories import MEMORIES
from gtmm.parallel import data_parallel
from gtmm.report import evaluate_runs, write_report
from gtmm.tasks.base import check_positive
from gtmm.train import TrainConfig, replica_dirs, train_replicas
from gtmm.units import unit_scale

# One entry per figure of the paper that this version can run.
EXPERIMENTS = {
    "perfect-recall-15": {"task": "perfect-recall", "l": 15, "k": 5, "figure": "Fig. 4, top row"},
    "perfect-recall-20": {"task": "perfect-recall", "l": 20, "k": 5, "figure": "Fig. 4, middle row"},
    "perfect-recall-50": {"task": "perfect-recall", "l": 50, "k": 5, "figure": "Fig. 4, bottom row"},
    "parity-recall-15": {"task": "parity-recall", "l": 15, "k": 5, "figure": "Fig. 6, top row"},
    "parity-recall-20": {"task": "parity-recall", "l": 20, "k": 5, "figure": "Fig. 6, middle row"},
    "parity-recall-50": {"task": "parity-recall", "l": 50, "k": 5, "figure": "Fig. 6, bottom row"},
    "one-shot-recall": {"task": "one-shot-recall", "l": 20, "k": 5, "figure": "Fig. 8"},
    "dynamic-dependency": {"task": "dynamic-dependency", "l": 20, "k": 5, "figure": "Fig. 10"},
    "similarity-cued-recall": {"task": "similarity-cued-recall", "l": 20, "k": 5, "figure": "Fig. 12"},
    # 25 steps (section 5.6); generation observes the first 13 (our choice, see gtmm.tasks.mnist_maze)
    "mnist-maze": {"task": "mnist-maze", "l": 13, "k": 12, "figure": "Fig. 14"},
    # 30 frames, two turns; generation observes the first (section 5.7). Needs the rendered cache
    # (gtmm data generate-3d); a 3D step of batch 10 is ~0.64-0.72 s on an idle 2-core CPU
    # (docs/results/speed.md, 2026-12-05), so the cpu scale takes ~40 min of training there.
    "rotation-3d": {"task": "rotation-3d", "l": 15, "k": 15, "figure": "Fig. 17"},
}
ALIASES = {"perfect-recall": "perfect-recall-15", "parity-recall": "parity-recall-15"}
# Per scale: training steps and batch per run, replicas per model, held-out batches (of 10) each
# run is evaluated on.
# - smoke: minutes, to try things out (the README's main job; batch halved to fit 6 models x 3
#   replicas in minutes on 2 cores).
# - cpu: about an hour per experiment on a 2-core machine (a step of batch 10, T = 20 takes
#   ~1.25 s there, docs/results/perfect-recall-15.md: 6 models x 3 replicas x 150 steps ~ 1 h).
#   Far too short to learn recall (docs/results/recall-diagnostic.md): it shows the pipeline at
#   the paper's batch, not the paper's effects.
# - cpu-long: 1,500 steps, ~9 h per experiment on 2 cores; `reproduce` resumes from checkpoints,
#   so it can be run over several sittings with the same command.
# - paper: the paper's batch and long runs (for a GPU; the paper ran 20 replicas).
SCALES = {
    "smoke": {"steps": 10, "batch_size": 5, "checkpoint_every": 10, "replicas": 3, "eval_batches": 2},
    "cpu": {"steps": 150, "batch_size": 10, "checkpoint_every": 50, "replicas": 3, "eval_batches": 10},
    "cpu-long": {"steps": 1500, "batch_size": 10, "checkpoint_every": 100, "replicas": 3, "eval_batches": 10},
    "paper": {"steps": 100_000, "batch_size": 10, "checkpoint_every": 1000, "replicas": 20, "eval_batches": 10},
}


def reproduce(experiment: str, scale: str, out: str | Path, seed: int = 0, progress: bool = True,
              replicas: int | None = None, models: tuple[str, ...] | None = None,
              devices: int | str | None = None, units: str = "nats") -> Path:
    """Run `experiment` for every model at `scale` into `out` (`out/MODEL/replica-r`, seeds
    `seed + r`), evaluate and sample every replica, and write `out/report.md`; returns its path.
    `devices` splits every batch over that many devices, as `train_replicas` does (on a CPU, two
    forced host devices run a step 1.25-1.37x faster: docs/results/scaling.md). `units` ("nats" or
    "bits") is what the report shows."""
    name = ALIASES.get(experiment, experiment)
    if name not in EXPERIMENTS:
        raise GtmmError(f"unknown experiment {experiment!r}; choose one of: {', '.join(EXPERIMENTS)}")
    if scale not in SCALES:
        raise GtmmError(f"unknown scale {scale!r}; choose one of: {', '.join(SCALES)}")
    models = tuple(MEMORIES) if models is None else models  # registered memories included
    unknown = [m for m in models if m not in MEMORIES]
    if unknown or not models:
        raise GtmmError(f"unknown model(s) {unknown}; choose from: {', '.join(MEMORIES)}")
    unit_scale(units)  # before hours of training, not after
    settings = SCALES[scale]
    replicas = check_positive("replicas", settings["replicas"] if replicas is None else replicas)
    spec = EXPERIMENTS[name]
    out = Path(out)
    configs = {m: TrainConfig(model=m, task=spec["task"], l=spec["l"], k=spec["k"], seed=seed,
                              steps=settings["steps"], batch_size=settings["batch_size"],
                              checkpoint_every=settings["checkpoint_every"]) for m in models}
    for c in configs.values():
        c.validate()
    parallel = data_parallel(devices)  # before any training: a device count that cannot work fails now
    if parallel is not None:
        parallel.check_batch(settings["batch_size"], what=f"the {scale} scale's batch",
                             fix=f"use --devices with a divisor of {settings['batch_size']} or another --scale")
    t0 = time.time()
    for model, config in configs.items():
        train_replicas(config, out / model, replicas, progress=progress, devices=devices)
    runs = [d for m in models for d in replica_dirs(out / m, replicas)]
    evaluate_runs(runs, settings["eval_batches"], progress)
    title = (f"{name} ({spec['figure']}), scale {scale}: {settings['steps']} steps of batch"
             f" {settings['batch_size']}, {replicas} replicas per model (seeds {seed}-{seed + replicas - 1})")
    command = (f"gtmm reproduce {experiment} --scale {scale} --replicas {replicas} --seed {seed}"
               + (f" --devices {devices}" if devices is not None else "")
               + (f" --units {units}" if units != "nats" else "") + f" --out {out}"
               f"  # {time.time() - t0:.0f} s")
    return write_report(runs, out, title=title, batches=settings["eval_batches"], command=command, progress=False,
                        units=units)
