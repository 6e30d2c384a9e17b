"""The cached rotation-3d dataset: rendered episodes on disk, `$GTMM_DATA/rotation-3d/`.

Rendering needs the `3d` extra (gtmm.data.maze3d); reading the cache needs only NumPy, so a
machine that trains never needs an OpenGL stack. Layout:

    rotation-3d/manifest.json          format, seed, frame size, renderer versions, and per shard:
                                       file, first episode, episode count, SHA-256
    rotation-3d/shard-00000.npz        frames uint8 [n, 30, 3, 32, 32], angles, accelerations

Episode `i` is rendered from seed `(seed, i)` alone, so a dataset is the same however often its
generation was interrupted and continued. Each shard is written atomically and only then entered
in the (atomically rewritten) manifest; a continued generation skips the shards the manifest
lists and whose checksum verifies, and rewrites the others. Readers verify every shard.

Split: every tenth episode (i % 10 == 9) is held out for evaluation, so growing a dataset never
moves an episode from one split to the other.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gtmm._io import check_writable, write_bytes_atomic, write_json_atomic
from gtmm.data.common import TrainEvalSplits
from gtmm.errors import GtmmError

DATASET_NAME = "rotation-3d"
FORMAT = 1
SHARD_EPISODES = 50
EVAL_EVERY = 10  # episode i is held out when i % EVAL_EVERY == EVAL_EVERY - 1


def dataset_dir(root: str | Path | None = None) -> Path:
    from gtmm.data.common import data_dir

    return Path(root) if root is not None else data_dir() / DATASET_NAME


def _generate_hint(episodes: int | str = "N") -> str:
    return f"gtmm data generate-3d --episodes {episodes} (needs pip install -e '.[3d]')"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_manifest(folder: Path) -> dict | None:
    path = folder / "manifest.json"
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
        manifest["shards"]  # noqa: B018
        return manifest
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise GtmmError(f"{path} is damaged ({e}); delete {folder} and regenerate: {_generate_hint()}") from None


def _shard_ok(folder: Path, shard: dict) -> bool:
    path = folder / shard["file"]
    return path.exists() and _sha256(path.read_bytes()) == shard["sha256"]


def generate(episodes: int, root: str | Path | None = None, seed: int = 0, size: int = 32,
             shard_episodes: int = SHARD_EPISODES, progress: bool = True) -> dict:
    """Render episodes 0..episodes-1 into the cache (continuing what is there); returns a summary.

    Raises GtmmError when the folder holds episodes of another seed, size or format.
    """
    import time

    from tqdm.auto import tqdm

    from gtmm.data import maze3d
    from gtmm.tasks.base import check_positive

    check_positive("episodes", episodes)
    check_positive("shard size", shard_episodes)
    folder = dataset_dir(root)
    check_writable(folder)
    settings = {"format": FORMAT, "seed": int(seed), "frame_size": int(size), "length": maze3d.EPISODE_LENGTH,
                "period": maze3d.PERIOD, "shard_episodes": int(shard_episodes)}
    manifest = _read_manifest(folder)
    if manifest is not None:
        diffs = [f"{k} {manifest.get(k)!r} on disk vs {v!r}" for k, v in settings.items() if manifest.get(k) != v]
        if diffs:
            raise GtmmError(f"{folder} holds another rotation-3d dataset ({'; '.join(diffs)}); choose another"
                            f" data directory (GTMM_DATA) or delete it")
    else:
        manifest = {**settings, "renderer": _renderer_versions(), "shards": []}
    done = {s["first"]: s for s in manifest["shards"]}
    starts = range(0, episodes, shard_episodes)
    todo = []
    for first in starts:
        count = min(shard_episodes, episodes - first)
        shard = done.get(first)
        if not (shard and shard["episodes"] >= count and _shard_ok(folder, shard)):
            todo.append((first, count))
    kept = episodes - sum(c for _, c in todo)
    bar = tqdm(total=episodes, initial=kept, disable=not progress, desc="rotation-3d episodes", unit="episode",
               dynamic_ncols=True)
    t0, rendered = time.time(), 0
    try:
        for first, count in todo:
            frames = np.empty((count, maze3d.EPISODE_LENGTH, 3, size, size), np.uint8)
            angles = np.empty((count, maze3d.EPISODE_LENGTH), np.float32)
            accelerations = np.empty(count, np.float32)
            for j in range(count):
                frames[j], world = maze3d.render_episode((int(seed), first + j), size)
                angles[j], accelerations[j] = world.angles, world.acceleration
                rendered += 1
                bar.update(1)
            buf = io.BytesIO()
            np.savez(buf, frames=frames, angles=angles, accelerations=accelerations,
                     episodes=np.arange(first, first + count))
            name = f"shard-{first // shard_episodes:05d}.npz"
            write_bytes_atomic(folder / name, buf.getvalue())
            manifest["shards"] = sorted([s for s in manifest["shards"] if s["first"] != first] + [
                {"file": name, "first": first, "episodes": count, "sha256": _sha256(buf.getvalue())}],
                key=lambda s: s["first"])
            write_json_atomic(folder / "manifest.json", manifest)
    finally:
        bar.close()
        maze3d.release_renderers()  # while EGL can still free the context (not at exit)
    seconds = time.time() - t0
    return {"folder": str(folder), "episodes": episodes, "rendered": rendered, "kept": kept,
            "seconds": round(seconds, 2),
            "episodes_per_second": round(rendered / seconds, 2) if rendered and seconds > 0 else None}


def _renderer_versions() -> dict:
    import os
    from importlib.metadata import PackageNotFoundError, version

    out = {"MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    for package in ("mujoco", "dm-control", "labmaze"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = None
    return out


@dataclass(frozen=True)
class EpisodeSplit:
    frames: np.ndarray  # uint8 [N, T, 3, H, W]
    episodes: np.ndarray  # int [N] episode numbers
    accelerations: np.ndarray  # float [N] rad/step^2

    def __len__(self) -> int:
        return len(self.episodes)


@dataclass(frozen=True)
class EpisodeDataset(TrainEvalSplits):
    """The cached episodes, split into training and evaluation episodes."""

    name: str
    train: EpisodeSplit
    eval: EpisodeSplit
    source: str  # recorded in every run's metadata
    frame_size: int
    length: int

    def split(self, which: str) -> EpisodeSplit:
        return super().split(which)


def load_rotation3d(root: str | Path | None = None) -> EpisodeDataset:
    """Read and verify the cached episodes; a one-line error saying what to run when they are
    missing or damaged."""
    folder = dataset_dir(root)
    manifest = _read_manifest(folder)
    if manifest is None or not manifest["shards"]:
        raise GtmmError(f"no rotation-3d episodes in {folder}; generate them: {_generate_hint(1000)}")
    parts = {"frames": [], "episodes": [], "accelerations": []}
    total = 0
    for shard in manifest["shards"]:
        path = folder / shard["file"]
        hint = f"regenerate it: {_generate_hint(manifest['shards'][-1]['first'] + manifest['shards'][-1]['episodes'])}"
        if not path.exists():
            raise GtmmError(f"{path} is missing; {hint}")
        data = path.read_bytes()
        if _sha256(data) != shard["sha256"]:
            raise GtmmError(f"{path} is damaged (checksum mismatch); {hint}")
        with np.load(io.BytesIO(data)) as npz:
            for key in parts:
                parts[key].append(npz[key][: shard["episodes"]])
        total += shard["episodes"]
    frames = np.concatenate(parts["frames"])
    episodes = np.concatenate(parts["episodes"])
    accelerations = np.concatenate(parts["accelerations"])
    held_out = episodes % EVAL_EVERY == EVAL_EVERY - 1
    if held_out.all() or not held_out.any():
        raise GtmmError(f"{folder} holds {total} episode(s): too few for a training and an evaluation split"
                        f" (every {EVAL_EVERY}th is held out); generate more: {_generate_hint(100)}")
    split = lambda m: EpisodeSplit(frames[m], episodes[m], accelerations[m])  # noqa: E731
    versions = manifest.get("renderer", {})
    source = (f"{total} rotation-3d episodes in {folder} (seed {manifest['seed']}, "
              f"{int((~held_out).sum())} train / {int(held_out.sum())} eval; rendered with mujoco "
              f"{versions.get('mujoco')}, dm-control {versions.get('dm-control')}, labmaze {versions.get('labmaze')})")
    return EpisodeDataset(DATASET_NAME, split(~held_out), split(held_out), source, int(manifest["frame_size"]),
                          int(manifest["length"]))
