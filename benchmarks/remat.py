"""Peak memory and time of one training step (loss and gradient) on a long sequence, with and
without gradient checkpointing of the recurrent part (`ModelConfig.remat_chunk`). Each variant
runs in a fresh process so that its peak RSS is its own. Prints one JSON object per variant.

    PYTHONPATH=src python benchmarks/remat.py --model dnc --T 500 --chunks 0,22

The frames are random (the memory's cost does not depend on them); batch 1; the memory gets
its default slots (T, or 5 T for lru), so the DNC's link matrix is T x T per step.
`benchmarks/memory_scaling.py` reuses `one` and `in_fresh_process` (other ModelConfig settings,
several timed steps).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time


def one(model: str, T: int, chunk: int, steps: int = 1, max_timing_s: float = float("inf"),
        overrides: dict | None = None) -> dict:
    """Compile and run one step, then time `steps` more (fewer once `max_timing_s` is spent; at
    least one); `step_s` is their median. `overrides`: other ModelConfig fields (top_k, link_k)."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    from gtmm.model import ModelConfig, init_model, loss_fn

    m = init_model(ModelConfig(model, T, remat_chunk=chunk or None, **(overrides or {})), 0)
    frames = jax.random.uniform(jax.random.PRNGKey(1), (1, T, 1, 32, 32))
    context = jnp.zeros((1, T, 0))
    grad = eqx.filter_jit(eqx.filter_value_and_grad(loss_fn, has_aux=True))
    t0 = time.time()
    (loss, _), g = grad(m, frames, context, jax.random.PRNGKey(0))
    jax.block_until_ready(g)
    first = time.time() - t0
    times: list[float] = []
    while len(times) < steps and (not times or sum(times) < max_timing_s):
        t0 = time.time()
        (loss, _), g = grad(m, frames, context, jax.random.PRNGKey(2 + len(times)))
        jax.block_until_ready(g)
        times.append(time.time() - t0)
    return {"model": model, "T": T, "remat_chunk": chunk or None, **(overrides or {}),
            "loss_finite": bool(jnp.isfinite(loss)), "first_step_s": round(first, 1),
            "step_s": round(statistics.median(times), 3), "step_times_s": [round(t, 3) for t in times],
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def in_fresh_process(model: str, T: int, chunk: int, steps: int = 1, max_timing_s: float = float("inf"),
                     overrides: dict | None = None, timeout_s: float | None = None) -> dict:
    """`one` in a new Python process (so ru_maxrss is this variant's alone); an "error" key on failure."""
    cmd = [sys.executable, __file__, "--model", model, "--T", str(T), "--one", str(chunk), "--steps", str(steps),
           "--max-timing-s", str(max_timing_s), "--overrides", json.dumps(overrides or {})]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"model": model, "T": T, "remat_chunk": chunk or None, **(overrides or {}),
                "error": f"timed out after {timeout_s} s"}
    if proc.returncode == 0 and proc.stdout.strip():
        return json.loads(proc.stdout.strip().splitlines()[-1])
    return {"model": model, "T": T, "remat_chunk": chunk or None, **(overrides or {}),
            "error": (proc.stderr.strip() or f"exit code {proc.returncode}")[-300:]}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="dnc")
    p.add_argument("--T", type=int, default=500)
    p.add_argument("--chunks", default="0,22", help="comma-separated; 0 = no checkpointing")
    p.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--steps", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--max-timing-s", type=float, default=float("inf"), help=argparse.SUPPRESS)
    p.add_argument("--overrides", default="{}", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one is not None:
        print(json.dumps(one(a.model, a.T, a.one, a.steps, a.max_timing_s, json.loads(a.overrides))))
        return
    for chunk in (int(c) for c in a.chunks.split(",")):
        print(json.dumps(in_fresh_process(a.model, a.T, chunk)), flush=True)


if __name__ == "__main__":
    main()
