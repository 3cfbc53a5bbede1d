"""Pictures of MNIST test digits as people make them: the evaluation set for reading real pictures.

Each picture is dark ink on paper, scaled up, off-centre, with a thicker or thinner pen, uneven
light, blur, sensor noise and JPEG compression; numbers have 2-8 digits with uneven gaps, sizes and
baselines, and `touching` ones 2-4 digits, two of which are written into each other. Every picture
comes from its own seed, so a picture is the same whatever --count is.

    python benchmarks/make_photos.py --out photos --count 200
writes photos/single-00000.jpg ..., photos/number-00000.jpg ..., photos/touching-00000.jpg ... and
photos/labels.csv (file,digits).
"""

from __future__ import annotations

import argparse
import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

KINDS = {"single": 1, "number": 2, "touching": 3}
LAYOUT_SCALE = 4  # ink pixels per MNIST pixel where numbers are laid out


@dataclass
class Photo:
    data: bytes  # the encoded picture, as a user would upload it
    digits: str  # the truth, left to right
    indices: list[int]  # which MNIST test images it shows
    kind: str
    suffix: str


def ink_crop(image28: np.ndarray) -> np.ndarray:
    """An MNIST digit (uint8, white on black) as ink amounts 0..1, cropped to its ink."""
    rows, columns = np.nonzero(image28)
    return image28[rows.min():rows.max() + 1, columns.min():columns.max() + 1].astype(np.float32) / 255


def lay_out(digits: list[np.ndarray], rng: np.random.Generator, touching: int | None = None) -> np.ndarray:
    """Digits side by side, LAYOUT_SCALE ink pixels to an MNIST pixel, with uneven gaps, sizes and
    baselines; digit `touching` (an index) is written into the one before it, their boxes overlapping
    by 1-3 MNIST pixels. Each digit is enlarged once, from MNIST, so no resizing at 28 px blurs it first."""
    placed, x, margin = [], 0, 2 * LAYOUT_SCALE
    for index, digit in enumerate(digits):
        scale = LAYOUT_SCALE * rng.uniform(0.85, 1.15)
        size = (max(1, round(digit.shape[1] * scale)), max(1, round(digit.shape[0] * scale)))
        resized = np.asarray(Image.fromarray(digit).resize(size, Image.Resampling.BICUBIC)).clip(0, 1)
        if index > 0:
            x += LAYOUT_SCALE * int(rng.integers(-3, 0) if index == touching else rng.integers(2, 10))
        baseline = LAYOUT_SCALE * int(rng.integers(-3, 4))
        placed.append((resized, x, baseline))
        x += resized.shape[1]
    # A raised digit (positive baseline) sits higher: its bottom edge is at -baseline.
    highest = min(-baseline - image.shape[0] for image, _, baseline in placed)
    lowest = max(-baseline for _, _, baseline in placed)
    canvas = np.zeros((lowest - highest + 2 * margin, x + 2 * margin), np.float32)
    for image, left, baseline in placed:
        y, x0 = margin + (-baseline - image.shape[0]) - highest, margin + left
        region = canvas[y:y + image.shape[0], x0:x0 + image.shape[1]]
        np.maximum(region, image, out=region)
    return canvas


def photograph(ink: np.ndarray, size: tuple[int, int], rng: np.random.Generator,
               ink_scale: float = 1.0) -> tuple[bytes, str]:
    """Ink (0..1, `ink_scale` pixels to an MNIST pixel) scaled into a picture of `size` (width,
    height) and photographed."""
    width, height = size
    ink = np.pad(ink, round(2 * ink_scale))  # room for the pen to grow
    fill = rng.uniform(0.45, 0.8)  # how much of the picture the writing spans
    scale = min(width * fill / ink.shape[1], height * fill / ink.shape[0])
    unit = scale * ink_scale  # picture pixels to an MNIST pixel
    scaled_size = (max(1, round(ink.shape[1] * scale)), max(1, round(ink.shape[0] * scale)))
    scaled = np.asarray(Image.fromarray(ink).resize(scaled_size, Image.Resampling.BICUBIC)).clip(0, 1)
    scaled = ndimage.gaussian_filter(scaled, 0.5 * unit)  # a round pen, not MNIST's pixel grid
    scaled = np.clip((scaled - 0.15) * 2, 0, 1)  # solid ink wherever MNIST has some: a pen is not faint
    pen = rng.uniform(-0.35, 0.6) * unit  # pen width change, in picture pixels
    if abs(pen) >= 1:
        footprint = _disk(abs(pen) / 2)
        scaled = (ndimage.grey_dilation if pen > 0 else ndimage.grey_erosion)(scaled, footprint=footprint)
    page = np.zeros((height, width), np.float32)
    left = int(rng.integers(0, width - scaled.shape[1] + 1))  # off-centre anywhere on the page
    top = int(rng.integers(0, height - scaled.shape[0] + 1))
    page[top:top + scaled.shape[0], left:left + scaled.shape[1]] = scaled
    paper, pen_colour = rng.uniform(170, 245), rng.uniform(10, 90)
    rows, columns = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    # Light falling from one side, and a lens darkening towards the corners, both measured in
    # fractions of the picture's half-diagonal, as a camera sees them.
    reach = np.hypot(width, height) / 2
    across, down = (columns - width / 2) / reach, (rows - height / 2) / reach
    ramp = np.cos(angle) * across + np.sin(angle) * down
    light = 1 + rng.uniform(0, 0.3) * ramp - rng.uniform(0, 0.4) * (across ** 2 + down ** 2)
    picture = light * (paper * (1 - page) + pen_colour * page)
    picture = ndimage.gaussian_filter(picture, rng.uniform(0.3, 1.2) * max(1.0, unit / 8))
    picture += rng.normal(0, rng.uniform(1, 6), picture.shape)
    image = Image.fromarray(picture.clip(0, 255).round().astype(np.uint8))
    if rng.random() < 0.3:
        image = image.convert("RGB")  # a colour photo of grey paper
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=int(rng.integers(60, 96)))
    return buffer.getvalue(), ".jpg"


def _disk(radius: float) -> np.ndarray:
    reach = int(np.ceil(radius))
    y, x = np.mgrid[-reach:reach + 1, -reach:reach + 1]
    return x * x + y * y <= radius * radius + 0.5


def single_photo(images: np.ndarray, labels: np.ndarray, index: int, rng: np.random.Generator) -> Photo:
    side = int(rng.integers(120, 600))
    size = (side, int(side * rng.uniform(0.8, 1.25)))
    data, suffix = photograph(ink_crop(images[index]), size, rng)
    return Photo(data, str(int(labels[index])), [index], "single", suffix)


def number_photo(images: np.ndarray, labels: np.ndarray, rng: np.random.Generator, length: int | None = None,
                 size: tuple[int, int] | None = None, touching: bool = False) -> Photo:
    """A number of `length` digits (default 2-8; 2-4 when two of them touch)."""
    length = length or int(rng.integers(2, 5) if touching else rng.integers(2, 9))
    indices = [int(i) for i in rng.integers(0, len(images), length)]
    pair = int(rng.integers(1, length)) if touching else None
    ink = lay_out([ink_crop(images[i]) for i in indices], rng, pair)
    if size is None:
        height = int(rng.integers(100, 400))
        size = (int(height * ink.shape[1] / ink.shape[0] * rng.uniform(1.1, 1.5)), height)
    data, suffix = photograph(ink, size, rng, LAYOUT_SCALE)
    return Photo(data, "".join(str(int(labels[i])) for i in indices), indices, "number", suffix)


def make_photos(images: np.ndarray, labels: np.ndarray, kind: str, count: int, seed: int = 0) -> list[Photo]:
    """`count` pictures of one kind; picture k depends only on (seed, kind, k)."""
    photos = []
    order = np.random.default_rng(seed).permutation(len(images))  # singles: distinct test digits
    for k in range(count):
        rng = np.random.default_rng([seed, KINDS[kind], k])
        photos.append(single_photo(images, labels, int(order[k % len(order)]), rng) if kind == "single"
                      else number_photo(images, labels, rng, touching=kind == "touching"))
    return photos


def main() -> None:
    from digitrec.data import load_dataset
    from digitrec.errors import write_atomic

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the pictures and labels.csv")
    parser.add_argument("--count", type=int, default=200, help="pictures of each kind (single digits, numbers)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", help="MNIST folder (default: DIGITREC_DATA or the cache)")
    args = parser.parse_args()
    data = load_dataset("mnist", args.data)
    images, labels = data.test_images.numpy(), data.test_labels.numpy()
    rows = []
    for kind in KINDS:
        for k, photo in enumerate(make_photos(images, labels, kind, args.count, args.seed)):
            name = f"{kind}-{k:05d}{photo.suffix}"
            write_atomic(args.out / name, photo.data)
            rows.append((name, photo.digits))
    table = io.StringIO()
    csv.writer(table).writerows([("file", "digits"), *rows])
    write_atomic(args.out / "labels.csv", table.getvalue())
    print(f"wrote {len(rows)} pictures and labels.csv to {args.out}")


if __name__ == "__main__":
    main()
