"""The IDX reader against damaged and hostile files: property-based tests and a fuzz run (issue 8).

Every property holds for any input hypothesis can make: the reader returns the data or raises one
DigitrecError, never another exception, never a silently wrong answer from a damaged gzip file, and
never an allocation larger than the bytes that really exist. The suite tries 120 inputs per
property, the same ones every run; DIGITREC_FUZZ_EXAMPLES=N tries N random ones instead, the long
campaign recorded in docs/reliability.md.
"""

from __future__ import annotations

import gzip
import math
import os
import shutil
import tracemalloc
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from conftest import MNIST, require, write_idx, write_idx_dataset
from digitrec.data import FILES, MAX_IDX_BYTES, load_dataset, load_idx
from digitrec.errors import DigitrecError

FUZZ_EXAMPLES = int(os.environ.get("DIGITREC_FUZZ_EXAMPLES") or 0)
fuzz = settings(max_examples=FUZZ_EXAMPLES or 120, deadline=None, derandomize=not FUZZ_EXAMPLES,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
PEAK_LIMIT = 4 << 20  # bytes: what reading a hostile header may cost, whatever size it declares


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("idx")


def header(shape: list[int], type_code: int = 0x08) -> bytes:
    return bytes([0, 0, type_code, len(shape)]) + b"".join(size.to_bytes(4, "big") for size in shape)


def load_bytes(folder: Path, content: bytes) -> torch.Tensor:
    path = folder / "case"
    path.write_bytes(content)
    return load_idx(path)


shapes = st.lists(st.integers(0, 6), min_size=1, max_size=4)


@st.composite
def idx_files(draw) -> tuple[torch.Tensor, bytes]:
    """A valid IDX file of random shape and bytes, raw or gzipped."""
    shape = draw(shapes)
    data = draw(st.binary(min_size=math.prod(shape), max_size=math.prod(shape)))
    tensor = torch.frombuffer(bytearray(data), dtype=torch.uint8).reshape(shape) if data else torch.empty(shape, dtype=torch.uint8)
    content = header(shape) + data
    return tensor, gzip.compress(content, mtime=0) if draw(st.booleans()) else content


@fuzz
@given(idx_files())
def test_a_valid_file_reads_back_exactly(folder, case):
    tensor, content = case
    assert torch.equal(load_bytes(folder, content), tensor)


@fuzz
@given(idx_files(), st.data())
def test_every_truncation_is_one_clear_error(folder, case, data):
    tensor, content = case
    cut = data.draw(st.integers(0, len(content) - 1))
    with pytest.raises(DigitrecError, match="truncated|not an IDX file|damaged gzip") as error:
        load_bytes(folder, content[:cut])
    assert str(folder / "case") in str(error.value)


@fuzz
@given(st.binary(max_size=300))
def test_any_bytes_give_data_or_one_clear_error(folder, content):
    try:
        tensor = load_bytes(folder, content)
    except DigitrecError:
        return
    raw = gzip.decompress(content) if content[:2] == b"\x1f\x8b" else content
    assert tensor.numel() == len(raw) - 4 - 4 * tensor.dim()


@st.composite
def damaged(draw, content: bytes) -> bytes:
    """content with a few bytes overwritten, inserted or removed."""
    damaged = bytearray(content)
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(damaged)))
        operation = draw(st.sampled_from(["overwrite", "insert", "delete"]))
        if operation == "insert" or not damaged:
            damaged.insert(position, draw(st.integers(0, 255)))
        elif operation == "overwrite":
            damaged[min(position, len(damaged) - 1)] = draw(st.integers(0, 255))
        else:
            del damaged[min(position, len(damaged) - 1)]
    return bytes(damaged)


@fuzz
@given(idx_files(), st.data())
def test_damaged_files_give_data_or_one_clear_error(folder, case, data):
    tensor, content = case
    try:
        load_bytes(folder, data.draw(damaged(content)))
    except DigitrecError:
        pass


@fuzz
@given(st.lists(st.integers(1, 60), min_size=1, max_size=3), st.data())
def test_a_damaged_gzip_file_never_reads_as_different_data(folder, shape, data):
    # Raw IDX has no checksum, but gzip's CRC-32 must catch every damaged byte: the data comes back
    # unchanged (a byte gzip ignores, such as its timestamp) or the reader says the file is damaged.
    tensor = torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(len(shape)))
    content = bytearray(gzip.compress(header(shape) + tensor.numpy().tobytes(), mtime=0))
    position = data.draw(st.integers(0, len(content) - 1))
    content[position] ^= data.draw(st.integers(1, 255))
    try:
        loaded = load_bytes(folder, bytes(content))
    except DigitrecError:
        return
    assert torch.equal(loaded, tensor)


@fuzz
@given(st.integers(0, 255).filter(lambda byte: byte != 0), st.binary(min_size=3, max_size=40))
def test_a_wrong_magic_number_says_it_is_not_an_idx_file(folder, first, rest):
    assume(bytes([first]) + rest[:1] != b"\x1f\x8b")
    with pytest.raises(DigitrecError, match="is not an IDX file"):
        load_bytes(folder, bytes([first]) + rest)


@fuzz
@given(st.integers(0, 255).filter(lambda code: code != 0x08), shapes)
def test_an_unsupported_type_code_is_named(folder, type_code, shape):
    with pytest.raises(DigitrecError, match=f"holds IDX type 0x{type_code:02x}"):
        load_bytes(folder, header(shape, type_code) + bytes(math.prod(shape)))


@fuzz
@given(st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=4), st.binary(min_size=1, max_size=64),
       st.booleans())
def test_a_huge_declared_size_never_allocates_it(folder, shape, data, compress):
    content = header(shape) + data
    path = folder / "huge"
    path.write_bytes(gzip.compress(content) if compress else content)
    tracemalloc.start()
    try:
        tensor = load_idx(path)
    except DigitrecError as error:
        size = math.prod(shape)
        reason = ("more than any MNIST-format" if size > MAX_IDX_BYTES else
                  "more data than its header declares" if size < len(data) else "truncated")
        assert reason in str(error)
    else:
        assert tensor.numel() == len(data) == math.prod(shape)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < PEAK_LIMIT, f"reading {len(content)} bytes that declare shape {shape} took {peak:,} bytes"


def peak_memory_of_refusal(path, message: str) -> int:
    """Peak bytes Python allocated while load_idx refused `path` with `message`."""
    tracemalloc.start()
    try:
        with pytest.raises(DigitrecError, match=message):
            load_idx(path)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_full_size_header_on_a_few_bytes_stays_small(folder):
    path = folder / "declares-2GB"
    path.write_bytes(header([2, 1024, 1024, 1023]) + bytes(1000))  # just under MAX_IDX_BYTES
    assert peak_memory_of_refusal(path, "declares 2,145,386,496 bytes of data but it holds 1,000") < PEAK_LIMIT


def test_a_gzip_bomb_longer_than_its_header_is_stopped_early(folder):
    path = folder / "bomb.gz"
    with gzip.open(path, "wb", compresslevel=9) as bomb:  # 10 bytes declared, 64 MB inflated
        bomb.write(header([10]) + bytes(10))
        for _ in range(64):
            bomb.write(bytes(1 << 20))
    assert path.stat().st_size < 1 << 18
    assert peak_memory_of_refusal(path, "more data than its header declares") < PEAK_LIMIT


# --- Whole data sets --------------------------------------------------------------------------

def replace(folder: Path, key: str, tensor: torch.Tensor) -> Path:
    write_idx(folder / f"{FILES[key]}.gz", tensor)
    return folder


@pytest.fixture
def tiny(tmp_path) -> Path:
    return write_idx_dataset(tmp_path / "tiny", train=40, test=20)


@pytest.mark.parametrize("key, tensor, message", [
    ("train_labels", torch.zeros(39), "train-images-idx3-ubyte.gz has 40 images but train-labels-idx1-ubyte.gz has 39"),
    ("test_images", torch.zeros(21, 28, 28), "t10k-images-idx3-ubyte.gz has 21 images but t10k-labels-idx1-ubyte.gz has 20"),
    ("train_images", torch.zeros(40, 32, 32), "holds images of 32x32 pixels; digitrec reads 28x28 images"),
    ("test_images", torch.zeros(20, 1, 1), "holds images of 1x1 pixels"),
    ("train_images", torch.zeros(40, 784), r"must hold images \(N, rows, cols\)"),
    ("test_labels", torch.zeros(20, 1), r"labels \(N,\); found shapes"),
], ids=["fewer-labels", "more-images", "32x32", "1x1", "flat-images", "2d-labels"])
def test_a_data_set_whose_files_disagree_says_how(tiny, key, tensor, message):
    with pytest.raises(DigitrecError, match=message):
        load_dataset("mnist", replace(tiny, key, tensor))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(label=st.integers(10, 255), index=st.integers(0, 19))
def test_a_label_out_of_range_is_named(tmp_path_factory, label, index):
    folder = write_idx_dataset(tmp_path_factory.mktemp("labels"), train=40, test=20)
    labels = torch.arange(20) % 10
    labels[index] = label
    with pytest.raises(DigitrecError, match=f"has label {label}; labels must be 0-9"):
        load_dataset("mnist", replace(folder, "test_labels", labels))


def test_flat_training_images_are_refused_before_training_divides_by_zero(tiny):
    data = load_dataset("mnist", replace(tiny, "train_images", torch.full((40, 28, 28), 7)))
    with pytest.raises(DigitrecError, match="all one flat shade"):
        data.std


def test_a_truncated_copy_of_the_real_mnist_is_one_clear_error(tmp_path):
    require(bool(MNIST), "set DIGITREC_DATA to the folder with the real MNIST")
    copy = tmp_path / "mnist"
    shutil.copytree(MNIST, copy)
    images = copy / f"{FILES['test_images']}.gz"
    images.write_bytes(images.read_bytes()[:600_000])
    with pytest.raises(DigitrecError, match=f"{images} is a damaged gzip file .*download it again"):
        load_dataset("mnist", copy)
