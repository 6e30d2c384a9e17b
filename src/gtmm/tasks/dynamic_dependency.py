"""Learning dynamic dependencies: the index-and-recall game (paper section 5.4, Algorithm 3, Fig. 9)."""

from __future__ import annotations

import numpy as np

from gtmm.errors import GtmmError
from gtmm.tasks.base import AbstractImageRecallTask, Batch, check_positive


class DynamicDependency(AbstractImageRecallTask):
    """`l` random MNIST digits, then `k` frames each of which is the very image (same instance,
    same label) at the 0-based position given by the previous frame's digit (Algorithm 3:
    `append(sequence, sequence[labels[l+j-1]])`, with `labels` extended by each appended frame's
    label, so the chain continues from the image it just copied; section 5.4's example: the last
    digit of the pre-recall interval is an 8, position 8 holds a 3, which comes next, ...).

    Digits 0-9 address the first ten positions, so `l >= 10` and every source lies in the
    pre-recall interval; `k` may be any positive length. For `t >= l`:
    `source_index[:, t] == labels[:, t - 1]` and `image_index[:, t] == image_index[:, source]`.
    """

    name = "dynamic-dependency"
    defaults = {"l": 20, "k": 5}

    @classmethod
    def check_params(cls, l: int, k: int) -> tuple[int, int]:
        l, k = check_positive("l", l), check_positive("k", k)
        if l < 10:
            raise GtmmError(f"dynamic dependency needs l >= 10 (got l = {l}): a digit 0-9 names a position among"
                            " the first ten frames")
        return l, k

    def _sample(self, rng: np.random.Generator, split: str, batch_size: int) -> Batch:
        labels_of = self.dataset.split(split).labels
        image_index = np.empty((batch_size, self.length), np.int64)
        image_index[:, : self.l] = self._random_prefix(rng, split, batch_size)
        source = np.full((batch_size, self.length), -1)
        rows = np.arange(batch_size)
        for t in range(self.l, self.length):
            address = labels_of[image_index[:, t - 1]]  # previous frame's digit, a 0-based position
            if address.max() >= self.l:
                raise GtmmError(f"the {split} split of {self.dataset.name} has labels above 9; dynamic dependency"
                                " needs digit labels 0-9")
            image_index[:, t] = image_index[rows, address]
            source[:, t] = address
        return self._batch(split, image_index, source)
