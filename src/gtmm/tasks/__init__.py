"""Task registry: the paper's tasks by their command-line names (SPEC section 3)."""

from __future__ import annotations

from gtmm.data.common import ImageDataset
from gtmm.errors import GtmmError
from gtmm.tasks.base import AbstractTask, Batch
from gtmm.tasks.perfect_recall import PerfectRecall

TASKS = {PerfectRecall.name: PerfectRecall}
# Datasets each task draws from; loaders are called lazily so unused data is never read.
TASK_DATASET = {PerfectRecall.name: "mnist"}


def load_dataset(name: str) -> ImageDataset:
    if name == "mnist":
        from gtmm.data.mnist import load_mnist

        return load_mnist()
    raise GtmmError(f"unknown dataset {name!r}")


def make_task(name: str, dataset: ImageDataset | None = None, **params) -> AbstractTask:
    """Build task `name` with its parameters (`l`, `k`); loads its dataset unless one is given."""
    if name not in TASKS:
        raise GtmmError(f"unknown task {name!r}; choose one of: {', '.join(sorted(TASKS))}")
    cls = TASKS[name]
    cls.check_params(**params)  # before touching any data
    if dataset is None:
        dataset = load_dataset(TASK_DATASET[name])
    return cls(dataset, **params)


__all__ = ["AbstractTask", "Batch", "PerfectRecall", "TASKS", "make_task", "load_dataset"]
