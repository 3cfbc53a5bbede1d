"""Handwriting that is not MNIST's: digits drawn from pen strokes, in the styles people write.

MNIST's 500 writers were American; the reader is trained on them alone. These digits come from
stroke templates instead, two to four styles a digit (a 1 as a bare stem, with a flag, with a flag
and a foot, or leaning; a 4 closed or open; a 7 with or without a bar across it; a 9 with a straight
or a curved stem), each drawn with its own slant (up to 18 degrees), turn (up to 10), width, pen
(4-14% of the digit's height, a fine liner's to a marker's) and a smooth wobble of its strokes, then put in MNIST's form (the
longest side 20 px, centred by its mass in 28x28) so that make_photos lays them out like MNIST's.

    python benchmarks/drawn_digits.py --out drawn.png   # a sheet of 100 of them, to look at
"""

from __future__ import annotations

import argparse
import math
from dataclasses import replace

import numpy as np
from PIL import Image, ImageDraw

from digitrec.preprocess import DEFAULT_SETTINGS, mnist_style

CANVAS = 112  # px the strokes are drawn on; the digit spans about 0.7 of it
SATURATED = 0.6  # of the darkest pixel, and darker, is full ink in MNIST's form
AS_DRAWN = replace(DEFAULT_SETTINGS, pen_range=(0.0, math.inf))  # mnist_style leaves the pen's width alone
Stroke = list[tuple[float, float]]  # x right, y down; a digit's box is about [0, 1] x [0, 1]


def arc(x: float, y: float, rx: float, ry: float, start: float, end: float, points: int = 24) -> Stroke:
    """Points on an ellipse from `start` to `end` degrees (0 is right, 90 is down)."""
    angles = np.radians(np.linspace(start, end, points))
    return list(zip((x + rx * np.cos(angles)).tolist(), (y + ry * np.sin(angles)).tolist()))


def figure_eight(points: int = 60) -> Stroke:
    turns = np.linspace(0, 2 * np.pi, points)
    return list(zip((0.5 + 0.28 * np.sin(2 * turns)).tolist(), (0.5 - 0.5 * np.cos(turns)).tolist()))


STYLES: dict[int, list[list[Stroke]]] = {  # each digit's styles, each a list of strokes
    0: [[arc(0.5, 0.5, 0.3, 0.48, -90, 275)], [arc(0.5, 0.5, 0.25, 0.48, -100, 265)]],
    1: [[[(0.5, 0.0), (0.5, 1.0)]],
        [[(0.3, 0.22), (0.55, 0.0), (0.55, 1.0)]],
        [[(0.3, 0.22), (0.55, 0.0), (0.55, 1.0)], [(0.3, 1.0), (0.8, 1.0)]],
        [[(0.62, 0.0), (0.42, 1.0)]]],
    2: [[arc(0.5, 0.28, 0.3, 0.28, 190, 360) + [(0.78, 0.38), (0.2, 1.0), (0.85, 1.0)]],
        [arc(0.5, 0.3, 0.3, 0.3, 180, 380) + [(0.2, 1.0), (0.5, 0.9), (0.85, 1.0)]]],
    3: [[arc(0.48, 0.26, 0.28, 0.26, 200, 450) + arc(0.48, 0.74, 0.3, 0.26, 270, 500)],
        [[(0.2, 0.0), (0.8, 0.0), (0.45, 0.42)] + arc(0.48, 0.7, 0.3, 0.3, 270, 500)]],
    4: [[[(0.6, 0.0), (0.15, 0.68), (0.9, 0.68)], [(0.68, 0.25), (0.68, 1.0)]],
        [[(0.2, 0.0), (0.15, 0.6), (0.9, 0.6)], [(0.7, 0.0), (0.7, 1.0)]],
        [[(0.65, 0.0), (0.15, 0.7), (0.9, 0.7)], [(0.65, 0.0), (0.65, 1.0)]]],
    5: [[[(0.8, 0.0), (0.25, 0.0), (0.22, 0.42)] + arc(0.5, 0.68, 0.3, 0.3, 225, 490)],
        [[(0.25, 0.0), (0.22, 0.42)] + arc(0.5, 0.68, 0.3, 0.3, 225, 490), [(0.25, 0.0), (0.8, 0.0)]]],
    6: [[[(0.72, 0.0), (0.4, 0.25), (0.22, 0.62)] + arc(0.5, 0.7, 0.28, 0.29, 180, 540)],
        [arc(0.6, 0.55, 0.38, 0.55, 260, 180) + arc(0.5, 0.72, 0.28, 0.27, 180, 540)]],
    7: [[[(0.15, 0.0), (0.85, 0.0), (0.4, 1.0)]],
        [[(0.15, 0.0), (0.85, 0.0), (0.4, 1.0)], [(0.35, 0.5), (0.8, 0.5)]],
        [[(0.15, 0.15), (0.2, 0.0), (0.85, 0.0), (0.5, 1.0)]]],
    8: [[arc(0.5, 0.25, 0.24, 0.25, 90, 450) + arc(0.5, 0.74, 0.3, 0.26, -90, 270)], [figure_eight()]],
    9: [[arc(0.48, 0.28, 0.28, 0.28, 0, 360), [(0.76, 0.28), (0.74, 1.0)]],
        [arc(0.48, 0.28, 0.28, 0.28, 0, 360) + [(0.76, 0.28), (0.7, 0.7), (0.45, 1.0)]]],
}


def wobble(points: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth (points, 2) displacement along a stroke: a hand's drift, not jitter."""
    along = np.linspace(0, 1, points)[:, None]
    return sum(rng.normal(0, 1, 2) * np.sin(np.pi * frequency * along + rng.uniform(0, np.pi, 2))
               for frequency in (1, 2))


def draw_digit(digit: int, rng: np.random.Generator) -> np.ndarray:
    """One digit in a style drawn at random, uint8 (28, 28) white on black in MNIST's form."""
    strokes = STYLES[digit][rng.integers(len(STYLES[digit]))]
    slant, turn = np.tan(np.radians(rng.uniform(-18, 18))), np.radians(rng.uniform(-10, 10))
    width = rng.uniform(0.4, 0.9) if digit == 1 else rng.uniform(0.55, 0.95)
    drift, pen = rng.uniform(0.01, 0.04), rng.uniform(0.03, 0.1) * CANVAS
    canvas = Image.new("F", (CANVAS, CANVAS), 0.0)
    pencil = ImageDraw.Draw(canvas)
    for stroke in strokes:
        points = np.array(stroke) + drift * wobble(len(stroke), rng)
        x, y = (points[:, 0] - 0.5) * width, points[:, 1] - 0.5
        x = x - slant * y
        x, y = x * np.cos(turn) - y * np.sin(turn), x * np.sin(turn) + y * np.cos(turn)
        path = list(zip((CANVAS / 2 + 0.7 * CANVAS * x).tolist(), (CANVAS / 2 + 0.7 * CANVAS * y).tolist()))
        pencil.line(path, fill=1.0, width=max(1, round(pen)), joint="curve")
        for px, py in (path[0], path[-1]):  # round pen ends
            pencil.ellipse((px - pen / 2, py - pen / 2, px + pen / 2, py + pen / 2), fill=1.0)
    return mnist_form(np.asarray(canvas))


def mnist_form(ink: np.ndarray) -> np.ndarray:
    """Ink (floats 0..1) as MNIST has its digits (preprocess.mnist_style with the pen as drawn, not
    evened into MNIST's range), and dark however thin the pen: where a stroke thinner than a pixel runs
    it is saturated, as MNIST's are, not left the grey that would make a photo of it a pale pencil's."""
    rows, columns = np.flatnonzero(ink.max(axis=1) > 0), np.flatnonzero(ink.max(axis=0) > 0)
    digit = mnist_style(ink[rows[0]:rows[-1] + 1, columns[0]:columns[-1] + 1], AS_DRAWN)
    return (np.clip(digit / (SATURATED * 255), 0, 1) * 255).round().astype(np.uint8)


def drawn_digits(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`count` drawn digits (uint8 (count, 28, 28)) and their labels, 0-9 in turn."""
    rng = np.random.default_rng([seed, 28])
    labels = np.arange(count) % 10
    return np.stack([draw_digit(int(digit), rng) for digit in labels]), labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="drawn.png", help="PNG of 100 drawn digits, ten rows of 0-9")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    images, _ = drawn_digits(100, args.seed)
    sheet = images.reshape(10, 10, 28, 28).transpose(0, 2, 1, 3).reshape(280, 280)
    Image.fromarray(255 - sheet).resize((560, 560), Image.Resampling.NEAREST).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
