"""Omniglot (Lake et al., 2015) for one-shot recall (paper section 5.3), read straight from its zip archives.

Lookup order (SPEC section 4), in `<data_dir>/omniglot/`:
1. The official archives `images_background.zip` (30 alphabets, 964 characters) and
   `images_evaluation.zip` (20 alphabets, 659 characters), together the 50 alphabets of the paper.
   A missing one is downloaded from github.com/brendenlake/omniglot (python/) when a network exists.
2. Without both, every known archive that is present is used, the official subsets
   `images_background_small1.zip` / `images_background_small2.zip` included, and this is announced
   once. An alphabet found in several archives (the subsets share Greek and Latin, and both are
   part of `images_background.zip`) is read from the first: background, evaluation, small1, small2.
3. No archive at all: an error that says where to put them.

Every archive is verified before use: by the published md5 of the full archives (the values that
torchvision's Omniglot loader checks; no sha256 is published), by sha256 for the subsets (as in the
shared data's SHA256SUMS), and by structure (alphabet and character counts). An archive that fails
is an error naming it; it is never replaced or modified. Nothing is extracted: PNGs are decoded from
the zip in memory (Pillow, which matplotlib requires; matplotlib's reader otherwise), and the
decoded set is kept for the rest of the process. Nothing is written except a download.

Frames: the 105x105 drawings have black ink on white; ink becomes 1 and background 0, the image is
area-averaged to 28x28 and zero-padded to the 32x32 frame (appendix B.1), stored as uint8.

Split: the last three characters (by their number) of every alphabet are held out. The eval split
holds all drawings of the held-out characters, the train split all drawings of the others, so
training never sees a held-out character. Labels index characters over all alphabets and are shared
by both splits; `ImageDataset.class_names[label]` is "Alphabet/characterNN".
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np

from gtmm.data.common import ImageDataset, ImageSplit, announce_once, data_dir, download, pad_to_frame
from gtmm.errors import GtmmError

URL_PREFIXES = [
    "https://github.com/brendenlake/omniglot/raw/master/python/",
    "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/",
]
FULL = ("images_background.zip", "images_evaluation.zip")
# Known archives in the order their alphabets take precedence; sha256 None where none is published.
ARCHIVES = {
    "images_background.zip": {"md5": "68d2efa1b9178cc56df9314c21c6e718", "sha256": None,
                              "alphabets": 30, "characters": 964},
    "images_evaluation.zip": {"md5": "6b91aef0f799c5bb55b94e3f2daec811", "sha256": None,
                              "alphabets": 20, "characters": 659},
    "images_background_small1.zip": {
        "md5": "e704a628b5459e08445c13499850abc4",
        "sha256": "f38eb80f801274ac2b4dff5b24289016bfaba4a7d5bb50deebf27104ad6cb8a4",
        "alphabets": 5, "characters": 136},
    "images_background_small2.zip": {
        "md5": "b75a71a51d3b13f821f212756fe481fd",
        "sha256": "3ccaa407515a8778e5d0861875af38b17e418f301ad5bb3b5a6b65d901a41c7f",
        "alphabets": 5, "characters": 156},
}
HELD_OUT_PER_ALPHABET = 3  # paper section 5.3
DRAWING_SIZE = 105
CHARACTER_SIZE = 28

_loaded: dict[tuple, ImageDataset] = {}


def _checksum_ok(data: bytes, name: str) -> bool:
    sums = ARCHIVES[name]
    if sums["sha256"] is not None and hashlib.sha256(data).hexdigest() == sums["sha256"]:
        return True
    return hashlib.md5(data).hexdigest() == sums["md5"]


def _index(data: bytes, path: Path, name: str) -> dict[str, dict[str, list[str]]]:
    """alphabet -> character -> PNG member names, checked against the archive's known structure."""
    try:
        members = zipfile.ZipFile(io.BytesIO(data)).namelist()
    except zipfile.BadZipFile as e:
        raise GtmmError(f"Omniglot archive {path} is not a valid zip ({e}); replace it") from None
    tree: dict[str, dict[str, list[str]]] = {}
    top = name.removesuffix(".zip")
    for member in members:
        parts = PurePosixPath(member).parts
        if member.endswith(".png") and len(parts) == 4 and parts[0] == top:
            tree.setdefault(parts[1], {}).setdefault(parts[2], []).append(member)
    n_alpha, n_char = len(tree), sum(len(chars) for chars in tree.values())
    want = ARCHIVES[name]
    if (n_alpha, n_char) != (want["alphabets"], want["characters"]):
        raise GtmmError(f"Omniglot archive {path} holds {n_alpha} alphabets and {n_char} characters, expected"
                        f" {want['alphabets']} and {want['characters']}; replace it")
    return tree


def _verified(path: Path, name: str) -> tuple[bytes, dict[str, dict[str, list[str]]]]:
    data = path.read_bytes()
    if not _checksum_ok(data, name):
        raise GtmmError(f"Omniglot archive {path} fails its checksum (md5 {hashlib.md5(data).hexdigest()});"
                        " delete it so it can be downloaded again, or replace it with the official file")
    return data, _index(data, path, name)


def _decoder():
    """PNG bytes -> uint8 grey image (0 black, 255 white)."""
    try:
        from PIL import Image

        return lambda b: np.asarray(Image.open(io.BytesIO(b)).convert("L"))
    except ImportError:  # matplotlib reads PNG itself; values in [0, 1], possibly with channels
        import matplotlib.image as mpimg

        def decode(b: bytes) -> np.ndarray:
            a = mpimg.imread(io.BytesIO(b), format="png")
            a = a[..., :3].mean(-1) if a.ndim == 3 else a
            return np.round(a * 255).astype(np.uint8)

        return decode


def area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """`[n_out, n_in]` weights of area averaging: output pixel i covers [i, i + 1) * n_in / n_out."""
    edges = np.arange(n_out + 1) * (n_in / n_out)
    lo, hi, px = edges[:-1, None], edges[1:, None], np.arange(n_in)[None]
    overlap = np.clip(np.minimum(hi, px + 1) - np.maximum(lo, px), 0, None)
    return overlap / (n_in / n_out)


def to_frames(drawings: np.ndarray) -> np.ndarray:
    """uint8 drawings `[N, 105, 105]` (black ink on white) -> uint8 frames `[N, 32, 32]`, ink 255."""
    ink = 1.0 - drawings.astype(np.float32) / 255.0
    w = area_matrix(drawings.shape[1], CHARACTER_SIZE).astype(np.float32)
    small = w @ ink @ w.T  # [N, 28, 28]
    return pad_to_frame(np.round(np.clip(small, 0, 1) * 255).astype(np.uint8))


def _present(folder: Path, allow_download: bool) -> list[str]:
    """Names of the known archives in `folder`, after downloading missing full ones where possible."""
    if allow_download:
        for name in FULL:
            if not (folder / name).exists():
                download([p + name for p in URL_PREFIXES], folder / name, lambda d, n=name: _checksum_ok(d, n))
    return [name for name in ARCHIVES if (folder / name).exists()]


def load_omniglot(root: Path | None = None, allow_download: bool = True) -> ImageDataset:
    """Load Omniglot as 32x32 uint8 frames, three characters per alphabet held out (module docstring)."""
    folder = (root or data_dir()) / "omniglot"
    names = _present(folder, allow_download)
    if not names:
        raise GtmmError(f"no Omniglot archives in {folder} and no network to download them; put images_background.zip"
                        " and images_evaluation.zip from github.com/brendenlake/omniglot (python/) there, or set"
                        " GTMM_DATA")
    key = (str(folder.resolve()), tuple((n, (folder / n).stat().st_size, (folder / n).stat().st_mtime_ns)
                                        for n in names))
    if key not in _loaded:
        _loaded[key] = _read(folder, names)
    dataset = _loaded[key]
    if not all(n in names for n in FULL):
        missing = " and ".join(n for n in FULL if n not in names)
        announce_once(f"Omniglot's full archives are incomplete in {folder} ({missing} missing, no download"
                      f" possible); using {dataset.source}")
    return dataset


def _read(folder: Path, names: list[str]) -> ImageDataset:
    decode = _decoder()
    drawings: dict[str, dict[str, np.ndarray]] = {}  # alphabet -> character -> frames [n, 32, 32]
    used: list[str] = []
    for name in names:
        data, tree = _verified(folder / name, name)
        new = [a for a in sorted(tree) if a not in drawings]
        if not new:
            continue
        used.append(name)
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for alphabet in new:
                drawings[alphabet] = {
                    char: to_frames(np.stack([decode(zf.read(m)) for m in sorted(members)]))
                    for char, members in sorted(tree[alphabet].items())
                }
    images = {"train": [], "eval": []}
    labels = {"train": [], "eval": []}
    class_names = []
    for alphabet, chars in drawings.items():
        n_held = min(HELD_OUT_PER_ALPHABET, len(chars) - 1)  # an alphabet keeps a character for training
        held_out = set(sorted(chars)[len(chars) - n_held:])
        for char in sorted(chars):
            split = "eval" if char in held_out else "train"
            images[split].append(chars[char])
            labels[split].append(np.full(len(chars[char]), len(class_names), np.int32))
            class_names.append(f"{alphabet}/{char}")
    train = ImageSplit(np.concatenate(images["train"]), np.concatenate(labels["train"]))
    ev = ImageSplit(np.concatenate(images["eval"]), np.concatenate(labels["eval"]))
    source = (f"Omniglot {' + '.join(used)} in {folder}: {len(drawings)} alphabets, {len(class_names)} characters;"
              f" the last {HELD_OUT_PER_ALPHABET} characters of each alphabet ({len(np.unique(ev.labels))} characters,"
              f" {len(ev)}"
              f" drawings) held out for evaluation, {len(train)} drawings for training")
    return ImageDataset("omniglot", train, ev, source, tuple(class_names))


def _survey(root: Path | None, names, fetch: bool) -> dict[str, str]:
    """name -> 'ok (path)' for an archive present and verified (a corrupt one is an error, never
    replaced); for one absent, 'missing', or with `fetch` 'downloaded (path)' or 'failed'."""
    folder = (root or data_dir()) / "omniglot"
    report = {}
    for name in names:
        path = folder / name
        if path.exists():
            _verified(path, name)
            report[name] = f"ok ({path})"
        elif not fetch:
            report[name] = "missing"
        else:
            ok = download([p + name for p in URL_PREFIXES], path, lambda d, n=name: _checksum_ok(d, n))
            report[name] = f"downloaded ({path})" if ok else "failed"
    return report


def verify_omniglot(root: Path | None = None) -> dict[str, str]:
    """Check every known Omniglot archive present in the data directory; name -> 'ok (...)' or 'missing'."""
    return _survey(root, ARCHIVES, fetch=False)


def download_omniglot(root: Path | None = None) -> dict[str, str]:
    """Fetch the two full archives (`FULL`) into the data directory ahead of time, as
    `download_mnist`; the 5-alphabet subsets are not fetched (the full archives hold them)."""
    return _survey(root, FULL, fetch=True)
