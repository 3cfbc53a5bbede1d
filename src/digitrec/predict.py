"""Reading the digits in pictures: preprocessing, then one batch through the model per picture (and one
more for a wide digit read unsurely, to try it as two digits that touch)."""

from __future__ import annotations

import base64
import functools
import io
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np
from PIL import Image

from digitrec.classifier import Classifier
from digitrec.errors import DigitrecError, UnsupportedInput
from digitrec.line_reading import LineReaderOnnx, line_onnx_path
from digitrec.line_reading import Reading as LineReading  # predict's own Reading is the whole picture's
from digitrec.preprocess import (DEFAULT_SETTINGS, ReadingSettings, Segment, TextLine, decode_image, mnist_style,
                                 preprocess_object, preprocess_page, scale_box)

UNCERTAIN_BELOW = 0.6  # a digit read with less probability than this is flagged; label smoothing caps them near 0.9
STDIN = "-"
DIGITS = tuple(str(digit) for digit in range(10))  # MNIST's classes (data.DATASETS, on the torch side)
LINE_INK = 0.2  # of a line's ink map (0-1): what counts as ink for its digits' columns and rows
# What a folder is searched for: pictures people take, scan and draw. Pillow also registers data
# formats (HDF5, GRIB, EPS...) that are not pictures of digits, so the list is ours.
PICTURE_SUFFIXES = frozenset({".png", ".apng", ".jpg", ".jpeg", ".jpe", ".jfif", ".gif", ".bmp", ".dib", ".webp",
                              ".tif", ".tiff", ".pbm", ".pgm", ".ppm", ".pnm", ".avif", ".qoi", ".tga", ".ico"})


@dataclass
class Item:
    """One digit read: the model's answer, all ten probabilities, and where it was."""

    digit: int
    probability: float
    probabilities: list[float]
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in the picture's pixels
    label: str | None = None  # the class's name, for a model of things other than digits (Fashion-MNIST)

    def likeliest(self, k: int) -> list[tuple[int, float]]:
        ranked = sorted(enumerate(self.probabilities), key=lambda pair: -pair[1])
        return ranked[:k]

    def to_json(self, top_k: int | None = None) -> dict:
        result = {"digit": self.digit, "probability": self.probability, "probabilities": self.probabilities,
                  "box": list(self.box)}
        if self.label is not None:
            result["label"] = self.label
        if top_k:
            result["top"] = [{"digit": digit, "probability": probability} for digit, probability in self.likeliest(top_k)]
        return result


@dataclass
class Line:
    """One line of writing: its digits left to right."""

    digits: str
    confidence: float  # the probability of its least certain digit
    items: list[Item]

    @classmethod
    def of(cls, items: list[Item]) -> Line:
        # The weakest digit, not the product of all: label smoothing caps each near 0.9, so a product
        # would call a sure six-digit reading a coin toss.
        return cls("".join(str(item.digit) for item in items), min(item.probability for item in items), items)

    def to_json(self, top_k: int | None = None) -> dict:
        return {"digits": self.digits, "confidence": self.confidence,
                "items": [item.to_json(top_k) for item in self.items]}


@dataclass
class Reading:
    """All the digits in one picture: its lines top to bottom, each read left to right."""

    lines: list[Line]
    segments: list[Segment]  # what the model saw, one per item, in reading order

    @property
    def digits(self) -> str:
        """Every line's digits, the lines joined with newlines (one line: just its digits)."""
        return "\n".join(line.digits for line in self.lines)

    @property
    def confidence(self) -> float:
        return min(line.confidence for line in self.lines)

    @property
    def items(self) -> list[Item]:
        return [item for line in self.lines for item in line.items]

    @property
    def label(self) -> str | None:
        """The class names read, for a model of things other than digits (None for digits)."""
        labels = [item.label for item in self.items if item.label is not None]
        return " ".join(labels) if labels else None

    @property
    def image28(self) -> list[np.ndarray]:
        """The (28, 28) uint8 images the model read, white on black."""
        return [segment.image for segment in self.segments]

    @property
    def uncertain(self) -> bool:
        return any(item.probability < UNCERTAIN_BELOW for item in self.items)

    def to_json(self, include_inputs: bool = False, top_k: int | None = None) -> dict:
        """The object `digitrec predict --json` prints (less "file").

        `include_inputs` adds each 28x28 input as a base64 PNG; `top_k` the K likeliest digits of each.
        """
        lines = [line.to_json(top_k) for line in self.lines]
        result = {"digits": self.digits, "confidence": self.confidence,
                  "items": [item for line in lines for item in line["items"]], "lines": lines}
        if self.label is not None:
            result["label"] = self.label
        if self.uncertain:
            result["uncertain"] = True
        if include_inputs:  # the same dicts sit in "lines" and "items"
            for item, image in zip(result["items"], self.image28):
                item["input_png"] = _png_base64(image)
        return result

    def describe(self, top_k: int | None = None) -> str:
        """For people: the digits and the confidence, and the runners-up when asked; a picture of several
        lines gets a line of text for each, under a heading."""
        if len(self.lines) == 1:
            return _describe(self.label or self.digits, self.confidence, self.items, top_k)
        return (f"{len(self.lines)} lines  (confidence {self.confidence:.1%})\n" + "\n".join(
            "  " + _describe(line.digits, line.confidence, line.items, top_k) for line in self.lines))


def _describe(text: str, confidence: float, items: list[Item], top_k: int | None) -> str:
    described = f"{text}  (confidence {confidence:.1%})"
    doubtful = [f"{item.digit} at {item.probability:.0%}" for item in items if item.probability < UNCERTAIN_BELOW]
    if doubtful:
        described += "  uncertain: " + ", ".join(doubtful)
    if top_k:
        described += "  top: " + " | ".join(
            " ".join(f"{digit}:{probability:.2f}" for digit, probability in item.likeliest(top_k)) for item in items)
    return described


def _png_base64(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def read_image(source: bytes | str | Path | Image.Image, classifier: Classifier, single: bool = False,
               name: str | None = None, settings: ReadingSettings = DEFAULT_SETTINGS) -> Reading:
    """The digits in a picture (bytes, a path or a decoded image), read left to right.

    A picture with no ink in it raises UnsupportedInput: there is nothing to read. `name` is what
    error messages call the picture (default: its path, or "the upload"). A model of other things
    than digits (Fashion-MNIST) reads one thing per picture, prepared the way its data set was,
    and names it with its class name in `label`. `settings` are the reading's tunable choices.
    """
    image = source if isinstance(source, Image.Image) else decode_image(source, name)
    names = None if tuple(classifier.classes) == DIGITS else classifier.classes
    segments, text = preprocess_page(image, single, settings) if names is None else (preprocess_object(image), [])
    if not segments:
        name = name or (str(source) if isinstance(source, (str, Path)) else "the picture")
        if names:
            raise UnsupportedInput(f"nothing to read in {name}: nothing in it stands out from its background; "
                                   "give a picture of one thing on a plain background")
        raise UnsupportedInput(f"no digits found in {name}: it is blank, or its marks are too faint or too "
                               "small; write the digits darker and larger than any specks around them")
    # Only digits are read whole, and only on the lines preprocess found (none for a picture already
    # in MNIST's form); never under --single, which is one digit by the caller's word. Where lines are
    # read whole, no digit is cut in two: the line reader reads the pairs cuts were for (seeds 0-4 of
    # make_photos: 4 more of 700 touching photos right without cuts, numbers, single digits and paper
    # the same), so cutting is what reads touching digits when it does not run.
    reads_lines = settings.whole_lines and not single and names is None and text and _line_reader()
    if reads_lines:
        probabilities = _classify(segments, classifier)
    else:
        segments, probabilities = _read_segments(segments, classifier, settings.split_margin)
    unsure = {segment.line for segment, row in zip(segments, probabilities) if row.max() < settings.line_unsure}
    # A wide lone piece is read whole only when the digit model is unsure of it: most single digits
    # are that wide (ReadingSettings.line_aspect, lone_unsure).
    pieces = Counter(segment.line for segment in segments)
    wide = {segment.line for segment, row in zip(segments, probabilities) if segment.cuts or (
        (pieces[segment.line] > 1 or row.max() < settings.lone_unsure)
        and segment.box[2] - segment.box[0] > settings.line_aspect * (segment.box[3] - segment.box[1]))}
    whole = wide | unsure if reads_lines else set()
    lines: dict[int, list[tuple[Segment, Item]]] = {}
    for segment, row in zip(segments, probabilities):
        digit = int(row.argmax())
        lines.setdefault(segment.line, []).append((segment, Item(
            digit, round(float(row[digit]), 6), [round(value, 6) for value in row.tolist()], segment.box,
            names[digit] if names else None)))
    for number in whole:
        reading = _line_reader().read(text[number].ink)
        if _takes_whole(lines[number], reading, settings):
            lines[number] = _read_whole_line(text[number], number, reading, settings)
        elif len(reading.digits) > len(lines[number]):
            candidate = _read_whole_line(text[number], number, reading, settings)
            if _confirmed(lines[number], candidate, classifier, settings):
                lines[number] = candidate
    read = [lines[number] for number in sorted(lines)]
    return Reading([Line.of([item for _, item in line]) for line in read], [segment for line in read for segment, _ in line])


def _takes_whole(by_piece: list[tuple[Segment, Item]], whole: LineReading,
                 settings: ReadingSettings = DEFAULT_SETTINGS) -> bool:
    """Whether a line that holds a piece as wide as two digits or one the digit model reads unsurely
    is read as the line reader read it whole (`whole`): where it found more digits there than the
    digit model did on its pieces (`by_piece`: two that touch) and read each of them surely (its least
    sure digit at least ReadingSettings.line_sure) or more surely than the digit model read its least
    sure one; else the digit model's reading stands, which reads a digit on its own more surely. On
    100 photos each of seeds 0 and 1 (make_photos), numbers with two touching digits went from 59%
    and 63% read fully right to 86% and 90% with wide pieces alone, and of the 200 with unsure ones
    too to 92.5% (ReadingSettings.line_unsure); "or more surely" read 370 of seeds 0-3's 400 right,
    not 366, one box photo and one of seed 0's 2,000 single digits fewer, the other kinds the same.
    Taking every such line from the line reader read 1-7 points fewer of the other kinds right, and
    taking its reading of as many digits where it is surer only 0.5 point more."""
    if len(whole.digits) <= len(by_piece):
        return False
    sureness = min(whole.probabilities)
    return sureness >= settings.line_sure or sureness > min(item.probability for _, item in by_piece)


def _confirmed(by_piece: list[tuple[Segment, Item]], whole: list[tuple[Segment, Item]], classifier: Classifier,
               settings: ReadingSettings = DEFAULT_SETTINGS) -> bool:
    """Whether the digit model, reading each digit box of a line the line reader read as more digits
    than it has pieces (`whole`, not sure enough to be taken by _takes_whole), reads the same digits,
    and its least sure of them surely (ReadingSettings.line_sure) or at least as surely as its least
    sure piece (`by_piece`). Two models that agree on a touching pair are right more often than either
    alone (the line reader read "0214" at 0.48 on its 1, the digit model read its pieces "024"); a
    sliver of a digit or a box's wall read as a 1 is read unsurely by the digit model, which keeps
    "044" and "8164" from gaining a 1 (taking every reading it agrees with did). Touching photos of
    seeds 0-1 (make_photos, 400): 385 -> 388 read right; the other nine kinds' 200 photos each of seeds
    0-1 the same, photo by photo."""
    seen = _classify([segment for segment, _ in whole], classifier)
    if (seen.argmax(axis=1) != np.array([item.digit for _, item in whole])).any():
        return False
    sureness = float(seen.max(axis=1).min())
    return sureness >= min(settings.line_sure, min(item.probability for _, item in by_piece))


def digit_columns(ink: np.ndarray, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Each digit's columns [x0, x1) of a line's ink, for the line reader's digits: CTC reads a digit in
    a frame or two near its ink, often ahead of it or in the gap before it, so its spans boxed slivers
    of digits and bare paper. The line's ink falls into runs of columns between gaps; each run holds a
    digit, some more (two that touch: _shares says which), cut where its ink falls deepest near even
    shares of its width. Where the reader read fewer digits than there are runs, its spans."""
    inked = ink.max(axis=0, initial=0) > LINE_INK
    edges = np.flatnonzero(np.diff(np.r_[0, inked.astype(np.int8), 0]))
    runs = list(zip(edges[::2].tolist(), edges[1::2].tolist()))
    if len(spans) < len(runs) or not runs:
        return list(spans)
    shares = _shares(runs, spans)
    depth = valley_depth(ink.sum(axis=0))
    columns = []
    for (x0, x1), share in zip(runs, shares):
        if x1 - x0 < 2 * share:  # too narrow to cut (a thread read as digits): its digits share it
            columns += [(x0, x1)] * share
            continue
        step, cuts = (x1 - x0) / share, []
        for j in range(1, share):  # the deepest column within half a share of each even cut
            low, high = x0 + round((j - 0.5) * step), x0 + round((j + 0.5) * step)
            cuts.append(low + int(np.argmax(depth[low:high])))
        columns += list(zip([x0] + cuts, cuts + [x1]))
    return columns


def _shares(runs: list[tuple[int, int]], spans: list[tuple[int, int]]) -> list[int]:
    """How many of the line reader's digits each run of ink holds: each span's in the run it lies in or
    the next one after it (CTC reads a digit ahead of its ink, not past it), where that gives every run
    a digit; else one each and the rest to the runs widest for their digits."""
    ends = np.array([x1 for _, x1 in runs])
    held = np.minimum(np.searchsorted(ends, [(x0 + x1) / 2 for x0, x1 in spans], side="right"), len(runs) - 1)
    shares = np.bincount(held, minlength=len(runs)).tolist()
    if min(shares) > 0:
        return shares
    shares = [1] * len(runs)
    for _ in range(len(spans) - len(runs)):
        widest = max(range(len(runs)), key=lambda k: (runs[k][1] - runs[k][0]) / shares[k])
        shares[widest] += 1
    return shares


def valley_depth(weight: np.ndarray) -> np.ndarray:
    """How far each column's ink falls below the line's highest on both sides of it: deepest where two
    touching digits meet, shallow at the thin tip of one."""
    left_peak, right_peak = np.maximum.accumulate(weight), np.maximum.accumulate(weight[::-1])[::-1]
    return np.minimum(left_peak, right_peak) - weight


@functools.lru_cache(maxsize=1)
def _line_reader() -> LineReaderOnnx | None:
    """The line reader shipped in the package, opened once; None where it does not ship."""
    return LineReaderOnnx(threads=1) if line_onnx_path() else None


def _read_whole_line(line: TextLine, number: int, reading: LineReading, settings: ReadingSettings
                     ) -> list[tuple[Segment, Item]]:
    """The line as the line reader read it whole (`reading`), each digit with its box and, as the 28x28
    image it shows, its columns of the line in MNIST's style: a reading taken, or one _confirmed
    checks with the digit model."""
    read = []
    for digit, distribution, (x0, x1) in zip(reading.digits, reading.distributions,
                                             digit_columns(line.ink, reading.spans)):
        columns = line.ink[:, x0:x1]
        rows = np.flatnonzero(columns.max(axis=1) > LINE_INK) if columns.size else np.zeros(0, int)
        top, bottom = (int(rows[0]), int(rows[-1]) + 1) if len(rows) else (0, line.ink.shape[0])
        box = scale_box((x0, top, x1, bottom), line.scale, line.box)
        probabilities = [round(value, 6) for value in distribution]
        segment = Segment(mnist_style(columns[top:bottom], settings), box, None, number)
        read.append((segment, Item(int(digit), probabilities[int(digit)], probabilities, box)))
    return read


def _read_segments(segments: list[Segment], classifier: Classifier,
                   split_margin: float) -> tuple[list[Segment], np.ndarray]:
    """The segments read and their probabilities, all in one batch. A wide segment read unsurely gives
    way to the halves of its best cut (two digits that touch) when the model reads both far more surely
    than the whole; its cuts are read in one more batch."""
    probabilities = _classify(segments, classifier)
    read: list[tuple[Segment, np.ndarray]] = []
    for segment, row in zip(segments, probabilities):
        whole = float(row.max())
        unsure = segment.cuts and whole < UNCERTAIN_BELOW
        pair = _best_cut(segment.cuts(), whole, classifier, split_margin) if unsure else None
        read += pair or [(segment, row)]
    return [segment for segment, _ in read], np.stack([row for _, row in read])


def _best_cut(cuts: list[tuple[Segment, Segment]], whole: float, classifier: Classifier,
              split_margin: float) -> list[tuple[Segment, np.ndarray]] | None:
    """The two halves of the cut whose less sure half is surest, with their probabilities, if it beats
    the whole by `split_margin`; else None. No cut with a half read as a 1 is taken: any stroke cut off
    a wide digit reads as a 1 (a flat, open 0 read as 17), so those cuts are too often wrong."""
    if not cuts:
        return None
    probabilities = _classify([half for cut in cuts for half in cut], classifier).reshape(len(cuts), 2, -1)
    sureness = probabilities.max(axis=2).min(axis=1)
    sureness[(probabilities.argmax(axis=2) == 1).any(axis=1)] = 0.0
    best = int(sureness.argmax())
    if float(sureness[best]) <= whole + split_margin:
        return None
    return list(zip(cuts[best], probabilities[best]))


def _classify(segments: list[Segment], classifier: Classifier) -> np.ndarray:
    """Probabilities (N, classes) of the segments' images, in one batch."""
    return np.exp(classifier.log_probabilities(np.stack([segment.image for segment in segments])))


def find_pictures(paths: list[str]) -> Iterator[str]:
    """Each path as given, with folders replaced by the picture files under them (sorted, hidden ones
    skipped). A folder with no pictures is passed on as itself, so reading it reports the problem."""
    for path in paths:
        folder = Path(path)
        if path == STDIN or not folder.is_dir():
            yield path
            continue
        found = sorted(str(file) for file in folder.rglob("*") if file.is_file() and file.suffix.lower() in PICTURE_SUFFIXES
                       and not any(part.startswith(".") for part in file.relative_to(folder).parts))
        yield from found or [path]


def read_pictures(paths: list[str], classifier: Classifier, single: bool = False,
                  stdin: BinaryIO | None = None) -> Iterator[tuple[str, Reading | DigitrecError]]:
    """(path, reading) for each picture in `paths` (see find_pictures), or (path, error) for one that
    could not be read, so that one bad file does not stop the others. "-" reads `stdin`."""
    for path in find_pictures(paths):
        try:
            result = _read_path(path, classifier, single, stdin)
        except DigitrecError as error:
            result = error
        yield path, result


def _read_path(path: str, classifier: Classifier, single: bool, stdin: BinaryIO | None) -> Reading:
    if path == STDIN:
        if stdin is None:
            raise DigitrecError("'-' means standard input, and there is none here")
        return read_image(stdin.read(), classifier, single, name="standard input")
    if Path(path).is_dir():
        raise UnsupportedInput(f"{path} is a folder with no picture files in it "
                               f"({', '.join(sorted(PICTURE_SUFFIXES))})")
    return read_image(path, classifier, single)
