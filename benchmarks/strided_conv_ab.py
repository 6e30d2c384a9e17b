"""Before/after: one Adam training step with the encoder's strided convolutions computed by XLA
(forward and autodiff backward) or by `gtmm.networks.conv_strided` (XLA's forward, the
hand-written backward), side by side in one process, alternating rounds, medians.

    PYTHONPATH=src python benchmarks/strided_conv_ab.py --model vrnn --rounds 5

Variants: `xla` (both strided convolutions by XLA), `down1` (the first by `conv_strided`: the
library's default), `both` (both by `conv_strided`). Same parameters and batch in every variant;
prints one JSON object with every round's times, so a loaded machine shows in the spread.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import jax

import gtmm.networks as networks
from _ab import add_step_arguments, fresh_train_step, step_inputs

_conv_strided, _conv_any = networks.conv_strided, networks.conv_any


def _use(variant: str) -> None:
    # The encoder looks both names up in the module when it is traced.
    networks.conv_strided = networks.conv_xla if variant == "xla" else _conv_strided
    networks.conv_any = ((lambda c, x, in_loop: networks.conv_input_side(c, x) if in_loop else _conv_strided(c, x))
                         if variant == "both" else _conv_any)


def main() -> None:
    parser = argparse.ArgumentParser()
    add_step_arguments(parser)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--variants", default="xla,down1,both")
    args = parser.parse_args()
    variants = args.variants.split(",")
    optimizer, inputs = step_inputs(args)

    steps, first_s, times, losses = {}, {}, {v: [] for v in variants}, {}
    for v in variants:
        _use(v)
        start = time.perf_counter()
        steps[v] = fresh_train_step(optimizer, *inputs)
        out = jax.block_until_ready(steps[v](*inputs))
        first_s[v] = time.perf_counter() - start
        losses[v] = {"loss": float(out[2]), "grad_norm": float(out[5])}
    for _ in range(args.rounds):
        for v in variants:
            _use(v)
            start = time.perf_counter()
            jax.block_until_ready(steps[v](*inputs))
            times[v].append(round(time.perf_counter() - start, 4))
    _use("down1")
    print(json.dumps({
        "model": args.model, "batch": args.batch, "T": args.T, "rounds": args.rounds,
        "median_step_s": {v: round(statistics.median(t), 4) for v, t in times.items()},
        "step_s": times, "first_step": losses,
        "first_step_s": {v: round(s, 1) for v, s in first_s.items()},
        "loadavg": [round(x, 2) for x in os.getloadavg()], "cpus": len(os.sched_getaffinity(0)),
    }))


if __name__ == "__main__":
    main()
