"""Rotation in a 3D maze (paper section 5.7, Fig. 16): two turns in place, generate the second.

Each sequence is a cached episode (gtmm.data.rotation3d; rendered by gtmm.data.maze3d): 30
first-person 3x32x32 views of a new random maze while the camera turns twice with angular
acceleration, about 15 frames per turn. Generation observes the first turn (`l = 15` frames)
and generates the second (`k = 15`), which shows the same panorama at slightly different angles
(the acceleration), so a model must remember the first turn and interpolate it, not copy it.

`source_index[t] = t - 15` in the second turn: the frame one period earlier, the nearest view
(within the acceleration's tolerance, `gtmm.data.maze3d.MAX_ANGULAR_ACCELERATION`).
Generation is scored by pixel error (gtmm.metrics.pixel_error), not by copy accuracy.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from gtmm.errors import GtmmError
from gtmm.tasks.base import AbstractTask, Batch, check_positive

EPISODE_LENGTH = 30  # as gtmm.data.maze3d.EPISODE_LENGTH (not imported: it needs the 3d extra's packages)
PERIOD = 15


class Rotation3D(AbstractTask):
    """`l` observed frames of the first turn, then `k` frames of the second (l + k <= 30)."""

    name: ClassVar[str] = "rotation-3d"
    defaults: ClassVar[dict[str, int]] = {"l": PERIOD, "k": EPISODE_LENGTH - PERIOD}
    generation_metric: ClassVar[str] = "pixel-error"  # gtmm.metrics.GenerationScorer
    frame_shape = (3, 32, 32)
    # What the task asks of the model (ModelConfig fields): appendix B.2's networks, latent 256.
    model_defaults: ClassVar[dict] = {"network": "two-pathway", "frame_channels": 3, "latent_size": 256,
                                      "embed_size": 768}

    def __init__(self, dataset, l: int, k: int):
        self.l, self.k = self.check_params(l, k)
        self.dataset = dataset
        self.length = self.l + self.k
        if dataset.length < self.length:
            raise GtmmError(f"the cached episodes have {dataset.length} frames, fewer than l + k = {self.length}")
        size = dataset.frame_size
        self.frame_shape = (3, size, size)
        self.model_defaults = {**type(self).model_defaults, "frame_size": size}

    @classmethod
    def check_params(cls, l: int, k: int) -> tuple[int, int]:
        l, k = check_positive("l", l), check_positive("k", k)
        if l + k > EPISODE_LENGTH:
            raise GtmmError(f"l + k ({l + k}) must not exceed the episode length {EPISODE_LENGTH}")
        return l, k

    @property
    def recall_start(self) -> int:
        return self.l

    def _sample(self, rng: np.random.Generator, split: str, batch_size: int) -> Batch:
        data = self.dataset.split(split)
        # every episode once before any twice: a small cache (a few held-out episodes) otherwise
        # repeats one world across a batch, and across the rows of a sample figure (its first rows)
        n = len(data)
        pick = (rng.choice(n, size=batch_size, replace=False) if batch_size <= n
                else np.concatenate([rng.permutation(n), rng.integers(0, n, size=batch_size - n)]))
        T = self.length
        frames = data.frames[pick, :T].astype(np.float32) / 255.0
        t = np.arange(T)
        episode = data.episodes[pick].astype(np.int32)
        return Batch(
            frames=frames,
            context=np.zeros((batch_size, T, 0), np.float32),
            labels=np.broadcast_to(episode[:, None], (batch_size, T)).copy(),
            source_index=np.broadcast_to(np.where(t >= PERIOD, t - PERIOD, -1), (batch_size, T)).astype(np.int32),
            image_index=(episode[:, None] * EPISODE_LENGTH + t).astype(np.int32),
            recall_start=self.l,
        )
