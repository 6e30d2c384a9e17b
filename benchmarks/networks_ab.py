"""Before/after: one Adam training step with the visual networks computed by XLA's convolutions
(the layers as Equinox computes them, channels first: the code before the speed work) and by the
matrix-product forms of `gtmm.networks`, side by side in one process, alternating, medians.

    PYTHONPATH=src python benchmarks/networks_ab.py --model vrnn --steps 5

Same parameters in both (one model, two call paths); prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _ab import add_step_arguments, fresh_train_step, step_inputs  # noqa: E402
from test_networks import _reference_decoder, _reference_encoder  # noqa: E402

from gtmm.networks import Decoder, Encoder  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    add_step_arguments(parser)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    optimizer, inputs = step_inputs(args)

    matmul_calls = (Encoder.__call__, Decoder.__call__)
    variants = {"xla_conv": (_reference_encoder, _reference_decoder), "matmul": matmul_calls}
    steps, compile_s, times = {}, {}, {name: [] for name in variants}

    def use(name):
        Encoder.__call__, Decoder.__call__ = variants[name]

    for name in variants:
        use(name)
        start = time.perf_counter()
        steps[name] = fresh_train_step(optimizer, *inputs)
        jax.block_until_ready(steps[name](*inputs))
        compile_s[name] = time.perf_counter() - start
    for _ in range(args.steps):
        for name in variants:
            use(name)
            start = time.perf_counter()
            jax.block_until_ready(steps[name](*inputs))
            times[name].append(time.perf_counter() - start)
    use("matmul")
    med = {name: statistics.median(t) for name, t in times.items()}
    print(json.dumps({
        "model": args.model, "batch": args.batch, "T": args.T, "timed_steps": args.steps,
        "step_s_xla_conv": round(med["xla_conv"], 4), "step_s_matmul": round(med["matmul"], 4),
        "speedup": round(med["xla_conv"] / med["matmul"], 2),
        "first_step_s": {k: round(v, 1) for k, v in compile_s.items()},
        "loadavg": [round(x, 2) for x in os.getloadavg()], "cpus": len(os.sched_getaffinity(0)),
    }))


if __name__ == "__main__":
    main()
