"""Perfect recall (paper section 5.1, Algorithm 1)."""

from __future__ import annotations

import numpy as np

from gtmm.tasks.base import AbstractImageRecallTask, Batch


class PerfectRecall(AbstractImageRecallTask):
    """`l` random images, then the first `k` of them again, in order (Algorithm 1).

    Frame `l + j` repeats frame `j` (0-based), so `source_index[:, l + j] == j`.
    """

    name = "perfect-recall"

    def _sample(self, rng: np.random.Generator, split: str, batch_size: int) -> Batch:
        n = len(self.dataset.split(split))
        first = rng.integers(0, n, size=(batch_size, self.l))
        order = np.concatenate([np.arange(self.l), np.arange(self.k)])
        image_index = first[:, order]
        source = np.full(self.length, -1)
        source[self.l :] = np.arange(self.k)
        labels = self.dataset.split(split).labels[image_index]
        return Batch(
            frames=self._frames(split, image_index),
            context=np.zeros((batch_size, self.length, 0), np.float32),
            labels=labels.astype(np.int32),
            source_index=np.broadcast_to(source, (batch_size, self.length)).astype(np.int32),
            image_index=image_index.astype(np.int32),
            recall_start=self.l,
        )
