"""The task interface: a seeded, deterministic generator of batches with the metadata metrics need."""

from __future__ import annotations

import abc
from typing import ClassVar, NamedTuple

import numpy as np
from jaxtyping import Float, Int

from gtmm.data.common import ImageDataset, ImageSplit
from gtmm.errors import GtmmError

_SPLIT_IDS = {"train": 0, "eval": 1}


class Batch(NamedTuple):
    """A batch of sequences, batch-major, and what each frame is (SPEC section 1).

    `source_index[b, t]` is the earlier step (0-based) that decides what frame `t` must show, -1
    where nothing earlier does. For every task but parity recall the frame at `t` is the very
    image of that step (`image_index` equal); for parity recall (`task.copies_source` is False)
    it is some image of the digit `labels[b, source] % 2`. In the maze it is the step that first
    visited the current cell, on revisits only.
    """

    frames: Float[np.ndarray, "batch time channel height width"]  # values in [0, 1]
    context: Float[np.ndarray, "batch time context"]  # c_t; zero-width when a task has none
    labels: Int[np.ndarray, "batch time"]  # class of each frame's image (digit, Omniglot character)
    source_index: Int[np.ndarray, "batch time"]  # earlier step this frame reproduces, -1 if none
    image_index: Int[np.ndarray, "batch time"]  # index of the image in its split
    recall_start: int  # first step of the recall phase (0-based); generation observes steps before it
    positions: Int[np.ndarray, "batch time 2"] | None = None  # maze: (row, column) of each step's cell
    first_visit: Int[np.ndarray, "batch time"] | None = None  # maze: step that first visited that cell


def check_positive(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise GtmmError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_positive_number(name: str, value: float, hint: str = "", *, zero_ok: bool = False) -> float:
    """A finite number > 0 (>= 0 with `zero_ok`; not a boolean), or a one-line GtmmError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not (
            (0 <= value if zero_ok else 0 < value) and value < float("inf")):
        kind = "a number >= 0" if zero_ok else "a positive number"
        raise GtmmError(f"{name} must be {kind}{hint}, got {value!r}")
    return float(value)


def image_frames(split: ImageSplit, image_index: Int[np.ndarray, "batch time"]) -> np.ndarray:
    """The frames `[batch, time, 1, 32, 32]` in [0, 1] of the images `image_index` of `split`."""
    return (split.images[image_index].astype(np.float32) / 255.0)[:, :, None]


class AbstractTask(abc.ABC):
    """A task of paper section 5: `batch(split, batch_size, seed, step)` is a pure function of its args."""

    name: ClassVar[str]
    defaults: ClassVar[dict[str, int]] = {"l": 20, "k": 5}  # the paper's parameters (section 5)
    copies_source: ClassVar[bool] = True  # frame t shows the very image of step source_index[t]
    length: int  # T
    context_size: int = 0
    frame_shape: tuple[int, int, int] = (1, 32, 32)

    @property
    @abc.abstractmethod
    def recall_start(self) -> int: ...

    @classmethod
    def check_params(cls, **params) -> None:
        """Raise GtmmError for invalid parameters, before any data is loaded."""

    @abc.abstractmethod
    def _sample(self, rng: np.random.Generator, split: str, batch_size: int) -> Batch: ...

    def batch(self, split: str, batch_size: int, seed: int, step: int) -> Batch:
        """The batch number `step` of stream `seed`: the same arguments always give the same batch."""
        if split not in _SPLIT_IDS:
            raise GtmmError(f"unknown split {split!r}; use 'train' or 'eval'")
        check_positive("batch size", batch_size)
        rng = np.random.default_rng([int(seed), int(step), _SPLIT_IDS[split]])
        return self._sample(rng, split, batch_size)


class AbstractImageRecallTask(AbstractTask):
    """Tasks built from `l` random images followed by a recall phase of `k` frames (appendix D)."""

    def __init__(self, dataset: ImageDataset, l: int, k: int):
        self.l, self.k = self.check_params(l, k)
        self.dataset = dataset
        self.length = self.l + self.k

    @classmethod
    def check_params(cls, l: int, k: int) -> tuple[int, int]:
        """Validate `l` and `k` before any data is loaded."""
        l, k = check_positive("l", l), check_positive("k", k)
        if k > l:
            raise GtmmError(f"k ({k}) must not exceed l ({l}): the recall phase repeats frames of the first l")
        return l, k

    @property
    def recall_start(self) -> int:
        return self.l

    def _frames(self, split: str, image_index: np.ndarray) -> np.ndarray:
        return image_frames(self.dataset.split(split), image_index)

    def _random_prefix(self, rng: np.random.Generator, split: str, batch_size: int) -> np.ndarray:
        """`l` images drawn uniformly (with replacement) from `split`: the pre-recall interval."""
        return rng.integers(0, len(self.dataset.split(split)), size=(batch_size, self.l))

    def _batch(self, split: str, image_index: np.ndarray, source_index: np.ndarray) -> Batch:
        """A batch of the images `image_index` [batch, T], labelled from the data set."""
        batch_size = image_index.shape[0]
        labels = self.dataset.split(split).labels[image_index]
        return Batch(
            frames=self._frames(split, image_index),
            context=np.zeros((batch_size, self.length, 0), np.float32),
            labels=labels.astype(np.int32),
            source_index=np.broadcast_to(source_index, (batch_size, self.length)).astype(np.int32),
            image_index=image_index.astype(np.int32),
            recall_start=self.l,
        )
