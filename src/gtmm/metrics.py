"""Generation accuracy: how often a generated frame shows what it should (SPEC section 5).

The paper's bounds hide differences that only show in samples; this scores the samples. It is
computed on the likelihood's mean images of continual generation (observe the first
`recall_start` frames, sample the rest from the prior), in pixel space:

- copying tasks (perfect, one-shot, dynamic-dependency and similarity-cued recall, and the
  maze's revisits of cells seen while observing): a generated frame is correct when its nearest
  observed frame is an instance of the image it should show. Only frames whose image was
  observed can be scored; chance is 1 / (number of distinct observed images).
- parity recall: a generated frame is correct when its nearest image in a fixed bank of held-out
  0s and 1s has the digit it should report; chance is 1/2.
- rotation-3d (tasks with `generation_metric = "pixel-error"`): the mean squared error per pixel
  (values in [0, 1], over channels) of the generated second turn against the true frames, with
  two references: the error of the true frame one period earlier (what copying the first turn
  would score; not zero, since the acceleration shifts the angles) and of the mean observed frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from jaxtyping import Float, Int

from gtmm.tasks.base import AbstractImageRecallTask, AbstractTask, Batch

PARITY_BANK_PER_DIGIT = 100  # held-out images of each of 0 and 1 that parity frames are compared with


@dataclass(frozen=True)
class Accuracy:
    correct: int  # generated frames scored correct
    scored: int  # generated frames that could be scored
    chance: float  # expected `correct / scored` for frames unrelated to what they should show

    @property
    def value(self) -> float:
        return self.correct / self.scored if self.scored else float("nan")

    def summary(self) -> dict:
        """The evaluation.json entries of this score."""
        return {"generation_accuracy": self.value if self.scored else None, "generation_scored": self.scored,
                "generation_chance": self.chance}


@dataclass(frozen=True)
class PixelError:
    """Summed squared errors of generated frames against the true ones (rotation-3d)."""

    squared_error: float  # generated vs true, summed over scored values
    copy_squared_error: float  # true frame one period earlier (source_index) vs true
    mean_squared_error: float  # mean observed frame vs true
    values: int  # scored values (frames x channels x pixels)
    frames: int

    def summary(self) -> dict:
        mse = lambda total: total / self.values if self.values else None  # noqa: E731
        # generation_accuracy stays None: this task's generations are scored by pixel error.
        return {"generation_mse": mse(self.squared_error), "generation_mse_copy": mse(self.copy_squared_error),
                "generation_mse_mean_frame": mse(self.mean_squared_error), "generation_frames": self.frames,
                "generation_accuracy": None, "generation_scored": 0, "generation_chance": None}


def pixel_error(batch: Batch, generated: Float[np.ndarray, "batch time c h w"]) -> PixelError:
    """Squared error per value of the frames generated after `recall_start`; see `PixelError`."""
    r = batch.recall_start
    truth = batch.frames[:, r:].astype(np.float64)
    gen = np.asarray(generated[:, r:], np.float64)
    src = batch.source_index[:, r:]
    rows = np.arange(truth.shape[0])[:, None]
    copy = batch.frames[rows, np.maximum(src, 0)].astype(np.float64)
    copy_err = float(np.sum(((copy - truth) ** 2)[src >= 0]))
    mean_frame = batch.frames[:, :r].astype(np.float64).mean(1, keepdims=True)
    return PixelError(float(np.sum((gen - truth) ** 2)), copy_err, float(np.sum((mean_frame - truth) ** 2)),
                      int(truth.size), int(truth.shape[0] * truth.shape[1]))


def _squared_distances(a: Float[np.ndarray, "n d"], b: Float[np.ndarray, "m d"]) -> Float[np.ndarray, "n m"]:
    return np.maximum((a * a).sum(1)[:, None] - 2.0 * a @ b.T + (b * b).sum(1)[None, :], 0.0)


def copy_accuracy(batch: Batch, generated: Float[np.ndarray, "batch time c h w"]) -> Accuracy:
    """Nearest observed frame has the image the generated frame should copy (`image_index`)."""
    r = batch.recall_start
    correct = scored = 0
    chance = 0.0
    for i in range(batch.frames.shape[0]):
        observed = batch.image_index[i, :r]
        targets = [t for t in range(r, batch.frames.shape[1])
                   if batch.source_index[i, t] >= 0 and batch.image_index[i, t] in observed]
        if not targets:
            continue
        refs = batch.frames[i, :r].reshape(r, -1).astype(np.float32)
        gen = np.asarray(generated[i, targets], np.float32).reshape(len(targets), -1)
        nearest = np.argmin(_squared_distances(gen, refs), axis=1)
        correct += int(np.sum(observed[nearest] == batch.image_index[i, targets]))
        scored += len(targets)
        chance += len(targets) / len(np.unique(observed))
    return Accuracy(correct, scored, chance / scored if scored else float("nan"))


def parity_bank(task: AbstractImageRecallTask) -> tuple[Float[np.ndarray, "n d"], Int[np.ndarray, " n"]]:
    """The first `PARITY_BANK_PER_DIGIT` eval-split images of digits 0 and 1, flattened, and their digits."""
    data = task.dataset.split("eval")
    idx = np.concatenate([np.flatnonzero(data.labels == d)[:PARITY_BANK_PER_DIGIT] for d in (0, 1)])
    images = data.images[idx].astype(np.float32) / 255.0  # as the frames (tasks.base.image_frames)
    return images.reshape(len(idx), -1), np.asarray(data.labels[idx])


def parity_accuracy(batch: Batch, generated: Float[np.ndarray, "batch time c h w"],
                    bank: tuple[np.ndarray, np.ndarray]) -> Accuracy:
    """Nearest bank image of a generated report frame shows the digit (0 or 1) it should."""
    refs, digits = bank
    r, T = batch.recall_start, batch.frames.shape[1]
    mask = batch.source_index[:, r:] >= 0
    gen = np.asarray(generated[:, r:], np.float32).reshape(-1, refs.shape[1])[mask.reshape(-1)]
    want = batch.labels[:, r:][mask]
    if gen.shape[0] == 0:
        return Accuracy(0, 0, 0.5)
    nearest = np.argmin(_squared_distances(gen, refs), axis=1)
    return Accuracy(int(np.sum(digits[nearest] == want)), int(gen.shape[0]), 0.5)


class GenerationScorer:
    """Scores batches of a task's generations; holds what a task needs (the parity bank)."""

    def __init__(self, task: AbstractTask):
        self.pixel_error = getattr(task, "generation_metric", None) == "pixel-error"
        self.copies = getattr(task, "copies_source", True)
        self.bank = None if self.copies or self.pixel_error else parity_bank(task)

    def __call__(self, batch: Batch, generated: np.ndarray) -> Accuracy | PixelError:
        if self.pixel_error:
            return pixel_error(batch, generated)
        if self.copies:
            return copy_accuracy(batch, generated)
        return parity_accuracy(batch, generated, self.bank)


def combine(parts: list[Accuracy] | list[PixelError]) -> Accuracy | PixelError:
    if parts and isinstance(parts[0], PixelError):
        return PixelError(*(sum(getattr(p, f) for p in parts) for f in PixelError.__dataclass_fields__))
    scored = sum(p.scored for p in parts)
    chance = sum(p.chance * p.scored for p in parts if p.scored) / scored if scored else float("nan")
    return Accuracy(sum(p.correct for p in parts), scored, chance)
