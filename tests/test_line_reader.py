"""The line reader: lines composed from MNIST, best-path decoding, and the shipped ONNX reader on TEST lines."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import require
from digitrec.line_reading import BLANK, HEIGHT, LineReaderOnnx, greedy_decode, line_onnx_path
from digitrec.lines import MAX_DIGITS, STRIDE, compose_lines


def test_compose_lines_shapes_targets_and_seed(mnist):
    lines, targets, lengths = compose_lines(mnist.test_images, mnist.test_labels, 50, torch.Generator().manual_seed(3))
    assert lines.shape[:3] == (50, 1, HEIGHT) and lines.shape[3] % STRIDE == 0 and lines.dtype == torch.float32
    assert 0 <= lines.min() and lines.max() <= 1
    assert targets.shape == (50, MAX_DIGITS) and ((1 <= lengths) & (lengths <= MAX_DIGITS)).all()
    present = torch.arange(MAX_DIGITS) < lengths[:, None]
    assert (targets[present] < 10).all() and (targets[~present] == BLANK).all()
    assert (lines.amax(dim=(1, 2, 3)) > 0.3).all()  # every line has ink (a thin pen and contrast 0.7 make it faint)
    again = compose_lines(mnist.test_images, mnist.test_labels, 50, torch.Generator().manual_seed(3))
    assert torch.equal(lines, again[0]) and torch.equal(targets, again[1]) and torch.equal(lengths, again[2])
    other = compose_lines(mnist.test_images, mnist.test_labels, 50, torch.Generator().manual_seed(4))
    assert not torch.equal(targets, other[1])
    _, _, touching = compose_lines(mnist.test_images, mnist.test_labels, 50, torch.Generator().manual_seed(3),
                                   lengths=(1, 3), touching=True)
    assert touching.min() >= 2  # a pair to touch


def test_greedy_decode_collapses_repeats_and_drops_blanks():
    # Frames: blank, 3, 3, blank, 3, 5, 5, blank -> "335"; a blank between the 3s keeps them apart.
    path = [BLANK, 3, 3, BLANK, 3, 5, 5, BLANK]
    probabilities = np.full((1, len(path), BLANK + 1), 0.01, np.float32)
    probabilities[0, np.arange(len(path)), path] = [0.9, 0.6, 0.8, 0.9, 0.7, 0.5, 0.95, 0.9]
    reading, = greedy_decode(np.log(probabilities))
    assert reading.digits == "335"
    assert reading.spans == [(1, 3), (4, 5), (5, 7)]
    assert reading.probabilities == pytest.approx([0.8, 0.7, 0.95])
    assert [int(np.argmax(ten)) for ten in reading.distributions] == [3, 3, 5]
    assert np.sum(reading.distributions, axis=1) == pytest.approx([1, 1, 1])
    blank, = greedy_decode(np.log(np.full((1, 4, BLANK + 1), 0.01) + np.eye(BLANK + 1)[BLANK]))
    assert blank.digits == "" and blank.spans == []


@pytest.fixture(scope="module")
def reader() -> LineReaderOnnx:
    require(line_onnx_path() is not None, "no shipped line reader (make line-reader writes weights/line.onnx)")
    return LineReaderOnnx()


def truths(targets: torch.Tensor, lengths: torch.Tensor) -> list[str]:
    return ["".join(map(str, row[:length].tolist())) for row, length in zip(targets, lengths)]


def test_shipped_reader_reads_test_lines(mnist, reader):
    lines, targets, lengths = compose_lines(mnist.test_images, mnist.test_labels, 200, torch.Generator().manual_seed(7))
    readings = greedy_decode(reader.run(lines.numpy()))
    exact = np.mean([reading.digits == truth for reading, truth in zip(readings, truths(targets, lengths))])
    assert exact >= 0.90
    # One line at a time through read(), as a caller hands it a crop: cut to its ink and rescaled by its
    # height, which loses a little (the shipped weights: 88% of 300 such lines, 92% read whole).
    crops = [lines[i, 0].numpy() for i in range(100)]
    exact = np.mean([reader.read(crop).digits == truth for crop, truth in zip(crops, truths(targets, lengths))])
    assert exact >= 0.80


def test_shipped_reader_reads_two_touching_digits_as_two(mnist, reader):
    lines, targets, lengths = compose_lines(mnist.test_images, mnist.test_labels, 100, torch.Generator().manual_seed(8),
                                            lengths=(2, 2), touching=True)
    readings = [reader.read((lines[i, 0].numpy() * 255).astype(np.uint8)) for i in range(len(lines))]
    assert np.mean([len(reading.digits) == 2 for reading in readings]) >= 0.95
    assert np.mean([reading.digits == truth for reading, truth in zip(readings, truths(targets, lengths))]) >= 0.90
    for reading, crop_width in zip(readings, [lines.shape[3]] * len(readings)):
        assert all(0 <= x0 < x1 <= crop_width for x0, x1 in reading.spans)
        assert all(a[0] <= b[0] for a, b in zip(reading.spans, reading.spans[1:]))  # left to right
        assert all(0 < p <= 1 for p in reading.probabilities)


def test_reader_spans_are_in_the_crops_pixels(mnist, reader):
    # Two digits far apart in a wide crop: each digit's span must lie at its own digit, in crop columns.
    data = mnist
    crop = np.zeros((100, 400), np.uint8)
    first, second = data.test_images[0].numpy(), data.test_images[1].numpy()  # a 7 and a 2
    crop[20:76, 40:96] = np.kron(first, np.ones((2, 2), np.uint8))
    crop[20:76, 300:356] = np.kron(second, np.ones((2, 2), np.uint8))
    reading = reader.read(crop)
    assert reading.digits == f"{int(data.test_labels[0])}{int(data.test_labels[1])}"
    (a0, a1), (b0, b1) = reading.spans
    # CTC reads a digit in a frame or two near its ink, not always on it: the 2 was read in the blank
    # run that stands for the 200 px gap, which maps back to the columns just past the 7.
    assert 40 <= a0 < a1 <= 96 < b1 <= 356  # in crop columns: frames (a few per digit) would all lie under 100
