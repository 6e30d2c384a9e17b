"""After training: KL at every step over a batch of held-out sequences (paper section 4, third
metric), generation accuracy (gtmm.metrics), and reconstructions and continual generation
(Fig. 19-28)."""

from __future__ import annotations

from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from gtmm._io import write_json_atomic
from gtmm.model import batch_terms
from gtmm.train import load_trained

EVAL_SEED = 1_000_003  # evaluation batches are the same for every run and model


@eqx.filter_jit
def _terms(model, frames, context, key):
    return batch_terms(model, frames, context, key)


@eqx.filter_jit
def _generate(model, frames, context, n_observed, key):
    keys = jax.random.split(key, frames.shape[0])
    return jax.vmap(model.generate, in_axes=(0, 0, None, 0))(frames, context, n_observed, keys)


def kl_per_step(model, task, batches: int = 10, batch_size: int = 10, generation: bool = True) -> dict:
    """Per-step KL and log-likelihood averaged over `batches * batch_size` eval sequences, and
    (with `generation`) the generation accuracy of continual generation on the same sequences."""
    return _evaluate(model, task, batches, batch_size, generation)[0]


def _evaluate(model, task, batches: int, batch_size: int, generation: bool) -> tuple[dict, tuple | None]:
    """`kl_per_step`'s figures, and (batch, reconstructions, generations) of the first batch."""
    from gtmm.metrics import GenerationScorer, combine

    scorer = GenerationScorer(task) if generation else None
    kls, lls, accuracy, first = [], [], [], None
    for b in range(batches):
        batch = task.batch("eval", batch_size, EVAL_SEED, b)
        frames, context = jnp.asarray(batch.frames), jnp.asarray(batch.context)
        terms = _terms(model, frames, context, jax.random.PRNGKey(b))
        kls.append(np.asarray(terms.kl))
        lls.append(np.asarray(terms.log_likelihood))
        if scorer is not None:
            recon, gen = _generate(model, frames, context, task.recall_start, jax.random.PRNGKey(batches + b))
            accuracy.append(scorer(batch, np.asarray(gen)))
            if b == 0:
                first = (batch, np.asarray(recon), np.asarray(gen))
    kl = np.concatenate(kls)  # [N, T]
    ll = np.concatenate(lls)
    r = task.recall_start
    result = {
        "sequences": int(kl.shape[0]),
        "kl_per_step": kl.mean(0).tolist(),
        "kl_per_step_stderr": (kl.std(0, ddof=1) / np.sqrt(kl.shape[0])).tolist(),
        "negative_bound": float(np.mean(np.sum(kl - ll, axis=1))),
        "recall_start": r,
        "kl_before_recall": float(kl[:, :r].mean()),
        "kl_recall": float(kl[:, r:].mean()),
        "last_step_kl": float(kl[:, -1].mean()),
    }
    if scorer is not None:
        result.update(combine(accuracy).summary())
    return result, first


def evaluate_run(run_dir: str | Path, batches: int = 10, samples: int = 4, step: int | None = None) -> dict:
    """Evaluate the newest checkpoint of a run; writes `evaluation.json` in the run directory and,
    with `samples` > 0, `samples.png` from the first `samples` evaluation sequences.

    With `step`, the checkpoint of that step (one kept by `TrainConfig.keep_every`, or one of the
    last few) into `evaluation-step-N.json` and `samples-step-N.png`; `evaluation.json`, which
    reports read as the run's result, is left alone.
    """
    run_dir = Path(run_dir)
    suffix = "" if step is None else f"-step-{step}"
    config, task, model, step = load_trained(run_dir, step)
    figures, first = _evaluate(model, task, batches, 10, generation=True)
    result = {"model": config.model, "task": config.task, "l": config.l, "k": config.k,
              **({"grid": config.grid} if config.grid is not None else {}), "seed": config.seed,
              "step": step, **figures}
    if samples and first is not None:
        batch, recon, gen = first
        _save_samples(run_dir / f"samples{suffix}.png", config, step, task, batch, recon, gen, samples)
    write_json_atomic(run_dir / f"evaluation{suffix}.json", result)
    return result


def _save_samples(path: Path, config, step: int, task, batch, recon, gen, n: int) -> Path:
    from gtmm.plots import action_label, save_sample_grid

    # the maze's actions above its frames (Fig. 15): what a generated frame should show follows from them
    above = ([[action_label(c) for c in batch.context[i]] for i in range(n)] if batch.context.shape[-1] else None)
    return save_sample_grid(path, batch.frames[:n], recon[:n], gen[:n], task.recall_start, above=above,
                            title=f"{config.model} on {config.task} (l={config.l}, k={config.k}), step {step}")


def sample_run(run_dir: str | Path, sequences: int = 4, out: str | Path | None = None,
               step: int | None = None) -> Path:
    """Write a PNG grid of inputs, reconstructions and continual generations for a run, from its
    newest checkpoint or the kept one at `step`, to `out` (default: RUN_DIR/samples.png)."""
    run_dir = Path(run_dir)
    config, task, model, step = load_trained(run_dir, step)
    batch = task.batch("eval", sequences, EVAL_SEED, 0)
    recon, gen = _generate(model, jnp.asarray(batch.frames), jnp.asarray(batch.context), task.recall_start,
                           jax.random.PRNGKey(0))
    path = Path(out) if out is not None else run_dir / "samples.png"
    return _save_samples(path, config, step, task, batch, np.asarray(recon), np.asarray(gen), sequences)


@eqx.filter_jit
def read_weights_trace(model, frames, task_context, key):
    """The memory's read weights at every step of one sequence, `[time, heads, slots]`, with the
    latents from the posterior as in training (`AbstractMemory.read_weights_after`)."""
    T = frames.shape[0]
    noise = jax.random.normal(key, (T, model.latent_size))

    def step(carry, xs):
        carry, _ = model.step(carry, xs)
        return carry, model.memory.read_weights_after(carry[0])

    xs = (model.embed(frames), task_context, noise, jnp.ones(T, bool))
    return jax.lax.scan(step, model.initial_carry(), xs)[1]


def plot_reads(run_dir: str | Path, out: str | Path, sequence: int = 0, step: int | None = None) -> Path:
    """A PNG of where each read head of a run's memory looks at every step of held-out sequence
    `sequence` (the evaluation's first batch), with the frames along the side: for perfect
    recall, the recall steps should read the slots that hold the frames they repeat."""
    from gtmm.errors import GtmmError
    from gtmm.plots import save_read_weights

    if not 0 <= sequence < 10:
        raise GtmmError(f"sequence {sequence} is not one of the evaluation's first batch; choose 0-9")
    run_dir = Path(run_dir)
    config, task, model, step = load_trained(run_dir, step)
    if model.memory.read_weights_after(model.memory.initial_state()) is None:
        raise GtmmError(f"{config.model} has no memory slots to read (its memory is the LSTM state); choose a run of"
                        " a model with a memory")
    batch, i = task.batch("eval", 10, EVAL_SEED, 0), sequence  # the evaluation's first batch (evaluate_run)
    weights = read_weights_trace(model, jnp.asarray(batch.frames[i]), jnp.asarray(batch.context[i]),
                                 jax.random.PRNGKey(0))
    title = (f"{config.model} on {config.task} (l={config.l}, k={config.k}), step {step}: read weights,"
             f" held-out sequence {sequence}")
    return save_read_weights(Path(out), np.asarray(weights), batch.frames[i], task.recall_start, title)

