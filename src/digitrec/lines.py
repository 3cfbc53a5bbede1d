"""The learned line reader: lines of MNIST digits composed on whole tensors, and the CNN + BiGRU that
reads a whole line without cutting it (trained with a CTC loss, as Zhan et al. 2018 read cheques).

compose_lines writes 1-8 digits side by side the way people write numbers: each digit scaled,
slanted and moved up or down, gaps from overlapping to wide, a thicker or thinner pen, a little blur
and noise. LineReader maps a line (N, 1, 32, W), ink 0..1 white on black, to log-probabilities
(N, W / 4, 11), batch first: one frame per 4 columns, classes 0-9 the digits and 10 the CTC blank.
line_reading.greedy_decode (numpy, re-exported here) turns them into digits with boxes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from digitrec.line_reading import BLANK, HEIGHT, MAX_GAP, STRIDE, Reading, greedy_decode

__all__ = ["BLANK", "HEIGHT", "STRIDE", "Reading", "greedy_decode", "compose_lines", "LineReader"]

# The composition recipe, in line pixels (an MNIST digit is 28 px in its box, ~20 px of ink tall).
MAX_DIGITS = 8
SCALE = (0.8, 1.2)  # each digit's size
# And each line's, on top: a reader scales a crop by its ink's height, which baselines and pen widths
# sway, so the network must read digits somewhat smaller or larger than the line's own. Weights trained
# without it read 95.3% of 300 test lines whole, but 85% cut to their ink and rescaled one by one (with
# it: 92% and 88%; docs/line-reader-card.md).
LINE_SCALE = (0.8, 1.1)
SHEAR = (-0.3, 0.3)  # slant: columns moved per row away from the digit's centre
BASELINE = 3  # each digit moved up to this many pixels up or down
GAP = (-4, MAX_GAP)  # ink-to-ink gaps, negative ones overlapping (touching); MAX_GAP is 8
MAX_OVERLAP = 1 / 3  # of the narrower digit's ink width: a "1" overlapped 4 px would vanish into its neighbour
TOUCH = (1, 4)  # the overlap of the pair forced to touch (touching=True)
MARGIN = (0, 12)  # black columns before and after the line
INK_THRESHOLD = 0.1  # a column with more than this is ink (for gaps)
BOX = 44  # columns of each digit's own canvas: 28 px * 1.2 + the slant, with room to spare


def compose_lines(images: torch.Tensor, labels: torch.Tensor, count: int, generator: torch.Generator,
                  lengths: tuple[int, int] = (1, MAX_DIGITS), touching: bool = False
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`count` lines of random digits of `images` (uint8 (M, 28, 28)): float32 (count, 1, 32, W) with W the
    longest line's width (a multiple of STRIDE), targets long (count, lengths[1]) padded with BLANK, and
    target lengths long (count,). `touching` writes one pair of neighbours 1-4 px into each other."""
    shortest, longest = (max(2, lengths[0]), max(2, lengths[1])) if touching else lengths
    line_lengths = torch.randint(shortest, longest + 1, (count,), generator=generator)
    picks = torch.randint(0, len(images), (count, longest), generator=generator)
    present = torch.arange(longest) < line_lengths[:, None]
    targets = torch.where(present, labels[picks], BLANK)
    line_scale = _uniform(*LINE_SCALE, count, generator)
    digits = [_place_digit(images[picks[:, k]].float() / 255, line_scale, generator) for k in range(longest)]
    ink = [digit.amax(dim=1) > INK_THRESHOLD for digit in digits]  # (count, BOX) ink columns
    first = [columns.float().argmax(1) for columns in ink]
    last = [BOX - columns.flip(1).float().argmax(1) for columns in ink]
    gaps = _gaps(count, longest, [b - a for a, b in zip(first, last)], line_lengths, touching, generator)
    cursor = _uniform_int(*MARGIN, count, generator)  # where the next digit's ink starts
    lefts = []
    for k in range(longest):
        lefts.append(cursor - first[k])
        cursor = torch.where(present[:, k], cursor + last[k] - first[k] + gaps[:, k], cursor)
    ends = cursor - gaps.gather(1, line_lengths[:, None] - 1)[:, 0]  # the last digit's gap is not written
    width = int((ends + _uniform_int(*MARGIN, count, generator)).max())
    width = -(-width // STRIDE) * STRIDE
    canvas = torch.zeros(count, 1, HEIGHT, width)
    for k in range(longest):
        columns = torch.arange(width) - lefts[k][:, None]  # (count, width): each canvas column's digit column
        inside = (columns >= 0) & (columns < BOX) & present[:, k, None]
        index = columns.clamp(0, BOX - 1)[:, None, None, :].expand(-1, 1, HEIGHT, -1)
        canvas = torch.maximum(canvas, digits[k][:, None].gather(3, index) * inside[:, None, None, :])
    return _pen_and_noise(canvas, generator), targets, line_lengths


def _uniform(low: float, high: float, count: int, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(count, generator=generator)


def _uniform_int(low: int, high: int, count: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randint(low, high + 1, (count,), generator=generator)


def _place_digit(digits: torch.Tensor, line_scale: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Digits (N, 28, 28) scaled, slanted and moved up or down into boxes (N, HEIGHT, BOX), centred."""
    count = len(digits)
    scale, shear = line_scale * _uniform(*SCALE, count, generator), _uniform(*SHEAR, count, generator)
    baseline = line_scale * _uniform(-BASELINE, BASELINE, count, generator)
    # For each output pixel centre (u, v), the point (x, y) of the digit it shows: the inverse of
    # u = BOX/2 + scale * (x - 14 + shear * (y - 14)), v = HEIGHT/2 + baseline + scale * (y - 14).
    v = torch.arange(HEIGHT) + 0.5
    u = torch.arange(BOX) + 0.5
    y = 14 + (v[None, :] - HEIGHT / 2 - baseline[:, None]) / scale[:, None]  # (N, HEIGHT)
    x = (14 + (u[None, None, :] - BOX / 2) / scale[:, None, None]
         - shear[:, None, None] * (y[:, :, None] - 14))  # (N, HEIGHT, BOX)
    grid = torch.stack([x / 14 - 1, (y / 14 - 1)[:, :, None].expand_as(x)], dim=3)
    return F.grid_sample(digits[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[:, 0]


def _gaps(count: int, longest: int, widths: list[torch.Tensor], line_lengths: torch.Tensor, touching: bool,
          generator: torch.Generator) -> torch.Tensor:
    """Ink-to-ink gaps (count, longest) after each digit; overlaps limited by the narrower neighbour."""
    gaps = torch.randint(GAP[0], GAP[1] + 1, (count, longest), generator=generator)
    if touching:
        pair = (torch.rand(count, generator=generator) * (line_lengths - 1)).long()  # gap after digit `pair`
        touch = -torch.randint(TOUCH[0], TOUCH[1] + 1, (count,), generator=generator)
        gaps[torch.arange(count), pair] = touch
    narrower = torch.stack([torch.minimum(widths[k], widths[min(k + 1, longest - 1)]) for k in range(longest)], 1)
    deepest = -(narrower * MAX_OVERLAP).floor().long().clamp_min(1)
    return torch.maximum(gaps, deepest)


def _pen_and_noise(lines: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A thicker or thinner pen (a blend towards 3x3 dilation or erosion), a light blur, sensor noise."""
    count = len(lines)
    pen = _uniform(-0.7, 1.0, count, generator)[:, None, None, None]
    thicker, thinner = F.max_pool2d(lines, 3, 1, 1), -F.max_pool2d(-lines, 3, 1, 1)
    lines = torch.where(pen > 0, lines + pen * (thicker - lines), lines - pen * (thinner - lines))
    kernel = torch.tensor([0.25, 0.5, 0.25])
    blurred = F.conv2d(lines, (kernel[:, None] * kernel[None, :])[None, None], padding=1)
    blur = _uniform(0, 1, count, generator)[:, None, None, None]
    lines = lines + blur * (blurred - lines)
    contrast = _uniform(0.7, 1.0, count, generator)[:, None, None, None]
    noise = _uniform(0, 0.08, count, generator)[:, None, None, None]
    return (lines * contrast + noise * torch.randn(lines.shape, generator=generator)).clamp(0, 1)


def conv(inputs: int, outputs: int, pool: tuple[int, int] | None = None) -> list[nn.Module]:
    return [nn.Conv2d(inputs, outputs, 3, padding=1, bias=False), nn.BatchNorm2d(outputs), nn.ReLU(),
            *([nn.MaxPool2d(pool)] if pool else [])]


class LineReader(nn.Module):
    """Six 3x3 convolutions pool a line's 32 rows to 1 and its columns by STRIDE (4); a bidirectional
    GRU reads the columns left to right and back (a digit is told by its neighbours' context where
    they overlap); a linear layer gives each frame's 11 classes."""

    def __init__(self, channels: tuple[int, ...] = (32, 64, 96, 96, 128, 128), hidden: int = 128) -> None:
        super().__init__()
        c = channels
        self.features = nn.Sequential(
            *conv(1, c[0], (2, 2)),                          # 32 x W  -> 16 x W/2
            *conv(c[0], c[1], (2, 2)),                       # 16      -> 8 x W/4
            *conv(c[1], c[2]), *conv(c[2], c[3], (2, 1)),    # 8       -> 4
            *conv(c[3], c[4], (2, 1)),                       # 4       -> 2
            *conv(c[4], c[5], (2, 1)),                       # 2       -> 1
        )
        self.columns = nn.GRU(c[5], hidden, batch_first=True, bidirectional=True)
        self.classifier = nn.Linear(2 * hidden, BLANK + 1)

    def forward(self, lines: torch.Tensor) -> torch.Tensor:
        features = self.features(lines).squeeze(2).transpose(1, 2)  # (N, W/4, channels)
        columns, _ = self.columns(features)
        return F.log_softmax(self.classifier(columns), dim=2)
