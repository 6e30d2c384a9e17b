"""Perfect recall and one-shot recall (paper sections 5.1 and 5.3, Algorithm 1)."""

from __future__ import annotations

import numpy as np

from gtmm.tasks.base import AbstractImageRecallTask, Batch


def first_k_repeated(task: AbstractImageRecallTask, rng: np.random.Generator, split: str, batch_size: int) -> Batch:
    """Algorithm 1: `l` random images, then the first `k` of them again, in order.

    Frame `l + j` repeats frame `j` (0-based), so `source_index[:, l + j] == j`.
    """
    first = task._random_prefix(rng, split, batch_size)
    order = np.concatenate([np.arange(task.l), np.arange(task.k)])
    source = np.full(task.length, -1)
    source[task.l :] = np.arange(task.k)
    return task._batch(split, first[:, order], source)


class PerfectRecall(AbstractImageRecallTask):
    """`l` random MNIST digits, then the first `k` of them again, in order (Algorithm 1)."""

    name = "perfect-recall"
    defaults = {"l": 15, "k": 5}  # the paper also runs l = 20 and l = 50

    def _sample(self, rng: np.random.Generator, split: str, batch_size: int) -> Batch:
        return first_k_repeated(self, rng, split, batch_size)


class OneShotRecall(AbstractImageRecallTask):
    """Perfect recall on Omniglot characters (section 5.3): the eval split holds only characters
    never seen in training (three per alphabet, see `gtmm.data.omniglot`)."""

    name = "one-shot-recall"
    defaults = {"l": 20, "k": 5}

    def _sample(self, rng: np.random.Generator, split: str, batch_size: int) -> Batch:
        return first_k_repeated(self, rng, split, batch_size)
