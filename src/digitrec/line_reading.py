"""Reading a whole line of digits with the shipped line reader (weights/line.onnx), without PyTorch.

The network (lines.LineReader) reads a line image without cutting it into digits first: it answers,
for every FRAME of STRIDE pixel columns, log-probabilities of the 11 classes "0".."9" and the CTC
blank (index BLANK). Best-path decoding keeps each frame's likeliest class, collapses repeats and
drops blanks; each digit it reads keeps the frames it came from, so a caller can draw its box.

The graph's input `lines` is float32 (batch, 1, HEIGHT, width), ink 0..1 white on black, any width
(a multiple of STRIDE reads best); its output `log_probabilities` float32 (batch, width / STRIDE, 11).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from digitrec.classifier import open_session, pretrained_path, session_options
from digitrec.errors import DigitrecError

HEIGHT = 32  # rows of the network's input
STRIDE = 4  # input columns per output frame
BLANK = 10  # the CTC blank's class index; classes 0-9 are the digits themselves
INPUT_NAME, OUTPUT_NAME = "lines", "log_probabilities"
# Where the ink sits in the 32 rows the reader was trained on (lines.compose_lines): a composed line's
# ink (pixels over 0.2) spans 27 rows at the median, 20-32 for 90% of lines (measured on 1,000 lines).
# A crop is cut to its ink and scaled so that the ink spans INK_ROWS, with MARGIN black columns either
# side. 24 read the most photos of numbers right (benchmarks/read_lines.py with the first weights, 200
# photos each: 2-8 digits 94.5% at 22 rows, 96.5% at 24; touching 93, 93, 90.5, 89.5, 85% at 22-32).
INK_ROWS = 24
MARGIN = 8
INK = 0.2  # of the crop's brightest pixel: what counts as ink for the crop's box and its gaps
MAX_GAP = 8  # the widest ink-to-ink gap in training (lines.GAP), in network columns


class Reading(NamedTuple):
    digits: str
    probabilities: list[float]  # per digit: its likeliest frame's probability
    spans: list[tuple[int, int]]  # per digit: [first, last + 1) of its frames (columns, for LineReaderOnnx)
    # Per digit: the ten digits' probabilities at its likeliest frame, without the blank's share (they sum
    # to 1), as a 28x28 classifier gives them, for a caller that shows the runners-up.
    distributions: list[list[float]]


def greedy_decode(log_probabilities) -> list[Reading]:
    """Best-path CTC decoding of log-probabilities (N, T, classes), batch first, one Reading per line."""
    probabilities = np.exp(np.asarray(log_probabilities, dtype=np.float32))
    return [_decode_line(line) for line in probabilities]


def _decode_line(probabilities: np.ndarray) -> Reading:
    """One line's frames (T, classes) of probabilities."""
    path, best = probabilities.argmax(1), probabilities.max(1)
    # Runs of one class: a digit is a run that is not blank (two equal digits need a blank between).
    starts = np.flatnonzero(np.r_[True, path[1:] != path[:-1]])
    ends = np.r_[starts[1:], len(path)]
    digits, scores, spans, distributions = [], [], [], []
    for start, end in zip(starts, ends):
        if path[start] != BLANK:
            frame = start + int(best[start:end].argmax())
            digits.append(str(int(path[start])))
            scores.append(float(best[frame]))
            spans.append((int(start), int(end)))
            ten = probabilities[frame, :BLANK]
            distributions.append((ten / ten.sum()).tolist())
    return Reading("".join(digits), scores, spans, distributions)


def line_onnx_path() -> Path | None:
    """The line reader shipped inside the package, if any."""
    return pretrained_path("line", ".onnx")


class LineReaderOnnx:
    """The exported line reader in an onnxruntime session."""

    def __init__(self, path: str | Path | None = None, threads: int = 1) -> None:
        path = path or line_onnx_path()
        if path is None or not Path(path).is_file():
            raise DigitrecError(f"no line reader at {path or 'digitrec/weights/line.onnx'}; "
                                "train one with 'make line-reader'")
        self.session = open_session(path, session_options(threads), remedy="train it again with 'make line-reader'")
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)

    def run(self, lines: np.ndarray) -> np.ndarray:
        """The graph itself: float32 (N, 1, HEIGHT, W) in, log-probabilities (N, W / STRIDE, 11) out."""
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(lines, np.float32)})[0]

    def read(self, crop: np.ndarray) -> Reading:
        """The digits of one line crop (H, W), white ink on black (any scale: uint8, floats), with each
        digit's probability and its columns [x0, x1) in the crop's pixels."""
        line, kept, scale = fit_line(crop)
        reading = greedy_decode(self.run(line[None, None]))[0]

        def crop_column(column: int) -> int:  # a column of `line` -> the crop's column it shows
            return int(kept[int(np.clip((column + 0.5 - MARGIN) / scale, 0, len(kept) - 1))])

        spans = [(crop_column(start * STRIDE), crop_column(end * STRIDE - 1) + 1) for start, end in reading.spans]
        return reading._replace(spans=spans)


def fit_line(crop: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """A crop as the network's input (HEIGHT, W): cut to its ink, every run of blank columns wider than
    MAX_GAP network columns shortened to that, scaled so the ink spans INK_ROWS rows, MARGIN black
    columns either side. Also which crop columns were kept, and the scale, to map columns back."""
    from PIL import Image

    ink = np.asarray(crop, np.float32)
    if ink.ndim != 2 or ink.size == 0:
        raise DigitrecError(f"a line crop is a 2-D array (rows, columns), not shape {ink.shape}")
    # The brightest ink as 1, as the training lines have it (their ink is 0.7-1), whatever the scan's contrast.
    ink = ink / max(float(ink.max()), 1e-6)
    rows, inked = np.flatnonzero(ink.max(1) > INK), ink.max(0) > INK
    if not len(rows):
        return np.zeros((HEIGHT, 2 * MARGIN), np.float32), np.zeros(1, int), 1.0
    scale = INK_ROWS / len(range(rows[0], rows[-1] + 1))
    # Gaps wider than training's look like the end of the line to the network (a digit 200 px on was
    # dropped): blank columns past the first MAX_GAP / scale of a run are left out.
    index = np.arange(len(inked))
    after_ink = index - np.maximum.accumulate(np.where(inked, index, -len(inked)))
    kept = np.flatnonzero(inked | (after_ink <= MAX_GAP / scale))
    kept = kept[(kept >= index[inked][0]) & (kept <= index[inked][-1])]
    ink = ink[rows[0]:rows[-1] + 1][:, kept]
    size = (max(1, round(ink.shape[1] * scale)), INK_ROWS)
    resized = np.asarray(Image.fromarray(ink).resize(size, Image.Resampling.BILINEAR)).clip(0, 1)
    width = -(-(size[0] + 2 * MARGIN) // STRIDE) * STRIDE  # whole frames
    line = np.zeros((HEIGHT, width), np.float32)
    top = (HEIGHT - INK_ROWS) // 2
    line[top:top + INK_ROWS, MARGIN:MARGIN + size[0]] = resized
    return line, kept, size[0] / ink.shape[1]
