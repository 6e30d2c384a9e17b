"""Training-step benchmark: one JSON record per model and task (PERFORMANCE.md's figures).

Times the jitted Adam step on real task batches: compile time of the first call, then the mean
wall time of `steps` further calls; XLA's cost analysis gives FLOPs per step, and the peak
resident memory of this process is read from the OS.
"""

from __future__ import annotations

import platform
import resource
import sys
import time

import equinox as eqx
import jax
import jax.numpy as jnp

from gtmm.tasks import make_task
from gtmm.train import TrainConfig, build_model, make_optimizer, make_train_step, step_key


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def _step_flops(step, *args) -> float | None:
    """FLOPs of one compiled step by XLA's cost analysis (None where the backend gives none)."""
    try:
        compiled = step.lower(*args).compile()
        cost = getattr(compiled, "compiled", compiled).cost_analysis()  # equinox wraps jax's Compiled
    except Exception:  # cost analysis is best-effort and backend-specific; absence is reported as null
        return None
    if isinstance(cost, list):
        cost = cost[0] if cost else {}
    flops = (cost or {}).get("flops")
    return float(flops) if flops else None


def bench(config: TrainConfig, steps: int = 5, devices: int | str | None = None) -> dict:
    """Benchmark `config`'s training step; returns a flat dict of figures. `devices`: the batch
    split over that many devices, as `gtmm.train.train` does (data parallel)."""
    from gtmm.parallel import data_parallel

    config = config.validate()
    parallel = data_parallel(devices)
    if parallel is not None:
        parallel.check_batch(config.batch_size)
    task = make_task(config.task, l=config.l, k=config.k)
    model_config = config.model_config(task)
    model = build_model(config, model_config)
    optimizer = make_optimizer(config)
    opt_state = optimizer.init(eqx.filter(model, eqx.is_array))
    train_step = make_train_step(optimizer)
    batches = [task.batch("train", config.batch_size, config.seed, i) for i in range(steps + 1)]
    if parallel is None:
        put = lambda b: (jnp.asarray(b.frames), jnp.asarray(b.context))  # noqa: E731
        key_at = lambda i: step_key(config.seed, i)  # noqa: E731
    else:
        model, opt_state = parallel.replicate((model, opt_state))
        train_step = parallel.jit(train_step)
        put = lambda b: (parallel.put_batch(b.frames), parallel.put_batch(b.context))  # noqa: E731
        key_at = lambda i: parallel.replicate(step_key(config.seed, i))  # noqa: E731

    frames, context = put(batches[0])
    start = time.perf_counter()
    out = train_step(model, opt_state, frames, context, key_at(0))
    jax.block_until_ready(out)
    compile_s = time.perf_counter() - start
    model, opt_state = out[0], out[1]

    times = []
    for i, batch in enumerate(batches[1:], start=1):
        frames, context = put(batch)
        start = time.perf_counter()
        out = train_step(model, opt_state, frames, context, key_at(i))
        jax.block_until_ready(out)
        times.append(time.perf_counter() - start)
        model, opt_state = out[0], out[1]
    step_s = sum(times) / len(times)
    flops = _step_flops(train_step, model, opt_state, frames, context, key_at(0))
    if flops is not None and parallel is not None:
        flops *= parallel.size  # XLA costs the partitioned program, one device's share
    return {
        "model": config.model,
        "task": config.task,
        "l": config.l,
        "k": config.k,
        "batch_size": config.batch_size,
        "sequence_length": config.sequence_length,
        "step_s": round(step_s, 4),
        "steps_per_s": round(1.0 / step_s, 3),
        "sequences_per_s": round(config.batch_size / step_s, 2),
        "first_step_s": round(compile_s, 2),
        "gflop_per_step": None if flops is None else round(flops / 1e9, 2),
        "gflop_per_s": None if flops is None else round(flops / 1e9 / step_s, 1),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "backend": jax.default_backend(),
        "device": str(jax.devices()[0].device_kind),
        "devices": parallel.size if parallel else 1,
        "cpu_count": jax.local_device_count() if jax.default_backend() != "cpu" else _cpus(),
        "machine": platform.machine(),
        "timed_steps": steps,
    }


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
