"""Fixtures shared by the whole suite: the real MNIST, a quickly trained model, tiny IDX data sets."""

from __future__ import annotations

import gzip
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
import torch

from digitrec.data import FILES, Dataset, load_dataset

MNIST = os.environ.get("DIGITREC_DATA")
CHROMIUM = "/usr/bin/chromium"


def require(present: bool, missing: str) -> None:
    """Skip a test whose piece of the machine is missing here, but fail it in CI (CI set): there `make
    test` has installed every piece, so a missing one is a broken install step, and a skip proves nothing."""
    if present:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{missing}; CI must have it (make test installs it)", pytrace=False)
    pytest.skip(missing)


def write_idx(path: Path, tensor: torch.Tensor, compress: bool = True) -> Path:
    """An IDX file of unsigned bytes: the format's own header, then the raw data."""
    header = bytes([0, 0, 0x08, tensor.dim()]) + b"".join(size.to_bytes(4, "big") for size in tensor.shape)
    payload = header + tensor.to(torch.uint8).contiguous().numpy().tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path


def write_idx_dataset(folder: Path, train: int = 200, test: int = 100, seed: int = 0, compress: bool = True) -> Path:
    """A tiny MNIST-format data set whose classes are learnable: each digit is a bright bar at its own row."""
    generator = torch.Generator().manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", train), ("test", test)):
        labels = torch.arange(count) % 10
        images = torch.randint(0, 40, (count, 28, 28), generator=generator)
        rows = 4 + 2 * labels
        images[torch.arange(count), rows] = 255
        suffix = ".gz" if compress else ""
        write_idx(folder / f"{FILES[f'{split}_images']}{suffix}", images, compress)
        write_idx(folder / f"{FILES[f'{split}_labels']}{suffix}", labels, compress)
    return folder


@pytest.fixture(scope="session")
def mnist() -> Dataset:
    require(bool(MNIST), "set DIGITREC_DATA to the folder with the real MNIST (make test finds ../shared/data/mnist)")
    return load_dataset("mnist", MNIST)


@pytest.fixture(scope="session")
def fast_run(mnist: Dataset, tmp_path_factory) -> Path:
    """A `fast` model trained for a few seconds on 12,000 real images (about 97% test accuracy)."""
    from digitrec.training import make_config, train

    run_dir = tmp_path_factory.mktemp("fast-run")
    train(make_config("fast", train_subset=12000, epochs=1, data_dir=MNIST), run_dir, data=mnist,
          log=lambda line: None, progress=False)
    return run_dir


@pytest.fixture(scope="session")
def quick_model(fast_run: Path):
    """The shipped `best` weights when the package has them, else the quick `fast` run."""
    from digitrec.checkpoint import load_model, pretrained_path

    return load_model("best" if pretrained_path("best") else fast_run)


def picture_of_digits(digits: list[torch.Tensor], size: tuple[int, int] = (600, 200)) -> bytes:
    """A PNG of MNIST digits (28x28 uint8) written in a row, dark ink on light paper, as a person would."""
    from io import BytesIO

    import numpy as np
    from PIL import Image

    width, height = size
    side = min(height * 3 // 4, width // (len(digits) + 1))
    paper = torch.full((height, width), 235, dtype=torch.uint8)
    top = (height - side) // 2
    for index, digit in enumerate(digits):
        ink = torch.from_numpy(np.array(Image.fromarray(255 - digit.numpy()).resize((side, side), Image.Resampling.BILINEAR)))
        left = (index + 1) * width // (len(digits) + 1) - side // 2
        region = paper[top:top + side, left:left + side]
        region.copy_(torch.minimum(region, ink))
    buffer = BytesIO()
    Image.fromarray(paper.numpy()).save(buffer, "PNG")
    return buffer.getvalue()


@contextmanager
def serving(app) -> Iterator[str]:
    """An ASGI app on uvicorn in a background thread, on a free loopback port: yields its base URL."""
    import socket
    import threading
    import time

    import uvicorn

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    if not server.started:
        raise RuntimeError("uvicorn did not start within 30 s")
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        listener.close()
