"""Training by the per-step variational bound (paper section 4.1), with run directories and resume.

A run directory holds:
  config.json        the resolved configuration, data source, package version
  metrics.jsonl      one line per step: negative bound, KL per step, last-step KL, gradient norm
                     (append-only; a torn last line left by a kill is cut off before the next append)
  checkpoints/       the last `keep_checkpoints` checkpoints, each written atomically (temporary
                     file, flush, fsync, rename) and self-contained: a header (checkpoint format,
                     package versions, step, the training and model configuration, a SHA-256 of
                     the payload) followed by the parameters and optimiser state.

Everything random is a function of (seed, step): the batch of step `s` is
`task.batch("train", B, seed, s)` and its key is `fold_in(PRNGKey(seed), s)`. So the seed (in the
configuration) and the step (in the header) are the whole state of the data stream and the random
keys, and a resumed run continues the very same stream: on CPU its losses equal, bit for bit, those
of the run that was never interrupted (tests/test_reliability.py).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

import gtmm
from gtmm._io import (
    append_jsonl,
    check_writable,
    is_atomic_temp,
    read_jsonl,
    remove_atomic_temps,
    repair_jsonl,
    write_bytes_atomic,
    write_json_atomic,
)
from gtmm.data.common import announce_once
from gtmm.errors import GtmmError
from gtmm.memories import check_model
from gtmm.model import GTMM, ModelConfig, count_parameters, init_model, loss_fn
from gtmm.tasks import TASKS, AbstractTask, make_task, task_params
from gtmm.tasks.base import check_positive, check_positive_number


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Defaults follow paper section 4.1."""

    model: str
    task: str = "perfect-recall"
    l: int | None = None  # None: the task's default (TASKS[task].defaults, the paper's parameters)
    k: int | None = None
    steps: int = 1000
    batch_size: int = 10
    learning_rate: float | None = None  # None: 1e-3, or 1e-4 when T > 100 (section 4.1)
    # Clip the gradient's global norm before Adam (None: no clipping, as the paper). Not in the
    # paper; keeps a learned recall from being wiped out by gradient spikes
    # (docs/results/recall-diagnostic.md). The norm scales with the loss; metrics log `grad_norm`.
    clip_grad_norm: float | None = None
    # Clip the memory's gradient (controller LSTM and interface) alone to this global norm (None:
    # not). Not in the paper. On MNIST the memory's part is about 1/30 of the whole gradient before
    # recall, so clip_grad_norm binds only at memory spikes ~100x their usual size; the spikes come
    # from the loop through the memory (docs/results/recall-diagnostic.md).
    clip_memory_grad_norm: float | None = None
    # Piecewise-constant learning rate: ((step, lr), ...), the updates after `step` at `lr` (not in
    # the paper, whose rate is constant; a learned recall can be lost to ordinary steps at 1e-3,
    # docs/results/perfect-recall-15.md). Equal to training to `step` and forking with --lr.
    lr_drops: tuple[tuple[int, float], ...] = ()
    seed: int = 0
    checkpoint_every: int = 100
    keep_checkpoints: int = 3
    # Also keep, for good, every checkpoint whose step is a multiple of this (None: none), so that
    # a run can be evaluated or forked at those steps after it has gone past them.
    keep_every: int | None = None
    model_overrides: dict = field(default_factory=dict)  # ModelConfig fields, e.g. hidden_size
    grid: int | None = None  # mnist-maze: the grid's side (None: the paper's 4); other tasks take none

    def __post_init__(self):
        # config.json holds the pairs as lists; keep one (hashable) form
        drops = self.lr_drops
        if isinstance(drops, (list, tuple)) and all(isinstance(d, (list, tuple)) and len(d) == 2 for d in drops):
            object.__setattr__(self, "lr_drops", tuple((d[0], d[1]) for d in drops))
        if self.task in TASKS:  # an unknown task is reported by validate()
            for name in ("l", "k", "grid"):
                if getattr(self, name) is None and name in TASKS[self.task].defaults:
                    object.__setattr__(self, name, TASKS[self.task].defaults[name])

    def make_task(self) -> AbstractTask:
        """The run's task (loads its data set)."""
        return make_task(self.task, l=self.l, k=self.k, grid=self.grid)

    def model_and_task_flags(self) -> list[str]:
        """The command-line flags that `gtmm train` and `gtmm bench` share, as this config sets them."""
        return (["--model", self.model, "--task", self.task, "--l", str(self.l), "--k", str(self.k)]
                + (["--grid", str(self.grid)] if self.grid is not None else [])
                + ["--batch-size", str(self.batch_size), "--seed", str(self.seed)])

    def validate(self) -> "TrainConfig":
        check_model(self.model)
        task_params(self.task, l=self.l, k=self.k, grid=self.grid)
        for name in ("steps", "batch_size", "checkpoint_every", "keep_checkpoints"):
            check_positive(name.replace("_", " "), getattr(self, name))
        check_seed(self.seed)
        if self.keep_every is not None:
            check_positive("keep every", self.keep_every)
            if self.keep_every % self.checkpoint_every:
                raise GtmmError(f"keep every ({self.keep_every}) must be a multiple of checkpoint every"
                                f" ({self.checkpoint_every}): checkpoints are written only at multiples of it")
        if self.learning_rate is not None and not (self.learning_rate > 0 and np.isfinite(self.learning_rate)):
            raise GtmmError(f"learning rate must be a positive number, got {self.learning_rate}")
        self._check_lr_drops()
        if self.clip_grad_norm is not None:
            check_positive_number("clip grad norm", self.clip_grad_norm, " (or left out for no clipping)")
        if self.clip_memory_grad_norm is not None:
            check_positive_number("clip memory grad norm", self.clip_memory_grad_norm, " (or left out for no clipping)")
        known = {f.name for f in fields(ModelConfig)} - {"model", "sequence_length"}
        unknown = set(self.model_overrides) - known
        if unknown:
            raise GtmmError(f"unknown model setting(s) {sorted(unknown)}; known: {sorted(known)}")
        self.model_config()  # bad memory settings fail here, before data is loaded or anything compiled
        return self

    def _check_lr_drops(self) -> None:
        drops = self.lr_drops
        if not isinstance(drops, tuple) or not all(
                isinstance(d, tuple) and isinstance(d[0], (int, np.integer)) and not isinstance(d[0], bool)
                and isinstance(d[1], (int, float)) and not isinstance(d[1], bool) for d in drops):
            raise GtmmError(f"lr drops must be (step, learning rate) pairs, e.g. ((12000, 3e-4),), got {drops!r}")
        steps = [s for s, _ in drops]
        if any(s < 1 for s in steps) or steps != sorted(set(steps)):
            raise GtmmError(f"lr drop steps must be positive and increasing, got {steps}")
        bad = [lr for _, lr in drops if not (lr > 0 and np.isfinite(lr))]
        if bad:
            raise GtmmError(f"lr drop learning rates must be positive numbers, got {bad}")

    def lr_at(self, step: int) -> float:
        """The learning rate of the update that takes the run from `step` to `step + 1`."""
        lr = self.lr
        for at, value in self.lr_drops:
            if step >= at:
                lr = value
        return lr

    @property
    def sequence_length(self) -> int:
        return self.l + self.k

    @property
    def lr(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return 1e-4 if self.sequence_length > 100 else 1e-3

    def model_config(self, task: AbstractTask | None = None) -> ModelConfig:
        """The model for this run; `task` gives the size of its context c_t (the maze's actions)."""
        ctx = task.context_size if task is not None else 0
        length = task.length if task is not None else self.sequence_length
        task_defaults = getattr(task if task is not None else TASKS.get(self.task), "model_defaults", {})
        return ModelConfig(self.model, length, task_context_size=ctx,
                           **{**task_defaults, **self.model_overrides}).resolved()


MAX_SEED = 2**32 - 1  # NumPy's and JAX's generators take seeds in [0, 2^32); larger ones would wrap


def check_seed(seed: int, name: str = "seed") -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= MAX_SEED:
        raise GtmmError(f"{name} must be an integer from 0 to {MAX_SEED}, got {seed!r}")
    return int(seed)


def lr_drops_text(drops: tuple[tuple[int, float], ...]) -> str:
    """((12000, 3e-4),) -> "0.0003@12000"; no drops -> "none": how reports and sweep run
    directories name a schedule."""
    return "+".join(f"{lr:g}@{at}" for at, lr in drops) or "none"


# Settings a resumed run must share with the run on disk (steps may grow).
# what makes a run directory this run: a resume with any of these changed is refused (clipping
# changes the optimiser state's structure as well as the numbers)
_IDENTITY = ("model", "task", "l", "k", "grid", "batch_size", "learning_rate", "lr_drops", "clip_grad_norm",
             "clip_memory_grad_norm", "seed", "model_overrides")


def enable_compile_cache() -> None:
    """Reuse compiled steps across processes (JAX's persistent cache) in the user cache directory,
    never in the data directory (which may be shared or read-only). GTMM_COMPILE_CACHE moves it,
    GTMM_NO_COMPILE_CACHE=1 turns it off."""
    if os.environ.get("GTMM_NO_COMPILE_CACHE"):
        return
    from gtmm.data.common import user_cache_root

    cache = os.environ.get("GTMM_COMPILE_CACHE") or str(user_cache_root() / "jax-cache")
    try:
        Path(cache).mkdir(parents=True, exist_ok=True)
    except OSError:
        announce_once(f"cannot write the compile cache {cache}; compiling without it (set GTMM_COMPILE_CACHE)")
        return
    jax.config.update("jax_compilation_cache_dir", cache)
    # Even sub-second compiles are worth caching: model initialisation compiles dozens of them.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def build_model(config: TrainConfig, model_config: ModelConfig) -> GTMM:
    if model_config.model != config.model:  # a config.json edited by hand, or two runs' halves
        raise GtmmError(f"the run's training settings name model {config.model!r} but its architecture is"
                        f" {model_config.model!r}; config.json was changed after training: restore it")
    return init_model(model_config, config.seed)


def read_model_config(run_dir: Path) -> ModelConfig:
    """The architecture a run was trained with (defaults may have changed since)."""
    try:
        return ModelConfig(**json.loads((Path(run_dir) / "config.json").read_text())["model"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise GtmmError(f"{run_dir}/config.json is unreadable ({e}); it was not written by this version of gtmm") from None


def make_optimizer(config: TrainConfig, step: int = 0) -> optax.GradientTransformation:
    """The optimiser of the update from `step` (its learning rate is `config.lr_at(step)`). Adam's
    state does not hold the rate, so the optimisers of one run share one state."""
    return _optimizer(config.lr_at(step), config.clip_grad_norm, config.clip_memory_grad_norm)


@functools.cache  # the same object for the same settings, so make_train_step's cache reuses its step
def _optimizer(lr: float, clip: float | None, clip_memory: float | None = None) -> optax.GradientTransformation:
    # Clipping transforms hold no state, so every combination has Adam's arrays (forks rely on it).
    chain = [clip_memory_by_global_norm(clip_memory)] if clip_memory is not None else []
    chain += [optax.clip_by_global_norm(clip)] if clip is not None else []
    tx = optax.chain(*chain, optax.adam(lr)) if chain else optax.adam(lr)
    # Adam's zeros in one compiled program, not one eager zeros_like compiled per weight shape
    return optax.GradientTransformation(eqx.filter_jit(tx.init), tx.update)


def clip_memory_by_global_norm(max_norm: float) -> optax.GradientTransformation:
    """Scale the memory's gradient (`model.memory`: controller LSTM and interface) to a global norm
    of at most `max_norm`, the rest of the model's gradient unchanged. A norm under `max_norm`
    scales by exactly 1 (the compiled step may still fuse, and so round, differently)."""

    def update(updates, state, params=None):
        norm = tree_norm(updates.memory)
        scale = jnp.minimum(1.0, max_norm / jnp.maximum(norm, jnp.finfo(norm.dtype).tiny))
        clipped = jax.tree_util.tree_map(lambda g: g * scale, updates.memory)
        return eqx.tree_at(lambda u: u.memory, updates, clipped), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


@functools.cache  # one jitted step per optimiser, so later runs in a process reuse its compilation
def make_train_step(optimizer: optax.GradientTransformation):
    @eqx.filter_jit
    def train_step(model, opt_state, frames, task_context, key):
        (loss, terms), grads = eqx.filter_value_and_grad(loss_fn, has_aux=True)(model, frames, task_context, key)
        updates, opt_state = optimizer.update(grads, opt_state, eqx.filter(model, eqx.is_array))
        model = eqx.apply_updates(model, updates)
        return (model, opt_state, loss, jnp.mean(terms.kl, axis=0), jnp.mean(terms.log_likelihood, axis=0),
                tree_norm(grads))

    return train_step


def tree_norm(tree) -> jax.Array:
    """The global L2 norm of every array in `tree`: what metrics.jsonl logs as `grad_norm`.

    Finite exactly when every entry is (barring an overflow of the sum, itself a fault).
    """
    leaves = jax.tree_util.tree_leaves(eqx.filter(tree, eqx.is_array))
    return jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in leaves))


def compile_then_release(step_fn, *args) -> None:
    """Compile the jitted `step_fn` for `args` ahead of its first call, then hand the memory the
    compiler freed back to the operating system.

    glibc keeps freed heap pages in the process, so without the trim the compiler's garbage
    (about half a gigabyte for a long sequence) stays resident while the first step allocates
    its buffers beside it, and a run's peak memory is the sum of the two. The later call reuses
    this compilation (JAX caches it in memory), so nothing is compiled twice.
    """
    step_fn.lower(*args).compile()
    try:  # glibc only; elsewhere the compiler's freed memory is merely not returned early
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def step_key(seed: int, step: int) -> jax.Array:
    return jax.random.fold_in(jax.random.PRNGKey(seed), step)


# --- run directories -------------------------------------------------------------------------

def _checkpoint_paths(run_dir: Path) -> list[tuple[int, Path]]:
    folder = run_dir / "checkpoints"
    if not folder.exists():
        return []
    out = []
    for p in folder.glob("step_*.eqx"):
        try:
            out.append((int(p.stem.split("_")[1]), p))
        except ValueError:
            continue
    return sorted(out)


def _checkpoint_at(run_dir: Path, step: int, hint: str) -> Path:
    """The checkpoint file of `run_dir` at `step`, or an error listing the steps it has."""
    paths = dict(_checkpoint_paths(run_dir))
    if step not in paths:
        kept = ", ".join(str(s) for s in paths) or "none"
        raise GtmmError(f"{run_dir} has no checkpoint at step {step}; it has steps {kept} ({hint})")
    return paths[step]


CHECKPOINT_FORMAT = 1  # bump when the layout changes; a checkpoint of another format is refused
_MAGIC = b"GTMM-CHECKPOINT\n"


class DamagedCheckpoint(Exception):
    """A checkpoint file that cannot be read (truncated, altered, not a checkpoint)."""


def save_checkpoint(run_dir: Path, step: int, model: GTMM, opt_state, keep: int,
                    config: TrainConfig | None = None, model_config: ModelConfig | None = None) -> Path:
    """Write a checkpoint atomically, then drop all but the newest `keep` and, with
    `config.keep_every`, those whose step is a multiple of it.

    The file is `_MAGIC`, one line of JSON (the header), then the parameters and optimiser state
    as `eqx.tree_serialise_leaves` writes them. The header holds what a run needs beyond the
    arrays: the step, the training and model configuration (the seed among them: with the step it
    fixes the data stream and the keys), the checkpoint format and package versions, and the
    payload's SHA-256.
    """
    buf = io.BytesIO()
    eqx.tree_serialise_leaves(buf, (model, opt_state))
    payload = buf.getvalue()
    header = {
        "format": CHECKPOINT_FORMAT,
        "gtmm_version": gtmm.__version__,
        "jax_version": jax.__version__,
        "equinox_version": eqx.__version__,
        "optax_version": optax.__version__,
        "step": step,
        "train": asdict(config) if config is not None else None,
        "model": asdict(model_config) if model_config is not None else None,
        # The stream's position: batch `step` of stream `seed`, key fold_in(PRNGKey(seed), step).
        "next_batch": {"seed": config.seed if config is not None else None, "step": step},
        "payload_sha256": hashlib.sha256(payload).hexdigest(),
        "payload_bytes": len(payload),
    }
    path = run_dir / "checkpoints" / f"step_{step:08d}.eqx"
    write_bytes_atomic(path, _MAGIC + json.dumps(header, sort_keys=True).encode() + b"\n" + payload)
    keep_every = config.keep_every if config is not None else None
    for old_step, old in _checkpoint_paths(run_dir)[:-keep]:
        if keep_every is None or old_step % keep_every:
            old.unlink(missing_ok=True)
    return path


def _split_checkpoint(path: Path, data: bytes) -> tuple[dict | None, bytes]:
    """(header, payload) of a checkpoint file; header None for the header-less files of gtmm before
    checkpoint format 1. GtmmError for another format; DamagedCheckpoint for an unreadable file."""
    if not data.startswith(_MAGIC):
        if data.startswith(b"\x93NUMPY"):  # written by gtmm before checkpoint headers: arrays only
            return None, data
        raise DamagedCheckpoint("not a gtmm checkpoint")
    end = data.find(b"\n", len(_MAGIC))
    try:
        header = json.loads(data[len(_MAGIC):end]) if end > 0 else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        header = None
    if not isinstance(header, dict):
        raise DamagedCheckpoint("unreadable header")
    if header.get("format") != CHECKPOINT_FORMAT:
        raise GtmmError(
            f"checkpoint {path} was written by gtmm {header.get('gtmm_version', '?')} in checkpoint format"
            f" {header.get('format')!r}; this gtmm {gtmm.__version__} reads format {CHECKPOINT_FORMAT}: use"
            f" gtmm {header.get('gtmm_version', '?')} for this run, or train into a new --out (nothing was changed)")
    payload = data[end + 1:]
    if header.get("payload_sha256") != hashlib.sha256(payload).hexdigest():
        raise DamagedCheckpoint(f"its {len(payload)} bytes of arrays fail their SHA-256")
    return header, payload


def _load_leaf(f, like):
    if isinstance(like, (jax.Array, jax.ShapeDtypeStruct)):
        return jax.device_put(np.load(f))  # a transfer: jnp.load compiles an identity program per shape
    return eqx.default_deserialise_filter_spec(f, like)


def read_checkpoint(path: str | os.PathLike, like_model: GTMM, like_opt_state) -> tuple[dict | None, GTMM, object]:
    """(header, model, optimiser state) of one checkpoint file. GtmmError for a checkpoint of an
    incompatible format; DamagedCheckpoint for a file that does not load into `like_*`."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DamagedCheckpoint(f"unreadable ({e.strerror or e})") from None
    header, payload = _split_checkpoint(path, data)
    buf = io.BytesIO(payload)
    try:
        model, opt_state = eqx.tree_deserialise_leaves(buf, (like_model, like_opt_state), filter_spec=_load_leaf)
    except Exception as e:  # truncated, or arrays of other shapes: another model
        raise DamagedCheckpoint(f"does not match the run's model ({type(e).__name__})") from None
    if buf.tell() != len(payload):
        raise DamagedCheckpoint("holds more arrays than the run's model")
    return header, model, opt_state


def load_checkpoint(run_dir: Path, like_model: GTMM, like_opt_state,
                    at_most: int | None = None) -> tuple[int, GTMM, object] | None:
    """The newest checkpoint that loads (of step <= `at_most` if given), or None when there is
    none; an error when none loads, or when one is of an incompatible checkpoint format."""
    paths = [(step, path) for step, path in _checkpoint_paths(run_dir) if at_most is None or step <= at_most]
    for step, path in reversed(paths):
        try:
            _, model, opt_state = read_checkpoint(path, like_model, like_opt_state)
        except DamagedCheckpoint as e:  # say so, and fall back to the previous checkpoint
            announce_once(f"checkpoint {path} is damaged ({e}); trying the one before it")
            continue
        return step, model, opt_state
    if paths:
        raise GtmmError(f"no checkpoint in {run_dir}/checkpoints matches the run's model; they are damaged or"
                        " from another version of gtmm (nothing was changed)")
    return None


def read_config(run_dir: Path) -> TrainConfig:
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise GtmmError(f"{run_dir} is not a gtmm run directory (no config.json); train into it first")
    try:
        data = json.loads(path.read_text())["train"]
        return TrainConfig(**data)
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise GtmmError(f"{path} is unreadable ({e}); it was not written by this version of gtmm") from None


def read_metrics(run_dir: Path) -> list[dict]:
    """Metrics by step; where a step was logged twice (by gtmm before resumes dropped the steps
    after the checkpoint), the later record wins."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    by_step = {r["step"]: r for r in read_jsonl(path) if "step" in r}
    return [by_step[s] for s in sorted(by_step)]


def load_trained(run_dir: Path, step: int | None = None) -> tuple[TrainConfig, AbstractTask, GTMM, int]:
    """Config, task, and the model of the newest checkpoint of a run, or of the one at `step`.

    Turns on the persistent compile cache, as `train` does: evaluating, sampling and the
    diagnostics scripts compile the same programs on every call otherwise."""
    enable_compile_cache()
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    if step is not None:
        path = _checkpoint_at(run_dir, step, "train with --keep-every to keep checkpoints along the way")
    task = config.make_task()
    model = build_model(config, read_model_config(run_dir))
    opt_state = make_optimizer(config).init(eqx.filter(model, eqx.is_array))
    if step is None:
        loaded = load_checkpoint(run_dir, model, opt_state)
        if loaded is None:
            raise GtmmError(f"{run_dir} holds no checkpoint yet; train it first")
        step, model, _ = loaded
    else:
        try:
            _, model, _ = read_checkpoint(path, model, opt_state)
        except DamagedCheckpoint as e:
            raise GtmmError(f"checkpoint {path} is damaged ({e}); choose another step") from None
    return config, task, model, step


def _check_run_dir(run_dir: Path, config: TrainConfig, overwrite: bool = False) -> bool:
    """Whether `run_dir` holds this run (resume); an error when it holds another run (unless
    `overwrite`) or files gtmm did not write, or cannot be written.

    Runs before any data is loaded or model built, so a wrong --out fails at once.
    """
    check_writable(run_dir)  # also refuses a run_dir that is a file
    if (run_dir / "config.json").exists():
        if overwrite:
            return False
        old = read_config(run_dir)
        diffs = [f"{k}: {getattr(old, k)!r} on disk vs {getattr(config, k)!r}" for k in _IDENTITY
                 if getattr(old, k) != getattr(config, k)]
        if diffs:
            raise GtmmError(f"{run_dir} holds a different run ({'; '.join(diffs)}); choose another --out, or pass"
                            " --overwrite to replace it")
        # Training to fewer steps than the run has would rewrite its config and train nothing.
        newest = max((step for step, _ in _checkpoint_paths(run_dir)), default=0)
        if newest > config.steps:
            raise GtmmError(f"{run_dir} has trained to step {newest}, past --steps {config.steps}; pass --steps {newest}"
                            " or more to train it further (`gtmm evaluate --step N` evaluates a kept earlier step)")
        return True
    if run_dir.exists() and any(not is_atomic_temp(p) for p in run_dir.iterdir()):
        raise GtmmError(f"{run_dir} exists and is not a gtmm run directory; choose another --out"
                        " (--overwrite replaces only gtmm run directories)")
    return False


@contextlib.contextmanager
def _writing(path: Path, last_checkpoint: int | None = None):
    """Turn a failed write (full disk, no permission, read-only disk) into a one-line GtmmError."""
    try:
        yield
    except OSError as e:
        reason = e.strerror or str(e)
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            kept = f" (step {last_checkpoint})" if last_checkpoint else ""
            raise GtmmError(f"no space left on the device writing {path} ({reason}); free some space and run the same"
                            f" command again: it resumes from the last checkpoint{kept}, which is kept") from None
        if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise GtmmError(f"cannot write {path} ({reason}); choose a writable --out") from None
        raise GtmmError(f"cannot write {path} ({reason}); check --out and the disk, then run the same command"
                        " again") from None


def _replace_run_dir(run_dir: Path) -> None:
    """--overwrite: move the old run aside in one rename (a kill leaves either run whole), then delete it."""
    if not run_dir.exists():
        return
    trash = run_dir.with_name(f".{run_dir.name}.overwritten-{os.getpid()}.tmp")
    with _writing(run_dir):
        os.replace(run_dir, trash)
        shutil.rmtree(trash)


def _write_run_config(run_dir: Path, config: TrainConfig, model_config: ModelConfig, task: AbstractTask,
                      n_params: int, devices: int = 1, processes: int = 1) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg_path = run_dir / "config.json"
    kept = {}  # a fork's provenance outlives the resumes that rewrite the rest
    if cfg_path.exists():
        with contextlib.suppress(OSError, json.JSONDecodeError, AttributeError):
            kept = {k: v for k, v in json.loads(cfg_path.read_text()).items() if k == "forked_from"}
    write_json_atomic(cfg_path, {
        **kept,
        "train": asdict(config),
        "model": asdict(model_config),
        "learning_rate_used": config.lr,
        "parameters": n_params,
        "data": task.dataset.source,
        "gtmm_version": gtmm.__version__,
        "jax_version": jax.__version__,
        # How the last session was spread (not part of the run's identity: a run may resume on others).
        "devices": devices,
        "processes": processes,
    })


def _logged_loss(run_dir: Path, step: int) -> float | None:
    """The bound logged at `step` (None where it was not logged)."""
    return next((r["negative_bound"] for r in read_metrics(run_dir) if r["step"] == step), None)


def _drop_metrics_after(path: Path, step: int) -> None:
    """Forget the steps logged after the checkpoint a run resumes from: it logs them again, so
    that the log holds every step once (a kill between checkpoints leaves a few such steps)."""
    if not path.exists():
        return
    records = read_jsonl(path)
    if any(r.get("step", 0) > step for r in records):
        _write_metrics(path, [r for r in records if r.get("step", 0) <= step])


def _write_metrics(path: Path, records: list[dict]) -> None:
    write_bytes_atomic(path, "".join(json.dumps(r) + "\n" for r in records).encode())


# What a fork may change: not the model nor the data.
FORKABLE = ("learning_rate", "lr_drops", "clip_grad_norm", "clip_memory_grad_norm", "steps")


def fork_run(source: str | os.PathLike, out: str | os.PathLike, step: int | None = None, **changes) -> dict:
    """Branch a run: a new run directory `out` that starts from `source`'s checkpoint at `step`
    (default its newest) with other optimiser settings (`changes`, of `FORKABLE`; e.g.
    `clip_grad_norm=2000.0`, or `None` for no clipping). `out` gets the parameters, the Adam moments,
    the metrics up to `step` and a config.json that records `forked_from`; the data stream and the
    keys continue where `source` was (they are functions of seed and step), so `train` with the new
    settings into `out` goes on from `step`, and with unchanged settings repeats `source` bit for bit.
    Nothing in `source` is changed, and `out` appears whole or not at all. Returns a summary dict.
    """
    source, out = Path(source), Path(out)
    old = read_config(source)
    unknown = set(changes) - set(FORKABLE)
    if unknown:
        raise GtmmError(f"a fork can change only {', '.join(FORKABLE)}, not {', '.join(sorted(unknown))}: the model and"
                        " the data stream are the source run's (train a new run for another model)")
    config = replace(old, **changes).validate()
    if out.exists() or out.is_symlink():
        raise GtmmError(f"{out} exists; a fork goes into a new directory (choose another --out)")
    check_writable(out)
    saved = _checkpoint_paths(source)
    if not saved:
        raise GtmmError(f"{source} holds no checkpoint yet; train it first")
    if step is None:
        step = saved[-1][0]
    path = _checkpoint_at(source, step, "choose one with --step")
    if "learning_rate" in changes and "lr_drops" not in changes:  # the new rate holds from `step` on
        config = replace(config, lr_drops=tuple(d for d in config.lr_drops if d[0] > step))
    model_config = read_model_config(source)
    like = build_model(config, model_config)
    try:  # the new optimiser's state must hold the same arrays (Adam's, with or without the clip)
        _, model, opt_state = read_checkpoint(path, like, make_optimizer(config).init(eqx.filter(like, eqx.is_array)))
    except DamagedCheckpoint as e:
        raise GtmmError(f"checkpoint {path} is damaged ({e}); fork from another --step") from None
    meta = json.loads((source / "config.json").read_text())
    changed = {k: [getattr(old, k), getattr(config, k)] for k in FORKABLE if getattr(old, k) != getattr(config, k)}
    meta.update(train=asdict(config), learning_rate_used=config.lr,
                forked_from={"run": str(source.resolve()), "step": step, "changed": changed})
    records = [r for r in read_metrics(source) if r["step"] <= step]

    staging = out.with_name(f".{out.name}.fork-{os.getpid()}.tmp")  # renamed into place when whole
    with _writing(out):
        shutil.rmtree(staging, ignore_errors=True)
        try:
            save_checkpoint(staging, step, model, opt_state, config.keep_checkpoints, config, model_config)
            _write_metrics(staging / "metrics.jsonl", records)
            write_json_atomic(staging / "config.json", meta)
            os.rename(staging, out)  # a directory that appeared meanwhile is replaced only if empty
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return {"run_dir": str(out), "forked_from": str(source), "step": step, "changed": changed}


def train(config: TrainConfig, run_dir: str | os.PathLike, progress: bool = True,
          task: AbstractTask | None = None, overwrite: bool = False, devices: int | str | None = None) -> dict:
    """Train (or resume) a run in `run_dir` up to `config.steps`; returns a summary dict.

    Resumes from the newest checkpoint when `run_dir` holds a run with the same settings; refuses
    a run directory that holds another run, unless `overwrite` (then that run is deleted first).
    `devices` (a number, or "all"): split each batch over that many devices (`gtmm.parallel`);
    after `gtmm.parallel.init_distributed`, over the devices of every process.
    """
    return _train_runs(config, [Path(run_dir)], [config.seed], progress, task, "loop", overwrite, devices)[0]


def replica_dirs(out: str | os.PathLike, replicas: int) -> list[Path]:
    return [Path(out) / f"replica-{r}" for r in range(replicas)]


def train_replicas(config: TrainConfig, out: str | os.PathLike, replicas: int, progress: bool = True,
                   task: AbstractTask | None = None, strategy: str = "auto", overwrite: bool = False,
                   devices: int | str | None = None) -> list[dict]:
    """Train `replicas` independent runs together in one process: replica r has seed
    `config.seed + r` (its own initial parameters, keys and data stream) and is an ordinary run
    directory `out/replica-r`, so every command that reads a run reads a replica.

    `strategy`: "vmap" steps all replicas as one vectorised computation; "loop" steps them one
    after another through one compiled step; "auto" picks vmap on accelerators and loop on CPU,
    where XLA turns replica-batched convolutions into grouped convolutions about 4x slower than
    running the replicas in turn (PERFORMANCE.md). Both give each replica the numbers it would
    get trained alone. `devices` splits every replica's batch over devices, as in `train`.
    """
    check_positive("replicas", replicas)
    check_seed(config.seed + replicas - 1, f"the last replica's seed (seed + replicas - 1 = {config.seed} +"
               f" {replicas} - 1)")
    if strategy not in ("auto", "vmap", "loop"):
        raise GtmmError(f"unknown replica strategy {strategy!r}; choose auto, vmap or loop")
    if strategy == "auto":
        strategy = "loop" if jax.default_backend() == "cpu" else "vmap"
    out, dirs = Path(out), replica_dirs(out, replicas)
    if out.is_dir() and any(p not in dirs and not is_atomic_temp(p) for p in out.iterdir()):
        raise GtmmError(f"{out} holds files other than replica-0..{replicas - 1}; choose another --out")
    return _train_runs(config, dirs, [config.seed + r for r in range(replicas)], progress, task, strategy, overwrite,
                       devices)


def _stack(trees):
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)


def _unstack(tree, i: int):
    return jax.tree_util.tree_map(lambda x: x[i], tree)


@functools.cache
def _make_replica_step(optimizer: optax.GradientTransformation):
    step = make_train_step(optimizer)
    return eqx.filter_jit(eqx.filter_vmap(step))


@contextlib.contextmanager
def _run_lock(run_dir: Path):
    """Hold an exclusive lock on the directory `run_dir` itself (flock) while this process trains
    into it: a second training of the same run, or an --overwrite of it, is then an error instead
    of two writers interleaving metrics and checkpoints. The lock ends with the process, so a
    killed trainer leaves nothing to clean up. A folder made here is removed again when training
    fails before anything is written into it (missing data, say)."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; train, and say so
        announce_once(f"cannot lock {run_dir} (no flock on this platform); a second training into it at the same"
                      " time would not be caught")
        yield
        return
    made = [p for p in (run_dir, *run_dir.parents) if not p.exists()]  # deepest first
    with _writing(run_dir):
        run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise GtmmError(f"{run_dir} is being trained by another process; let it finish or stop it, then run the"
                            " same command to resume") from None
        except OSError as e:  # a file system without flock (some network mounts): train, and say so
            announce_once(f"cannot lock {run_dir} ({e.strerror or e}); a second training into it at the same time"
                          " would not be caught")
        yield
    except BaseException:
        for folder in made:
            try:
                folder.rmdir()  # only when still empty
            except OSError:
                break
        raise
    finally:
        os.close(fd)


def _train_runs(config: TrainConfig, run_dirs: list[Path], seeds: list[int], progress: bool,
                task: AbstractTask | None, strategy: str, overwrite: bool = False,
                devices: int | str | None = None) -> list[dict]:
    with contextlib.ExitStack() as locks:  # held until the training returns or fails
        return _train_runs_locked(locks, config, run_dirs, seeds, progress, task, strategy, overwrite, devices)


def _train_runs_locked(locks: contextlib.ExitStack, config: TrainConfig, run_dirs: list[Path], seeds: list[int],
                       progress: bool, task: AbstractTask | None, strategy: str, overwrite: bool,
                       devices: int | str | None) -> list[dict]:
    from gtmm.parallel import data_parallel

    config.validate()
    configs = [replace(config, seed=seed) for seed in seeds]
    resuming = [_check_run_dir(d, c, overwrite) for d, c in zip(run_dirs, configs)]  # before any data or model
    if config.keep_every is None:  # a resume without --keep-every must not delete the steps kept so far
        kept = {read_config(d).keep_every for d, resumed in zip(run_dirs, resuming) if resumed} - {None}
        if kept:
            config = replace(config, keep_every=min(kept)).validate()
            configs = [replace(c, keep_every=config.keep_every) for c in configs]
    enable_compile_cache()
    parallel = data_parallel(devices)
    if parallel is not None:
        parallel.check_batch(config.batch_size)
    writes = parallel is None or parallel.writes  # process 0 alone writes the run directories
    if writes:
        for run_dir in run_dirs:
            locks.enter_context(_run_lock(run_dir))
    task = task or config.make_task()
    optimizer = make_optimizer(config)
    models, opt_states, model_configs = [], [], []
    for run_dir, cfg, resumed in zip(run_dirs, configs, resuming):
        model_config = read_model_config(run_dir) if resumed else cfg.model_config(task)
        model = build_model(cfg, model_config)
        models.append(model)
        model_configs.append(model_config)
        opt_states.append(optimizer.init(eqx.filter(model, eqx.is_array)))

    # All runs restart from the newest step every one of them has a checkpoint for (a kill
    # between two runs' saves leaves one ahead; it repeats those steps with the same numbers).
    saved = [{step for step, _ in _checkpoint_paths(d)} if resumed else set() for d, resumed in zip(run_dirs, resuming)]
    common = set.intersection(*saved)
    start = max(common) if common else 0
    while start:
        loaded = [load_checkpoint(d, models[i], opt_states[i], at_most=start) for i, d in enumerate(run_dirs)]
        steps = [0 if got is None else got[0] for got in loaded]
        if min(steps) == start:
            models, opt_states = [got[1] for got in loaded], [got[2] for got in loaded]
            break
        start = min(steps)  # a run's checkpoint at `start` did not load: go back to an older common one
    if parallel is not None:
        parallel.agree(start, "the step to resume from")
        parallel.barrier("gtmm: run directories checked")  # no process reads what process 0 now writes

    # Everything is checked and loaded: only now is anything on disk changed.
    for run_dir, cfg, model_config, model, resumed in zip(run_dirs, configs, model_configs, models, resuming):
        if not writes:
            break
        if overwrite and not resumed:
            _replace_run_dir(run_dir)
            locks.enter_context(_run_lock(run_dir))  # the new folder: the lock held so far is on the old one
        with _writing(run_dir, start):
            _write_run_config(run_dir, cfg, model_config, task, count_parameters(model),
                              parallel.size if parallel else 1, jax.process_count())
            remove_atomic_temps(run_dir, ("config.json",))
            remove_atomic_temps(run_dir / "checkpoints", ("step_",))
            repair_jsonl(run_dir / "metrics.jsonl")
            _drop_metrics_after(run_dir / "metrics.jsonl", start)

    if strategy == "vmap":
        params = _stack([eqx.filter(m, eqx.is_array) for m in models])
        static = eqx.filter(models[0], eqx.is_array, inverse=True)
        stacked_model, stacked_opt = eqx.combine(params, static), _stack(opt_states)

    def step_fn(step: int):
        """The compiled step at `step`'s learning rate (one per rate of `config.lr_drops`)."""
        optimizer = make_optimizer(config, step)
        fn = _make_replica_step(optimizer) if strategy == "vmap" else make_train_step(optimizer)
        return fn if parallel is None else parallel.jit(fn)

    if parallel is None:
        put_batch, put_key = jnp.asarray, lambda key: key  # noqa: E731
    else:  # the batch axis (the second under vmap) split over the devices; keys whole on each
        batch_axis = 1 if strategy == "vmap" else 0
        put_batch, put_key = (lambda x: parallel.put_batch(x, batch_axis)), parallel.replicate  # noqa: E731
        if strategy == "vmap":
            stacked_model, stacked_opt = parallel.replicate((stacked_model, stacked_opt))
        else:
            models, opt_states = parallel.replicate((models, opt_states))
    lr, train_step = config.lr_at(start), step_fn(start)

    label = f"{config.model} {config.task}" + (f" x{len(run_dirs)}" if len(run_dirs) > 1 else "")
    where = run_dirs[0] if len(run_dirs) == 1 else f"{run_dirs[0].parent} ({len(run_dirs)} runs)"
    if start == config.steps and writes:
        print(f"gtmm: {label}: {where} is already at step {start}; nothing to train (pass a larger --steps to go on)",
              file=sys.stderr)
    elif start and writes:  # said in words: the bar shows it only as a count that does not start at 0
        print(f"gtmm: {label}: resuming from the step-{start} checkpoint in {where}", file=sys.stderr)
    bar = tqdm(total=config.steps, initial=start, disable=not (progress and writes), desc=label, unit="step",
               dynamic_ncols=True)
    # A run already at config.steps trains nothing: its final loss is the one it logged at that step.
    losses = [_logged_loss(d, start) if start == config.steps else None for d in run_dirs]
    # Every process of a multi-process run sees every loss; their digests show that they agree.
    digests = [hashlib.sha256() for _ in run_dirs]
    last_saved = start
    t0 = time.time()
    try:  # the bar ends its line before any error is printed
        for step in range(start, config.steps):
            if config.lr_at(step) != lr:  # a drop of config.lr_drops: the step of the new rate
                lr, train_step = config.lr_at(step), step_fn(step)
            batches = [task.batch("train", config.batch_size, c.seed, step) for c in configs]
            keys = [step_key(c.seed, step) for c in configs]
            if strategy == "vmap":
                args = (stacked_model, stacked_opt, put_batch(np.stack([b.frames for b in batches])),
                        put_batch(np.stack([b.context for b in batches])), put_key(jnp.stack(keys)))
                if step == start and parallel is None:
                    compile_then_release(train_step, *args)
                stacked_model, stacked_opt, loss_arr, kl, loglik, grad_norm = train_step(*args)
                outputs = [(loss_arr[i], kl[i], loglik[i], grad_norm[i]) for i in range(len(run_dirs))]
            else:
                outputs = []
                for i, (batch, key) in enumerate(zip(batches, keys)):
                    args = (models[i], opt_states[i], put_batch(batch.frames), put_batch(batch.context), put_key(key))
                    if step == start and i == 0 and parallel is None:
                        compile_then_release(train_step, *args)
                    models[i], opt_states[i], loss_arr, kl, loglik, grad_norm = train_step(*args)
                    outputs.append((loss_arr, kl, loglik, grad_norm))
            for i, (run_dir, (loss_arr, kl, loglik, grad_norm)) in enumerate(zip(run_dirs, outputs)):
                losses[i] = float(loss_arr)
                norm = float(grad_norm)
                if not (np.isfinite(losses[i]) and np.isfinite(norm)):
                    kept = (f"the last checkpoint (step {last_saved}) is kept" if last_saved
                            else "no checkpoint was saved")
                    raise GtmmError(f"the loss ({losses[i]}) or its gradient (norm {norm}) became non-finite at step"
                                    f" {step + 1} in {run_dir}; {kept} and nothing of that step was saved: train into a"
                                    " new --out with a lower --lr or another --seed")
                kl = np.asarray(kl)
                digests[i].update(np.float64(losses[i]).tobytes())
                if not writes:
                    continue
                with _writing(run_dir / "metrics.jsonl", last_saved):
                    append_jsonl(run_dir / "metrics.jsonl", {
                        "step": step + 1,
                        "negative_bound": losses[i],
                        "kl_per_step": [round(float(v), 5) for v in kl],
                        "last_step_kl": float(kl[-1]),
                        "log_likelihood": float(np.sum(np.asarray(loglik))),
                        "grad_norm": norm,
                        "wall_s": round(time.time() - t0, 3),
                    })
            bar.set_postfix(loss=f"{np.mean(losses):.1f}", last_kl=f"{float(np.mean([o[1][-1] for o in outputs])):.2f}")
            bar.update(1)
            if writes and ((step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps):
                for i, run_dir in enumerate(run_dirs):
                    if strategy == "vmap":
                        model_i = eqx.combine(_unstack(eqx.filter(stacked_model, eqx.is_array), i), static)
                        opt_i = _unstack(stacked_opt, i)
                    else:
                        model_i, opt_i = models[i], opt_states[i]
                    with _writing(run_dir / "checkpoints" / f"step_{step + 1:08d}.eqx", last_saved):
                        save_checkpoint(run_dir, step + 1, model_i, opt_i, config.keep_checkpoints, configs[i],
                                        model_configs[i])
                last_saved = step + 1
    finally:
        bar.close()
    n_params = count_parameters(models[0])
    return [{"run_dir": str(d), "steps": config.steps, "resumed_from": start, "final_loss": loss,
             "parameters": n_params, "devices": parallel.size if parallel else 1, "process": jax.process_index(),
             "losses_sha256": digest.hexdigest()} for d, loss, digest in zip(run_dirs, losses, digests)]
