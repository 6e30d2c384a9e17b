"""Shared pieces of the data loaders: the data directory, datasets, deterministic splits, downloads."""

from __future__ import annotations

import os
import socket
import sys
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import platformdirs

from gtmm._io import write_bytes_atomic
from gtmm.errors import GtmmError

FRAME_SIZE = 32  # every network takes 32x32 frames (paper appendix B.1)


def user_cache_root() -> Path:
    """gtmm's folder in the user's cache directory (default data directory, compile cache)."""
    return Path(platformdirs.user_cache_dir("gtmm"))


def data_dir() -> Path:
    """The data directory: `$GTMM_DATA`, else the user's cache directory for gtmm."""
    env = os.environ.get("GTMM_DATA")
    return Path(env).expanduser() if env else user_cache_root()


@dataclass(frozen=True)
class ImageSplit:
    images: np.ndarray  # uint8 [N, 32, 32]
    labels: np.ndarray  # int32 [N]

    def __len__(self) -> int:
        return len(self.labels)

    def by_label(self) -> list[np.ndarray]:
        """Indices of the images of each label, for generators that sample a given class."""
        return [np.flatnonzero(self.labels == c) for c in range(int(self.labels.max()) + 1)]


class TrainEvalSplits:
    """A dataset's `train` and `eval` parts, chosen by name."""

    def split(self, which: str):
        if which not in ("train", "eval"):
            raise GtmmError(f"unknown split {which!r}; use 'train' or 'eval'")
        return self.train if which == "train" else self.eval


@dataclass(frozen=True)
class ImageDataset(TrainEvalSplits):
    """Training and evaluation images, disjoint, with a note of where they came from."""

    name: str
    train: ImageSplit
    eval: ImageSplit
    source: str  # recorded in every run's metadata
    class_names: tuple[str, ...] = ()  # name of each label, where labels are not self-explanatory

    def split(self, which: str) -> ImageSplit:
        return super().split(which)


def pad_to_frame(images: np.ndarray) -> np.ndarray:
    """Zero-pad 28x28 digits to the 32x32 frame of appendix B.1."""
    h, w = images.shape[1:]
    ph, pw = FRAME_SIZE - h, FRAME_SIZE - w
    if ph < 0 or pw < 0:
        raise GtmmError(f"images of {h}x{w} are larger than the {FRAME_SIZE}x{FRAME_SIZE} frame")
    return np.pad(images, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)))


def holdout_split(images: np.ndarray, labels: np.ndarray, every: int = 5) -> tuple[ImageSplit, ImageSplit, str]:
    """Split one set deterministically: image i is held out for evaluation when i % every == 0."""
    idx = np.arange(len(labels))
    ev = idx % every == 0
    note = f"index i % {every} == 0 -> eval ({int(ev.sum())}), others -> train ({int((~ev).sum())})"
    return ImageSplit(images[~ev], labels[~ev]), ImageSplit(images[ev], labels[ev]), note


_announced: set[str] = set()


def announce_once(message: str) -> None:
    """Tell the user something about their data once per process (on stderr)."""
    if message not in _announced:
        _announced.add(message)
        print(f"gtmm: {message}", file=sys.stderr)


def network_available(url: str, timeout: float = 3.0) -> bool:
    """Whether `url`'s host accepts a TCP connection within `timeout` s (never hangs longer)."""
    if os.environ.get("GTMM_OFFLINE"):
        return False
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def download(urls: list[str], dest: Path, check, timeout: float = 30.0) -> bool:
    """Fetch the first mirror whose bytes pass `check(bytes) -> bool`; write `dest` atomically.

    Returns False (and writes nothing) when no mirror is reachable or none passes the check.
    """
    for url in urls:
        if not network_available(url):
            continue
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:
                data = r.read()
        except OSError:
            continue
        if check(data):
            try:
                write_bytes_atomic(dest, data)
            except OSError:
                return False  # a read-only data directory: nothing is written
            return True
    return False
