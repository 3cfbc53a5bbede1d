"""The IDX reader, locating and downloading data sets, and the real MNIST."""

from __future__ import annotations

import gzip
import hashlib

import pytest
import torch

from conftest import write_idx, write_idx_dataset
from digitrec import data as data_module
from digitrec.data import FILES, DatasetInfo, load_dataset, load_idx, locate_dataset, normalize
from digitrec.errors import DigitrecError


@pytest.mark.parametrize("compress", [True, False])
def test_load_idx_round_trips_images_and_labels(tmp_path, compress):
    images = torch.randint(0, 256, (7, 28, 28), dtype=torch.uint8)
    labels = torch.tensor([3, 1, 4, 1, 5, 9, 2], dtype=torch.uint8)
    assert torch.equal(load_idx(write_idx(tmp_path / "images", images, compress)), images)
    assert torch.equal(load_idx(write_idx(tmp_path / "labels", labels, compress)), labels)


def header(dimensions: list[int], type_code: int = 0x08) -> bytes:
    return bytes([0, 0, type_code, len(dimensions)]) + b"".join(d.to_bytes(4, "big") for d in dimensions)


@pytest.mark.parametrize("content, message", [
    (b"", "not an IDX file"),
    (b"PK\x03\x04rest", "not an IDX file"),
    (header([2, 2], type_code=0x0D) + bytes(16), "type 0x0d"),
    (header([2, 2, 2, 2, 2]) + bytes(32), "5 dimensions"),
    (header([10, 28])[:9], "truncated inside its header"),
    (header([10, 28, 28]) + bytes(100), "truncated"),
    (header([2, 2]) + bytes(5), "more data than its header declares"),
    (header([60000, 60000, 60000]), "more than any MNIST-format data set"),
])
def test_load_idx_names_what_is_wrong(tmp_path, content, message):
    for path, payload in ((tmp_path / "raw-idx", content), (tmp_path / "gz-idx.gz", gzip.compress(content))):
        path.write_bytes(payload)
        with pytest.raises(DigitrecError, match=message) as error:
            load_idx(path)
        assert str(path) in str(error.value)


def test_damaged_gzip_is_reported_as_such(tmp_path):
    payload = bytearray(gzip.compress(header([100, 28, 28]) + bytes(range(256)) * 300))
    payload[len(payload) // 2] ^= 0xFF
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(bytes(payload[: len(payload) - 20]))
    with pytest.raises(DigitrecError, match="damaged gzip|truncated"):
        load_idx(path)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(DigitrecError, match="cannot read"):
        load_idx(tmp_path / "nothing-here")


def test_any_folder_with_four_idx_files_is_a_data_set(tmp_path):
    folder = write_idx_dataset(tmp_path / "tiny", train=50, test=20, compress=False)
    data = load_dataset("mnist", folder)
    assert data.train_images.shape == (50, 28, 28) and data.train_images.dtype == torch.uint8
    assert data.test_labels.tolist() == [i % 10 for i in range(20)]
    assert set(data.checksums) == {f"{stem}" for stem in FILES.values()}


def test_folder_missing_files_lists_them(tmp_path):
    folder = write_idx_dataset(tmp_path / "partial")
    (folder / f"{FILES['test_labels']}.gz").unlink()
    with pytest.raises(DigitrecError, match="lacks t10k-labels-idx1-ubyte"):
        load_dataset("mnist", folder)


def test_mismatched_counts_and_bad_labels_are_refused(tmp_path):
    folder = write_idx_dataset(tmp_path / "mismatch")
    write_idx(folder / f"{FILES['train_labels']}.gz", torch.zeros(199))
    with pytest.raises(DigitrecError, match="200 images but .* 199 labels"):
        load_dataset("mnist", folder)
    write_idx(folder / f"{FILES['train_labels']}.gz", torch.full((200,), 12))
    with pytest.raises(DigitrecError, match="label 12; labels must be 0-9"):
        load_dataset("mnist", folder)


def test_lookup_order_environment_then_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cached = write_idx_dataset(tmp_path / "cache" / "digitrec" / "mnist", seed=1)
    monkeypatch.delenv("DIGITREC_DATA", raising=False)
    assert locate_dataset("mnist")["train_images"].parent == cached
    environment = write_idx_dataset(tmp_path / "env", seed=2)
    monkeypatch.setenv("DIGITREC_DATA", str(environment))
    assert locate_dataset("mnist")["train_images"].parent == environment
    explicit = write_idx_dataset(tmp_path / "explicit", seed=3)
    assert locate_dataset("mnist", explicit)["train_images"].parent == explicit


def fake_registry(monkeypatch, source):
    """Register a data set whose 'original files' are the ones in `source`, with their real MD5s."""
    md5 = {key: hashlib.md5((source / f"{stem}.gz").read_bytes()).hexdigest() for key, stem in FILES.items()}
    info = DatasetInfo(name="mnist", classes=tuple("0123456789"), mirrors=("file:///nonexistent/mirror",), md5=md5)
    monkeypatch.setitem(data_module.DATASETS, "mnist", info)


def test_download_tries_mirrors_in_turn_and_verifies_md5(tmp_path, monkeypatch):
    source = write_idx_dataset(tmp_path / "mirror")
    fake_registry(monkeypatch, source)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DIGITREC_DATA", raising=False)
    monkeypatch.setenv("DIGITREC_MIRRORS", f"file:///nonexistent/mirror {source.as_uri()}")
    data = load_dataset("mnist")
    assert data.folder == tmp_path / "cache" / "digitrec" / "mnist"
    assert len(data.train_images) == 200
    assert not list(data.folder.glob("*.tmp")), "downloads are written atomically, no temp files left"


def test_download_refuses_a_file_with_the_wrong_md5(tmp_path, monkeypatch):
    source = write_idx_dataset(tmp_path / "mirror")
    fake_registry(monkeypatch, source)
    write_idx(source / f"{FILES['test_labels']}.gz", torch.ones(100))  # corrupted after the MD5s were taken
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DIGITREC_DATA", raising=False)
    monkeypatch.setenv("DIGITREC_MIRRORS", source.as_uri())
    with pytest.raises(DigitrecError, match="MD5 .* is not the expected"):
        load_dataset("mnist")
    assert not (tmp_path / "cache" / "digitrec" / "mnist" / f"{FILES['test_labels']}.gz").exists()


def test_offline_with_nothing_found_says_which_files_and_where(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DIGITREC_DATA", raising=False)
    monkeypatch.setenv("DIGITREC_MIRRORS", "file:///nonexistent/mirror")
    with pytest.raises(DigitrecError) as error:
        load_dataset("mnist")
    message = str(error.value)
    for stem in FILES.values():
        assert f"{stem}.gz" in message
    assert "--data DIR" in message and "DIGITREC_DATA" in message


def test_unknown_data_set_name(tmp_path):
    with pytest.raises(DigitrecError, match="unknown data set 'kmnist'"):
        load_dataset("kmnist")


def test_real_mnist_is_complete_and_normalised_like_the_lab(mnist):
    assert mnist.train_images.shape == (60000, 28, 28)
    assert mnist.test_images.shape == (10000, 28, 28)
    assert mnist.train_labels.bincount().tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert (mnist.mean, mnist.std) == (0.1307, 0.3081)
    batch = normalize(mnist.test_images[:2], mnist.mean, mnist.std)
    assert batch.shape == (2, 1, 28, 28)
    assert torch.allclose(batch[0, 0, 0, 0], torch.tensor((0 - 0.1307) / 0.3081))
