"""Time the DNC memory core alone (the `torch_twin.py` configuration: B = 10, T = 25, LSTM
controller 256, 5 read heads, word 32): its forward pass and its loss gradient, and the same
with parts of the temporal link switched off, to see where the gradient's time goes.

    PYTHONPATH=src python benchmarks/dnc_core_grad.py --slots 125 --variant full
    PYTHONPATH=src python benchmarks/dnc_core_grad.py --slots 125 --variant frozen-link

Variants: `full`; `frozen-link` (L_t = L_{t-1}, so the link stays zero and carries no
gradient); `no-link-reads` (the forward and backward link reads return zeros, so nothing
depends on the link and XLA drops it). Run each in its own process (they patch the module).
Prints one JSON line: median and minimum of the timed calls, in ms.
"""

from __future__ import annotations

import argparse
import json
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import gtmm.memories.dnc as dnc
from gtmm.init import host_init
from gtmm.memories.base import ControllerInput


def make_core(slots: int, hidden: int = 256, heads: int = 5, word: int = 32, inputs: int = 32) -> dnc.DNCMemory:
    """The DNC memory system alone, latent inputs of size `inputs`, no task context."""
    return host_init(lambda k: dnc.DNCMemory(latent_size=inputs, task_context_size=0, hidden_size=hidden,
                                             slots=slots, read_heads=heads, word_size=word, key=k), 0)


def core_loss(core: dnc.DNCMemory, x: jax.Array) -> jax.Array:
    """Sum of squares of the memory's outputs over a batch of input sequences [B, T, inputs]."""
    def one(seq):
        def step(state, x_t):
            psi, state = core(ControllerInput(x_t, jnp.zeros(0), jnp.zeros(0)), state)
            return state, psi
        return jax.lax.scan(step, core.initial_state(), seq)[1]
    return jnp.sum(jax.vmap(one)(x) ** 2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slots", type=int, default=125)
    parser.add_argument("--variant", choices=("full", "frozen-link", "no-link-reads"), default="full")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    if args.variant == "frozen-link":
        dnc.updated_link = lambda link, precedence, write: link
    if args.variant == "no-link-reads":
        dnc.directional_read_weights = lambda link, w, forward: jnp.zeros((w.shape[0],) + link.shape[:2]) + 0 * w[:, None]

    B, T, inputs = 10, 25, 32
    core = make_core(args.slots, inputs=inputs)

    x = jnp.asarray(np.random.default_rng(0).standard_normal((B, T, inputs)).astype(np.float32))
    record = {"slots": args.slots, "variant": args.variant, "device": str(jax.devices()[0])}
    for name, fn in (("forward", eqx.filter_jit(core_loss)), ("gradient", eqx.filter_jit(eqx.filter_grad(core_loss)))):
        jax.block_until_ready(fn(core, x))  # compile
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            jax.block_until_ready(fn(core, x))
            times.append(1000 * (time.perf_counter() - start))
        record[f"{name}_ms_median"], record[f"{name}_ms_min"] = round(float(np.median(times)), 1), round(min(times), 1)
    print(json.dumps(record))


if __name__ == "__main__":
    main()
