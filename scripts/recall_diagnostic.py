"""Does a memory learn perfect recall when the image networks are taken out of the picture?

Frames are 64-bit binary patterns drawn from a fixed set of 500 (about 6.2 nats each), the
encoder and observation map are single linear layers, and everything else is gtmm's model:
memory, prior and posterior maps, per-step free energy, Adam 1e-3, batch 10. A step costs
milliseconds instead of seconds, so the recurrent part's learning speed can be measured here.

  --oracle         head 0 of the introspective memory reads the right slot during recall
                   (slot j at step l + j): separates "can use a perfect read" from "learns where to read"
  --time-context   the controller also receives a one-hot of the step index as task context c_t
  --lr, --clip     Adam's learning rate; clip the gradient's global norm (not in the paper)
  --lr-drop S:LR   the updates after step S at LR (as `gtmm train --lr-drop`; repeatable)
  --clip-memory C  clip the global norm of the memory's gradient (controller LSTM and interface)
                   to C, the rest of the model's gradient left as it is (not in the paper)
  --min-std        the floor on the prior's and posterior's standard deviations (default 1e-3)
  --ntm-walk-bias  the NTM's write heads start walking forward one slot per step
                   (ModelConfig.ntm_walk_bias; not in the paper)
  --reads          lru: the largest read weight and the read strengths beta at every printed step
                   (as scripts/lru_reads.py reports them for a trained run)
  --spikes         print where the gradient lands (norm per part of the model) at every step whose
                   norm is over 20x the median of the last 200 steps
  --psi-with-h     the introspective memory context also carries the controller state h_t, as the
                   NTM, LRU and DNC contexts do (eq. 13-16), so the prior can tell the phases apart
                   (ModelConfig.context_with_controller; not the paper's eq. 12)

Usage: python scripts/recall_diagnostic.py --model introspective --steps 3000 [--oracle] [--time-context]
Prints mean KL over the first l steps and over the recall steps every --every steps.
"""

from __future__ import annotations

import argparse
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from gtmm import model as gtmm_model
from gtmm.memories import introspective
from gtmm.memories.base import interface_offsets, split_interface
from gtmm.model import ModelConfig, init_model, loss_fn
from gtmm.cli import _lr_drop
from gtmm.errors import GtmmError
from gtmm.train import TrainConfig, clip_memory_by_global_norm, tree_norm

import lru_reads  # noqa: E402  (scripts/, beside this file)


def gradient_parts(grads, memory) -> dict:
    """Global gradient norm of each part of the model; the memory's interface bias by named piece."""
    parts = {"encoder": grads.encoder, "decoder": grads.decoder, "prior map": grads.prior_map,
             "posterior map": grads.posterior_map, "controller lstm": grads.memory.lstm}
    if hasattr(grads.memory, "interface"):
        parts["interface weight"] = grads.memory.interface.weight
        pieces = split_interface(grads.memory.interface.bias, memory._interface_shapes())
        parts.update({f"interface bias {name}": v for name, v in pieces.items()})
    return {name: tree_norm(v) for name, v in parts.items()}


def learning_rate(lr: float, drops: tuple[tuple[int, float], ...]):
    """Adam's rate as optax takes it: `lr`, or with drops a schedule of the update count, which
    is the number of updates made, so the update from step s gets `TrainConfig.lr_at(s)`."""
    if not drops:
        return lr

    def rate(count):
        value = jnp.asarray(lr)
        for at, after in drops:
            value = jnp.where(count >= at, after, value)
        return value
    return rate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="introspective")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--every", type=int, default=200)
    p.add_argument("--l", type=int, default=15)
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--oracle", action="store_true")
    p.add_argument("--time-context", action="store_true")
    p.add_argument("--psi-with-h", action="store_true")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate (paper section 4.1: 1e-3)")
    p.add_argument("--lr-drop", type=_lr_drop, action="append", default=[], metavar="STEP:LR",
                   help="the updates after STEP at LR, as gtmm train --lr-drop (repeatable)")
    p.add_argument("--clip-memory", type=float, default=None,
                   help="clip the global norm of the memory's gradient alone to this (default: no)")
    p.add_argument("--clip", type=float, default=None, help="clip the gradient's global norm to this (default: no)")
    p.add_argument("--ntm-walk-bias", type=float, default=0.0, help="ntm: ModelConfig.ntm_walk_bias (default 0)")
    p.add_argument("--lru-write-gate-bias", type=float, default=None,
                   help="lru: start the write gates' interface bias at this (default: the library's"
                        " initialisation, uniform within +-1/sqrt(hidden), about 0)")
    p.add_argument("--lru-strength-bias", type=float, default=None,
                   help="lru: start the read strengths' interface bias at this (beta = softplus(bias); default:"
                        " the library's initialisation, about 0, so beta is about 0.69)")
    p.add_argument("--reads", action="store_true",
                   help="lru: also print the largest read weight (mean over heads and steps) and the read strengths")
    p.add_argument("--spikes", action="store_true", help="print the gradient norm per part at each spike")
    p.add_argument("--min-std", type=float, default=None, help="floor on the Gaussians' std (default: the library's)")
    p.add_argument("--hidden-size", type=int, default=None,
                   help="controller width (default: the library's; with --psi-with-h 98, before 2026-11-29 316)")
    a = p.parse_args()
    bits, patterns, batch = 64, 500, 10
    T = a.l + a.k
    ctx = T if a.time_context else 0

    if a.oracle:
        if a.model != "introspective":
            p.error("--oracle applies to the introspective memory only")
        learned = introspective.IntrospectiveMemory.read_weights

        def oracle_read_weights(self, h, writes):
            w = learned(self, h, writes)
            return jnp.where(writes >= a.l, w.at[0].set(jax.nn.one_hot(writes - a.l, self.slots)), w)

        introspective.IntrospectiveMemory.read_weights = oracle_read_weights

    if a.psi_with_h and a.model != "introspective":
        p.error("--psi-with-h applies to the introspective memory only")
    for flag in ("lru_write_gate_bias", "lru_strength_bias", "reads"):
        if getattr(a, flag) not in (None, False) and a.model != "lru":
            p.error(f"--{flag.replace('_', '-')} applies to the lru memory only")

    # The frames here are 64-bit patterns for the linear encoder below, not the 32x32 images
    # `GTMM.embed` checks for.
    gtmm_model.check_frame_shape = lambda *args: None

    cfg = ModelConfig(model=a.model, sequence_length=T, task_context_size=ctx,
                      context_with_controller=a.psi_with_h, ntm_walk_bias=a.ntm_walk_bias, hidden_size=a.hidden_size,
                      **({"min_std": a.min_std} if a.min_std is not None else {})).resolved()
    model = init_model(cfg, a.seed)
    ke, kd = jax.random.split(jax.random.PRNGKey(a.seed + 1))
    model = eqx.tree_at(lambda m: (m.encoder, m.decoder), model,
                        (eqx.nn.Linear(bits, cfg.embed_size, key=ke),
                         eqx.nn.Linear(model.decoder.linear.in_features, bits, key=kd)))
    for part, value in (("write_gate", a.lru_write_gate_bias), ("strengths", a.lru_strength_bias)):
        if value is not None:
            start, shape = interface_offsets(model.memory._interface_shapes())[part]
            bias = model.memory.interface.bias.at[start: start + shape[0]].set(value)
            model = eqx.tree_at(lambda m: m.memory.interface.bias, model, bias)
    try:
        drops = TrainConfig(model=a.model, learning_rate=a.lr, lr_drops=tuple(a.lr_drop)).validate().lr_drops
    except GtmmError as e:
        p.error(str(e))
    optimizer = optax.adam(learning_rate(a.lr, drops))
    if a.clip_memory is not None:
        optimizer = optax.chain(clip_memory_by_global_norm(a.clip_memory), optimizer)
    if a.clip is not None:
        optimizer = optax.chain(optax.clip_by_global_norm(a.clip), optimizer)
    opt_state = optimizer.init(eqx.filter(model, eqx.is_array))
    context = jnp.broadcast_to(jnp.eye(T), (batch, T, T)) if ctx else jnp.zeros((batch, T, 0))

    @eqx.filter_jit
    def step(model, opt_state, x, key):
        (loss, terms), grads = eqx.filter_value_and_grad(loss_fn, has_aux=True)(model, x, context, key)
        updates, opt_state = optimizer.update(grads, opt_state, eqx.filter(model, eqx.is_array))
        return (eqx.apply_updates(model, updates), opt_state, loss, jnp.mean(terms.kl, axis=0),
                tree_norm(grads), gradient_parts(grads, model.memory) if a.spikes else {})

    read_trace = eqx.filter_jit(jax.vmap(lru_reads.trace, in_axes=(None, 0, 0, 0)))
    rng = np.random.default_rng(a.seed)
    table = rng.integers(0, 2, (patterns, bits)).astype(np.float32)
    start, largest, history = time.time(), 0.0, []
    for i in range(a.steps + 1):
        first = table[rng.integers(0, patterns, (batch, a.l))]
        x = jnp.asarray(np.concatenate([first, first[:, : a.k]], axis=1))
        model, opt_state, loss, kl, norm, parts = step(model, opt_state, x, jax.random.fold_in(jax.random.PRNGKey(a.seed), i))
        if a.spikes:
            history.append(float(norm))
            median = float(np.median(history[-200:]))
            if i > 200 and float(norm) > 20 * median:
                top = sorted(((float(v), k) for k, v in parts.items()), reverse=True)[:4]
                print(f"spike at step {i}: norm {float(norm):.0f}, median {median:.0f}; largest parts "
                      + ", ".join(f"{k} {v:.0f}" for v, k in top), flush=True)
        largest = max(largest, float(norm))
        if i % a.every == 0:
            kl = np.asarray(kl)
            reads = ""
            if a.reads:
                _, weights, _, _, strengths = read_trace(model, x, context, jax.random.split(jax.random.PRNGKey(i), batch))
                beta = " ".join(f"{v:.2f}" for v in np.asarray(strengths).mean((0, 1)))
                reads = f" largest_read_weight {float(weights.max(-1).mean()):.4f} beta {beta}"
            print(f"{a.model} step {i} loss {float(loss):.1f} kl_first_l {kl[: a.l].mean():.2f} "
                  f"kl_recall {kl[a.l :].mean():.2f} largest_grad_norm {largest:.0f} ({time.time() - start:.0f} s)"
                  + reads, flush=True)
            largest = 0.0


if __name__ == "__main__":
    main()
