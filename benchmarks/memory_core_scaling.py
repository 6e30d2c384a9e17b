"""The memory alone, without the image networks: time and XLA memory of one training step of the
associative memory's recurrence over T steps with slots = T, dense against top-k against the hash
index (`content_index="lsh"`), so that the growth each read should have is not hidden under the
O(T) encoder and decoder.

    PYTHONPATH=src python benchmarks/memory_core_scaling.py --out docs/results/content-index-core

One step = value and gradient (with respect to every memory parameter) of sum(Psi_t^2) over a scan
of T steps fed random latents; batch 1, paper sizes (latent 32, 5 heads, LSTM 300), k = 8.
Timing: the median of `--steps` calls after the compile call, in one process. Memory: XLA's
`memory_analysis()` of the compiled step (temporary buffers plus arguments and outputs), which,
unlike the process's peak, belongs to this configuration alone. Writes OUT.json and OUT.png.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp

from gtmm.memories import ControllerInput
from gtmm.memories.associative import AssociativeMemory
from memory_scaling import loglog_slope, save_figure

CONFIGS = {"dense": {}, "top-k": {"top_k": 8}, "lsh": {"top_k": 8, "content_index": "lsh"}}
STYLE = {"dense": "-", "top-k": "--", "lsh": "-."}
# Per training step of T steps with slots N = T: what each variant's read should cost.
EXPECTED = {"dense": "T^2: position network (N outputs), projection and cosine over N slots every step",
            "top-k": "T^2: as dense (every similarity is computed before the top k are chosen)",
            "lsh": "T: L C candidates and 2k gathered rows per step, independent of N"}


def measure(name: str, T: int, steps: int, max_timing_s: float) -> dict:
    memory = AssociativeMemory(latent_size=32, task_context_size=0, hidden_size=300, slots=T, read_heads=5,
                               key=jax.random.PRNGKey(0), **CONFIGS[name])
    latents = jax.random.normal(jax.random.PRNGKey(1), (T, 32))

    def loss(m, zs):
        def step(state, z):
            psi, state = m(ControllerInput(z, jnp.zeros(0), jnp.zeros(0)), state)
            return state, psi
        _, psis = jax.lax.scan(step, m.initial_state(), zs)
        return jnp.sum(psis ** 2)

    params, static = eqx.partition(memory, eqx.is_inexact_array)
    fn = jax.jit(jax.value_and_grad(lambda p, zs: loss(eqx.combine(p, static), zs)))
    start = time.perf_counter()
    compiled = fn.lower(params, latents).compile()
    compile_s = time.perf_counter() - start
    stats = compiled.memory_analysis()
    xla_mb = None if stats is None else (stats.temp_size_in_bytes + stats.argument_size_in_bytes
                                         + stats.output_size_in_bytes) / 2 ** 20
    jax.block_until_ready(compiled(params, latents))  # warm
    times, begun = [], time.perf_counter()
    while len(times) < steps and (not times or time.perf_counter() - begun < max_timing_s):
        t0 = time.perf_counter()
        value, grads = compiled(params, latents)
        jax.block_until_ready(grads)
        times.append(time.perf_counter() - t0)
    finite = bool(jnp.isfinite(value)) and all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree_util.tree_leaves(grads))
    step_s = statistics.median(times)
    return {"config": name, "T": T, "step_s": round(step_s, 5), "ms_per_recurrent_step": round(1e3 * step_s / T, 4),
            "xla_mb": None if xla_mb is None else round(xla_mb, 2), "compile_s": round(compile_s, 2),
            "timed_steps": len(times), "finite": finite, "load_after": round(os.getloadavg()[0], 2)}


def index_recall(slots: int, noise: float, queries: int = 200, k: int = 8, seed: int = 0) -> dict:
    """How often the index's candidates hold what an exact read would find, on `slots` random keys
    (dimension 32) indexed as the memory indexes them (its default tables, capacity and bits).

    A query is a stored key plus Gaussian noise whose norm is about `noise` times the key's (a cue
    that resembles one stored item): `source` is the fraction of queries whose source key is among
    the k read, `top_k` the fraction of the exact top k (by cosine over all slots) that is."""
    from gtmm.memories.lsh import candidate_content_weights, empty_index, hash_codes, index_candidates, index_insert

    memory = AssociativeMemory(latent_size=32, task_context_size=0, hidden_size=8, slots=slots, read_heads=1,
                               top_k=k, content_index="lsh", key=jax.random.PRNGKey(seed))
    kk, kq, kn = jax.random.split(jax.random.PRNGKey(seed + 1), 3)
    keys = jax.random.normal(kk, (slots, 32))
    tables, bits = memory.planes.shape[:2]
    insert = jax.jit(lambda index, slot, key: index_insert(index, slot, hash_codes(memory.planes, key), jnp.array(True)))
    index = empty_index(tables, bits, memory.index_capacity, slots)
    for slot in range(slots):
        index = insert(index, jnp.array(slot), keys[slot])
    source = jax.random.randint(kq, (queries,), 0, slots)
    # noise of norm about `noise` times the key's: cos(query, source) about 1 / sqrt(1 + noise^2)
    q = keys[source] + noise * jnp.linalg.norm(keys[source], axis=-1, keepdims=True) / jnp.sqrt(32.0) * jax.random.normal(kn, (queries, 32))

    @jax.jit
    def read(query):
        ids, valid = index_candidates(index, hash_codes(memory.planes, query))
        positions, weights = candidate_content_weights(query[None], jnp.ones(1), keys[ids][None], valid[None], k)
        return ids[positions[0]], weights[0] > 0, valid.sum()

    found_source = found_top = candidates = 0
    for i in range(queries):
        got, ok, n = read(q[i])
        got = {int(g) for g, o in zip(got, ok) if o}
        exact = jnp.argsort(-(keys @ q[i]) / jnp.linalg.norm(keys, axis=-1))[:k]
        found_source += int(source[i]) in got
        found_top += len(got & {int(e) for e in exact}) / k
        candidates += int(n)
    return {"slots": slots, "noise": noise, "k": k, "tables": tables, "bits": bits, "capacity": memory.index_capacity,
            "source": round(found_source / queries, 3), "top_k": round(found_top / queries, 3),
            "mean_candidates": round(candidates / queries, 1)}


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, label in ((axes[0], "step_s", "seconds per training step (T recurrent steps)"),
                           (axes[1], "xla_mb", "XLA buffers of the compiled step (MB)")):
        for name in CONFIGS:
            rows = [r for r in result["runs"] if r["config"] == name and r.get(key)]
            if rows:
                ax.plot([r["T"] for r in rows], [r[key] for r in rows], STYLE[name], marker="o", ms=3.5,
                        label=f"{name} ({', '.join(f'{k}={v}' for k, v in CONFIGS[name].items()) or 'all slots'})")
        rows = [r for r in result["runs"] if r.get(key)]
        anchor = min(rows, key=lambda r: r["T"])
        Ts = sorted({r["T"] for r in rows})
        for power, shade in ((1, "0.7"), (2, "0.45")):
            ax.plot(Ts, [anchor[key] * (t / anchor["T"]) ** power for t in Ts], ":", color=shade, lw=1,
                    label=f"~ T^{power}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("T (= slots)")
        ax.set_ylabel(label)
    save_figure(fig, axes, f"Associative memory alone, value and gradient over T steps, batch 1; {result['machine']}", path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="docs/results/content-index-core", help="writes OUT.json and OUT.png")
    p.add_argument("--T", default="25,50,100,200,500,1000,2000,4000", help="comma-separated lengths (= slots)")
    p.add_argument("--configs", default=",".join(CONFIGS))
    p.add_argument("--steps", type=int, default=5, help="timed calls after the compile call (median)")
    p.add_argument("--max-timing-s", type=float, default=60)
    p.add_argument("--plot-only", action="store_true")
    p.add_argument("--recall-only", action="store_true", help="only the index's recall (fast), printed")
    a = p.parse_args()
    recall = [index_recall(n, noise) for n in (100, 1000, 4000) for noise in (0.1, 0.3, 0.6)]
    if a.recall_only:
        for row in recall:
            print(json.dumps(row), flush=True)
        return
    out = Path(a.out)
    if a.plot_only:
        plot(json.loads(out.with_suffix(".json").read_text()), out.with_suffix(".png"))
        return
    Ts = [int(t) for t in a.T.split(",")]
    result = {"date": datetime.date.today().isoformat(),
              "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.2f} at the start",
              "device": str(jax.devices()[0]), "settings": {"T": Ts, "slots": "T", "batch": 1, "k": 8, "steps": a.steps},
              "expected_per_training_step": {n: EXPECTED[n] for n in a.configs.split(",")}, "index_recall": recall,
              "runs": []}
    out.parent.mkdir(parents=True, exist_ok=True)
    for name in a.configs.split(","):
        for T in Ts:
            row = measure(name, T, a.steps, a.max_timing_s)
            result["runs"].append(row)
            print(json.dumps(row), flush=True)
        rows = [r for r in result["runs"] if r["config"] == name]
        for lo, hi in ((min(Ts), max(Ts)), (max(t for t in Ts if t <= max(Ts) // 4) if len(Ts) > 2 else min(Ts), max(Ts))):
            pts = [r for r in rows if lo <= r["T"] <= hi]
            result.setdefault("slopes", {}).setdefault(name, {})[f"T {lo}-{hi}"] = {
                key: None if (s := loglog_slope([(r["T"], r[key]) for r in pts if r.get(key)])) is None else round(s, 2)
                for key in ("step_s", "xla_mb")}
        tmp = out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(result, indent=1) + "\n")
        tmp.replace(out.with_suffix(".json"))
    plot(result, out.with_suffix(".png"))


if __name__ == "__main__":
    main()
