"""The Omniglot loader on the official subsets in ../shared/data/omniglot, and on broken data directories."""

import hashlib
import shutil
import zipfile

import numpy as np
import pytest

from gtmm.data import load_omniglot, verify_omniglot
from gtmm.data import omniglot as omniglot_module
from gtmm.errors import GtmmError
from tests.conftest import SHARED_DATA


def test_subsets_load_with_held_out_characters(omniglot):
    # small1 + small2: 8 distinct alphabets (Greek and Latin are in both), 242 characters, 20 drawings each
    assert len(omniglot.class_names) == 242
    assert len({n.split("/")[0] for n in omniglot.class_names}) == 8
    assert len(omniglot.train) + len(omniglot.eval) == 4840
    assert len(omniglot.eval) == 8 * 3 * 20
    assert not set(omniglot.train.labels.tolist()) & set(omniglot.eval.labels.tolist())
    assert "images_background_small1.zip + images_background_small2.zip" in omniglot.source
    # the held-out characters are the last three of each alphabet
    held = sorted(omniglot.class_names[c] for c in np.unique(omniglot.eval.labels))
    assert "Latin/character26" in held and "Latin/character23" not in held
    # 32x32 frames: ink bright on a dark background, 2-pixel empty border from the 28 -> 32 padding
    images = omniglot.train.images
    assert images.shape[1:] == (32, 32) and images.dtype == np.uint8
    assert images[:, :2].max() == 0 and images[:, :, -2:].max() == 0
    assert images.max() == 255 and np.median(images) == 0


def test_scaling_maps_ink_to_one_and_paper_to_zero():
    white = np.full((2, 105, 105), 255, np.uint8)
    assert omniglot_module.to_frames(white).max() == 0
    black = np.zeros((1, 105, 105), np.uint8)
    frame = omniglot_module.to_frames(black)[0]
    assert (frame[2:30, 2:30] == 255).all() and frame.sum() == 255 * 28 * 28
    np.testing.assert_allclose(omniglot_module.area_matrix(105, 28).sum(1), 1.0)


def _subset_copy(tmp_path, omniglot):  # `omniglot` fixture: fails clearly when ../shared/data is absent
    folder = tmp_path / "omniglot"
    folder.mkdir(parents=True)
    shutil.copy(SHARED_DATA / "omniglot" / "images_background_small1.zip", folder)
    return folder / "images_background_small1.zip"


def test_corrupt_archive_is_an_error_and_is_left_alone(tmp_path, omniglot):
    path = _subset_copy(tmp_path, omniglot)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(GtmmError, match="images_background_small1.zip fails its checksum"):
        load_omniglot(tmp_path)
    with pytest.raises(GtmmError, match="checksum"):
        verify_omniglot(tmp_path)
    assert path.read_bytes() == bytes(data)


def test_a_made_up_archive_under_an_official_name_is_refused(tmp_path):
    folder = tmp_path / "omniglot"
    folder.mkdir()
    with zipfile.ZipFile(folder / "images_background.zip", "w") as z:
        z.writestr("images_background/Latin/character01/0001_01.png", b"not a png")
    with pytest.raises(GtmmError, match="images_background.zip fails its checksum"):
        load_omniglot(tmp_path, allow_download=False)


def test_no_archives_is_a_clear_error(tmp_path):
    with pytest.raises(GtmmError, match="no Omniglot archives in .* github.com/brendenlake/omniglot"):
        load_omniglot(tmp_path)


def test_one_subset_alone_is_used_and_announced(tmp_path, omniglot, capsys):
    _subset_copy(tmp_path, omniglot)
    ds = load_omniglot(tmp_path)
    assert len(ds.class_names) == 136 and len(ds.eval) == 5 * 3 * 20
    assert "full archives" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "omniglot").iterdir()) == ["images_background_small1.zip"]


def test_a_download_that_fails_its_checksum_writes_nothing(tmp_path, monkeypatch, omniglot, http_mirror):
    """A loopback mirror serving bad bytes: nothing lands in the data directory; the subset is used."""
    served, url = http_mirror
    for name in omniglot_module.FULL:
        (served / name).write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip, not Omniglot
    monkeypatch.delenv("GTMM_OFFLINE", raising=False)
    monkeypatch.setattr(omniglot_module, "URL_PREFIXES", [url])
    data = tmp_path / "data"
    _subset_copy(data, omniglot)
    ds = load_omniglot(data)
    assert len(ds.class_names) == 136
    assert sorted(p.name for p in (data / "omniglot").iterdir()) == ["images_background_small1.zip"]


def test_loading_leaves_the_shared_data_untouched(omniglot, monkeypatch):
    folder = SHARED_DATA / "omniglot"
    before = {p.name: (p.stat().st_size, p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
              for p in folder.iterdir()}
    monkeypatch.setattr(omniglot_module, "_loaded", {})  # read the archives again, not the process's copy
    load_omniglot(SHARED_DATA)
    verify_omniglot(SHARED_DATA)
    after = {p.name: (p.stat().st_size, p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
             for p in folder.iterdir()}
    assert after == before
