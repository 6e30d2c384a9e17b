"""Replay a stretch of a run's training from a checkpoint and show where each step's gradient lands:
what a gradient spike in `metrics.jsonl` is made of.

From checkpoint C the steps C+1 .. TO are retrained with the run's own batches and keys
(`task.batch("train", ..., seed, step)`, `step_key(seed, step)`), on one device. Each step prints
its gradient norm beside the one the run logged (a run trained on several devices sums in
another order, so the two agree closely rather than bit for bit; the printed ratio says how
closely), the four largest parts of the gradient (`recall_diagnostic.gradient_parts`: the memory's
interface bias by named piece) and, for a content-addressed memory, the largest interface values
the controller emitted over the step's batch: every key strength after its softplus and the NTM's
sharpening gamma = 1 + softplus, as the memory uses them, then the largest other raw pieces.

Checkpoints: a run keeps only its last few (`keep_checkpoints`), so a spike found after the
fact is replayed from a copy; `--checkpoint` takes any checkpoint file of the run (a hard link
made while the run trained is enough; the step is read from the checkpoint's header, not its name).

Usage: python scripts/replay_steps.py RUN_DIR --checkpoint PATH --to STEP [--every 1] [--top 4]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import sys
from collections import defaultdict
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from gtmm.errors import GtmmError
from gtmm.memories.base import InterfaceMemory
from gtmm.model import loss_fn
from gtmm.train import (DamagedCheckpoint, build_model, enable_compile_cache, make_optimizer, read_checkpoint,
                        read_config, read_metrics, read_model_config, step_key, tree_norm)

sys.path.insert(0, str(Path(__file__).parent))
from recall_diagnostic import gradient_parts  # noqa: E402

_seen: dict[str, float] = defaultdict(float)  # largest |value| per interface piece over the current step


def _record(name: str, value) -> None:
    _seen[name] = max(_seen[name], float(np.max(np.abs(np.asarray(value)))))


@contextlib.contextmanager
def _watching_interface():
    """Record every interface piece the controller emits (raw, and squashed where the memory
    squashes it) while the block runs; the memories are as before afterwards."""
    split = InterfaceMemory._interface

    def interface(self, h):
        pieces = split(self, h)
        for name, raw in pieces.items():
            jax.debug.callback(_record, f"raw {name}", raw)
            if name.endswith("strengths"):
                jax.debug.callback(_record, f"softplus {name}", jax.nn.softplus(raw))
            if name.endswith("gamma"):
                jax.debug.callback(_record, f"1+softplus {name}", 1 + jax.nn.softplus(raw))
        return pieces

    InterfaceMemory._interface = interface
    try:
        yield
    finally:
        InterfaceMemory._interface = split


@functools.cache  # one jitted step per optimiser (make_optimizer's are cached): replays in a process share it
def _step(optimizer):
    @eqx.filter_jit
    def step(model, opt_state, frames, context, key):
        (loss, terms), grads = eqx.filter_value_and_grad(loss_fn, has_aux=True)(model, frames, context, key)
        updates, opt_state = optimizer.update(grads, opt_state, eqx.filter(model, eqx.is_array))
        return (eqx.apply_updates(model, updates), opt_state, jnp.mean(terms.kl, axis=0),
                tree_norm(grads), gradient_parts(grads, model.memory))

    return step


def replay(run: Path, checkpoint: Path, to: int, task=None):
    """Retrain `run`'s steps from `checkpoint` to `to`, yielding one record per step: its number,
    gradient norm, the norm the run logged, the KL over the first l and the recall steps, the
    gradient norm per part, and (content-addressed memories) the interface maxima of the step."""
    enable_compile_cache()
    config = read_config(run)
    task = task or config.make_task()
    model = build_model(config, read_model_config(run))
    opt_state = make_optimizer(config).init(eqx.filter(model, eqx.is_array))
    try:
        header, model, opt_state = read_checkpoint(checkpoint, model, opt_state)
    except DamagedCheckpoint as e:
        raise GtmmError(f"checkpoint {checkpoint} does not load into {run}'s model ({e})") from None
    if header is None:
        raise GtmmError(f"checkpoint {checkpoint} predates checkpoint headers, so its step is unknown; "
                        "replay from a checkpoint this gtmm wrote")
    start = header["step"]  # the checkpoint's own record, whatever the copy is named
    if to <= start:
        raise GtmmError(f"--to {to} is not after the checkpoint's step {start}")
    logged = {r["step"]: r["grad_norm"] for r in read_metrics(run)}
    watching = isinstance(model.memory, InterfaceMemory)

    with _watching_interface() if watching else contextlib.nullcontext():
        for s in range(start, to):
            # The metrics line of step s + 1 records the update computed from batch `s` (train.py).
            batch = task.batch("train", config.batch_size, config.seed, s)
            _seen.clear()
            # at the run's rate of the update from s (its lr drops included)
            step = _step(make_optimizer(config, s))
            model, opt_state, kl, norm, parts = step(model, opt_state, jnp.asarray(batch.frames),
                                                     jnp.asarray(batch.context), step_key(config.seed, s))
            jax.effects_barrier()
            kl = np.asarray(kl)
            yield {"step": s + 1, "grad_norm": float(norm), "logged": logged.get(s + 1),
                   "kl_first": float(kl[:config.l].mean()), "kl_recall": float(kl[config.l:].mean()),
                   "parts": {k: float(v) for k, v in parts.items()}, "interface": dict(_seen) if watching else {}}


def module_norms(parts: dict[str, float]) -> dict[str, float]:
    """The gradient's norm by module from `gradient_parts`' pieces: the memory (controller and
    interface; what `gtmm train --clip-memory-grad-norm` clips), the image networks, the maps."""
    groups = {"memory": ("controller lstm", "interface"), "image networks": ("encoder", "decoder"),
              "prior and posterior maps": ("prior map", "posterior map")}
    return {name: float(np.sqrt(sum(v * v for k, v in parts.items() if k.startswith(prefixes))))
            for name, prefixes in groups.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path)
    p.add_argument("--checkpoint", type=Path, required=True, help="a checkpoint file of this run (or a copy of one)")
    p.add_argument("--to", type=int, required=True, help="last step to replay")
    p.add_argument("--every", type=int, default=1, help="print every Nth step (and every step over 3x the median)")
    p.add_argument("--top", type=int, default=4, help="how many parts of the gradient to name")
    a = p.parse_args()
    print(f"replaying {a.run} up to step {a.to} from {a.checkpoint}")
    norms = []
    try:
        for i, r in enumerate(replay(a.run, a.checkpoint, a.to), 1):
            norms.append(r["grad_norm"])
            if i % a.every and r["grad_norm"] < 3 * float(np.median(norms[-200:])):
                continue
            top = sorted(((v, k) for k, v in r["parts"].items()), reverse=True)[:a.top]
            line = (f"step {r['step']}: grad norm {r['grad_norm']:.0f}"
                    + (f" (run logged {r['logged']:.0f}, ratio {r['grad_norm'] / r['logged']:.4f})" if r["logged"] else "")
                    + f", KL first l {r['kl_first']:.2f}, recall {r['kl_recall']:.2f}; "
                    + ", ".join(f"{k} {v:.0f}" for v, k in top)
                    + "; by module: " + ", ".join(f"{k} {v:.0f}" for k, v in module_norms(r["parts"]).items()))
            if r["interface"]:
                # Every strength and gamma as the memory uses it, then the largest of the other raw pieces.
                seen = r["interface"]
                used = sorted((k, v) for k, v in seen.items() if not k.startswith("raw "))
                raw = sorted(((v, k) for k, v in seen.items() if k.startswith("raw ") and "strengths" not in k
                              and "gamma" not in k), reverse=True)[:a.top]
                line += "; interface maxima: " + ", ".join(f"{k} {v:.1f}" for k, v in used + [(k, v) for v, k in raw])
            print(line, flush=True)
    except GtmmError as e:
        sys.exit(f"replay_steps: {e}")


if __name__ == "__main__":
    main()
