"""MNIST-format data: the IDX reader, where the files are found, and the download.

A split is loaded once as one uint8 tensor; everything downstream slices it, so no per-sample
Python ever runs during training.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import math
import os
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

from digitrec.config import Augmentation
from digitrec.errors import DigitrecError, write_atomic

IDX_TYPES = {0x08: torch.uint8}  # MNIST-format data sets only use unsigned bytes
IMAGE_SIZE = (28, 28)  # every MNIST-format data set's, and what every model reads
MAX_IDX_BYTES = 2**31  # far above any MNIST-format data set; stops a hostile header's huge allocation
READ_CHUNK = 1 << 20

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    classes: tuple[str, ...]
    mirrors: tuple[str, ...]
    md5: dict[str, str]  # of the original .gz files, checked on download
    system_folders: tuple[str, ...] = ()
    augment: Augmentation = Augmentation.AFFINE  # what `--augment auto` means: handwriting's distortions, or mirror-and-shift


DATASETS = {
    "mnist": DatasetInfo(
        name="mnist",
        classes=tuple(str(digit) for digit in range(10)),
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
        md5={
            "train_images": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train_labels": "d53e105ee54ea40749a09fcbcd1e9432",
            "test_images": "9fb629c4189551a2d022fa330f9573f3",
            "test_labels": "ec29112dd5afa0611ce80d1b7f02629c",
        },
    ),
    "fashion-mnist": DatasetInfo(
        name="fashion-mnist",
        classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        md5={
            "train_images": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train_labels": "25c81989df183df01b3e8a0aad5dffbe",
            "test_images": "bef4ecab320f06d8554ea6380940ec79",
            "test_labels": "bb300cfdad3c16e7a12a480ee83cd310",
        },
        system_folders=("/usr/share/datasets/fashion-mnist",),  # Debian's dataset-fashion-mnist
        augment=Augmentation.FLIP,  # a mirrored shoe is a shoe; a tilted or thicker-lined one is not how the data was made
    ),
}


def own_augmentation(dataset: str | None) -> Augmentation:
    """What `--augment auto` means for a data set; a folder of unknown IDX files counts as handwriting."""
    info = DATASETS.get(dataset or "mnist")
    return info.augment if info else Augmentation.AFFINE


@dataclass(frozen=True)
class Dataset:
    """A whole MNIST-format data set in memory: images (N, H, W) uint8, labels (N,) int64."""

    name: str
    classes: tuple[str, ...]
    folder: Path
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    checksums: dict[str, str]  # file name -> sha256, stored in checkpoints

    @functools.cached_property
    def _pixel_histogram(self) -> torch.Tensor:
        # 256 counts instead of a float copy of every pixel (188 MB for MNIST), computed once.
        return torch.bincount(self.train_images.flatten(), minlength=256).double()

    @property
    def mean(self) -> float:
        """Pixel mean of the training split on [0, 1], rounded as the lab wrote it (MNIST: 0.1307)."""
        counts = self._pixel_histogram
        return round(((counts * torch.arange(256)).sum() / counts.sum()).item() / 255, 4)

    @property
    def std(self) -> float:
        """Sample standard deviation of the training pixels on [0, 1] (MNIST: 0.3081)."""
        counts, values = self._pixel_histogram, torch.arange(256, dtype=torch.float64)
        total = counts.sum()
        mean = (counts * values).sum() / total
        variance = (counts * (values - mean) ** 2).sum() / (total - 1)
        std = round(variance.sqrt().item() / 255, 4)
        if not std > 0:  # also NaN, from a single image
            raise DigitrecError(f"the training images in {self.folder} are all one flat shade (pixel std {std}); "
                                "there is nothing to learn from them")
        return std


def _read_limited(handle, size: int, path: Path) -> bytearray:
    """Read exactly `size` bytes in chunks, so memory grows only with data that really exists."""
    buffer = bytearray()
    while len(buffer) < size:
        chunk = handle.read(min(READ_CHUNK, size - len(buffer)))
        if not chunk:
            raise DigitrecError(f"{path} is truncated: its header declares {size:,} bytes of data "
                                f"but it holds {len(buffer):,}; download it again")
        buffer += chunk
    return buffer


def load_idx(path: str | Path) -> torch.Tensor:
    """Read an IDX file (optionally gzipped) into a tensor, checking magic, dimensions and length."""
    path = Path(path)
    try:
        with open(path, "rb") as raw:
            gzipped = raw.read(2) == b"\x1f\x8b"
        handle = gzip.open(path, "rb") if gzipped else open(path, "rb")
    except OSError as error:
        raise DigitrecError(f"cannot read {path}: {error.strerror or error}") from error
    try:
        with handle:
            magic = handle.read(4)
            if len(magic) < 4 or magic[:2] != b"\x00\x00":
                raise DigitrecError(f"{path} is not an IDX file (bad magic number {magic.hex() or 'empty'}); "
                                    "expected an MNIST-format file such as train-images-idx3-ubyte.gz")
            type_code, dimensions = magic[2], magic[3]
            if type_code not in IDX_TYPES:
                raise DigitrecError(f"{path} holds IDX type 0x{type_code:02x}; only unsigned bytes (0x08) are supported")
            if not 1 <= dimensions <= 4:
                raise DigitrecError(f"{path} declares {dimensions} dimensions; MNIST-format files have 1 to 4")
            header = handle.read(4 * dimensions)
            if len(header) < 4 * dimensions:
                raise DigitrecError(f"{path} is truncated inside its header; download it again")
            shape = [int.from_bytes(header[4 * i:4 * i + 4], "big") for i in range(dimensions)]
            size = math.prod(shape)
            if size > MAX_IDX_BYTES:
                raise DigitrecError(f"{path} declares shape {tuple(shape)} ({size:,} bytes), more than any "
                                    "MNIST-format data set; the file is corrupt")
            data = _read_limited(handle, size, path)
            extra = len(handle.read(READ_CHUNK))
            if extra:
                raise DigitrecError(f"{path} has more data than its header declares for shape {tuple(shape)}; "
                                    "the file is corrupt or not an IDX file")
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise DigitrecError(f"{path} is a damaged gzip file ({error}); download it again") from error
    except OSError as error:
        raise DigitrecError(f"cannot read {path}: {error}") from error
    if size == 0:
        return torch.empty(shape, dtype=torch.uint8)
    return torch.frombuffer(data, dtype=torch.uint8).reshape(shape)


def normalize(images: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """uint8 (N, H, W) -> float (N, 1, H, W), the lab's ToTensor + Normalize on a whole batch at once."""
    return images.unsqueeze(1).float().div_(255).sub_(mean).div_(std)


def cache_folder(name: str = "mnist") -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "digitrec" / name


def _find_file(folder: Path, stem: str) -> Path | None:
    # Both names people use: the LeCun one (train-images-idx3-ubyte) and the dotted one (train-images.idx3-ubyte).
    for name in (stem, stem.replace("-idx", ".idx")):
        for candidate in (folder / f"{name}.gz", folder / name):
            if candidate.is_file():
                return candidate
    return None


def dataset_files(folder: Path) -> dict[str, Path] | None:
    """The four IDX files in `folder`, or None if any is missing."""
    found = {key: _find_file(folder, stem) for key, stem in FILES.items()}
    return None if None in found.values() else found  # type: ignore[return-value]


def missing_data_message(name: str, searched: list[Path]) -> str:
    names = ", ".join(f"{stem}.gz" for stem in FILES.values())
    places = "; ".join(str(folder) for folder in searched) or "nowhere"
    return (f"{name} data not found (looked in: {places}) and it could not be downloaded. "
            f"Put the four files {names} in one folder and pass --data DIR or set DIGITREC_DATA=DIR, "
            f"or copy them to {cache_folder(name)}")


def download(info: DatasetInfo, folder: Path, mirrors: tuple[str, ...] | None = None) -> dict[str, Path]:
    """Fetch the four files into `folder` from the first mirror that has them, checking MD5s.

    Mirrors may be file:// URLs, so the same code serves a local copy where there is no network.
    """
    from tqdm import tqdm

    mirrors = mirrors or tuple(filter(None, os.environ.get("DIGITREC_MIRRORS", "").split())) or info.mirrors
    paths = {}
    for key, stem in FILES.items():
        target = folder / f"{stem}.gz"
        if target.is_file() and _md5(target) == info.md5[key]:
            paths[key] = target
            continue
        problems = []
        for mirror in mirrors:
            url = mirror.rstrip("/") + f"/{stem}.gz"
            try:
                with urllib.request.urlopen(url, timeout=30) as response:
                    total = int(response.headers.get("Content-Length") or 0) or None
                    body = bytearray()
                    with tqdm(total=total, unit="B", unit_scale=True, desc=f"{stem}.gz",
                              disable=None, leave=False) as progress:
                        while chunk := response.read(READ_CHUNK):
                            body += chunk
                            progress.update(len(chunk))
            except (OSError, ValueError) as error:
                problems.append(f"{url}: {getattr(error, 'reason', None) or error}")
                continue
            digest = hashlib.md5(body).hexdigest()
            if digest != info.md5[key]:
                problems.append(f"{url}: MD5 {digest} is not the expected {info.md5[key]}")
                continue
            paths[key] = write_atomic(target, bytes(body))
            break
        else:
            raise DigitrecError(missing_data_message(info.name, [folder]) + ". Download attempts: " + "; ".join(problems))
    return paths


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def locate_dataset(name: str = "mnist", data_dir: str | Path | None = None, allow_download: bool = True) -> dict[str, Path]:
    """Find the four files: --data DIR, then DIGITREC_DATA (MNIST only), system folders, the cache, a download."""
    if name not in DATASETS and data_dir is None:
        raise DigitrecError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)} or pass --data DIR")
    if data_dir is not None:
        folder = Path(data_dir).expanduser()
        if not folder.is_dir():
            raise DigitrecError(f"data folder {folder} does not exist")
        files = dataset_files(folder)
        if files is None:
            missing = [f"{stem}[.gz]" for key, stem in FILES.items() if _find_file(folder, stem) is None]
            raise DigitrecError(f"{folder} lacks {', '.join(missing)}; an MNIST-format folder needs all four IDX files")
        return files
    info = DATASETS[name]
    searched = []
    candidates = [Path(os.environ["DIGITREC_DATA"])] if name == "mnist" and os.environ.get("DIGITREC_DATA") else []
    candidates += [Path(folder) for folder in info.system_folders] + [cache_folder(name)]
    for folder in candidates:
        searched.append(folder)
        if files := dataset_files(folder):
            return files
    if not allow_download:
        raise DigitrecError(missing_data_message(name, searched))
    return download(info, cache_folder(name))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def load_dataset(name: str = "mnist", data_dir: str | Path | None = None, allow_download: bool = True) -> Dataset:
    files = locate_dataset(name, data_dir, allow_download)
    tensors = {key: load_idx(path) for key, path in files.items()}
    for split in ("train", "test"):
        images, labels = tensors[f"{split}_images"], tensors[f"{split}_labels"]
        if images.dim() != 3 or labels.dim() != 1:
            raise DigitrecError(f"{files[f'{split}_images']} must hold images (N, rows, cols) and "
                                f"{files[f'{split}_labels']} labels (N,); found shapes {tuple(images.shape)} "
                                f"and {tuple(labels.shape)}")
        if len(images) != len(labels):
            raise DigitrecError(f"{files[f'{split}_images'].name} has {len(images):,} images but "
                                f"{files[f'{split}_labels'].name} has {len(labels):,} labels; they must match")
        if len(labels) and labels.max().item() > 9:
            raise DigitrecError(f"{files[f'{split}_labels']} has label {labels.max().item()}; labels must be 0-9")
    for key in ("train_images", "test_images"):
        if tuple(tensors[key].shape[1:]) != IMAGE_SIZE:
            raise DigitrecError(f"{files[key]} holds images of {'x'.join(map(str, tensors[key].shape[1:]))} pixels; "
                                "digitrec reads 28x28 images, the size of every MNIST-format data set")
    info = DATASETS.get(name)
    folder = next(iter(files.values())).parent
    return Dataset(
        name=name,
        classes=info.classes if info else tuple(str(i) for i in range(10)),
        folder=folder,
        train_images=tensors["train_images"],
        train_labels=tensors["train_labels"].long(),
        test_images=tensors["test_images"],
        test_labels=tensors["test_labels"].long(),
        checksums={path.name: sha256_file(path) for path in files.values()},
    )
