"""Task registry: the paper's tasks by their command-line names (SPEC section 3)."""

from __future__ import annotations

import functools
import os

from gtmm.data.common import ImageDataset
from gtmm.errors import GtmmError
from gtmm.tasks.base import AbstractTask, Batch
from gtmm.tasks.dynamic_dependency import DynamicDependency
from gtmm.tasks.mnist_maze import MnistMaze
from gtmm.tasks.parity_recall import ParityRecall
from gtmm.tasks.perfect_recall import OneShotRecall, PerfectRecall
from gtmm.tasks.rotation_3d import Rotation3D
from gtmm.tasks.similarity_cued_recall import SimilarityCuedRecall

TASKS: dict[str, type[AbstractTask]] = {cls.name: cls for cls in (
    PerfectRecall, ParityRecall, OneShotRecall, DynamicDependency, SimilarityCuedRecall, MnistMaze, Rotation3D)}
# Datasets each task draws from; loaders are called lazily so unused data is never read.
TASK_DATASET = {PerfectRecall.name: "mnist", ParityRecall.name: "mnist", OneShotRecall.name: "omniglot",
                DynamicDependency.name: "mnist", SimilarityCuedRecall.name: "mnist", MnistMaze.name: "mnist",
                Rotation3D.name: "rotation-3d"}


def load_dataset(name: str) -> ImageDataset:
    """The dataset `name` from the data directory, loaded once per process and directory: a report
    over many runs would otherwise re-read (and, offline, re-probe the network for) it per run."""
    from gtmm.data import data_dir

    return _load_dataset(name, str(data_dir()), os.environ.get("GTMM_OFFLINE", ""))


@functools.lru_cache(maxsize=8)
def _load_dataset(name: str, directory: str, offline: str) -> ImageDataset:
    if name == "mnist":
        from gtmm.data.mnist import load_mnist

        return load_mnist()
    if name == "omniglot":
        from gtmm.data.omniglot import load_omniglot

        return load_omniglot()
    if name == "rotation-3d":
        from gtmm.data.rotation3d import load_rotation3d

        return load_rotation3d()
    raise GtmmError(f"unknown dataset {name!r}")


def task_params(name: str, **params) -> dict[str, int]:
    """Task `name`'s parameters: the paper's defaults (`TASKS[name].defaults`) where one is None or
    absent; an error for a parameter the task does not take, or an invalid value."""
    if name not in TASKS:
        raise GtmmError(f"unknown task {name!r}; choose one of: {', '.join(sorted(TASKS))}")
    cls = TASKS[name]
    unknown = sorted(p for p, v in params.items() if v is not None and p not in cls.defaults)
    if unknown:
        raise GtmmError(f"task {name} takes no parameter {', '.join(unknown)}; it takes {', '.join(cls.defaults)}")
    resolved = {**cls.defaults, **{p: v for p, v in params.items() if v is not None}}
    cls.check_params(**resolved)  # before touching any data
    return resolved


def make_task(name: str, dataset: ImageDataset | None = None, **params) -> AbstractTask:
    """Build task `name` (defaults for parameters not given); loads its dataset unless one is given."""
    resolved = task_params(name, **params)
    if dataset is None:
        dataset = load_dataset(TASK_DATASET[name])
    return TASKS[name](dataset, **resolved)


__all__ = ["AbstractTask", "Batch", "DynamicDependency", "MnistMaze", "OneShotRecall", "ParityRecall",
           "PerfectRecall", "Rotation3D", "SimilarityCuedRecall", "TASKS", "TASK_DATASET", "load_dataset", "make_task",
           "task_params"]
