"""Training by the per-step variational bound (paper section 4.1), with run directories and resume.

A run directory holds:
  config.json        the resolved configuration, data source, package version
  metrics.jsonl      one line per step: negative bound, KL per step, last-step KL (append-only)
  checkpoints/       the last few checkpoints (parameters, optimiser state, step), written atomically
Everything random is a function of (seed, step), so a resumed run continues the same stream.
"""

from __future__ import annotations

import functools
import io
import json
import os
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
from gtmm._io import append_jsonl, read_jsonl, write_bytes_atomic, write_json_atomic
from gtmm.data.common import announce_once
from gtmm.errors import GtmmError
from gtmm.memories import check_model
from gtmm.model import GTMM, ModelConfig, count_parameters, init_model, loss_fn
from gtmm.tasks import TASKS, AbstractTask, make_task, task_params
from gtmm.tasks.base import check_positive


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
    seed: int = 0
    checkpoint_every: int = 100
    keep_checkpoints: int = 3
    model_overrides: dict = field(default_factory=dict)  # ModelConfig fields, e.g. hidden_size

    def __post_init__(self):
        if self.task in TASKS:  # an unknown task is reported by validate()
            for name in ("l", "k"):
                if getattr(self, name) is None:
                    object.__setattr__(self, name, TASKS[self.task].defaults[name])

    def validate(self) -> "TrainConfig":
        check_model(self.model)
        task_params(self.task, l=self.l, k=self.k)
        for name in ("steps", "batch_size", "checkpoint_every", "keep_checkpoints"):
            check_positive(name.replace("_", " "), getattr(self, name))
        if self.learning_rate is not None and not (self.learning_rate > 0 and np.isfinite(self.learning_rate)):
            raise GtmmError(f"learning rate must be a positive number, got {self.learning_rate}")
        known = {f.name for f in fields(ModelConfig)} - {"model", "sequence_length"}
        unknown = set(self.model_overrides) - known
        if unknown:
            raise GtmmError(f"unknown model setting(s) {sorted(unknown)}; known: {sorted(known)}")
        self.model_config()  # bad memory settings fail here, before data is loaded or anything compiled
        return self

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


# Settings a resumed run must share with the run on disk (steps may grow).
_IDENTITY = ("model", "task", "l", "k", "batch_size", "learning_rate", "seed", "model_overrides")


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
    return init_model(model_config, config.seed)


def read_model_config(run_dir: Path) -> ModelConfig:
    """The architecture a run was trained with (defaults may have changed since)."""
    try:
        return ModelConfig(**json.loads((Path(run_dir) / "config.json").read_text())["model"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise GtmmError(f"{run_dir}/config.json is unreadable ({e}); it was not written by this version of gtmm") from None


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    return _adam(config.lr)


@functools.cache
def _adam(lr: float) -> optax.GradientTransformation:
    return optax.adam(lr)


@functools.cache  # one jitted step per optimiser, so later runs in a process reuse its compilation
def make_train_step(optimizer: optax.GradientTransformation):
    @eqx.filter_jit
    def train_step(model, opt_state, frames, task_context, key):
        (loss, terms), grads = eqx.filter_value_and_grad(loss_fn, has_aux=True)(model, frames, task_context, key)
        updates, opt_state = optimizer.update(grads, opt_state, eqx.filter(model, eqx.is_array))
        model = eqx.apply_updates(model, updates)
        return model, opt_state, loss, jnp.mean(terms.kl, axis=0), jnp.mean(terms.log_likelihood, axis=0)

    return train_step


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


def save_checkpoint(run_dir: Path, step: int, model: GTMM, opt_state, keep: int) -> Path:
    """Write parameters and optimiser state atomically, then drop all but the newest `keep`."""
    buf = io.BytesIO()
    eqx.tree_serialise_leaves(buf, (model, opt_state))
    path = run_dir / "checkpoints" / f"step_{step:08d}.eqx"
    write_bytes_atomic(path, buf.getvalue())
    for _, old in _checkpoint_paths(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(run_dir: Path, like_model: GTMM, like_opt_state,
                    at_most: int | None = None) -> tuple[int, GTMM, object] | None:
    """The newest checkpoint that loads (of step <= `at_most` if given), or None when there is
    none; an error when none loads."""
    paths = [(step, path) for step, path in _checkpoint_paths(run_dir) if at_most is None or step <= at_most]
    for step, path in reversed(paths):
        try:
            model, opt_state = eqx.tree_deserialise_leaves(path, (like_model, like_opt_state))
        except Exception:  # a damaged file: say so, and fall back to the previous checkpoint
            announce_once(f"checkpoint {path} does not load; trying the one before it")
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
    """Metrics by step; where a resumed run logged a step twice, the later record wins."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    by_step = {r["step"]: r for r in read_jsonl(path) if "step" in r}
    return [by_step[s] for s in sorted(by_step)]


def load_trained(run_dir: Path) -> tuple[TrainConfig, AbstractTask, GTMM, int]:
    """Config, task, and the model of the newest checkpoint of a run."""
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    task = make_task(config.task, l=config.l, k=config.k)
    model = build_model(config, read_model_config(run_dir))
    opt_state = make_optimizer(config).init(eqx.filter(model, eqx.is_array))
    loaded = load_checkpoint(run_dir, model, opt_state)
    if loaded is None:
        raise GtmmError(f"{run_dir} holds no checkpoint yet; train it first")
    step, model, _ = loaded
    return config, task, model, step


def _check_run_dir(run_dir: Path, config: TrainConfig) -> bool:
    """Whether `run_dir` holds this run (resume); an error when it holds another run or other files.

    Runs before any data is loaded or model built, so a wrong --out fails at once.
    """
    if (run_dir / "config.json").exists():
        old = read_config(run_dir)
        diffs = [f"{k}: {getattr(old, k)!r} on disk vs {getattr(config, k)!r}" for k in _IDENTITY
                 if getattr(old, k) != getattr(config, k)]
        if diffs:
            raise GtmmError(f"{run_dir} holds a different run ({'; '.join(diffs)}); choose another --out")
        return True
    if run_dir.exists() and any(run_dir.iterdir()):
        raise GtmmError(f"{run_dir} exists and is not a gtmm run directory; choose another --out")
    return False


def _write_run_config(run_dir: Path, config: TrainConfig, model_config: ModelConfig, task: AbstractTask,
                      n_params: int) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg_path = run_dir / "config.json"
    write_json_atomic(cfg_path, {
        "train": asdict(config),
        "model": asdict(model_config),
        "learning_rate_used": config.lr,
        "parameters": n_params,
        "data": task.dataset.source,
        "gtmm_version": gtmm.__version__,
        "jax_version": jax.__version__,
    })


def train(config: TrainConfig, run_dir: str | os.PathLike, progress: bool = True,
          task: AbstractTask | None = None) -> dict:
    """Train (or resume) a run in `run_dir` up to `config.steps`; returns a summary dict.

    Resumes from the newest checkpoint when `run_dir` holds a run with the same settings.
    """
    return _train_runs(config, [Path(run_dir)], [config.seed], progress, task, "loop")[0]


def replica_dirs(out: str | os.PathLike, replicas: int) -> list[Path]:
    return [Path(out) / f"replica-{r}" for r in range(replicas)]


def train_replicas(config: TrainConfig, out: str | os.PathLike, replicas: int, progress: bool = True,
                   task: AbstractTask | None = None, strategy: str = "auto") -> list[dict]:
    """Train `replicas` independent runs together in one process: replica r has seed
    `config.seed + r` (its own initial parameters, keys and data stream) and is an ordinary run
    directory `out/replica-r`, so every command that reads a run reads a replica.

    `strategy`: "vmap" steps all replicas as one vectorised computation; "loop" steps them one
    after another through one compiled step; "auto" picks vmap on accelerators and loop on CPU,
    where XLA turns replica-batched convolutions into grouped convolutions about 4x slower than
    running the replicas in turn (PERFORMANCE.md). Both give each replica the numbers it would
    get trained alone.
    """
    check_positive("replicas", replicas)
    if strategy not in ("auto", "vmap", "loop"):
        raise GtmmError(f"unknown replica strategy {strategy!r}; choose auto, vmap or loop")
    if strategy == "auto":
        strategy = "loop" if jax.default_backend() == "cpu" else "vmap"
    out, dirs = Path(out), replica_dirs(out, replicas)
    if out.exists() and any(p not in dirs for p in out.iterdir()):
        raise GtmmError(f"{out} holds files other than replica-0..{replicas - 1}; choose another --out")
    return _train_runs(config, dirs, [config.seed + r for r in range(replicas)], progress, task, strategy)


def _stack(trees):
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)


def _unstack(tree, i: int):
    return jax.tree_util.tree_map(lambda x: x[i], tree)


@functools.cache
def _make_replica_step(optimizer: optax.GradientTransformation):
    step = make_train_step(optimizer)
    return eqx.filter_jit(eqx.filter_vmap(step))


def _train_runs(config: TrainConfig, run_dirs: list[Path], seeds: list[int], progress: bool,
                task: AbstractTask | None, strategy: str) -> list[dict]:
    config.validate()
    configs = [replace(config, seed=seed) for seed in seeds]
    resuming = [_check_run_dir(d, c) for d, c in zip(run_dirs, configs)]  # before any data or model
    enable_compile_cache()
    task = task or make_task(config.task, l=config.l, k=config.k)
    optimizer = make_optimizer(config)
    models, opt_states = [], []
    for run_dir, cfg, resumed in zip(run_dirs, configs, resuming):
        model_config = read_model_config(run_dir) if resumed else cfg.model_config(task)
        model = build_model(cfg, model_config)
        models.append(model)
        opt_states.append(optimizer.init(eqx.filter(model, eqx.is_array)))
        _write_run_config(run_dir, cfg, model_config, task, count_parameters(model))

    # All runs restart from the newest step every one of them has a checkpoint for (a kill
    # between two runs' saves leaves one ahead; it repeats those steps with the same numbers).
    saved = [{step for step, _ in _checkpoint_paths(d)} for d in run_dirs]
    common = set.intersection(*saved)
    start = max(common) if common else 0
    while start:
        loaded = [load_checkpoint(d, models[i], opt_states[i], at_most=start) for i, d in enumerate(run_dirs)]
        steps = [0 if got is None else got[0] for got in loaded]
        if min(steps) == start:
            models, opt_states = [got[1] for got in loaded], [got[2] for got in loaded]
            break
        start = min(steps)  # a run's checkpoint at `start` did not load: go back to an older common one

    if strategy == "vmap":
        params = _stack([eqx.filter(m, eqx.is_array) for m in models])
        static = eqx.filter(models[0], eqx.is_array, inverse=True)
        stacked_model, stacked_opt = eqx.combine(params, static), _stack(opt_states)
        replica_step = _make_replica_step(optimizer)
    else:
        train_step = make_train_step(optimizer)

    label = f"{config.model} {config.task}" + (f" x{len(run_dirs)}" if len(run_dirs) > 1 else "")
    bar = tqdm(total=config.steps, initial=start, disable=not progress, desc=label, unit="step", dynamic_ncols=True)
    losses = [float("nan")] * len(run_dirs)
    t0 = time.time()
    for step in range(start, config.steps):
        batches = [task.batch("train", config.batch_size, c.seed, step) for c in configs]
        keys = [step_key(c.seed, step) for c in configs]
        if strategy == "vmap":
            stacked_model, stacked_opt, loss_arr, kl, loglik = replica_step(
                stacked_model, stacked_opt, jnp.asarray(np.stack([b.frames for b in batches])),
                jnp.asarray(np.stack([b.context for b in batches])), jnp.stack(keys))
            outputs = [(loss_arr[i], kl[i], loglik[i]) for i in range(len(run_dirs))]
        else:
            outputs = []
            for i, (batch, key) in enumerate(zip(batches, keys)):
                models[i], opt_states[i], loss_arr, kl, loglik = train_step(
                    models[i], opt_states[i], jnp.asarray(batch.frames), jnp.asarray(batch.context), key)
                outputs.append((loss_arr, kl, loglik))
        for i, (run_dir, (loss_arr, kl, loglik)) in enumerate(zip(run_dirs, outputs)):
            losses[i] = float(loss_arr)
            if not np.isfinite(losses[i]):
                raise GtmmError(f"loss became {losses[i]} at step {step + 1}; the last good checkpoint is kept in"
                                f" {run_dir}")
            kl = np.asarray(kl)
            append_jsonl(run_dir / "metrics.jsonl", {
                "step": step + 1,
                "negative_bound": losses[i],
                "kl_per_step": [round(float(v), 5) for v in kl],
                "last_step_kl": float(kl[-1]),
                "log_likelihood": float(np.sum(np.asarray(loglik))),
                "wall_s": round(time.time() - t0, 3),
            })
        bar.set_postfix(loss=f"{np.mean(losses):.1f}", last_kl=f"{float(np.mean([o[1][-1] for o in outputs])):.2f}")
        bar.update(1)
        if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps:
            for i, run_dir in enumerate(run_dirs):
                if strategy == "vmap":
                    model_i = eqx.combine(_unstack(eqx.filter(stacked_model, eqx.is_array), i), static)
                    opt_i = _unstack(stacked_opt, i)
                else:
                    model_i, opt_i = models[i], opt_states[i]
                save_checkpoint(run_dir, step + 1, model_i, opt_i, config.keep_checkpoints)
    bar.close()
    n_params = count_parameters(models[0])
    return [{"run_dir": str(d), "steps": config.steps, "resumed_from": start, "final_loss": loss,
             "parameters": n_params} for d, loss in zip(run_dirs, losses)]
