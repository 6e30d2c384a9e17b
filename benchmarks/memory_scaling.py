"""Time and peak memory of one training step against the sequence length T, slots = T, batch 1:
the DNC with its dense N x N temporal link against the sparse one (`link_k`) with sparse reads
(`top_k`), and the associative memory with dense against top-k reads and reads through the hash
index (`content_index="lsh"`).

    PYTHONPATH=src nice -n 19 python benchmarks/memory_scaling.py --out docs/results/sparse-scaling

Each (configuration, T) runs in a fresh process (`remat.in_fresh_process`, so its ru_maxrss is its
own): one step to compile, then the median of up to `--steps` timed steps (loss and gradient).
From T = `--remat-from` on the recurrent scan is checkpointed every `--remat-chunk` steps
(`ModelConfig.remat_chunk`), else the dense DNC's per-step links alone would need T^3 floats.
A configuration is skipped at T when extrapolating its last two measured points (log-log) gives
more than `--max-step-s` per step or `--max-rss-mb` peak, or once it has failed or timed out.
Writes OUT.json (rewritten after every run, so an interrupted run keeps what it measured) and
OUT.png; `--plot-only` redraws the figure from OUT.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
from pathlib import Path

from remat import in_fresh_process

CONFIGS = {  # name -> (model, ModelConfig overrides)
    "vrnn": ("vrnn", {}),
    "introspective": ("introspective", {}),
    "ntm": ("ntm", {}),
    "lru": ("lru", {}),
    "dnc-dense": ("dnc", {}),
    "dnc-sparse": ("dnc", {"top_k": 8, "link_k": 8}),
    "associative-dense": ("associative", {}),
    "associative-topk": ("associative", {"top_k": 8}),
    "associative-lsh": ("associative", {"top_k": 8, "content_index": "lsh"}),
}
STYLE = {"vrnn": ("tab:gray", "-"), "introspective": ("tab:red", "-"), "ntm": ("tab:blue", "-"),
         "lru": ("tab:green", "-"), "dnc-dense": ("tab:purple", "-"), "dnc-sparse": ("tab:purple", "--"),
         "associative-dense": ("tab:orange", "-"), "associative-topk": ("tab:orange", "--"),
         "associative-lsh": ("tab:orange", "-.")}


# What the algorithms predict per sequence of T steps with slots = T (5 T for lru): the image
# networks and the controller are O(T) for every model; the memories add the following.
EXPECTED = {"vrnn": "T (no memory)", "introspective": "T^2 (attention over T slots at each step)",
            "ntm": "T^2 (content and shift over T slots)", "lru": "T^2 (5 T slots)",
            "dnc-dense": "T^3 (the T x T link at each step)", "dnc-sparse": "T^2 (K links per slot, content over T)",
            "associative-dense": "T^2 (content over T slots)", "associative-topk": "T^2 (similarities over T slots)",
            "associative-lsh": "T (hash index: L C candidates and 2k rows per step; no position mode)"}


def extrapolate(points: list[tuple[int, float]], T: int) -> float | None:
    """The value at T on the log-log line through the last two (T, value) points; None with fewer."""
    if len(points) < 2:
        return None
    (t0, v0), (t1, v1) = points[-2:]
    slope = math.log(v1 / v0) / math.log(t1 / t0)
    return v1 * (T / t1) ** slope


def loglog_slope(points: list[tuple[int, float]]) -> float | None:
    """Least-squares slope of log(value) against log(T); None with fewer than two points."""
    if len(points) < 2:
        return None
    xs, ys = [math.log(t) for t, _ in points], [math.log(v) for _, v in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def slopes(runs: list[dict], lo: int, hi: int) -> dict:
    """Per configuration: the fitted growth exponent of step time and of peak RSS over lo <= T <= hi."""
    out = {}
    for name in CONFIGS:
        ok = [r for r in runs if r["config"] == name and "error" not in r and "skipped" not in r and lo <= r["T"] <= hi]
        out[name] = {key: (round(s, 2) if (s := loglog_slope([(r["T"], r[key]) for r in ok])) is not None else None)
                     for key in ("step_s", "peak_rss_mb")} | {"Ts": [r["T"] for r in ok]}
    return out


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    Ts = result["settings"]["T"]
    for ax, key, label in ((axes[0], "step_s", "seconds per training step"),
                           (axes[1], "peak_rss_mb", "peak resident memory (MB)")):
        for name in CONFIGS:
            ok = [r for r in result["runs"] if r["config"] == name and "error" not in r and "skipped" not in r]
            if not ok:
                continue
            colour, line = STYLE[name]
            overrides = CONFIGS[name][1]
            text = name + (f" ({', '.join(f'{k}={v}' for k, v in overrides.items())})" if overrides else "")
            ax.plot([r["T"] for r in ok], [r[key] for r in ok], line, marker="o", ms=3.5, color=colour, label=text)
        # reference slopes through the dense DNC's T = 200 point (or the first run measured)
        anchor = next((r for r in result["runs"] if r["config"] == "dnc-dense" and r["T"] == 200 and key in r),
                      next(r for r in result["runs"] if key in r))
        for power, shade in ((1, "0.75"), (2, "0.55"), (3, "0.35")):
            ax.plot(Ts, [anchor[key] * (t / anchor["T"]) ** power for t in Ts], ":", color=shade, lw=1,
                    label=f"~ T^{power}")
        remat_from = result["settings"]["remat_from"]
        if remat_from <= max(Ts):
            ax.axvline(remat_from, color="0.85", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(min(Ts) / 1.2, max(Ts) * 1.2)
        ax.set_xlabel("T (= slots)" + (f"; scan checkpointed every {result['settings']['remat_chunk']} steps"
                                       f" from T = {remat_from}" if remat_from <= max(Ts) else ""))
        ax.set_ylabel(label)
        ax.set_ylim(min(r[key] for r in result["runs"] if key in r) / 2,
                    max(r[key] for r in result["runs"] if key in r) * 2)
    save_figure(fig, axes, f"One training step (loss and gradient), batch 1; {result['machine']}", path)


def save_figure(fig, axes, title: str, path: Path) -> None:
    """The legend in the first panel, the title, and the PNG (shared with memory_core_scaling.py)."""
    import matplotlib.pyplot as plt

    axes[0].legend(fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="docs/results/sparse-scaling", help="writes OUT.json and OUT.png")
    p.add_argument("--T", default="25,50,100,200,500,1000", help="comma-separated sequence lengths (= slots)")
    p.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated names of CONFIGS")
    p.add_argument("--steps", type=int, default=3, help="timed steps after the compile step (median)")
    p.add_argument("--max-timing-s", type=float, default=150, help="stop timing after this long (>= 1 step)")
    p.add_argument("--remat-from", type=int, default=500, help="checkpoint the scan from this T on")
    p.add_argument("--remat-chunk", type=int, default=32)
    p.add_argument("--max-step-s", type=float, default=300, help="skip where a step would take longer")
    p.add_argument("--max-rss-mb", type=float, default=12_000, help="skip where the peak would be higher")
    p.add_argument("--timeout-s", type=float, default=1200, help="per run, compile included")
    p.add_argument("--plot-only", action="store_true")
    a = p.parse_args()
    out = Path(a.out)
    if a.plot_only:
        plot(json.loads(out.with_suffix(".json").read_text()), out.with_suffix(".png"))
        return
    Ts = [int(t) for t in a.T.split(",")]
    result = {"date": datetime.date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores"
              f" ({platform.processor() or platform.platform()}), load average {os.getloadavg()[0]:.2f} at the start",
              "settings": {"T": Ts, "slots": "T", "batch": 1, "steps": a.steps, "max_timing_s": a.max_timing_s,
                           "remat_from": a.remat_from, "remat_chunk": a.remat_chunk, "max_step_s": a.max_step_s,
                           "max_rss_mb": a.max_rss_mb}, "runs": []}
    out.parent.mkdir(parents=True, exist_ok=True)
    for name in a.configs.split(","):
        model, overrides = CONFIGS[name]
        measured: list[dict] = []
        for T in Ts:
            chunk = a.remat_chunk if T >= a.remat_from else 0
            row = {"config": name, "model": model, "T": T, "remat_chunk": chunk or None, **overrides}
            failed = next((r for r in measured if "error" in r), None)
            time_guess = extrapolate([(r["T"], r["step_s"]) for r in measured if "step_s" in r], T)
            # the memory guess only from runs with the same checkpointing (it changes the slope)
            rss_guess = extrapolate([(r["T"], r["peak_rss_mb"]) for r in measured
                                     if "peak_rss_mb" in r and (r["remat_chunk"] or 0) == chunk], T)
            if failed:
                row["skipped"] = f"failed at T = {failed['T']}"
            elif time_guess is not None and time_guess > a.max_step_s:
                row["skipped"] = f"extrapolated {time_guess:.0f} s per step > {a.max_step_s:.0f} s"
            elif rss_guess is not None and rss_guess > a.max_rss_mb:
                row["skipped"] = f"extrapolated peak {rss_guess:.0f} MB > {a.max_rss_mb:.0f} MB"
            else:
                row |= in_fresh_process(model, T, chunk, a.steps, a.max_timing_s, overrides, a.timeout_s)
                row["load_after"] = round(os.getloadavg()[0], 2)
            measured.append(row)
            result["runs"].append(row)
            print(json.dumps(row), flush=True)
            result["slopes_measured"] = slopes(result["runs"], min(Ts), max(Ts))
            result["expected_per_sequence"] = {name: EXPECTED[name] for name in a.configs.split(",")}
            result["slopes_200_1000"] = slopes(result["runs"], 200, 1000)
            result["slopes_500_1000"] = slopes(result["runs"], 500, 1000)
            out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    plot(result, out.with_suffix(".png"))


if __name__ == "__main__":
    main()
