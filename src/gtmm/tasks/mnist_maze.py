"""Navigation in an MNIST map (paper section 5.6, Fig. 13 and 15)."""

from __future__ import annotations

import numpy as np

from gtmm.data.common import ImageDataset
from gtmm.errors import GtmmError
from gtmm.tasks.base import AbstractTask, Batch, check_positive, image_frames

# Actions, in the order of the context's one-hot code: (name, row step, column step).
ACTIONS = (("up", -1, 0), ("down", 1, 0), ("left", 0, -1), ("right", 0, 1))
ARROWS = {"up": "\u2191", "down": "\u2193", "left": "\u2190", "right": "\u2192"}


class MnistMaze(AbstractTask):
    """A `grid` x `grid` map with a different random MNIST digit in every cell, and a random walk of
    `T = l + k` steps over it (the paper: a 4 x 4 grid, 25 steps).

    - The walk starts in a uniformly random cell; each move is drawn uniformly from the moves
      up, down, left, right that stay on the grid ("at boundaries, the action sequence was
      restricted to stay in bounds", Fig. 13). Every step moves.
    - Frame t is the digit of the cell the walk is in at step t.
    - Context `c_t` (size 4) is the one-hot action that brought the walk into step t's cell, and
      all zeros at t = 0. The memory receives c_t together with z_{t-1} before the prior of step
      t, so a model knows where it moved before it sees the frame; actions are never predicted.
    - Phases: generation observes the first `l` steps and generates the last `k` (defaults 13
      and 12: about the first half observed). The revisits that a metric scores are
      `source_index[:, t] >= 0`: the first step in that cell, which may lie in the observed
      prefix (the true digit is known) or in the generated part (consistency with itself).
    - Metadata: `positions` (row, column), `first_visit` (first step in the same cell; t itself
      on a first visit), `source_index` (`first_visit` on revisits, -1 on first visits).
    """

    name = "mnist-maze"
    defaults = {"l": 13, "k": 12, "grid": 4}
    context_size = len(ACTIONS)

    def __init__(self, dataset: ImageDataset, l: int, k: int, grid: int = 4):
        self.l, self.k, self.grid = self.check_params(l, k, grid)
        self.dataset = dataset
        self.length = self.l + self.k
        for split in ("train", "eval"):
            if len(dataset.split(split)) < self.grid**2:
                raise GtmmError(f"a {self.grid}x{self.grid} maze needs {self.grid**2} different images; the {split}"
                                f" split of {dataset.name} has {len(dataset.split(split))}")

    @classmethod
    def check_params(cls, l: int, k: int, grid: int = 4) -> tuple[int, int, int]:
        l, k, grid = check_positive("l", l), check_positive("k", k), check_positive("grid", grid)
        if grid < 2:
            raise GtmmError(f"a {grid}x{grid} grid cannot hold a walk: it has no move that stays in bounds;"
                            " use grid >= 2")
        return l, k, grid

    @property
    def recall_start(self) -> int:
        return self.l

    def _walk(self, rng: np.random.Generator, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Cells `[batch, T, 2]` and actions `[batch, T]` (-1 at t = 0) of random in-bounds walks."""
        T, g = self.length, self.grid
        steps = np.array([(dr, dc) for _, dr, dc in ACTIONS])
        pos = np.empty((batch_size, T, 2), np.int64)
        actions = np.full((batch_size, T), -1, np.int64)
        pos[:, 0] = rng.integers(0, g, size=(batch_size, 2))
        for t in range(1, T):
            nxt = pos[:, t - 1, None, :] + steps[None]  # [batch, 4, 2]
            legal = np.all((nxt >= 0) & (nxt < g), axis=-1)  # [batch, 4]
            # uniform among the legal moves: the j-th legal one, j ~ U{0, ..., n_legal - 1}
            choice = (rng.random(batch_size) * legal.sum(1)).astype(int)
            a = np.argmax(np.cumsum(legal, axis=1) > choice[:, None], axis=1)
            actions[:, t] = a
            pos[:, t] = nxt[np.arange(batch_size), a]
        return pos, actions

    def _sample(self, rng: np.random.Generator, split: str, batch_size: int) -> Batch:
        data = self.dataset.split(split)
        T, g = self.length, self.grid
        # a different image in every cell of each sequence's map
        cell_images = np.stack([rng.choice(len(data), size=g * g, replace=False) for _ in range(batch_size)])
        pos, actions = self._walk(rng, batch_size)
        cell = pos[..., 0] * g + pos[..., 1]  # [batch, T]
        image_index = np.take_along_axis(cell_images, cell, axis=1)
        # first step at which each step's cell was visited
        same = cell[:, :, None] == cell[:, None, :]  # [batch, t, s]: step s in step t's cell
        first_visit = np.argmax(same, axis=2)
        source = np.where(first_visit < np.arange(T), first_visit, -1)
        context = np.zeros((batch_size, T, self.context_size), np.float32)
        b, t = np.nonzero(actions >= 0)
        context[b, t, actions[b, t]] = 1.0
        return Batch(
            frames=image_frames(data, image_index),
            context=context,
            labels=data.labels[image_index].astype(np.int32),
            source_index=source.astype(np.int32),
            image_index=image_index.astype(np.int32),
            recall_start=self.l,
            positions=pos.astype(np.int32),
            first_visit=first_visit.astype(np.int32),
        )
