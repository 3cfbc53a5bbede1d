"""Reading photos taken in worse conditions than make_photos draws: the same photos changed after the fact.

    python benchmarks/read_conditions.py [--count 60] [--seed 0] [--no-write]

make_photos' photos (MNIST test digits in ink on paper) are read as they are, and again after one
change a real camera, scanner or editor makes that make_photos does not: half the light, the contrast
faded (an overexposed photo, light print), half or twice the size, more blur, more noise, the colours
inverted. The "as made" column is the baseline: the same photos unchanged, read in the same run. A
condition that reads far fewer right than "as made" is a weakness to look at (docs/predict.md).
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_photos import make_photos  # noqa: E402
from markdown import table, write_section  # noqa: E402
from read_photos import ours  # noqa: E402

from digitrec.data import load_dataset  # noqa: E402
from digitrec.inference import default_model  # noqa: E402

KINDS = ("number", "touching", "ruled", "squared", "boxes", "page")


def _pixels(picture: Image.Image) -> np.ndarray:
    return np.asarray(picture, np.float32)


def _image(pixels: np.ndarray) -> Image.Image:
    return Image.fromarray(pixels.clip(0, 255).round().astype(np.uint8))


def _noisier(picture: Image.Image) -> Image.Image:
    pixels = _pixels(picture)
    return _image(pixels + np.random.default_rng(0).normal(0, 12, pixels.shape))


# Each condition: what it shows, and the change to an RGB photo.
CONDITIONS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "as made": lambda picture: picture,
    "half the light": lambda picture: _image(_pixels(picture) * 0.5),
    "contrast faded to 45%": lambda picture: _image(255 - (255 - _pixels(picture)) * 0.45),
    "half the size": lambda picture: picture.resize((max(1, picture.width // 2), max(1, picture.height // 2)),
                                                    Image.Resampling.BOX),
    "twice the size": lambda picture: picture.resize((picture.width * 2, picture.height * 2), Image.Resampling.BICUBIC),
    "blurred (Gaussian, 1.5 px)": lambda picture: picture.filter(ImageFilter.GaussianBlur(1.5)),
    "noisier (+12 grey levels)": _noisier,
    "inverted": lambda picture: _image(255 - _pixels(picture)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=60, help="photos of each kind")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", help="MNIST folder (default: DIGITREC_DATA or the cache)")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    args = parser.parse_args()
    torch.set_num_threads(1)  # as `digitrec predict` runs
    classifier = default_model()
    data = load_dataset("mnist", args.data)
    images, labels = data.test_images.numpy(), data.test_labels.numpy()
    rows = []
    for kind in KINDS:
        photos = make_photos(images, labels, kind, args.count, args.seed)
        pictures = [Image.open(io.BytesIO(photo.data)).convert("RGB") for photo in photos]
        right = [sum(ours(change(picture), classifier) == photo.digits for picture, photo in zip(pictures, photos))
                 for change in CONDITIONS.values()]
        rows.append([f"{kind} ({len(photos)} photos)"] + [f"{count}" for count in right])
        print(" | ".join(rows[-1]), flush=True)
    body = table(["make_photos kind, seed " + str(args.seed), *CONDITIONS], rows)
    print(body)
    if not args.no_write:
        write_section("read_conditions", "Reading photos in worse conditions (photos read fully right)",
                      body + "\n\nThe same photos in every column; \"as made\" is them unchanged, the baseline.")


if __name__ == "__main__":
    main()
