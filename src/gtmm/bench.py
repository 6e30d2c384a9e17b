"""Training-step benchmark: one JSON record per model and task (PERFORMANCE.md's figures).

Times the jitted Adam step on real task batches: compile time of the first call, then the mean
wall time of `steps` further calls; XLA's cost analysis gives FLOPs per step, the peak resident
memory of this process is read from the OS, and an accelerator's peak from its allocator. The
achieved FLOP/s is set against the machine's dense matrix-product rate measured in the same
process (PERFORMANCE.md's ceiling), and optionally a second process times the first step again
with JAX's persistent cache warm.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time

import equinox as eqx
import jax
import jax.numpy as jnp

from gtmm.errors import GtmmError
from gtmm.train import TrainConfig, build_model, make_optimizer, make_train_step, step_key


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def _device_peak_mb() -> float | None:
    """The most memory any local device's allocator has held in this process (GPU, TPU); None on a
    CPU, whose arrays live in the process's own memory (`peak_rss_mb`)."""
    peaks = [(d.memory_stats() or {}).get("peak_bytes_in_use") for d in jax.local_devices()]
    peaks = [p for p in peaks if p is not None]
    return round(max(peaks) / 2**20, 1) if peaks else None


def matmul_ceiling_gflops(n: int | None = None, repeats: int = 5) -> float:
    """GFLOP/s of the best of `repeats` jitted n x n x n float32 matrix products (2 n^3 FLOPs each):
    the rate a training step could approach on this device. n defaults to 2048 on a CPU and 8192
    on an accelerator, where a 2048^3 product is too short to time."""
    if n is None:
        n = 2048 if jax.default_backend() == "cpu" else 8192
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32)
    product = jax.jit(jnp.matmul)
    jax.block_until_ready(product(a, b))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(product(a, b))
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / max(best, 1e-9) / 1e9


def check_warm_cache(config: TrainConfig) -> None:
    """Fail before anything is compiled if a warm-cache figure cannot be measured."""
    if os.environ.get("GTMM_NO_COMPILE_CACHE"):
        raise GtmmError("--warm-cache times a second process against the compile cache, which"
                        " GTMM_NO_COMPILE_CACHE turns off; unset it")
    if config.model_overrides:
        raise GtmmError("the warm-cache process is started from the command line, which has no model"
                        f" overrides; drop {sorted(config.model_overrides)} or warm_cache")


def warm_cache_first_step_s(config: TrainConfig) -> float:
    """The first step's time in a fresh process of the same configuration, which finds this
    process's compilation in JAX's persistent cache (call after `bench` has compiled it)."""
    check_warm_cache(config)
    argv = [sys.executable, "-m", "gtmm", "bench", *config.model_and_task_flags(), "--steps", "1", "--no-ceiling"]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise GtmmError(f"the second benchmark process failed: {done.stderr.strip().splitlines()[-1:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["first_step_s"])


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


def bench(config: TrainConfig, steps: int = 5, devices: int | str | None = None, ceiling: bool = True,
          warm_cache: bool = False) -> dict:
    """Benchmark `config`'s training step; returns a flat dict of figures. `devices`: the batch
    split over that many devices, as `gtmm.train.train` does (data parallel). `ceiling`: also
    measure the matrix-product rate and the fraction of it the step achieves. `warm_cache`: also
    time the first step in a second process with the persistent compile cache warm (the CLI
    enables that cache; for a cold first figure point GTMM_COMPILE_CACHE at an empty folder)."""
    from gtmm.parallel import data_parallel

    config = config.validate()
    if warm_cache:
        check_warm_cache(config)
    parallel = data_parallel(devices)
    if parallel is not None:
        parallel.check_batch(config.batch_size)
    task = config.make_task()
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
    gflop_per_s = None if flops is None else flops / 1e9 / step_s
    ceiling_gflops = matmul_ceiling_gflops() if ceiling else None
    if ceiling_gflops is not None and parallel is not None and jax.default_backend() != "cpu":
        ceiling_gflops *= parallel.size  # one product runs on one accelerator (forced CPU devices share the cores)
    fraction = None if gflop_per_s is None or ceiling_gflops is None else gflop_per_s / ceiling_gflops
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
        "gflop_per_s": None if gflop_per_s is None else round(gflop_per_s, 1),
        "matmul_ceiling_gflop_per_s": None if ceiling_gflops is None else round(ceiling_gflops, 1),
        "fraction_of_ceiling": None if fraction is None else round(fraction, 3),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "device_peak_mb": _device_peak_mb(),
        "first_step_warm_cache_s": round(warm_cache_first_step_s(config), 2) if warm_cache else None,
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
