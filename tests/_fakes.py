"""Test data that needs no renderer or download, importable without tests/conftest.py (which sets
the suite's cheap-compile XLA_FLAGS on import: a benchmark importing it would time level-0 code)."""

import numpy as np


def fake_episode_dataset(episodes: int = 20, length: int = 30, size: int = 32):
    """A rotation-3d dataset of random frames, without rendering (gtmm.data.rotation3d layout)."""
    from gtmm.data.rotation3d import EVAL_EVERY, EpisodeDataset, EpisodeSplit

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (episodes, length, 3, size, size), dtype=np.uint8)
    ids = np.arange(episodes)
    held = ids % EVAL_EVERY == EVAL_EVERY - 1
    split = lambda m: EpisodeSplit(frames[m], ids[m], np.zeros(int(m.sum()), np.float32))  # noqa: E731
    return EpisodeDataset("rotation-3d", split(~held), split(held), "fake episodes", size, length)
