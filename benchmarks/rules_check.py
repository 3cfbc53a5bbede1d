"""How often the reader reads a paper photo fully right, on the raw photo and after digitrec.rules
removed its printed rules (for boxes also reading the digits in box order; a page's numbers are
read line by line, its lines found from where the digits read lie).

    python benchmarks/rules_check.py --count 50
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from make_photos import SHEETS, make_photos  # noqa: E402

from digitrec.errors import DigitrecError  # noqa: E402
from digitrec.predict import Reading, default_model, read_image  # noqa: E402
from digitrec.rules import Ruling, line_picture, remove_rules, text_lines  # noqa: E402


def read_or_none(image: Image.Image, loaded) -> Reading | None:
    try:
        return read_image(image, loaded)
    except DigitrecError:
        return None


def in_box_order(reading: Reading, boxes: list[tuple[int, int, int, int]]) -> str:
    """The digits read, in the order of the form boxes their centres fall in (empty boxes skipped)."""
    def box_of(item) -> int:
        x, y = (item.box[0] + item.box[2]) / 2, (item.box[1] + item.box[3]) / 2
        inside = [k for k, (x0, y0, x1, y1) in enumerate(boxes) if x0 <= x <= x1 and y0 <= y <= y1]
        return inside[0] if inside else len(boxes)
    return "".join(str(item.digit) for item in sorted(reading.items, key=box_of))


def in_lines(reading: Reading) -> str:
    """The digits read, line by line (a new line where the next digit's centre, top to bottom, lies
    more than half a digit's height lower), each line left to right, lines joined with a newline."""
    items = sorted(reading.items, key=lambda item: item.box[1] + item.box[3])
    if not items:
        return ""
    middles = np.array([(item.box[1] + item.box[3]) / 2 for item in items])
    height = np.median([item.box[3] - item.box[1] for item in items])
    starts = np.concatenate([[0], np.nonzero(np.diff(middles) > height / 2)[0] + 1, [len(items)]])
    lines = [sorted(items[a:b], key=lambda item: item.box[0]) for a, b in zip(starts[:-1], starts[1:])]
    return "\n".join("".join(str(item.digit) for item in line) for line in lines)


def read_right(reading: Reading | None, truth: str) -> bool:
    return reading is not None and (in_lines(reading) if "\n" in truth else reading.digits) == truth


def read_by_lines(ruling: Ruling, loaded) -> str:
    """The digits of each band rules.text_lines finds, read one band at a time, joined with newlines."""
    found = bool(ruling.lines)  # without rules, the slope is found from the writing
    bands, slope = text_lines(ruling.cleaned, ruling.slope if found else None, ruling.lines if found else None)
    readings = [read_or_none(Image.fromarray(line_picture(ruling.cleaned, band, slope)), loaded) for band in bands]
    return "\n".join(reading.digits for reading in readings if reading is not None)


def main() -> None:
    from digitrec.data import load_dataset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", help="MNIST folder (default: DIGITREC_DATA or the cache)")
    args = parser.parse_args()
    data = load_dataset("mnist", args.data)
    images, labels = data.test_images.numpy(), data.test_labels.numpy()
    loaded = default_model()
    print(f"{'kind':8} {'raw':>6} {'cleaned':>8} {'by lines':>9} {'box order':>10}  (fully right, of {args.count})")
    for kind in ("single", "number", "touching", *SHEETS):  # the plain kinds: nothing lost on them
        raw = cleaned = lined = boxed = 0
        for photo in make_photos(images, labels, kind, args.count, args.seed):
            picture = Image.open(io.BytesIO(photo.data))
            reading = read_or_none(picture, loaded)
            raw += read_right(reading, photo.digits)
            ruling = remove_rules(np.asarray(picture.convert("RGB")))
            reading = read_or_none(Image.fromarray(ruling.cleaned), loaded)
            cleaned += read_right(reading, photo.digits)
            lined += kind == "page" and read_by_lines(ruling, loaded) == photo.digits
            boxed += reading is not None and bool(ruling.boxes) and in_box_order(reading, ruling.boxes) == photo.digits
        order = f"{boxed / args.count:10.0%}" if kind == "boxes" else f"{'':10}"
        lines = f"{lined / args.count:9.0%}" if kind == "page" else f"{'':9}"
        print(f"{kind:8} {raw / args.count:6.0%} {cleaned / args.count:8.0%} {lines} {order}", flush=True)


if __name__ == "__main__":
    main()
