"""One model's whole training step (B = 10, T = 20) under several XLA_FLAGS settings, each in its
own process (XLA reads the flags once), alternated `--rounds` times: compile s, median step s
and the process's peak resident memory (after compiling, and in all).

    PYTHONPATH=src python benchmarks/xla_flags.py --model vrnn --rounds 2 -- "" \\
        "--xla_cpu_experimental_ynn_fusion_type=individual_dot,individual_convolution,eltwise,reduce"

An empty string is the default flags.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

CHILD = "--child"


def child(model_name: str, steps: int) -> None:
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    from gtmm.model import ModelConfig, init_model
    from gtmm.train import TrainConfig, make_optimizer, make_train_step

    model = init_model(ModelConfig(model_name, 20), 0)
    optimizer = make_optimizer(TrainConfig(model=model_name))
    state = optimizer.init(eqx.filter(model, eqx.is_array))
    key = jax.random.PRNGKey(0)
    frames = (jax.random.uniform(key, (10, 20, 1, 32, 32)) > 0.7).astype(jnp.float32)
    context = jnp.zeros((10, 20, 0))
    start = time.perf_counter()
    step = make_train_step(optimizer).lower(model, state, frames, context, key).compile()
    compile_s = time.perf_counter() - start
    compiled_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the peak so far: KiB on Linux
    jax.block_until_ready(step(model, state, frames, context, key))
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        jax.block_until_ready(step(model, state, frames, context, key))
        times.append(time.perf_counter() - start)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"compile {compile_s:.1f} s, step median {statistics.median(times):.3f} s, min {min(times):.3f} s,"
          f" peak RSS {compiled_mb:.0f} MB after compiling, {peak_mb:.0f} MB in all")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == CHILD:
        child(sys.argv[2], int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="vrnn")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=7)
    parser.add_argument("flags", nargs="+", help="XLA_FLAGS values; '' for the default")
    args = parser.parse_args()
    for _ in range(args.rounds):
        for flags in args.flags:
            env = {**os.environ, "XLA_FLAGS": flags}
            done = subprocess.run([sys.executable, __file__, CHILD, args.model, str(args.steps)], env=env,
                                  capture_output=True, text=True)
            result = done.stdout.strip() or f"failed: {done.stderr.strip().splitlines()[-1:]}"
            print(f"{args.model} {flags or '(default)'}: {result}", flush=True)


if __name__ == "__main__":
    main()
