"""The task interface: a seeded, deterministic generator of batches with the metadata metrics need."""

from __future__ import annotations

import abc
from typing import NamedTuple

import numpy as np
from jaxtyping import Float, Int

from gtmm.data.common import ImageDataset
from gtmm.errors import GtmmError

_SPLIT_IDS = {"train": 0, "eval": 1}


class Batch(NamedTuple):
    """A batch of sequences, batch-major, and what each frame is (SPEC section 1)."""

    frames: Float[np.ndarray, "batch time channel height width"]  # values in [0, 1]
    context: Float[np.ndarray, "batch time context"]  # zero-width when a task has none
    labels: Int[np.ndarray, "batch time"]  # class of each frame's image
    source_index: Int[np.ndarray, "batch time"]  # earlier step this frame repeats, -1 if none
    image_index: Int[np.ndarray, "batch time"]  # index of the image in its split
    recall_start: int  # first step of the recall phase (0-based); generation observes steps before it


def check_positive(name: str, value: int) -> int:
    if not isinstance(value, (int, np.integer)) or value < 1:
        raise GtmmError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class AbstractTask(abc.ABC):
    """A task of paper section 5: `batch(split, batch_size, seed, step)` is a pure function of its args."""

    name: str
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
        images = self.dataset.split(split).images[image_index]
        return (images.astype(np.float32) / 255.0)[:, :, None]
