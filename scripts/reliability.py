"""The reliability checks of issue 8, run end to end; prints what each found, with counts.

    GTMM_DATA=../shared/data python scripts/reliability.py                       # CPU budget, ~15 min
    GTMM_DATA=../shared/data python scripts/reliability.py --checks numerics --seeds 20 --steps 300 \
        --ledger docs/results/numerics-ledger.jsonl   # the issue's full sweep, stoppable and continued
    python scripts/reliability.py --checks numerics --debug-nans --seeds 1 --steps 2  # the CI smoke

Checks (--checks picks some; all by default):

1. numerics     every model, gtmm's associative memory included (tiny: LSTM and prior/posterior
                maps --hidden wide, batch 2, T = 5, T = 12 for dynamic dependency) on every task
                (rotation-3d on a few episodes rendered for the check: it needs the 3d extra, and
                is reported as skipped without it) and on four adversarial inputs
                (all-black frames, all-white frames, one frame repeated for the whole sequence,
                maximum-contrast noise: every pixel 0 or 1 at random), --seeds seeds each,
                --steps steps, through the real training loop (`train_replicas`): no loss, KL,
                log-likelihood or gradient norm may be NaN or infinite. --debug-nans turns on
                `jax_debug_nans` as well. The adversarial inputs replace the frames of
                perfect-recall batches; everything else about the batch is unchanged.
2. checkpoints  for every model: a run trained straight and the same run stopped part-way and
                resumed give bit-identical metrics and parameters; checkpoints are atomic (no
                temporary file left), only the last `keep_checkpoints` are kept, each holds the
                header (format, versions, step, configuration, payload checksum); a damaged newest
                checkpoint falls back to the one before; one of another format is refused.
3. kill         `gtmm train` in a subprocess, killed with SIGKILL --kills times at a random moment
                while it trains, and resumed each time: after every kill every checkpoint loads,
                metrics.jsonl parses (a torn last line is counted, and cut off on resume), the run
                resumes from its newest checkpoint and loses at most --checkpoint-every steps;
                finally its metrics equal, bit for bit, those of the same run never interrupted.
4. bad-input    bad commands through `gtmm.cli.main` (the console script's entry point): each must
                exit 2 with exactly one line `gtmm: error: ...`, no traceback, and leave every
                existing file as it was (checked byte for byte) and create no --out.
5. determinism  the same command twice, each in a fresh process: identical metrics.

Everything random in a run is a function of (seed, step), so these checks are reproducible.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from gtmm._io import append_jsonl, read_jsonl, repair_jsonl  # noqa: E402
from gtmm.errors import GtmmError  # noqa: E402

from gtmm.memories import MEMORIES  # noqa: E402

MODELS = tuple(MEMORIES)  # the paper's five and gtmm's associative memory
TASK_SIZES = {  # T = 5 where the task allows (similarity: l = 4 so its cue is random; dynamic: l >= 10)
    "perfect-recall": (3, 2), "parity-recall": (3, 2), "one-shot-recall": (3, 2),
    "similarity-cued-recall": (4, 1), "dynamic-dependency": (10, 2), "mnist-maze": (3, 2),
    "rotation-3d": (3, 2),  # colour frames, the two-pathway networks, latent 256; episodes rendered here
}
ROTATION_EPISODES = 20  # (every 10th is held out) rendered into the scratch directory for the rotation-3d numerics runs
ADVERSARIAL = ("black", "white", "repeated", "noise")
# The kill, determinism and bad-input runs: one small `gtmm train` configuration.
CLI_RUN = ["--model", "vrnn", "--l", "3", "--k", "2", "--batch-size", "2", "--hidden-size", "16"]


def say(message: str = "") -> None:
    print(message, flush=True)


def snapshot(*folders: Path) -> dict[str, bytes]:
    """Every file under `folders`, by path, with its bytes."""
    out = {}
    for folder in folders:
        if folder.is_file():
            out[str(folder)] = folder.read_bytes()
        elif folder.exists():
            for p in sorted(folder.rglob("*")):
                if p.is_file():
                    out[str(p)] = p.read_bytes()
    return out


def same_metrics(a: list[dict], b: list[dict]) -> bool:
    """Equal record for record, every number bit for bit, wall-clock time aside."""
    strip = lambda rs: [{k: v for k, v in r.items() if k != "wall_s"} for r in rs]  # noqa: E731
    return strip(a) == strip(b)


# --- 1. numerics ------------------------------------------------------------------------------

def adversarial_frames(frames: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """One sequence `[T, C, H, W]` made adversarial; values stay in [0, 1]."""
    if kind == "black":
        return np.zeros_like(frames)
    if kind == "white":
        return np.ones_like(frames)
    if kind == "repeated":  # the first frame, for the whole sequence
        return np.repeat(frames[:1], len(frames), axis=0)
    if kind == "noise":  # maximum contrast: every pixel 0 or 1 at random
        return rng.integers(0, 2, size=frames.shape).astype(frames.dtype)
    raise ValueError(f"unknown adversarial input {kind!r}")


def adversarial_task(base, kind: str):
    """`base` with every frame replaced by an adversarial one; `kind` "mixed": sequence b of a
    batch gets ADVERSARIAL[b % 4] (all four kinds in one batch of 4)."""
    from gtmm.tasks.base import Batch

    class Adversarial(type(base)):
        def __init__(self):
            self.__dict__.update(base.__dict__)

        def _sample(self, rng: np.random.Generator, split: str, batch_size: int) -> Batch:
            batch = super()._sample(rng, split, batch_size)
            kinds = [ADVERSARIAL[b % len(ADVERSARIAL)] if kind == "mixed" else kind for b in range(batch_size)]
            return batch._replace(frames=np.stack([adversarial_frames(f, k, rng) for f, k in zip(batch.frames, kinds)]))

    return Adversarial()


def _rotation3d_task(work: Path, l: int, k: int):
    """The rotation-3d task on a few episodes rendered into `work` (needs the 3d extra and an
    OpenGL library); raises GtmmError saying what is missing otherwise."""
    from gtmm.data.rotation3d import generate, load_rotation3d
    from gtmm.tasks.rotation_3d import Rotation3D

    folder = work / "rotation-3d-episodes"
    try:
        generate(ROTATION_EPISODES, root=folder, progress=False)
    except ImportError as e:
        raise GtmmError(f"rendering needs the 3d extra (pip install -e '.[3d]'): {e}") from None
    return Rotation3D(load_rotation3d(folder), l, k)


def check_numerics(args, work: Path) -> dict:
    import jax

    from gtmm.tasks import make_task
    from gtmm.train import TrainConfig, read_metrics, train_replicas

    inputs = [(t, t, None) for t in args.tasks] + [(f"adversarial-{a}", "perfect-recall", a) for a in args.adversarial]
    say(f"[numerics] {len(args.models)} models x {len(inputs)} inputs x {args.seeds} seeds x {args.steps} steps"
        f" (batch {args.batch_size}, hidden {args.hidden}{', jax_debug_nans on' if args.debug_nans else ''})")
    if args.debug_nans:
        jax.config.update("jax_debug_nans", True)
    tasks = {}
    runs = steps = bad = skipped = done_before = 0
    ledger = Ledger(Path(args.ledger)) if args.ledger else None
    seeds = range(args.seed_offset, args.seed_offset + args.seeds)
    t0 = time.time()
    try:
        for model in args.models:
            for label, task_name, kind in inputs:
                l, k = TASK_SIZES[task_name]
                key = {"model": model, "input": label, "seeds": [seeds.start, seeds.stop], "steps": args.steps,
                       "batch_size": args.batch_size, "hidden": args.hidden, "debug_nans": args.debug_nans}
                if ledger is not None and (entry := ledger.find(key)) is not None:
                    done_before += 1
                    say(f"  {model:13s} {label:22s} in the ledger ({entry['revision']}, {entry['status']}): not rerun")
                    continue
                t_run = time.time()
                if task_name not in tasks:
                    try:
                        tasks[task_name] = (_rotation3d_task(work, l, k) if task_name == "rotation-3d"
                                            else make_task(task_name, l=l, k=k))
                    except GtmmError as e:  # said once per model, and counted in the summary line
                        tasks[task_name] = e
                if isinstance(tasks[task_name], GtmmError):
                    skipped += 1
                    say(f"  {model:13s} {label:22s} SKIPPED: {str(tasks[task_name]).splitlines()[0]}")
                    continue
                task = tasks[task_name] if kind is None else adversarial_task(tasks[task_name], kind)
                config = TrainConfig(model=model, task=task_name, l=l, k=k, steps=args.steps,
                                     batch_size=args.batch_size,
                                     seed=seeds.start, checkpoint_every=args.steps,
                                     model_overrides={"hidden_size": args.hidden, "map_hidden": args.hidden})
                out = work / "numerics" / model / label
                problem = None
                try:
                    train_replicas(config, out, args.seeds, progress=False, task=task)
                except (GtmmError, FloatingPointError) as e:
                    problem = f"{type(e).__name__}: {str(e).splitlines()[0]}"
                worst = {}
                for r in range(args.seeds):
                    records = read_metrics(out / f"replica-{r}")
                    runs += 1
                    steps += len(records)
                    values = [(key, v) for rec in records for key in ("negative_bound", "log_likelihood", "grad_norm")
                              for v in [rec[key]]] + [("kl", v) for rec in records for v in rec["kl_per_step"]]
                    nonfinite = [key for key, v in values if not np.isfinite(v)]
                    if len(records) != args.steps or nonfinite:
                        problem = problem or (f"seed {r}: {len(records)} of {args.steps} steps, non-finite"
                                              f" {sorted(set(nonfinite))}")
                    worst["loss"] = max(worst.get("loss", -np.inf), max(rec["negative_bound"] for rec in records)
                                        if records else np.nan)
                    worst["grad"] = max(worst.get("grad", -np.inf), max(rec["grad_norm"] for rec in records)
                                        if records else np.nan)
                status = "ok" if problem is None else f"FAILED {problem}"
                bad += problem is not None
                say(f"  {model:13s} {label:22s} largest loss {worst['loss']:10.1f}  largest gradient norm"
                    f" {worst['grad']:10.1f}  {status}")
                if ledger is not None:
                    ledger.add({**key, "status": status, "largest_loss": worst["loss"], "largest_grad_norm": worst["grad"],
                                "wall_s": round(time.time() - t_run, 1)})
                shutil.rmtree(out, ignore_errors=True)
    finally:
        if args.debug_nans:
            jax.config.update("jax_debug_nans", False)
    say(f"[numerics] {runs} runs ({len(args.models)} models x {len(inputs)} inputs x {args.seeds} seeds"
        f"{f', {skipped} model-input pairs skipped' if skipped else ''}"
        f"{f', {done_before} model-input pairs already in the ledger' if done_before else ''}), {steps} training steps,"
        f" {time.time() - t0:.0f} s: {'no NaN or Inf anywhere' if not bad else f'{bad} FAILED'}")
    if ledger is not None:
        say(ledger.coverage(args, [label for label, _, _ in inputs]))
    return {"runs": runs, "steps": steps, "failed": bad, "skipped": skipped, "in_ledger": done_before}


class Ledger:
    """Append-only JSON lines, one per finished (model, input, seeds, steps, sizes) numerics run, so
    that the issue's full sweep (about 400,000 steps) can be run in pieces, across sessions, with
    nothing run twice. A torn last line (the process killed mid-write) is ignored and rerun."""

    def __init__(self, path: Path):
        self.path = path
        self.entries = read_jsonl(path) if path.exists() else []

    def find(self, key: dict) -> dict | None:
        return next((e for e in self.entries if all(e.get(k) == v for k, v in key.items())), None)

    def coverage(self, args, inputs: list[str]) -> str:
        """How many distinct seeds each model-input pair has run without a problem at these sizes."""
        same = {"steps": args.steps, "batch_size": args.batch_size, "hidden": args.hidden}
        seeds = {(m, i): set() for m in args.models for i in inputs}
        failed = 0
        for e in self.entries:
            if (e.get("model"), e.get("input")) in seeds and all(e.get(k) == v for k, v in same.items()):
                if e.get("status") == "ok":
                    seeds[e["model"], e["input"]].update(range(*e["seeds"]))
                else:
                    failed += 1
        counts = sorted(len(v) for v in seeds.values())
        return (f"[numerics] ledger {self.path}: {len(seeds)} model-input pairs at {args.steps} steps; seeds without"
                f" NaN or Inf per pair: min {counts[0]}, max {counts[-1]}; pairs with >= 20 seeds:"
                f" {sum(c >= 20 for c in counts)}; failed runs recorded: {failed}")

    def add(self, entry: dict) -> None:
        entry = {**entry, "revision": _revision(), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair_jsonl(self.path)  # a torn last line: cut it, so the new entry starts a line of its own
        append_jsonl(self.path, entry)
        self.entries.append(entry)


def _revision() -> str:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True,
                             text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# --- 2. checkpoints and resume ------------------------------------------------------------------

def check_checkpoints(args, work: Path) -> dict:
    import equinox as eqx
    import jax

    from gtmm.tasks import make_task
    from gtmm.train import (
        CHECKPOINT_FORMAT,
        TrainConfig,
        _checkpoint_paths,
        load_trained,
        read_checkpoint,
        read_metrics,
        train,
    )

    task = make_task("perfect-recall", l=3, k=2)
    steps, every, stop = 9, 2, 5
    say(f"[checkpoints] every model: {steps} steps straight vs {stop}, stop, resume to {steps}"
        f" (checkpoint every {every}, keep 3)")
    failures = []
    runs = 0
    for model in args.models:
        cfg = TrainConfig(model=model, l=3, k=2, steps=steps, batch_size=2, checkpoint_every=every,
                          model_overrides={"hidden_size": args.hidden, "map_hidden": args.hidden})
        a, b = work / "ckpt" / model / "straight", work / "ckpt" / model / "resumed"
        train(cfg, a, progress=False, task=task)
        train(replace(cfg, steps=stop), b, progress=False, task=task)
        out = train(cfg, b, progress=False, task=task)
        runs += 3
        problems = []
        if out["resumed_from"] != stop:
            problems.append(f"resumed from {out['resumed_from']}, not {stop}")
        if not same_metrics(read_metrics(a), read_metrics(b)):
            problems.append("resumed metrics differ from the straight run's")
        pa = jax.tree_util.tree_leaves(eqx.filter(load_trained(a)[2], eqx.is_array))
        pb = jax.tree_util.tree_leaves(eqx.filter(load_trained(b)[2], eqx.is_array))
        if not all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(pa, pb)):
            problems.append("resumed parameters differ from the straight run's")
        kept = [s for s, _ in _checkpoint_paths(b)]
        if kept != [6, 8, 9]:
            problems.append(f"kept checkpoints {kept}, expected [6, 8, 9]")
        if any(p.name.endswith(".tmp") for p in b.rglob("*")):
            problems.append("a temporary file was left behind")
        like = load_trained(b)[2]
        from gtmm.train import make_optimizer

        like_opt = make_optimizer(cfg).init(eqx.filter(like, eqx.is_array))
        for s, path in _checkpoint_paths(b):
            header, _, _ = read_checkpoint(path, like, like_opt)
            missing = {"format", "gtmm_version", "jax_version", "step", "train", "model", "next_batch",
                       "payload_sha256"} - set(header)
            if missing or header["step"] != s or header["format"] != CHECKPOINT_FORMAT \
                    or header["train"]["model"] != model:
                problems.append(f"checkpoint {path.name} header is incomplete: missing {sorted(missing)}")
        # a damaged newest checkpoint: the run falls back to the one before it
        newest = _checkpoint_paths(b)[-1][1]
        data = bytearray(newest.read_bytes())
        data[-10] ^= 0xFF
        newest.write_bytes(bytes(data))
        if load_trained(b)[3] != 8:
            problems.append("a damaged newest checkpoint did not fall back to the one before it")
        # another checkpoint format: refused, nothing changed
        text = newest.read_bytes().replace(b'"format": 1', b'"format": 99', 1)
        newest.write_bytes(text)
        before = snapshot(b)
        try:
            train(replace(cfg, steps=steps + 2), b, progress=False, task=task)
            problems.append("a checkpoint of another format was accepted")
        except GtmmError as e:
            if "format" not in str(e) or "\n" in str(e):
                problems.append(f"unclear error for another format: {e}")
        if snapshot(b) != before:
            problems.append("refusing another format changed files")
        found = f"bit-identical after resume, {len(kept)} kept, headers complete, damage falls back, format checked"
        say(f"  {model:13s} {found if not problems else 'FAILED ' + '; '.join(problems)}")
        failures += problems
        shutil.rmtree(work / "ckpt" / model, ignore_errors=True)
    say(f"[checkpoints] {runs} runs of {len(args.models)} models: "
        f"{'resume is bit-identical for every model' if not failures else f'{len(failures)} problems'}")
    return {"runs": runs, "failed": len(failures)}


# --- 3. kill and resume -------------------------------------------------------------------------

def _gtmm(*argv: str) -> list[str]:
    return [sys.executable, "-m", "gtmm.cli", *argv]


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _logged_lines(path: Path) -> tuple[list[dict], bool, int]:
    """The records of a metrics log, whether its last line is torn (no newline), and how many
    complete lines do not parse (there must be none)."""
    if not path.exists():
        return [], False, 0
    lines = path.read_bytes().split(b"\n")
    records, corrupt = [], 0
    for line in lines[:-1]:
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                corrupt += 1
    return records, lines[-1] != b"", corrupt


def resume_problems(records: list[dict], resumed_from: int) -> list[str]:
    """What is wrong with a metrics log written by a run that resumed from the checkpoint of step
    `resumed_from`. A resume drops the steps logged after its checkpoint and logs them again, so
    the records past that step are the resumed segment, which must start right after it, and the
    whole log must hold steps 1..n, each once."""
    problems = []
    new = [r["step"] for r in records if r["step"] > resumed_from]
    if new and new[0] != resumed_from + 1:
        problems.append(f"resumed at step {new[0]}, not {resumed_from + 1}")
    steps = [r["step"] for r in records]
    if steps != list(range(1, len(steps) + 1)):
        problems.append(f"the log's steps are not 1..{len(steps)}, each once")
    return problems


def check_kill(args, work: Path) -> dict:
    import equinox as eqx

    from gtmm.model import ModelConfig, init_model
    from gtmm.train import _checkpoint_paths, make_optimizer, read_checkpoint, read_config, read_metrics

    run, reference = work / "kill" / "run", work / "kill" / "reference"
    total, every = args.kill_steps, args.checkpoint_every
    cmd = _gtmm("train", *CLI_RUN, "--steps", str(total), "--checkpoint-every", str(every), "--no-progress")
    say(f"[kill] gtmm train {' '.join(CLI_RUN)} --steps {total} --checkpoint-every {every}, killed with SIGKILL"
        f" {args.kills} times at a random moment while training, resumed each time")
    rng = random.Random(args.kill_seed)
    problems, kills, torn_lines, checkpoints_checked, max_lost = [], 0, 0, 0, 0
    like = None
    t0 = time.time()
    for i in range(args.kills):
        before, _, _ = _logged_lines(run / "metrics.jsonl")
        newest_before = _checkpoint_paths(run)[-1][0] if _checkpoint_paths(run) else 0
        proc = subprocess.Popen(cmd + ["--out", str(run)], env=_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        # wait until it trains (a step logged beyond what was there), then a random moment more
        deadline = time.time() + 600
        while time.time() < deadline and proc.poll() is None:
            if len(_logged_lines(run / "metrics.jsonl")[0]) > len(before):
                break
            time.sleep(0.05)
        delay = rng.uniform(0, args.kill_window)
        time.sleep(delay)
        if proc.poll() is not None:
            problems.append(f"kill {i + 1}: the run ended before it was killed: {proc.stderr.read().decode()[-300:]}")
            break
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kills += 1
        # after the kill: every checkpoint loads, the log parses, little is lost
        records, torn, corrupt = _logged_lines(run / "metrics.jsonl")
        torn_lines += torn
        if corrupt:
            problems.append(f"kill {i + 1}: {corrupt} corrupt lines in metrics.jsonl")
        problems += [f"kill {i + 1}: {p}" for p in resume_problems(records, newest_before)]
        if like is None:
            import json as _json

            mc = ModelConfig(**_json.loads((run / "config.json").read_text())["model"])
            like = init_model(mc, 0)
            like_opt = make_optimizer(read_config(run)).init(eqx.filter(like, eqx.is_array))
        for step, path in _checkpoint_paths(run):
            try:
                header, _, _ = read_checkpoint(path, like, like_opt)
                checkpoints_checked += 1
                if header["step"] != step:
                    problems.append(f"kill {i + 1}: {path.name} says step {header['step']}")
            except Exception as e:  # noqa: BLE001
                problems.append(f"kill {i + 1}: {path.name} does not load ({e})")
        newest = _checkpoint_paths(run)[-1][0] if _checkpoint_paths(run) else 0
        logged = max((r["step"] for r in records), default=0)
        lost = logged - newest
        max_lost = max(max_lost, lost)
        if lost > every:
            problems.append(f"kill {i + 1}: {lost} steps lost (logged {logged}, newest checkpoint {newest})")
        temps = [p.name for p in run.rglob("*.tmp")]
        say(f"  kill {i + 1:2d} after {delay:4.2f} s of training: steps {newest_before + 1}-{logged} logged,"
            f" newest checkpoint {newest}, {lost} steps to redo, {len(_checkpoint_paths(run))} checkpoints load,"
            f" torn last line: {'yes' if torn else 'no'}{', temp files ' + str(temps) if temps else ''}")
    # finish, then compare with the run never interrupted
    done = subprocess.run(cmd + ["--out", str(run)], env=_env(), capture_output=True, text=True)
    ref = subprocess.run(cmd + ["--out", str(reference)], env=_env(), capture_output=True, text=True)
    if done.returncode or ref.returncode:
        problems.append(f"finishing failed: {done.stderr[-300:]} {ref.stderr[-300:]}")
    records, torn, corrupt = _logged_lines(run / "metrics.jsonl")  # the torn lines were cut off on resume
    if torn or corrupt:
        problems.append(f"the finished log has a torn last line ({torn}) or {corrupt} corrupt lines")
    identical = same_metrics(read_metrics(run), read_metrics(reference))
    if not identical:
        problems.append("the killed-and-resumed run's metrics differ from the uninterrupted run's")
    if [r["step"] for r in read_metrics(run)] != list(range(1, total + 1)):
        problems.append("steps are missing from the finished log")
    say(f"[kill] {kills} kills, {checkpoints_checked} checkpoint loads after kills (all loaded:"
        f" {'yes' if not any('does not load' in p for p in problems) else 'NO'}), {torn_lines} torn last lines"
        f" (cut off on resume), at most {max_lost} steps to redo (checkpoint interval {every}); final"
        f" {total}-step metrics {'bit-identical to' if identical else 'DIFFERENT from'} the uninterrupted run;"
        f" {time.time() - t0:.0f} s{'' if not problems else '; PROBLEMS: ' + ' | '.join(problems)}")
    shutil.rmtree(work / "kill", ignore_errors=True)
    return {"kills": kills, "failed": len(problems), "max_lost": max_lost, "torn": torn_lines}


# --- 4. bad input -------------------------------------------------------------------------------

def _main(argv: list[str]) -> tuple[int, str]:
    """Run the command line in-process: (exit code, stderr); an exception escaping is a traceback."""
    from gtmm.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except BaseException as e:  # noqa: BLE001  what the console script would print as a traceback
            import traceback

            traceback.print_exc(file=err)
            code = f"uncaught {type(e).__name__}"
    return code, err.getvalue()


@contextlib.contextmanager
def _full_disk_on(write_name: str):
    """Make `gtmm.train.<write_name>` fail as a full disk would (ENOSPC) the second time it is called."""
    import gtmm.train as gt

    real = getattr(gt, write_name)
    calls = {"n": 0}

    def failing(path, data, *a):
        calls["n"] += 1
        if calls["n"] < 2:
            return real(path, data, *a)
        if write_name == "append_jsonl":  # half a line reaches the disk, then it is full
            with open(path, "a") as f:
                f.write(json.dumps(data)[:20])
        else:  # the real atomic write, its fsync failing: exercises the temporary file's clean-up
            real_fsync = os.fsync
            os.fsync = lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device"))
            try:
                return real(path, data, *a)
            finally:
                os.fsync = real_fsync
        raise OSError(errno.ENOSPC, "No space left on device")

    setattr(gt, write_name, failing)
    try:
        yield
    finally:
        setattr(gt, write_name, real)


def check_bad_input(args, work: Path) -> dict:
    from gtmm.train import _checkpoint_paths, read_metrics

    data = Path(os.environ.get("GTMM_DATA", "")).resolve() if os.environ.get("GTMM_DATA") else None
    base = work / "bad"
    base.mkdir(parents=True, exist_ok=True)
    run = base / "existing-run"
    code, err = _main(["train", *CLI_RUN, "--steps", "2", "--checkpoint-every", "1", "--out", str(run)])
    assert code == 0, err
    (base / "a-file").write_text("not a directory")
    (base / "foreign").mkdir()
    (base / "foreign" / "notes.txt").write_text("mine")
    fresh = base / "fresh-out"
    t = ["train", *CLI_RUN, "--steps", "1"]
    cases = [  # (what, argv, words the one line must hold, folders that must not change)
        ("unknown model", ["train", "--model", "lstm", "--out", str(fresh)], ["unknown model"], []),
        ("unknown task", ["train", "--model", "vrnn", "--task", "copying", "--out", str(fresh)], ["unknown task"], []),
        ("unknown option", [*t, "--bogus", "1", "--out", str(fresh)], ["unrecognized arguments: --bogus"], []),
        ("unknown command", ["fly"], ["invalid choice"], []),
        ("missing --out", ["train", "--model", "vrnn"], ["--out"], []),
        ("not an integer", [*t, "--steps", "ten", "--out", str(fresh)], ["invalid int value"], []),
        ("zero steps", [*t, "--steps", "0", "--out", str(fresh)], ["steps must be a positive integer"], []),
        ("negative batch", [*t, "--batch-size", "-2", "--out", str(fresh)], ["batch size must be a positive"], []),
        ("zero l", [*t, "--l", "0", "--out", str(fresh)], ["l must be a positive integer"], []),
        ("k > l", [*t, "--l", "2", "--k", "3", "--out", str(fresh)], ["k (3) must not exceed l (2)"], []),
        ("zero checkpoint interval", [*t, "--checkpoint-every", "0", "--out", str(fresh)],
         ["checkpoint every must be a positive"], []),
        ("negative learning rate", [*t, "--lr", "-1", "--out", str(fresh)], ["learning rate must be a positive"], []),
        ("NaN learning rate", [*t, "--lr", "nan", "--out", str(fresh)], ["learning rate must be a positive"], []),
        ("negative seed", [*t, "--seed", "-1", "--out", str(fresh)], ["seed must be an integer from 0"], []),
        ("seed too large", [*t, "--seed", str(2**32), "--out", str(fresh)], ["seed must be an integer from 0"], []),
        ("replica seeds too large", [*t, "--seed", str(2**32 - 1), "--replicas", "2", "--out", str(fresh)],
         ["last replica's seed"], []),
        ("zero replicas", [*t, "--replicas", "0", "--out", str(fresh)], ["must be a positive integer"], []),
        ("zero hidden size", [*t, "--hidden-size", "0", "--out", str(fresh)], ["hidden size must be positive"], []),
        ("zero read heads", ["train", "--model", "dnc", "--read-heads", "0", "--out", str(fresh)],
         ["read heads must be positive"], []),
        ("slots < read heads", ["train", "--model", "lru", "--slots", "4", "--out", str(fresh)],
         ["slots (4) must be at least read heads (5)"], []),
        ("zero word size", ["train", "--model", "ntm", "--word-size", "0", "--out", str(fresh)],
         ["word size must be positive"], []),
        ("task too short", ["train", "--model", "vrnn", "--task", "dynamic-dependency", "--l", "9", "--out",
                            str(fresh)], ["l >= 10"], []),
        ("zero evaluation batches", ["evaluate", str(run), "--batches", "0"], ["positive"], [run]),
        ("run directory holds another run", [*t, "--seed", "7", "--out", str(run)], ["different run", "--overwrite"],
         [run]),
        ("run directory holds other files", [*t, "--out", str(base / "foreign")], ["not a gtmm run directory"],
         [base / "foreign"]),
        ("--overwrite on other files", [*t, "--overwrite", "--out", str(base / "foreign")],
         ["not a gtmm run directory"], [base / "foreign"]),
        ("evaluate a non-run", ["evaluate", str(base / "foreign")], ["not a gtmm run directory"], [base / "foreign"]),
        ("--out under a file", [*t, "--out", str(base / "a-file" / "run")], ["is a file, not a directory"],
         [base / "a-file"]),
        ("--out in a read-only place", [*t, "--out", "/proc/gtmm-reliability-run"], ["cannot"], []),
    ]
    results = []

    def attempt(what, argv, words, keep, before=None, prepare=None):
        before = snapshot(*keep) if before is None else before
        existed = fresh.exists()
        code, err = _main(argv)
        lines = [line for line in err.splitlines() if line.startswith("gtmm: error")]
        problems = []
        if code != 2:
            problems.append(f"exit {code}")
        if len(lines) != 1:
            problems.append(f"{len(lines)} error lines")
        if "Traceback" in err:
            problems.append("traceback")
        if lines and not all(w in lines[0] for w in words):
            problems.append(f"message lacks {words}")
        if snapshot(*keep) != before:
            problems.append("existing files changed")
        if fresh.exists() and not existed:
            problems.append("--out was created")
            shutil.rmtree(fresh)
        results.append((what, problems, lines[0] if lines else err.strip()[-200:]))

    for what, argv, words, keep in cases:
        attempt(what, argv, words, keep)

    # a run directory unwritable by permission (simulated: as root nothing is unwritable)
    real_access = os.access
    os.access = lambda p, mode, **kw: False if str(p) == str(base) else real_access(p, mode, **kw)
    try:
        attempt("unwritable --out (permission)", [*t, "--out", str(base / "denied")], ["permission denied",
                                                                                       "writable --out"], [])
    finally:
        os.access = real_access

    # a full disk while saving a checkpoint, then while appending a metrics line
    for write_name, what in (("save_checkpoint", "full disk while saving a checkpoint"),
                             ("append_jsonl", "full disk while appending metrics")):
        target = base / f"disk-{write_name}"
        _main(["train", *CLI_RUN, "--steps", "2", "--checkpoint-every", "2", "--out", str(target)])
        keep_ckpt = snapshot(target / "checkpoints")
        keep_log = (target / "metrics.jsonl").read_bytes()
        inner = "write_bytes_atomic" if write_name == "save_checkpoint" else write_name
        with _full_disk_on(inner):
            attempt(what, ["train", *CLI_RUN, "--steps", "6", "--checkpoint-every", "2", "--out", str(target)],
                    ["no space left", "run the same command again"], [], before={})
        problems = results[-1][1]
        if {k: v for k, v in snapshot(target / "checkpoints").items() if k in keep_ckpt} != keep_ckpt:
            problems.append("an earlier checkpoint changed")
        if not (target / "metrics.jsonl").read_bytes().startswith(keep_log):
            problems.append("earlier metrics changed")
        if list(target.rglob("*.tmp")):
            problems.append("a temporary file was left")
        code, err = _main(["train", *CLI_RUN, "--steps", "6", "--checkpoint-every", "2", "--out", str(target)])
        _, torn, corrupt = _logged_lines(target / "metrics.jsonl")
        if code != 0 or torn or corrupt or [r["step"] for r in read_metrics(target)] != list(range(1, 7)) \
                or not _checkpoint_paths(target):
            problems.append(f"the same command did not resume cleanly afterwards ({err.strip()[-200:]})")

    # data that fails its checksum, and truncated data
    if data is not None and (data / "mnist").exists():
        for what, damage in (("MNIST file failing its checksum", "flip"), ("truncated MNIST file", "cut"),
                             ("truncated Omniglot archive", "omniglot")):
            copy = base / f"data-{damage}"
            shutil.copytree(data / ("omniglot" if damage == "omniglot" else "mnist"),
                            copy / ("omniglot" if damage == "omniglot" else "mnist"))
            if damage == "omniglot":
                victim = copy / "omniglot" / "images_background_small2.zip"
                victim.write_bytes(victim.read_bytes()[:-100])
                argv = [*t, "--task", "one-shot-recall", "--out", str(fresh)]
            else:
                victim = sorted((copy / "mnist").glob("t10k-images*"))[0]
                raw = bytearray(victim.read_bytes())
                if damage == "flip":
                    raw[len(raw) // 2] ^= 0x01
                else:
                    raw = raw[: len(raw) // 2]
                victim.write_bytes(bytes(raw))
                argv = [*t, "--out", str(fresh)]
            os.environ["GTMM_DATA"] = str(copy)
            try:
                attempt(what, argv, [victim.name], [copy])
            finally:
                os.environ["GTMM_DATA"] = str(data)

    # a checkpoint from an incompatible version; a config.json this version cannot read
    other = base / "other-version"
    shutil.copytree(run, other)
    newest = _checkpoint_paths(other)[-1][1]
    newest.write_bytes(newest.read_bytes().replace(b'"format": 1', b'"format": 2', 1)
                       .replace(b'"gtmm_version": "', b'"gtmm_version": "9.', 1))
    attempt("checkpoint of an incompatible version (train)", [*t, "--steps", "4", "--out", str(other)],
            ["checkpoint format 2", "use gtmm 9."], [other])
    attempt("checkpoint of an incompatible version (evaluate)", ["evaluate", str(other)], ["checkpoint format 2"],
            [other])
    broken = base / "broken-config"
    shutil.copytree(run, broken)
    (broken / "config.json").write_text('{"train": {"model": "vrnn", "colour": "blue"}}')
    attempt("config.json of another version", [*t, "--out", str(broken)], ["unreadable"], [broken])

    bad = [r for r in results if r[1]]
    for what, problems, line in results:
        say(f"  {what:48s} {'ok' if not problems else 'FAILED ' + ', '.join(problems)}   {line[:150]}")
    say(f"[bad-input] {len(results)} bad inputs tried: {len(results) - len(bad)} gave exit 2, one line, no traceback,"
        f" nothing existing changed{'' if not bad else f'; {len(bad)} FAILED'}")
    shutil.rmtree(base, ignore_errors=True)
    return {"tried": len(results), "failed": len(bad)}


# --- 5. determinism -----------------------------------------------------------------------------

def check_determinism(args, work: Path) -> dict:
    from gtmm.train import read_metrics

    steps = args.determinism_steps
    cmd = _gtmm("train", *CLI_RUN, "--steps", str(steps), "--checkpoint-every", str(steps), "--no-progress")
    outs = [work / "determinism" / f"run-{i}" for i in range(2)]
    for out in outs:
        subprocess.run(cmd + ["--out", str(out)], env=_env(), check=True, capture_output=True)
    a, b = (read_metrics(o) for o in outs)
    same = same_metrics(a, b) and len(a) == steps
    ca, cb = (sorted((o / "checkpoints").iterdir())[-1].read_bytes() for o in outs)
    say(f"[determinism] the same command twice, fresh processes, {steps} steps: metrics"
        f" {'identical' if same else 'DIFFERENT'}, final checkpoints {'identical' if ca == cb else 'DIFFERENT'}"
        f" (backend {__import__('jax').default_backend()})")
    shutil.rmtree(work / "determinism", ignore_errors=True)
    return {"runs": 2, "failed": int(not (same and ca == cb))}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checks", default="numerics,checkpoints,kill,bad-input,determinism")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--tasks", default=",".join(TASK_SIZES), help="tasks for the numerics check ('' for none)")
    p.add_argument("--adversarial", default=",".join(ADVERSARIAL),
                   help="adversarial inputs ('' for none; 'mixed': the four kinds in one batch of 4)")
    p.add_argument("--seeds", type=int, default=2, help="seeds per model and input (the issue asks for 20)")
    p.add_argument("--seed-offset", type=int, default=0, help="first seed of the numerics runs (run seeds in pieces)")
    p.add_argument("--ledger", default=None,
                   help="numerics: a JSON-lines file; each model-input run is appended when it finishes and skipped"
                        " when already there, so a long sweep can be stopped and continued")
    p.add_argument("--steps", type=int, default=20, help="training steps per run (the issue: a few hundred)")
    p.add_argument("--batch-size", type=int, default=2, help="of the numerics runs")
    p.add_argument("--hidden", type=int, default=16, help="LSTM and prior/posterior map width of the numerics runs")
    p.add_argument("--debug-nans", action="store_true", help="run the numerics check under jax_debug_nans")
    p.add_argument("--kills", type=int, default=10)
    p.add_argument("--kill-steps", type=int, default=200, help="of the killed run (must outlast the kills)")
    p.add_argument("--kill-window", type=float, default=2.5, help="kill at a uniform moment this many s into training")
    p.add_argument("--kill-seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=5, help="of the killed run")
    p.add_argument("--determinism-steps", type=int, default=10)
    p.add_argument("--work", default=None, help="scratch directory (default: a temporary one, deleted after)")
    args = p.parse_args()
    split = lambda s: [x for x in s.split(",") if x]  # noqa: E731
    args.models, args.tasks, args.adversarial = split(args.models), split(args.tasks), split(args.adversarial)
    checks = split(args.checks)
    funcs = {"numerics": check_numerics, "checkpoints": check_checkpoints, "kill": check_kill,
             "bad-input": check_bad_input, "determinism": check_determinism}
    unknown = set(checks) - set(funcs)
    if unknown:
        p.error(f"unknown checks {sorted(unknown)}; choose from {', '.join(funcs)}")
    os.environ.setdefault("GTMM_OFFLINE", "1")
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="gtmm-reliability-") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        results = {name: funcs[name](args, work) for name in checks}
    failed = sum(r["failed"] for r in results.values())
    say(f"summary: {json.dumps(results)}")
    say(f"{'ALL CHECKS PASSED' if not failed else f'{failed} PROBLEMS'}: nothing was lost"
        if not failed else f"{failed} PROBLEMS (see above)")
    say(f"wall time {time.time() - t0:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
