"""Atomic file writes: a reader never sees a half-written file, a crash never loses the old one."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from gtmm.errors import GtmmError


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_read_umask()  # read once at import: os.umask is process-wide, not thread-safe


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file in the same directory, flush, fsync, then rename over `path`.

    The file gets the permissions a plain `open(path, "w")` would give (0666 less the umask),
    not mkstemp's owner-only 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable across a power cut (where the file system allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def is_atomic_temp(path: str | os.PathLike) -> bool:
    """Whether `path` is a temporary file `write_bytes_atomic` leaves behind when killed mid-write."""
    name = Path(path).name
    return name.startswith(".") and name.endswith(".tmp")


def remove_atomic_temps(folder: str | os.PathLike, prefixes: tuple[str, ...]) -> int:
    """Delete the temporaries a killed writer left in `folder` for files named `prefixes*`; how many."""
    folder, n = Path(folder), 0
    if not folder.is_dir():
        return 0
    for p in folder.iterdir():
        if is_atomic_temp(p) and p.is_file() and any(p.name.startswith("." + pre) for pre in prefixes):
            p.unlink(missing_ok=True)
            n += 1
    return n


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append one JSON line and flush it; readers skip a torn last line (see `read_jsonl`)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()


def repair_jsonl(path: str | os.PathLike) -> bool:
    """Cut a torn last line (one without its newline, left by a killed writer or a full disk) off a
    JSON-lines log before appending to it, so the next record starts on a line of its own. Only
    that fragment is removed, never a complete line; returns whether there was one."""
    path = Path(path)
    if not path.exists():
        return False
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return False
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return False
        # find the end of the last complete line
        end, chunk = size, 1 << 16
        while end > 0:
            start = max(0, end - chunk)
            f.seek(start)
            block = f.read(end - start)
            i = block.rfind(b"\n")
            if i >= 0:
                f.truncate(start + i + 1)
                break
            end = start
        else:
            f.truncate(0)
        f.flush()
        os.fsync(f.fileno())
    return True


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read a JSON-lines log, skipping a torn (unparseable) line left by a killed writer."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def check_writable(folder: str | os.PathLike) -> None:
    """An error, before any data is loaded, when the folder `folder` cannot be created or written."""
    folder = Path(folder)
    place = folder
    while not place.exists() and place != place.parent:
        place = place.parent
    if not place.is_dir():
        raise GtmmError(f"cannot create {folder}: {place} is a file, not a directory; choose another --out")
    if not os.access(place, os.W_OK | os.X_OK):
        raise GtmmError(f"cannot write to {place} (permission denied); choose a writable --out")
    try:  # os.access does not see read-only file systems, nor anything for root: try it
        with tempfile.TemporaryFile(dir=place, prefix=".gtmm-write-test-"):
            pass
    except OSError as e:
        raise GtmmError(f"cannot write to {place} ({e.strerror or e}); choose a writable --out") from None


def check_output_file(path: str | os.PathLike) -> Path:
    """`path` as a file that can be written (a figure's --out), checked before any work: an error
    when it is a directory or its folder cannot be created or written."""
    path = Path(path)
    if path.is_dir():
        raise GtmmError(f"{path} is a directory; --out takes a file name, such as {path / 'figure.png'}")
    check_writable(path.parent)
    return path
