"""Parity recall (paper section 5.2, Algorithm 2, Fig. 5 and 22)."""

from __future__ import annotations

import numpy as np

from gtmm.errors import GtmmError
from gtmm.tasks.base import AbstractImageRecallTask, Batch


class ParityRecall(AbstractImageRecallTask):
    """`l` random MNIST digits, then for each of the first `k` a fresh random image of the digit
    `label_j mod 2`: an even digit is answered by a 0, an odd one by a 1 (Algorithm 2's
    `parity(labels[j])` and Fig. 22; the prose of section 5.2 says the reverse, SPEC section 3
    follows the algorithm).

    Frame `l + j` reports on frame `j`: `source_index[:, l + j] == j` and
    `labels[:, l + j] == labels[:, j] % 2`. It is a new image, not a copy (`copies_source` False).
    """

    name = "parity-recall"
    defaults = {"l": 15, "k": 5}  # the paper also runs l = 20 and l = 50
    copies_source = False

    def _sample(self, rng: np.random.Generator, split: str, batch_size: int) -> Batch:
        data = self.dataset.split(split)
        first = self._random_prefix(rng, split, batch_size)
        parity = data.labels[first[:, : self.k]] % 2  # [batch, k]
        by_label = data.by_label()
        if len(by_label) < 2 or len(by_label[0]) == 0 or len(by_label[1]) == 0:
            raise GtmmError(f"parity recall needs images of the digits 0 and 1; the {split} split of"
                            f" {self.dataset.name} has none of one of them")
        zeros, ones = by_label[0], by_label[1]
        u = rng.random((batch_size, self.k))
        answer = np.where(parity == 0, zeros[(u * len(zeros)).astype(int)], ones[(u * len(ones)).astype(int)])
        source = np.full(self.length, -1)
        source[self.l :] = np.arange(self.k)
        return self._batch(split, np.concatenate([first, answer], axis=1), source)
