"""Pictures of MNIST test digits as people make them: the evaluation set for reading real pictures.

Each picture is dark ink on paper, scaled up, off-centre, with a thicker or thinner pen, uneven
light, blur, sensor noise and JPEG compression; numbers have 2-8 digits with uneven gaps, sizes and
baselines, and `touching` ones 2-4 digits, two of which are written into each other. The paper kinds
are in colour, on the paper people write on, photographed slightly turned (up to 5 degrees) and in
perspective: `ruled` (a notebook: light rules, a red margin, digits sitting on a rule), `squared`
(graph paper crossing the digits), `boxes` (a form's row of boxes, one digit a box, or one long box)
and `page` (2-4 numbers one under another, their truth joined with a newline); and paper beyond
those: `graph` (engineering paper, a fine grid with every fifth line heavier), `legal` (a yellow legal
pad with a double margin, 1-3 numbers) and `dotted` (a grid of dots). A sheet's numbers lie
whole inside the photo (a turn that would take ink out of it is drawn again) and a page's numbers
keep a tenth of a digit apart. `small` numbers are cropped tight into pictures 20-63 px high, as a
form's field or a thumbnail is; `framed` numbers show something around their sheet (a table, a white
frame), the sheet turned on it; `turned` numbers were turned 1-10 degrees in an editor, the corners
filled black, white or one colour. Every picture comes from its own seed, so a picture is the same
whatever --count is.

    python benchmarks/make_photos.py --out photos --count 200
writes photos/single-00000.jpg ..., photos/number-00000.jpg ..., photos/touching-00000.jpg ..., one set
for each paper kind, and
photos/labels.csv (file,digits).
"""

from __future__ import annotations

import argparse
import csv
import functools
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

KINDS = {"single": 1, "number": 2, "touching": 3, "ruled": 4, "squared": 5, "boxes": 6, "page": 7,
         "graph": 8, "legal": 9, "dotted": 10, "small": 11, "framed": 12, "turned": 13}
NUMBER_HEIGHTS = (100, 400)  # px: pictures of numbers
SMALL_HEIGHTS = (20, 64)  # px: `small` numbers, cropped tight (a form's field, a thumbnail)
LAYOUT_SCALE = 4  # ink pixels per MNIST pixel where numbers are laid out
MNIST_DIGIT_HEIGHT = 20  # MNIST pixels: its digits were scaled to fit a 20x20 box
# Paper, ink and print as RGB: white, cream, grey and light-blue paper; blue (ballpoint) and black ink;
# notebook rules light blue with a red or pink margin, grids light blue or grey, forms dark or in a
# printer's colour. Rules are 1-3 px, as a phone sees a 0.1-0.3 mm printed line.
PAPERS = np.array([(246, 246, 242), (245, 236, 206), (218, 218, 214), (222, 233, 246)], np.float32)
INKS = np.array([(28, 48, 150), (24, 24, 30)], np.float32)
NOTEBOOK_RULES = np.array([(140, 175, 225), (120, 160, 215), (160, 190, 230)], np.float32)
MARGINS = np.array([(225, 80, 90), (235, 130, 160)], np.float32)
LEGAL_PAPERS = np.array([(250, 238, 160), (246, 232, 140)], np.float32)  # a legal pad's yellows
GRIDS = np.array([(150, 185, 225), (165, 165, 170), (130, 170, 215)], np.float32)
FORM_LINES = np.array([(30, 30, 35), (80, 80, 90), (40, 80, 170), (200, 60, 60), (40, 130, 90), (230, 140, 60)],
                      np.float32)


@dataclass
class Photo:
    data: bytes  # the encoded picture, as a user would upload it
    digits: str  # the truth, left to right
    indices: list[int]  # which MNIST test images it shows
    kind: str
    suffix: str


@dataclass
class Sheet:
    """A page drawn flat, before the camera: where the digits' ink and the printed rules lie."""

    ink: np.ndarray  # (H, W) 0..1, how much of each pixel the pen covers
    printed: np.ndarray  # (H, W, 3) 0..1, how much light the printed rules let through, per colour
    paper: np.ndarray  # RGB
    ink_colour: np.ndarray  # RGB
    unit: float  # picture pixels to an MNIST pixel
    digits: str  # the truth; lines of a page joined with "\n"
    indices: list[int]
    boxes: list[tuple[int, int, int, int]]  # form boxes x0, y0, x1, y1 in reading order (on their walls)


def ink_crop(image28: np.ndarray) -> np.ndarray:
    """An MNIST digit (uint8, white on black) as ink amounts 0..1, cropped to its ink."""
    rows, columns = np.nonzero(image28)
    return image28[rows.min():rows.max() + 1, columns.min():columns.max() + 1].astype(np.float32) / 255


def lay_out(digits: list[np.ndarray], rng: np.random.Generator, touching: int | None = None,
            baseline_jitter: int = 3) -> np.ndarray:
    """Digits side by side, LAYOUT_SCALE ink pixels to an MNIST pixel, with uneven gaps, sizes and
    baselines; digit `touching` (an index) is written into the one before it, their boxes overlapping
    by 1-3 MNIST pixels; baselines vary by up to `baseline_jitter` MNIST pixels. Each digit is
    enlarged once, from MNIST, so no resizing at 28 px blurs it first."""
    placed, x, margin = [], 0, 2 * LAYOUT_SCALE
    for index, digit in enumerate(digits):
        scale = LAYOUT_SCALE * rng.uniform(0.85, 1.15)
        size = (max(1, round(digit.shape[1] * scale)), max(1, round(digit.shape[0] * scale)))
        resized = np.asarray(Image.fromarray(digit).resize(size, Image.Resampling.BICUBIC)).clip(0, 1)
        if index > 0:
            x += LAYOUT_SCALE * int(rng.integers(-3, 0) if index == touching else rng.integers(2, 10))
        baseline = LAYOUT_SCALE * int(rng.integers(-baseline_jitter, baseline_jitter + 1))
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
    scaled = pen_ink(ink, scaled_size, unit, rng)
    page = np.zeros((height, width), np.float32)
    left = int(rng.integers(0, width - scaled.shape[1] + 1))  # off-centre anywhere on the page
    top = int(rng.integers(0, height - scaled.shape[0] + 1))
    page[top:top + scaled.shape[0], left:left + scaled.shape[1]] = scaled
    paper, pen_colour = rng.uniform(170, 245), rng.uniform(10, 90)
    picture = uneven_light(height, width, rng) * (paper * (1 - page) + pen_colour * page)
    image = Image.fromarray(camera_blur_and_noise(picture, unit, rng).clip(0, 255).round().astype(np.uint8))
    if rng.random() < 0.3:
        image = image.convert("RGB")  # a colour photo of grey paper
    return jpeg(image, rng), ".jpg"


def pen_ink(ink: np.ndarray, scaled_size: tuple[int, int], unit: float, rng: np.random.Generator) -> np.ndarray:
    """Ink resized to `scaled_size` (width, height), `unit` picture pixels to an MNIST pixel, as a
    round pen of a random width draws it."""
    scaled = np.asarray(Image.fromarray(ink).resize(scaled_size, Image.Resampling.BICUBIC)).clip(0, 1)
    scaled = ndimage.gaussian_filter(scaled, 0.5 * unit)  # a round pen, not MNIST's pixel grid
    scaled = np.clip((scaled - 0.15) * 2, 0, 1)  # solid ink wherever MNIST has some: a pen is not faint
    pen = rng.uniform(-0.35, 0.6) * unit  # pen width change, in picture pixels
    if abs(pen) >= 1:
        footprint = _disk(abs(pen) / 2)
        scaled = (ndimage.grey_dilation if pen > 0 else ndimage.grey_erosion)(scaled, footprint=footprint)
    return scaled


def uneven_light(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Light falling from one side, and a lens darkening towards the corners, both measured in
    fractions of the picture's half-diagonal, as a camera sees them: a (height, width) factor."""
    rows, columns = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    reach = np.hypot(width, height) / 2
    across, down = (columns - width / 2) / reach, (rows - height / 2) / reach
    ramp = np.cos(angle) * across + np.sin(angle) * down
    return 1 + rng.uniform(0, 0.3) * ramp - rng.uniform(0, 0.4) * (across ** 2 + down ** 2)


def camera_blur_and_noise(picture: np.ndarray, unit: float, rng: np.random.Generator) -> np.ndarray:
    """A grey (H, W) or colour (H, W, 3) picture as a lens blurs it and a sensor adds noise."""
    sigma = rng.uniform(0.3, 1.2) * max(1.0, unit / 8)
    picture = ndimage.gaussian_filter(picture, (sigma, sigma, 0)[:picture.ndim])  # colours are not mixed
    return picture + rng.normal(0, rng.uniform(1, 6), picture.shape)


def jpeg(image: Image.Image, rng: np.random.Generator) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=int(rng.integers(60, 96)))
    return buffer.getvalue()


def enlarged(data: bytes, factor: int = 2, size: tuple[int, int] | None = None) -> bytes:
    """The photo `factor` times as many pixels wide and high (or at `size`), as a phone held closer or a
    finer scan takes it."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    image = image.resize(size or (image.width * factor, image.height * factor), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


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
                 size: tuple[int, int] | None = None, touching: bool = False,
                 heights: tuple[int, int] = NUMBER_HEIGHTS) -> Photo:
    """A number of `length` digits (default 2-8; 2-4 when two of them touch), in a picture `size` or
    `heights` px high."""
    length = length or int(rng.integers(2, 5) if touching else rng.integers(2, 9))
    indices = [int(i) for i in rng.integers(0, len(images), length)]
    pair = int(rng.integers(1, length)) if touching else None
    ink = lay_out([ink_crop(images[i]) for i in indices], rng, pair)
    if size is None:
        height = int(rng.integers(*heights))
        size = (int(height * ink.shape[1] / ink.shape[0] * rng.uniform(1.1, 1.5)), height)
    data, suffix = photograph(ink, size, rng, LAYOUT_SCALE)
    return Photo(data, "".join(str(int(labels[i])) for i in indices), indices, "number", suffix)


# Paper people write on: notebooks, graph paper, forms and pages of several numbers. A sheet is drawn
# flat at picture resolution (so a rule stays 1-3 px), then photographed slightly turned and in
# perspective.

def line_coverage(distance: np.ndarray, thickness: float) -> np.ndarray:
    """How much of a pixel `distance` px from a line's centre an anti-aliased line covers."""
    return np.clip(thickness / 2 + 0.5 - np.abs(distance), 0, 1)


def print_lines(printed: np.ndarray, coverage: np.ndarray, colour: np.ndarray) -> None:
    """Print `coverage` (broadcastable to (H, W)) in `colour` over the sheet: inks multiply."""
    printed *= 1 - coverage[..., None] * (1 - colour / 255)


def rules_at(length: int, positions: np.ndarray, thickness: float) -> np.ndarray:
    """Coverage along one axis of `length` px of lines at `positions` (px)."""
    along = np.arange(length, dtype=np.float32)[:, None]
    return line_coverage(along - positions[None, :], thickness).max(axis=1, initial=0)


def print_rectangle(printed: np.ndarray, box: tuple[int, int, int, int], thickness: float,
                    colour: np.ndarray) -> None:
    x0, y0, x1, y1 = box
    edges = np.zeros(printed.shape[:2], np.float32)
    rows = rules_at(printed.shape[0], np.array([y0, y1], np.float32), thickness)
    columns = rules_at(printed.shape[1], np.array([x0, x1], np.float32), thickness)
    reach = int(np.ceil(thickness / 2))
    edges[:, x0 - reach:x1 + reach + 1] = rows[:, None]
    np.maximum(edges[y0 - reach:y1 + reach + 1], columns[None, :], out=edges[y0 - reach:y1 + reach + 1])
    print_lines(printed, edges, colour)


def number_ink(images: np.ndarray, indices: list[int], digit_height: float,
               rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """A number written `digit_height` px high, and where its digits' bottom lies (px from its top)."""
    laid = np.pad(lay_out([ink_crop(images[i]) for i in indices], rng, baseline_jitter=1), LAYOUT_SCALE)
    scale = digit_height / (MNIST_DIGIT_HEIGHT * LAYOUT_SCALE)
    size = (max(1, round(laid.shape[1] * scale)), max(1, round(laid.shape[0] * scale)))
    # lay_out leaves 2 MNIST pixels under the lowest digit, and the pad adds one more.
    return pen_ink(laid, size, scale * LAYOUT_SCALE, rng), size[1] - 3 * LAYOUT_SCALE * scale


def write(sheet_ink: np.ndarray, ink: np.ndarray, left: int, top: int) -> None:
    """Pen ink onto the sheet with its top-left corner at (left, top), clipped to the sheet."""
    height, width = sheet_ink.shape
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(top + ink.shape[0], height), min(left + ink.shape[1], width)
    region = sheet_ink[y0:y1, x0:x1]
    np.maximum(region, ink[y0 - top:y1 - top, x0 - left:x1 - left], out=region)


def blank_sheet(width: int, height: int, digit_height: float, rng: np.random.Generator, digits: str,
                indices: list[int]) -> Sheet:
    return Sheet(np.zeros((height, width), np.float32), np.ones((height, width, 3), np.float32),
                 PAPERS[rng.integers(len(PAPERS))] * rng.uniform(0.85, 1.0), INKS[rng.integers(len(INKS))].copy(),
                 digit_height / MNIST_DIGIT_HEIGHT, digits, indices, [])


def pick(colours: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return colours[rng.integers(len(colours))]


def number_indices(images: np.ndarray, rng: np.random.Generator, shortest: int, longest: int) -> list[int]:
    return [int(i) for i in rng.integers(0, len(images), int(rng.integers(shortest, longest + 1)))]


def lined_sheet(images: np.ndarray, labels: np.ndarray, rng: np.random.Generator, lines: int,
                ruled: bool = True, legal: bool = False) -> Sheet:
    """`lines` numbers one under another on notebook paper (light rules every 1.1-1.6 digit heights, a
    red margin), each sitting on a rule, sometimes low enough for the rule above to cross it; or on
    plain paper when not `ruled`. A number that would come within a tenth of a digit of the one above
    is pushed down (people do not write one number into another), and every number lies whole inside
    the sheet."""
    height_px = rng.uniform(28, 64)
    pitch = height_px * (rng.uniform(1.1, 1.6) if ruled else rng.uniform(1.6, 2.2))
    numbers = [number_indices(images, rng, 2, 6) for _ in range(lines)]
    written = [number_ink(images, indices, height_px, rng) for indices in numbers]
    margin_x = int(rng.uniform(0.5, 1.5) * height_px)
    text_left = margin_x + int(rng.uniform(0.3, 1.0) * height_px)
    indents = [int(rng.integers(0, height_px)) for _ in written]
    width = text_left + max(indent + ink.shape[1] for indent, (ink, _) in zip(indents, written)) + int(
        rng.uniform(0.5, 2.0) * height_px)
    first = int(rng.integers(1, 3))  # rules above the first number
    offset = rng.uniform(0.2, 0.8) * pitch
    lowness = [rng.uniform(0.3, 0.5) if rng.random() < 0.25 else rng.uniform(-0.1, 0.12) for _ in written]
    tops, clear = [], 0.0
    for line, (ink, bottom) in enumerate(written):
        top = max(offset + pitch * (first + line) + height_px * lowness[line] - bottom, clear)
        tops.append(int(top))
        clear = top + ink.shape[0] + 0.1 * height_px
    height = int(max(clear, offset + pitch * (first + lines)) + rng.uniform(0.6, 1.5) * pitch)
    labels_text = "\n".join("".join(str(int(labels[i])) for i in indices) for indices in numbers)
    sheet = blank_sheet(width, height, height_px, rng, labels_text, [i for indices in numbers for i in indices])
    rule_ys = offset + pitch * np.arange(int((height - offset) / pitch) + 1, dtype=np.float32)
    if ruled:
        print_lines(sheet.printed, rules_at(height, rule_ys, rng.uniform(1, 2.5))[:, None], pick(NOTEBOOK_RULES, rng))
        print_lines(sheet.printed, rules_at(width, np.array([margin_x], np.float32), rng.uniform(1.5, 3))[None, :],
                    pick(MARGINS, rng))
    if legal:  # a legal pad: yellow paper, and a second margin line 3-6 px right of the first
        sheet.paper = pick(LEGAL_PAPERS, rng) * rng.uniform(0.85, 1.0)
        second = np.array([margin_x + rng.uniform(3, 6)], np.float32)
        print_lines(sheet.printed, rules_at(width, second, rng.uniform(1.2, 2.5))[None, :], pick(MARGINS, rng))
    for (ink, _), indent, top in zip(written, indents, tops):
        write(sheet.ink, ink, text_left + indent, top)
    return sheet


def ruled_sheet(images: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> Sheet:
    return lined_sheet(images, labels, rng, 1)


def page_sheet(images: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> Sheet:
    return lined_sheet(images, labels, rng, int(rng.integers(2, 5)), ruled=rng.random() < 0.6)


def squared_sheet(images: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> Sheet:
    """A number on graph paper: light lines both ways every 0.4-0.8 digit heights, crossing it."""
    return grid_sheet(images, labels, rng, "squared")


def graph_sheet(images: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> Sheet:
    """A number on engineering paper: a fine grid every 0.25-0.4 digit heights, every fifth line heavier."""
    return grid_sheet(images, labels, rng, "graph")


def dotted_sheet(images: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> Sheet:
    """A number on dotted paper (a bullet journal's): grey dots every 0.4-0.7 digit heights."""
    return grid_sheet(images, labels, rng, "dotted")


def grid_sheet(images: np.ndarray, labels: np.ndarray, rng: np.random.Generator, kind: str) -> Sheet:
    """A number written over a printed grid of lines (squared, graph) or dots."""
    height_px = rng.uniform(32, 72)
    indices = number_indices(images, rng, 2, 6)
    ink, bottom = number_ink(images, indices, height_px, rng)
    width, height = int(ink.shape[1] * rng.uniform(1.3, 1.8)), int(ink.shape[0] * rng.uniform(1.6, 2.6))
    sheet = blank_sheet(width, height, height_px, rng, "".join(str(int(labels[i])) for i in indices), indices)
    spacing = {"squared": (0.4, 0.8), "graph": (0.25, 0.4), "dotted": (0.4, 0.7)}[kind]
    pitch, thickness, colour = height_px * rng.uniform(*spacing), rng.uniform(1, 2), pick(GRIDS, rng)
    rows, columns = (rng.uniform(0, pitch) + pitch * np.arange(int(length / pitch) + 1, dtype=np.float32)
                     for length in (height, width))
    if kind == "dotted":
        across = np.abs(np.arange(height, dtype=np.float32)[:, None] - rows[None, :]).min(axis=1)
        along = np.abs(np.arange(width, dtype=np.float32)[:, None] - columns[None, :]).min(axis=1)
        print_lines(sheet.printed, line_coverage(np.hypot(across[:, None], along[None, :]), 2 * thickness), colour)
    else:
        for axis, length, positions in ((0, height, rows), (1, width, columns)):
            coverage = rules_at(length, positions, thickness)
            if kind == "graph":  # every fifth line heavier, from one of the first five
                coverage = np.maximum(coverage, rules_at(length, positions[int(rng.integers(5))::5], 2.2 * thickness))
            print_lines(sheet.printed, coverage[:, None] if axis == 0 else coverage[None, :], colour)
    left, top = int(rng.integers(0, width - ink.shape[1] + 1)), int(rng.integers(0, height - ink.shape[0] + 1))
    write(sheet.ink, ink, left, top)
    return sheet


def boxes_sheet(images: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> Sheet:
    """A printed form: a row of adjoining boxes, one digit a box, up to two left empty at the end,
    digits sometimes touching a wall; or, one time in four, one long box around the whole number."""
    height_px = rng.uniform(32, 72)
    indices = number_indices(images, rng, 2, 6)
    box_width, box_height = height_px * rng.uniform(1.05, 1.4), height_px * rng.uniform(1.25, 1.5)
    long_box = rng.random() < 0.25
    if long_box:
        number, _ = number_ink(images, indices, height_px, rng)
        inner = [(number, 0.0, 0.0)]
        box_width = number.shape[1] + rng.uniform(0.2, 0.8) * height_px
    else:  # each digit its own height, centred in its box give or take, some pushed onto a wall
        inner = []
        for i in indices:
            digit = ink_crop(images[i])
            scale = height_px * rng.uniform(0.8, 1.0) / digit.shape[0]
            size = (max(1, round(digit.shape[1] * scale)), max(1, round(digit.shape[0] * scale)))
            shift = rng.uniform(-0.3, 0.3) if rng.random() < 0.3 else rng.uniform(-0.1, 0.1)
            inner.append((pen_ink(np.pad(digit, 2), size, scale, rng), shift, rng.uniform(-0.1, 0.1)))
    count = 1 if long_box else len(indices) + int(rng.integers(0, 3))
    left, top = int(rng.uniform(0.3, 1.5) * height_px), int(rng.uniform(0.4, 1.5) * box_height)
    width = int(left * 2 + count * box_width)
    height = int(top + box_height + rng.uniform(0.4, 1.5) * box_height)
    sheet = blank_sheet(width, height, height_px, rng, "".join(str(int(labels[i])) for i in indices), indices)
    thickness, colour = rng.uniform(1.5, 3), pick(FORM_LINES, rng)
    edges = np.round(left + box_width * np.arange(count + 1)).astype(int)
    sheet.boxes = [(int(x0), top, int(x1), int(top + box_height)) for x0, x1 in zip(edges[:-1], edges[1:])]
    for box in sheet.boxes:
        print_rectangle(sheet.printed, box, thickness, colour)
    for (x0, y0, x1, y1), (ink, shift_x, shift_y) in zip(sheet.boxes, inner):
        centre_x, centre_y = (x0 + x1) / 2 + shift_x * (x1 - x0), (y0 + y1) / 2 + shift_y * (y1 - y0)
        write(sheet.ink, ink, int(centre_x - ink.shape[1] / 2), int(centre_y - ink.shape[0] / 2))
    return sheet


def legal_sheet(images: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> Sheet:
    """1-3 numbers on a legal pad: yellow paper, light rules, a double red margin."""
    return lined_sheet(images, labels, rng, int(rng.integers(1, 4)), legal=True)


SHEETS = {"ruled": ruled_sheet, "squared": squared_sheet, "boxes": boxes_sheet, "page": page_sheet,
          "graph": graph_sheet, "legal": legal_sheet, "dotted": dotted_sheet}


def flat_picture(sheet: Sheet) -> np.ndarray:
    """The sheet as an (H, W, 3) float RGB picture under even light: paper, print, then ink over it."""
    ink_filter = 1 - sheet.ink[..., None] * (1 - sheet.ink_colour / 255)
    return sheet.paper * sheet.printed * ink_filter


def turn_and_tilt(size: tuple[int, int], rng: np.random.Generator) -> tuple[float, ...]:
    """PIL's perspective coefficients for a picture turned by up to 5 degrees and in a mild perspective
    (each corner moved up to 2% of the side), as a phone held over a page sees it."""
    width, height = size
    angle = np.radians(rng.uniform(-5, 5))
    corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float64)
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    centre = np.array([width / 2, height / 2])
    source = (corners - centre) @ turn.T + centre + rng.uniform(-0.02, 0.02, (4, 2)) * [width, height]
    # PIL maps each output pixel (x, y) to the input at ((a x + b y + c) / (g x + h y + 1), ...).
    equations = []
    for (x, y), (u, v) in zip(corners, source):
        equations += [[x, y, 1, 0, 0, 0, -u * x, -u * y], [0, 0, 0, x, y, 1, -v * x, -v * y]]
    return tuple(np.linalg.solve(np.array(equations), source.ravel()))


def photograph_sheet(sheet: Sheet, kind: str, rng: np.random.Generator) -> Photo:
    """The sheet photographed with a phone: turned, in perspective, uneven light, blur, noise, JPEG.
    A turn that would take some of the writing out of the picture is drawn again: the truth must be
    there to be read. What comes in from outside the sheet is paper."""
    flat = Image.fromarray(flat_picture(sheet).clip(0, 255).round().astype(np.uint8))
    ink = Image.fromarray(sheet.ink)
    for _ in range(50):
        coefficients = turn_and_tilt(flat.size, rng)
        shown = np.asarray(ink.transform(ink.size, Image.Transform.PERSPECTIVE, coefficients, Image.Resampling.BILINEAR))
        if shown.sum() >= 0.995 * sheet.ink.sum():
            break
    turned = np.asarray(flat.transform(flat.size, Image.Transform.PERSPECTIVE, coefficients, Image.Resampling.BICUBIC,
                                       fillcolor=tuple(int(c) for c in sheet.paper)), np.float32)
    lit = turned * uneven_light(*turned.shape[:2], rng)[..., None]
    picture = camera_blur_and_noise(lit, sheet.unit, rng)
    image = Image.fromarray(picture.clip(0, 255).round().astype(np.uint8))
    return Photo(jpeg(image, rng), sheet.digits, sheet.indices, kind, ".jpg")


def framed_photo(photo: Photo, rng: np.random.Generator) -> Photo:
    """A photo of a number with something around its sheet: a table (grey to near black) or a white
    frame, 4-15% of the sheet's width or height on each side, the sheet turned up to 5 degrees on it."""
    sheet = Image.open(io.BytesIO(photo.data)).convert("RGB")
    around = tuple(int(v) for v in (rng.uniform(30, 170) if rng.random() < 0.7 else rng.uniform(235, 255)) *
                   rng.uniform(0.9, 1.0, 3))
    turned = sheet.rotate(float(rng.uniform(-5, 5)), Image.Resampling.BICUBIC, expand=True, fillcolor=around)
    margins = (rng.uniform(0.04, 0.15, 4) * np.repeat(sheet.size, 2)).astype(int)
    picture = Image.new("RGB", (turned.width + margins[0] + margins[1], turned.height + margins[2] + margins[3]), around)
    picture.paste(turned, (int(margins[0]), int(margins[2])))
    return Photo(jpeg(picture, rng), photo.digits, photo.indices, "framed", ".jpg")


def turned_photo(photo: Photo, rng: np.random.Generator) -> Photo:
    """A photo of a number turned 1-10 degrees either way in an editor, the corners it opens filled
    black, white or one colour of the editor's (as rotating a picture or deskewing a scan leaves it)."""
    picture = Image.open(io.BytesIO(photo.data)).convert("RGB")
    draw = rng.random()
    fill = (0, 0, 0) if draw < 0.4 else (255, 255, 255) if draw < 0.8 else tuple(int(v) for v in rng.integers(0, 256, 3))
    angle = float(rng.uniform(1, 10) * rng.choice([-1, 1]))
    turned = picture.rotate(angle, Image.Resampling.BICUBIC, expand=True, fillcolor=fill)
    return Photo(jpeg(turned, rng), photo.digits, photo.indices, "turned", ".jpg")


AROUND = {"framed": framed_photo, "turned": turned_photo}  # kinds that are a number's photo, then more


def make_photos(images: np.ndarray, labels: np.ndarray, kind: str, count: int, seed: int = 0) -> list[Photo]:
    """`count` pictures of one kind: make_photo's 0 to count - 1."""
    return [make_photo(images, labels, kind, k, seed) for k in range(count)]


def make_photo(images: np.ndarray, labels: np.ndarray, kind: str, k: int, seed: int = 0) -> Photo:
    """Picture k of one kind; it depends only on (seed, kind, k), so a test can make one alone."""
    rng = np.random.default_rng([seed, KINDS[kind], k])
    if kind == "single":
        order = single_order(seed, len(images))
        return single_photo(images, labels, int(order[k % len(order)]), rng)
    if kind in SHEETS:
        return photograph_sheet(SHEETS[kind](images, labels, rng), kind, rng)
    photo = number_photo(images, labels, rng, touching=kind == "touching",
                         heights=SMALL_HEIGHTS if kind == "small" else NUMBER_HEIGHTS)
    return AROUND[kind](photo, rng) if kind in AROUND else photo


@functools.lru_cache(maxsize=4)
def single_order(seed: int, count: int) -> np.ndarray:
    """The order single-digit photos take the test digits in: each a different one."""
    return np.random.default_rng(seed).permutation(count)


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
