"""The line reader on photos of numbers: whole numbers read right, beside `digitrec predict`'s cutting reader.

    python benchmarks/read_lines.py [--numbers 500] [--touching 200]

The photos are benchmarks/make_photos.py's `number` (2-8 digits) and `touching` (2-4 digits, two written
into each other) kinds, the same seeds as benchmarks/read_photos.py. Each photo holds one number, so its
line is all of its ink: preprocess_page's line, as predict hands it to the line reader, goes to
line_reading.LineReaderOnnx whole; the cutting reader (read_image with the shipped `best` and
ReadingSettings.whole_lines off) reads the same photo by cutting it into digits; and `digitrec predict`
as it is, which reads a line with a piece too wide for one digit, or a digit read unsurely, with the
line reader too.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_photos import make_photos  # noqa: E402

from digitrec.data import load_dataset  # noqa: E402
from digitrec.errors import DigitrecError  # noqa: E402
from digitrec.inference import default_model  # noqa: E402
from digitrec.line_reading import LineReaderOnnx  # noqa: E402
from digitrec.predict import read_image  # noqa: E402
from digitrec.preprocess import DEFAULT_SETTINGS, ReadingSettings, decode_image, preprocess_page  # noqa: E402


def line_crop(data: bytes) -> np.ndarray | None:
    """The photo's line of writing whole (0..1, white on black), as digitrec.preprocess finds it and
    predict hands it to the line reader; the widest one if it finds several."""
    _, lines = preprocess_page(decode_image(data))
    return max((line.ink for line in lines), key=lambda ink: ink.shape[1]) if lines else None


def read(data: bytes, classifier, settings: ReadingSettings) -> str:
    try:
        return read_image(data, classifier, settings=settings).digits
    except DigitrecError:
        return ""


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
            cuts.append(read(photo.data, cutting, replace(DEFAULT_SETTINGS, whole_lines=False)))
            both.append(read(photo.data, cutting, DEFAULT_SETTINGS))  # what `digitrec predict` answers
        right = {name: np.mean([answer == photo.digits for answer, photo in zip(answers, photos)])
                 for name, answers in (("line reader", lines), ("cutting reader", cuts),
                                       ("digitrec predict (both: ReadingSettings.whole_lines)", both))}
        print(f"{kind}: {count} photos, whole numbers right: " + ", ".join(
            f"{name} {100 * share:.1f}%" for name, share in right.items()))
        wrong = [(photo.digits, line) for photo, line in zip(photos, lines) if line != photo.digits][:8]
        print("  line reader's misreadings (truth, read):", wrong)


if __name__ == "__main__":
    main()
