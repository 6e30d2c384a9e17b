"""Named experiments of the paper at several scales, run end to end: train replicas, evaluate, sample, report."""

from __future__ import annotations

import time
from pathlib import Path

from gtmm.catalog import ALIASES, EXPERIMENTS, SCALES
from gtmm.errors import GtmmError
from gtmm.memories import MEMORIES
from gtmm.parallel import data_parallel
from gtmm.report import evaluate_runs, write_report
from gtmm.tasks.base import check_positive
from gtmm.train import TrainConfig, replica_dirs, train_replicas
from gtmm.units import unit_scale


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
