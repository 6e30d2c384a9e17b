"""The two-pathway (3D) networks inside a loop body: the VRNN's continual generation, which
re-encodes each generated frame inside its scan, and the checkpointed blocks of `--remat-chunk`.

Times, at B = 10 and T = 30 on random frames (tests/_fakes.py, no renderer needed), the VRNN's
`_generate` (as `gtmm evaluate` calls it) and `_terms`, and with `--remat` the loss-and-gradient
with and without `remat_chunk=10`, under the XLA_FLAGS it prints (users' runs: none). Run it at
two revisions to compare:

    PYTHONPATH=src:. python benchmarks/loop_networks_3d.py [--remat]
"""

import argparse
import os
import time

import equinox as eqx
import jax
import jax.numpy as jnp

from gtmm.evaluate import _generate, _terms
from gtmm.model import init_model, loss_fn
from gtmm.tasks import make_task
from gtmm.train import TrainConfig
from tests._fakes import fake_episode_dataset


def timed(name, fn, calls=2):
    for i in range(calls):
        t = time.time()
        out = jax.block_until_ready(fn())
        print(f"{name:28s} call {i}: {time.time() - t:7.2f} s", flush=True)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--remat", action="store_true", help="also time the training gradient with remat_chunk=10")
    args = p.parse_args()
    print(f"XLA_FLAGS: {os.environ.get('XLA_FLAGS') or '(none)'}", flush=True)
    task = make_task("rotation-3d", dataset=fake_episode_dataset())
    batch = task.batch("eval", 10, 0, 0)
    frames, context = jnp.asarray(batch.frames), jnp.asarray(batch.context)
    model = init_model(TrainConfig(model="vrnn", task="rotation-3d").model_config(task), 0)
    timed("terms (training-mode pass)", lambda: _terms(model, frames, context, jax.random.PRNGKey(0)))
    timed("generate (VRNN, feedback)", lambda: _generate(model, frames, context, task.recall_start,
                                                         jax.random.PRNGKey(1)))
    if args.remat:
        grad = eqx.filter_jit(eqx.filter_value_and_grad(loss_fn, has_aux=True))
        for chunk in (None, 10):
            m = init_model(TrainConfig(model="vrnn", task="rotation-3d",
                                       model_overrides={"remat_chunk": chunk}).model_config(task), 0)
            timed(f"loss and gradient, remat {chunk}", lambda m=m: grad(m, frames, context, jax.random.PRNGKey(0)))


if __name__ == "__main__":
    main()
