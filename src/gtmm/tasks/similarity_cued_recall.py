"""Similarity-cued recall (paper section 5.5, Algorithm 4, Fig. 11)."""

from __future__ import annotations

import numpy as np

from gtmm.errors import GtmmError
from gtmm.tasks.base import AbstractImageRecallTask, Batch, check_positive


class SimilarityCuedRecall(AbstractImageRecallTask):
    """`l` random MNIST digits, then a contiguous run of `k` of them appended again.

    Indexing (Algorithm 4): the pseudocode indexes sequences from 1 (Algorithm 1's
    `for i = 1, l: sequence[i]`, and Algorithm 3 says explicitly when an address is 0-based), and
    section 5.5 says the run has length k, so `sequence[r : r + k]` is read as the half-open
    1-based range r, ..., r + k - 1 with `r ~ Uniform{1, ..., l - k}` (inclusive). In 0-based
    steps the run starts at `r - 1` in {0, ..., l - k - 1}: it may start at the first frame and
    never includes the last frame of the pre-recall interval. This needs `k < l`.
    `source_index[:, l + j] == r - 1 + j`.
    """

    name = "similarity-cued-recall"
    defaults = {"l": 20, "k": 5}

    @classmethod
    def check_params(cls, l: int, k: int) -> tuple[int, int]:
        l, k = check_positive("l", l), check_positive("k", k)
        if k >= l:
            raise GtmmError(f"similarity-cued recall needs k < l (got l = {l}, k = {k}): the cue is drawn as"
                            " r ~ U[1, l - k]")
        return l, k

    def _sample(self, rng: np.random.Generator, split: str, batch_size: int) -> Batch:
        first = self._random_prefix(rng, split, batch_size)
        r = rng.integers(1, self.l - self.k + 1, size=batch_size)  # 1-based, inclusive of l - k
        run = (r - 1)[:, None] + np.arange(self.k)  # 0-based steps of the repeated run
        source = np.concatenate([np.full((batch_size, self.l), -1), run], axis=1)
        image_index = np.concatenate([first, np.take_along_axis(first, run, axis=1)], axis=1)
        return self._batch(split, image_index, source)
