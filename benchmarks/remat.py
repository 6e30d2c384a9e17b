"""Peak memory and time of one training step (loss and gradient) on a long sequence, with and
without gradient checkpointing of the recurrent part (`ModelConfig.remat_chunk`). Each variant
runs in a fresh process so that its peak RSS is its own. Prints one JSON object per variant.

    PYTHONPATH=src python benchmarks/remat.py --model dnc --T 500 --chunks 0,22

The frames are random (the memory's cost does not depend on them); batch 1; the memory gets
its default slots (T, or 5 T for lru), so the DNC's link matrix is T x T per step.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def one(model: str, T: int, chunk: int) -> dict:
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    from gtmm.model import ModelConfig, init_model, loss_fn

    m = init_model(ModelConfig(model, T, remat_chunk=chunk or None), 0)
    frames = jax.random.uniform(jax.random.PRNGKey(1), (1, T, 1, 32, 32))
    context = jnp.zeros((1, T, 0))
    grad = eqx.filter_jit(eqx.filter_value_and_grad(loss_fn, has_aux=True))
    t0 = time.time()
    (loss, _), g = grad(m, frames, context, jax.random.PRNGKey(0))
    jax.block_until_ready(g)
    first = time.time() - t0
    t0 = time.time()
    (loss, _), g = grad(m, frames, context, jax.random.PRNGKey(2))
    jax.block_until_ready(g)
    return {"model": model, "T": T, "remat_chunk": chunk or None, "loss_finite": bool(jnp.isfinite(loss)),
            "first_step_s": round(first, 1), "step_s": round(time.time() - t0, 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="dnc")
    p.add_argument("--T", type=int, default=500)
    p.add_argument("--chunks", default="0,22", help="comma-separated; 0 = no checkpointing")
    p.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one is not None:
        print(json.dumps(one(a.model, a.T, a.one)))
        return
    for chunk in (int(c) for c in a.chunks.split(",")):
        proc = subprocess.run([sys.executable, __file__, "--model", a.model, "--T", str(a.T), "--one", str(chunk)],
                              capture_output=True, text=True)
        print(proc.stdout.strip() or json.dumps({"remat_chunk": chunk, "error": proc.stderr.strip()[-300:]}),
              flush=True)


if __name__ == "__main__":
    main()
