"""The line reader on photos of numbers: whole numbers read right, beside `digitrec predict`'s cutting reader.

    python benchmarks/read_lines.py [--numbers 500] [--touching 200]

The photos are benchmarks/make_photos.py's `number` (2-8 digits) and `touching` (2-4 digits, two written
into each other) kinds, the same seeds as benchmarks/read_photos.py. Each photo holds one number, so its
line is all of its ink: the ink map and pieces of digitrec.preprocess, cut to the pieces' box, go to
line_reading.LineReaderOnnx whole; `digitrec predict` (read_image with the shipped `best`) reads the same
photo by cutting it into digits; and the two together: the cutting reader's answer unless the line
reader reads a different number of digits (a digit lost or split by the cutting), then the line's.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_photos import make_photos  # noqa: E402

from digitrec.data import load_dataset  # noqa: E402
from digitrec.errors import DigitrecError  # noqa: E402
from digitrec.inference import default_model  # noqa: E402
from digitrec.line_reading import LineReaderOnnx  # noqa: E402
from digitrec.predict import read_image  # noqa: E402
from digitrec.preprocess import (STROKE_PIXELS, WORK_SIDE, decode_image, find_pieces, ink_map,  # noqa: E402
                                 pen_width, survey)


def line_crop(data: bytes) -> np.ndarray | None:
    """All the ink of a photo (0..1, white on black) cut to the box of its pieces, as preprocess finds them."""
    gray = decode_image(data)
    paper = survey(gray)
    reduce = max(math.ceil(max(gray.size) / WORK_SIDE), int(pen_width(gray, paper) // STROKE_PIXELS))
    work = gray.reduce(reduce) if reduce > 1 else gray
    ink, noise, sample = ink_map(np.asarray(work, dtype=np.float32) / 255, paper)
    found = find_pieces(ink, noise, sample)
    if found is None:
        return None
    labels, pieces, low, level = found
    x0, y0 = min(p.box[0] for p in pieces), min(p.box[1] for p in pieces)
    x1, y1 = max(p.box[2] for p in pieces), max(p.box[3] for p in pieces)
    kept = np.isin(labels[y0:y1, x0:x1], [label for piece in pieces for label in piece.labels])
    return np.where(kept, np.clip((ink[y0:y1, x0:x1] - low) / max(level - low, 1e-6), 0, 1), 0).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--numbers", type=int, default=500)
    parser.add_argument("--touching", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", help="MNIST folder (default: DIGITREC_DATA or the cache)")
    args = parser.parse_args()
    data = load_dataset("mnist", args.data)
    images, labels = data.test_images.numpy(), data.test_labels.numpy()
    reader, cutting = LineReaderOnnx(threads=1), default_model()
    for kind, count in (("number", args.numbers), ("touching", args.touching)):
        photos = make_photos(images, labels, kind, count, args.seed)
        lines, cuts, both = [], [], []
        for photo in photos:
            crop = line_crop(photo.data)
            lines.append(reader.read(crop).digits if crop is not None else "")
            try:
                cuts.append(read_image(photo.data, cutting).digits)
            except DigitrecError:
                cuts.append("")
            # Both: where they read different numbers of digits, cutting lost or split one; trust the line.
            both.append(lines[-1] if len(lines[-1]) != len(cuts[-1]) else cuts[-1])
        right = {name: np.mean([answer == photo.digits for answer, photo in zip(answers, photos)])
                 for name, answers in (("line reader", lines), ("cutting reader", cuts),
                                       ("line reader where the two count different digits, else cutting", both))}
        print(f"{kind}: {count} photos, whole numbers right: " + ", ".join(
            f"{name} {100 * share:.1f}%" for name, share in right.items()))
        wrong = [(photo.digits, line) for photo, line in zip(photos, lines) if line != photo.digits][:8]
        print("  line reader's misreadings (truth, read):", wrong)


if __name__ == "__main__":
    main()
