"""XLA's own memory plan for one training step of a long sequence, at the paper's batch of 10.

Compiles `gtmm.train.make_train_step` for a real task batch and prints the compiled step's
temporary buffers (`memory_analysis().temp_size_in_bytes`: activations kept for the backward
pass, the scan's saved states, workspace) and its arguments, plus the compile time. With
`--run` it also runs the step once, after handing the compiler's freed memory back
(`gtmm.train.compile_then_release`, as `gtmm train` does), and prints its time and the
process's peak and current resident memory.

    PYTHONPATH=src GTMM_DATA=../shared/data python benchmarks/step_memory.py --model introspective --T 1000 --chunk 16 --run
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="introspective")
    p.add_argument("--task", default="perfect-recall")
    p.add_argument("--T", type=int, default=1000)
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=10)
    p.add_argument("--chunk", type=int, default=0, help="remat_chunk (0: none)")
    p.add_argument("--run", action="store_true", help="also run the step once and report its RSS")
    a = p.parse_args()

    import equinox as eqx
    import jax
    import jax.numpy as jnp

    from gtmm.tasks import make_task
    from gtmm.train import TrainConfig, build_model, compile_then_release, make_optimizer, make_train_step, step_key

    cfg = TrainConfig(model=a.model, task=a.task, l=a.T - a.k, k=a.k, batch_size=a.batch_size,
                      model_overrides={"remat_chunk": a.chunk} if a.chunk else {})
    task = make_task(cfg.task, l=cfg.l, k=cfg.k)
    model = build_model(cfg, cfg.model_config(task))
    optimizer = make_optimizer(cfg)
    opt_state = optimizer.init(eqx.filter(model, eqx.is_array))
    step = make_train_step(optimizer)
    batch = task.batch("train", a.batch_size, 0, 0)
    args = (model, opt_state, jnp.asarray(batch.frames), jnp.asarray(batch.context), step_key(0, 0))
    t = time.time()
    compiled = step.lower(*args).compile()
    seconds = time.time() - t
    analysis = (compiled.compiled if hasattr(compiled, "compiled") else compiled).memory_analysis()
    print(f"{a.model} {a.task} T={a.T} batch={a.batch_size} remat_chunk={a.chunk or None}: compile {seconds:.1f} s,"
          f" temp {analysis.temp_size_in_bytes / 2**20:.0f} MB, arguments {analysis.argument_size_in_bytes / 2**20:.0f} MB",
          flush=True)
    if a.run:
        compile_then_release(step, *args)  # already compiled: this only trims the heap
        t = time.time()
        jax.block_until_ready(step(*args))
        status = {line.split(":")[0]: int(line.split()[1]) // 1024 for line in open("/proc/self/status")
                  if line.startswith(("VmHWM", "VmRSS"))}
        print(f"  step {time.time() - t:.1f} s; peak RSS {status['VmHWM']} MB, RSS after the step {status['VmRSS']} MB")


if __name__ == "__main__":
    main()
