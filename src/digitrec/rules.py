"""Printed rules are not ink: ruled lines, margins, squared grids and form boxes, found and removed
before the digits are segmented.

    ruling = remove_rules(np.asarray(image))   # RGB (H, W, 3) or grey (H, W) uint8, as decoded
    ruling.cleaned                             # grey (H, W) uint8: the picture without its rules
    ruling.boxes                               # form boxes (x0, y0, x1, y1) on their walls, in reading order
    ruling.found                               # False: no rules, and cleaned is the grey picture as it was

preprocess.preprocess_image calls it on its working copy of every picture, before any ink is
segmented; lines of writing are then found among the digits (preprocess.text_lines).

How: the ink mask is the pixels darker than the local paper in any colour channel (so a light-blue
rule on white paper counts as much as black ink), by more than the paper's noise (measured on the
light side of the paper's peak where a fine grid covers most of the picture). Rules are long, thin
and straight: horizontal runs of ink (vertical ones for vertical rules) at least RUN_PIXELS long are
joined into pieces; in each piece the line with the most pixels on it is found by a small Hough vote
over the slopes a photo's rules take (a turned, tilted page), fitted by least squares through its
core, taken out, and the rest searched again (strokes join several rules into one piece). A line is a
rule if it is continuous, thin for its length, lies on paper (paper on both sides along a good share
of it: a line through a row of digits has ink beside it) and spans a good share of the picture (a
ruled line, a margin, a grid line; less when it runs off the picture at both ends), or if it lies
where evenly spaced rules put one (a grid line cut short by digits or shade), or if it is the
wall of a form box: a vertical line ending on two horizontal rules that themselves end inside the
picture and running into both, with paper beside it along a fifth of it (a digit's stem from edge
to edge has strokes beside it, and stops at an edge's inside), two walls or more between the same
two. A double rule (a legal pad's margin: two lines a few px apart, each with the other beside it)
is judged as one line across both. A line far thicker than the other rules running its way, with ink
beside it along most of it, is strokes that line up, not print: a sheet's rules are printed alike.
A rule is then followed past its ends while ink with paper beside it continues on its line. Beyond the picture's edge is paper:
a grid line the edge cuts through is still on paper. A written 1 is neither: it spans less of its
picture, never runs off two sides of it, and a notebook's rules run off the page, so they never make
walls. A faint grid, which the ink mask breaks into dots at its crossings, is searched again on
masks averaged along each direction (faint_lines), and the lines found there that the mask lacks
are added.
A rule's band is removed where no stroke crosses it: a band pixel with stroke ink directly on both
sides (above and below a horizontal rule, left and right of a vertical one) is stroke and stays, so
the strokes a rule crosses stay whole, except along a box wall for longer than two pen widths (two
digits pressed against it from both sides, which the wall would join); so does a band pixel far
darker than its rule (bands_and_pen: pen written along a light rule). On a grid, what its lines
leave (their rims, lines too faint to be found) goes too: every pixel no darker than pen over its
print, unless it is a stroke's rim (no_darker_than_print). Detection runs on a copy
reduced to DETECT_SIDE, so a large picture takes bounded time, and only where thin ink reaches
across the picture (long_thin_ink, after a small closing: a pen with a light middle draws two thin
outlines): most pictures of digits have none, and skip the search. numpy, scipy.ndimage and Pillow
only.

The constants were set on benchmarks/make_photos.py's paper kinds (MNIST test digits, seeds 0 and 1 of
50 photos each) and are measured by benchmarks/read_photos.py; the notes beside them say what they
were weighed against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image
from scipy import ndimage

DETECT_SIDE = 768  # px: rules are found on a copy box-reduced to at most this (a 1-px rule survives: any-pooling)
PAPER_SIDE = 64  # px: the paper's brightness varies slowly; it is estimated this small
MIN_DARKNESS = 0.08  # a rule or ink is at least 8% darker than the paper in some channel (light-blue rules: ~30%)
NOISE_SIGMAS = 5.0  # and stands out of the paper's noise by this many robust deviations
NEIGHBOUR_DIFFERENCE = 0.954  # median |a - b| of two independent samples of N(0, 1): 0.6745 * sqrt(2)
DARKNESS_SAMPLES = 20_000  # the paper's level and noise come from at most about this many pixels (medians cost)
PEAK_BIN = 0.01  # the paper's darkness peak is found in steps this wide (its noise: 0.01-0.03)
MIN_ON_PAPER = 0.3  # of a rule's length has paper on both sides (a notebook rule under a number: 50%+)
FILLED_ON_PAPER = 0.5  # and a line found only filled in (faint_lines): a row of digits' rims passed at 0.3
SIDE_PIXELS = 2  # px (detection scale): its sides are looked at this far past its edges
GAP_PIXELS = 3  # px (detection scale): a faint rule under noise and JPEG breaks into dashes this far apart
RUN_PIXELS = 8  # px (detection scale): a 2-px rule turned 5 degrees still has runs ~20 px long
FIT_DEGREES, FIT_STEP_DEGREES = 7.0, 1.0  # a photo's rules: turned up to 5 degrees, and perspective
FIT_BIN_PIXELS = 2  # px: offsets are voted in bins this wide; the least-squares fit after mends the rest
CORE_PIXELS = 2.0  # px: a rule's core, within this of its first fit, gives the final fit
FIT_VOTERS = 3000  # pixels that vote, at most: a rule has plenty
MIN_COVERAGE = 0.7  # a rule is ink along at least this share of its length (a faint one under JPEG: ~80%)
FIT_STRETCH = 8  # px (detection scale): a line's thickness is measured over stretches this long,
THICKNESS_PERCENTILE = 25  # as the thickness of its stretches at this percentile
MAX_LINES_PER_PIECE = 16  # a piece is a few rules joined by strokes; a bound on the search
THIN_RATIO = 0.07  # a rule's thickness is under 7% of its length (a blurred box edge: 6%); a 7's bar 10-20%
MAX_THICKNESS = 8  # px (detection scale): printed rules are 1-3 px; thicker is a marker's stroke
# px (detection scale): a printed rule, blurred, is at most this thick along most of it, while reading
# shrinks a picture until its pen is about 8 px wide (preprocess.STROKE_PIXELS): thinner ink than this
# reaching across the picture is what makes it worth searching for rules.
THIN_PIXELS = 6
CLOSE_PIXELS = 3  # px (detection scale): gaps inside a stroke narrower than this are filled before the thin test
# Pieces of thin ink: a faint grid that the ink mask breaks into dots leaves this many or more (65-624
# in seed 0's squared photos that need the faint mask), a single digit's strokes 6 at the median (2 of
# 200 single-digit photos reach 50). Fewer, and the faint mask is not looked at: it costs a digit 0.6 ms.
GRID_DOTS = 50
# A picture less high or wide than this is searched enlarged twice: a form photographed at half its size
# has boxes about 20 px high, walls shorter than the 3 * RUN_PIXELS a piece must run, read as 1s (seed
# 0's boxes photos halved: 50 -> 56 of 60 read right). The benchmark's photos of seeds 0-1 (2,200 of
# eleven kinds): 4 more right, 3 fewer, all graph or squared paper; preprocess's small pictures,
# enlarged to 64 px already, read the same. Pictures this small cost little to search twice.
SMALL_SIDE = 128
HORIZONTAL_SPAN = 0.35  # a horizontal rule spans this share of the width (a row of 2 form boxes: ~40%)
VERTICAL_SPAN = 0.85  # a vertical one nearly the whole height (margins and grids run off the page;
# a single written 1 fills at most ~70% of its picture's height)
# A box wall (1.2-1.5 digits high) need not be thin for its length: ending on two box edges makes it one.
EDGE_SPAN = 0.3  # a rule running off the picture at both ends spans at least this share of it
# Looked for at half the scale, where a digit's strokes are thin too, a rule or a row of boxes spans
# this share of the width, which a digit of a single-digit photo, or of a number, rarely does (a
# digit or two reached EDGE_SPAN in half of the single-digit photos, and cost them a search).
COARSE_ACROSS = 0.5
# A wall has paper on both sides along this share of it: a digit's stem that ends on both edges of a
# long box has strokes beside it (0.0-0.2), a wall a digit hugs for 60% of its length 0.29 (test_rules).
# With PRESSED_STROKES, boxes seeds 0-2 (300 photos) read 287 -> 290 right; 0.3 read 291 but drops that wall.
WALL_ON_PAPER = 0.2
TOUCH_PIXELS = 4  # px (detection scale): a box wall's end lies this close past the edge of the rules it joins
EDGE_PIXELS = 2  # px (detection scale): a rule ending this close to the picture's edge runs off the page
# A band pixel darker than its rule by this share of the way from the rule's darkness to black is pen
# (ink 0.85-0.9 dark in its darkest channel, light rules and grids 0.3-0.5, blurred thinner).
STROKE_CONTRAST = 0.3
RULE_PERCENTILE = 50  # a rule's darkness: this percentile along it of its core's (bands_and_pen; 35: the same)
PRESSED_STROKES = 2.0  # pen widths: a stroke across a wall keeps about one pen width of it (1.5-3 read the same)
# A grid's residue is what is no darker than pen over its print (no_darker_than_print), where the
# picture's darkest (this percentile: its ink, a few % of it) is this much darker still.
INKIEST_PERCENTILE, INK_PAST_FLOOR = 99.5, 0.1
BAND_MARGIN = 1.0  # px: a rule's band reaches this far past its measured edge (its anti-aliased rim)
GRID_RULES = 3  # evenly spaced rules, at least this many, make a grid whose missing lines are looked for
GRID_TOLERANCE = 0.15  # of the spacing: a grid line lies this close to where the spacing puts it
GRID_REGULAR = 0.8  # of the gaps between the rules found are whole spacings (a missed line makes a double one)
GRID_SLOPE = 0.05  # and turns this little (3 degrees) from its neighbour (perspective turns them apart)
GRID_THICKER = 2.0  # px (detection scale): and is at most this much thicker than it
# px (detection scale): a found rule is followed past its ends over gaps up to this: strokes crossing
# it (reading shrinks a picture until its pen is about 8 px wide) and dashes of a faint rule.
CROSS_PIXELS = 16
# px: a stroke crossing a rule slantwise comes out of it a column along from where it went in, so its
# ink on the far side is looked for this far to either side (rule_pixels). Without it a thin pen's
# strokes were cut along squared paper's lines (seeds 0-1, 400 photos of each kind: squared 389 -> 391,
# engineering paper 365 -> 377, pages 372 -> 374, legal pad one fewer, notebook and boxes the same).
# 2 px read 394 and 384 of the grids but a notebook's and a form's digit fewer. Not along box walls,
# where two digits pressed against a wall from both sides would keep it.
CROSS_SLACK = 1


@dataclass(frozen=True)
class Line:
    """A straight printed line: across = slope * along + offset, with `along` from start to end (px).
    For a horizontal rule along is x and across is y; for a vertical rule the other way round."""

    slope: float
    offset: float
    thickness: float
    start: float
    end: float

    def across_at(self, along: float) -> float:
        return self.slope * along + self.offset


@dataclass(frozen=True)
class Ruling:
    """A picture without its printed rules (see the module's docstring)."""

    cleaned: np.ndarray  # (H, W) uint8 grey: rule pixels replaced by the paper's brightness
    rule_mask: np.ndarray  # (H, W) bool: the pixels removed
    boxes: list[tuple[int, int, int, int]]  # form boxes x0, y0, x1, y1 (on their walls) in reading order
    lines: list[int]  # y of each horizontal rule at the picture's middle, top to bottom
    found: bool  # whether any rule was found (False: cleaned is the grey picture unchanged)


def remove_rules(pixels: np.ndarray, dark_ink: bool | None = None) -> Ruling:
    """The picture (RGB or grey uint8, dark on light or light on dark) without its printed rules.
    `dark_ink` is the picture's polarity where the caller knows it (preprocess.survey), else found here
    (ink_is_dark)."""
    picture = np.asarray(pixels)
    if dark_ink is None:  # decided once: an enlarged copy must not be read the other way round
        dark_ink = ink_is_dark(luminance(np.atleast_3d(picture)[..., :3]))
    if min(picture.shape[:2]) < SMALL_SIDE:
        return _removed_enlarged(picture, dark_ink)
    return _removed(picture, dark_ink)


def _removed_enlarged(picture: np.ndarray, dark_ink: bool) -> Ruling:
    """remove_rules of a small picture that has rules at its own size, searched again at twice its size
    (bicubic) and brought back: a rule's pixels take the enlarged cleaned picture's block means (a
    stroke across it keeps its share), the rest stay the picture's own. A picture without rules at its
    own size is left at that (most digits' working copies are this small: searched enlarged, one digit
    took 0.8 ms more); where nothing is found enlarged, the search at its own size stands."""
    own = _removed(picture, dark_ink)
    if not own.found:
        return own
    height, width = picture.shape[:2]
    big = np.asarray(Image.fromarray(picture).resize((2 * width, 2 * height), Image.Resampling.BICUBIC))
    ruling = _removed(big, dark_ink)
    if not ruling.found:
        return own
    removed = reduce_any(ruling.rule_mask, 2)
    grey = luminance(np.atleast_3d(picture)[..., :3])
    cleaned = np.where(removed, reduce_mean(ruling.cleaned, 2), grey).clip(0, 255).round().astype(np.uint8)
    return Ruling(cleaned, removed, [tuple(v // 2 for v in box) for box in ruling.boxes],
                  [line // 2 for line in ruling.lines], True)


def _removed(pixels: np.ndarray, dark_ink: bool) -> Ruling:
    colour = np.atleast_3d(np.asarray(pixels))[..., :3]
    grey = luminance(colour)
    inverted = not dark_ink
    if inverted:
        colour, grey = 255 - colour, 255 - grey
    paper = small_paper(colour)
    darker = ink_darkness(colour, paper)
    ink = ink_mask(colour, paper, darker)
    factor = max(1, math.ceil(max(ink.shape) / DETECT_SIDE))
    mask = reduce_any(ink, factor)
    reaches, dots = long_thin_ink(mask)
    # A faint grid breaks into dots in the ink mask, but the faint one, at half the darkness, still
    # reaches across the picture; it is looked at only where there are dots enough for a grid.
    faint = False
    if not reaches and dots >= GRID_DOTS:
        reaches, _ = long_thin_ink(reduce_any(ink_mask(colour, paper, darker / 2), factor))
        faint = reaches
    # Rules too thick to be thin at this scale (a photo taken closer, a scan at a higher resolution:
    # a form's walls as wide as the pen) are thin at half of it, where the search finds them as it
    # finds a smaller picture's.
    if not reaches and long_thin_ink(coarse := reduce_any(ink, 2 * factor), COARSE_ACROSS, 1.0)[0]:
        factor, mask, reaches = 2 * factor, coarse, True
    # The search then looks again on masks filled in along the lines (faint_lines).
    # A grid found only faintly is looked for under MIN_DARKNESS too: a faint photo's grid (an
    # overexposed one, light print) lies 5-8% under its paper, where the reader still takes it for the
    # rim of the strokes it touches, and joins every digit into one.
    floor = MIN_DARKNESS / 2 if faint else MIN_DARKNESS
    horizontal, vertical, walls, boxes = (find_rules(mask, faint_lines(colour, paper, factor, mask, floor))
                                          if reaches else ([], [], [], []))
    if not (horizontal or vertical or walls):
        return Ruling((255 - grey if inverted else grey).round().astype(np.uint8), np.zeros(ink.shape, bool),
                      [], [], False)
    removed, darknesses = rule_pixels(colour, paper, ink, *([band_of(line, factor) for line in lines]
                                                            for lines in (horizontal, vertical, walls)))
    if len(horizontal) >= GRID_RULES and len(vertical) >= GRID_RULES:
        removed |= no_darker_than_print(colour, paper, darknesses)
    rows, columns = np.nonzero(removed)
    # The paper under a rule, from the small estimate: it varies slowly.
    grey[rows, columns] = luminance(paper)[rows * paper.shape[0] // grey.shape[0],
                                           columns * paper.shape[1] // grey.shape[1]]
    cleaned = (255 - grey if inverted else grey).clip(0, 255).round().astype(np.uint8)
    middle = ink.shape[1] / 2 / factor
    return Ruling(cleaned, removed, [tuple(int(round(v * factor)) for v in box) for box in boxes],
                  sorted(int(round(line.across_at(middle) * factor)) for line in horizontal), True)


def ink_is_dark(grey: np.ndarray) -> bool:
    """Whether the ink (and the print) is darker than the paper: the paper is most of the picture, and
    ink strays further from it on its own side than noise does on the other. The paper's brightness
    says nothing: an underexposed photo of white paper is darker than mid-grey (at half its light, all
    but 1 of 60 notebook photos were taken for light ink on dark paper, and read wrong)."""
    darkest, middle, lightest = percentile(grey[::4, ::4], [1, 50, 99])
    return middle - darkest >= lightest - middle


def long_thin_ink(mask: np.ndarray, across: float = EDGE_SPAN, down: float = EDGE_SPAN) -> tuple[bool, int]:
    """Whether the mask holds thin ink reaching `across` of the picture's width or `down` of its height
    (EDGE_SPAN), as every rule, grid and form box does (thin: at most THIN_PIXELS thick, gone after an
    opening just wider), and how many pieces of thin ink it holds. Thick strokes alone, as most
    pictures of digits have, cannot hold a rule, and are not searched: that search costs several
    times the rest of reading a picture."""
    side = THIN_PIXELS + 1
    # Closed first: a pen whose middle is lighter than its edges leaves two thin outlines of every
    # stroke in the mask, which reach across a single digit's picture (a third of them searched).
    solid = shrunk(grown(mask, CLOSE_PIXELS), CLOSE_PIXELS)
    thin = mask & ~grown(shrunk(solid, side), side)
    pieces, count = ndimage.label(thin, structure=np.ones((3, 3), bool))
    height, width = mask.shape
    return any(region[1].stop - region[1].start >= across * width
               or region[0].stop - region[0].start >= down * height
               for region in ndimage.find_objects(pieces) if region is not None), count


def grown(mask: np.ndarray, size: int) -> np.ndarray:
    """The mask dilated by a size x size square (size odd), by shifted slices: on the small masks of
    most pictures scipy's filters cost several times more in calls than in work. On brightness
    (H, W) or (H, W, channels), each pixel's brightest within the square and the picture, per channel,
    as ndimage.grey_dilation gives it."""
    reach = size // 2
    across = widened(mask, reach)
    dilated = across.copy()
    for step in range(1, reach + 1):
        np.maximum(dilated[step:], across[:-step], out=dilated[step:])
        np.maximum(dilated[:-step], across[step:], out=dilated[:-step])
    return dilated


def widened(mask: np.ndarray, reach: int) -> np.ndarray:
    """The mask dilated along its rows: `reach` columns to either side."""
    dilated = mask.copy()
    for step in range(1, reach + 1):
        np.maximum(dilated[:, step:], mask[:, :-step], out=dilated[:, step:])
        np.maximum(dilated[:, :-step], mask[:, step:], out=dilated[:, :-step])
    return dilated


def shrunk(mask: np.ndarray, size: int) -> np.ndarray:
    """The mask eroded by a size x size square, past its edges taken as set (ink running off the
    picture is not thinned there)."""
    return ~grown(~mask, size)


def luminance(colour: np.ndarray) -> np.ndarray:
    """(H, W) float32 brightness of an (H, W, 1) or (H, W, 3) picture, as Pillow's "L" weighs it."""
    if colour.shape[2] == 1:
        return colour[..., 0].astype(np.float32)
    return colour.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def small_paper(colour: np.ndarray) -> np.ndarray:
    """Each channel's paper brightness under the picture's light, PAPER_SIDE px on the long side: the
    brightest nearby on a copy so small that ink and rules are thinner than a pixel."""
    height, width, _ = colour.shape
    scale = PAPER_SIDE / max(height, width)
    size = (max(4, round(width * scale)), max(4, round(height * scale)))
    planes = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(colour[..., channel], np.uint8))
                                  .resize(size, Image.Resampling.BOX)) for channel in range(colour.shape[2])], axis=2)
    return np.maximum(grown(planes.astype(np.float32), 3), 1)


def ink_darkness(colour: np.ndarray, paper: np.ndarray) -> float:
    """How much darker than the paper ink is, at least, in its darkest channel: past the paper's noise
    and MIN_DARKNESS."""
    height, width, _ = colour.shape
    step = max(3, math.ceil(math.sqrt(height * width / DARKNESS_SAMPLES)))
    sample = colour[::step, ::step].astype(np.float32)
    sample_paper = paper[np.arange(sample.shape[0])[:, None] * step * paper.shape[0] // height,
                         np.arange(sample.shape[1])[None, :] * step * paper.shape[1] // width]
    darkness = (1 - sample / sample_paper).max(axis=2)
    # The paper's noise from neighbouring samples' differences: the light's slow changes cancel out,
    # and ink and rules (a fine grid is a good share of the picture) make few of them.
    differences = np.abs(np.diff(darkness, axis=1))  # none in a picture a few pixels wide
    spread = float(median(differences)) / NEIGHBOUR_DIFFERENCE if differences.size else 0.0
    # A fine grid (engineering paper) can cover most of a small picture: then the median and the
    # differences are the grid's own, and ink had to be darker than the grid's heavy lines (up to 0.9
    # where the grid is 0.2-0.3 dark). The paper's peak and its light side, where nothing printed or
    # written lies, give the paper's level and noise whatever covers the rest.
    peak, light_spread = paper_peak(darkness)
    return max(MIN_DARKNESS, min(float(median(darkness)) + NOISE_SIGMAS * spread,
                                 peak + NOISE_SIGMAS * light_spread))


def paper_peak(darkness: np.ndarray) -> tuple[float, float]:
    """The most common darkness (the paper's, in PEAK_BIN steps) and the paper's noise, as the spread
    of the darkness lighter than it: the light half of the paper's noise and nothing else, since no
    ink or print is lighter than paper."""
    bins = round(1.5 / PEAK_BIN)  # from -0.5 (paper lighter than its estimate) to 1 (black)
    index = np.clip(((darkness + 0.5) / PEAK_BIN).astype(np.int32), 0, bins - 1)  # bincount: 5x np.histogram
    counts = np.convolve(np.bincount(index.ravel(), minlength=bins), np.ones(3), "same")  # smoothed by its neighbours
    peak = (int(np.argmax(counts)) + 0.5) * PEAK_BIN - 0.5
    lighter = peak - darkness[darkness < peak]
    return peak, float(np.sqrt(np.mean(lighter ** 2))) if lighter.size else 0.0


def ink_mask(colour: np.ndarray, paper: np.ndarray, darker: float) -> np.ndarray:
    """Pixels darker than the paper by `darker` of its brightness in some channel (ink_darkness: ink;
    half of it: where a faint grid, which ink's mask breaks into dots, still hangs together)."""
    height, width, channels = colour.shape
    mask = np.zeros((height, width), bool)
    for channel in range(channels):
        limit = (paper[..., channel] * (1 - darker)).clip(0, 255).round().astype(np.uint8)  # uint8: 3x faster
        full = Image.fromarray(limit).resize((width, height), Image.Resampling.BILINEAR)
        mask |= colour[..., channel] < np.asarray(full)
    return mask


def reduce_any(mask: np.ndarray, factor: int) -> np.ndarray:
    """The mask `factor` times smaller, a pixel set where any of its block is."""
    height, width = mask.shape[0] // factor, mask.shape[1] // factor
    small = np.zeros((height, width), bool)
    for down in range(factor):
        for across in range(factor):
            small |= mask[down::factor, across::factor][:height, :width]
    return small


def reduce_mean(pixels: np.ndarray, factor: int) -> np.ndarray:
    """A grey (H, W) or colour (H, W, C) picture `factor` times smaller, as floats, a pixel its block's mean."""
    height, width = pixels.shape[0] // factor, pixels.shape[1] // factor
    blocks = pixels[:height * factor, :width * factor].astype(np.float32)
    return blocks.reshape(height, factor, width, factor, *pixels.shape[2:]).mean(axis=(1, 3)) if factor > 1 else blocks


def faint_lines(colour: np.ndarray, paper: np.ndarray, factor: int, mask: np.ndarray,
                floor: float = MIN_DARKNESS) -> tuple[np.ndarray, np.ndarray]:
    """The mask (detection scale) with faint straight lines filled in: once for lines along its rows,
    once along its columns. A fine grid under blur and JPEG is too faint for the ink mask but at its
    crossings (it breaks into dots); averaged over RUN_PIXELS along a line, its darkness stands out of
    the noise, which averaging lowers, while across the line it stays sharp. Only searched pictures pay
    for it (a few ms)."""
    height, width = mask.shape
    small = reduce_mean(colour, factor)
    under = paper[np.arange(height)[:, None] * paper.shape[0] // height,
                  np.arange(width)[None, :] * paper.shape[1] // width]
    darkness = (1 - small / under).max(axis=2)
    averaged = [ndimage.uniform_filter1d(darkness, RUN_PIXELS, axis=along) for along in (1, 0)]
    samples = [mean[::2, ::2] for mean in averaged]
    spreads = []
    for along, sample in zip((1, 0), samples):
        differences = np.abs(np.diff(sample, axis=1 - along))  # none in a picture a few pixels wide
        spreads.append(float(median(differences)) / NEIGHBOUR_DIFFERENCE if differences.size else 0.0)
    # The paper's noise is the same both ways, but lines across the differences add to them: a grid's
    # lines on a small picture took a third of one direction's (lines at 0.20, its limit 0.22).
    spread = min(spreads)
    filled = []
    for mean, sample in zip(averaged, samples):
        limit = max(floor, float(median(sample)) + NOISE_SIGMAS * spread)
        # A filled pixel is faintly dark itself: paper beside a stroke only borrows the stroke's darkness.
        filled.append(mask | ((mean > limit) & (darkness > limit / 2) & (darkness < 2 * limit)))
    return filled[0], filled[1]


def find_rules(mask: np.ndarray, filled: tuple[np.ndarray, np.ndarray] | None = None
               ) -> tuple[list[Line], list[Line], list[Line], list[tuple[float, float, float, float]]]:
    """The horizontal rules, the vertical rules (margins, grid lines), the form boxes' walls and the
    boxes in reading order, in the mask's pixels. The lines are searched in the mask, then in the `filled`
    masks (faint_lines: a faint grid), judged on the mask; a line found in both is the mask's, whose
    thickness is the print's own (filled in, a rule takes in its blurred rim). Filling in only where
    the mask found a rule, or where only the faint mask reached across, read 3 fewer of seed 0's 100
    squared photos right: a faint grid's dots hold no rule of their own. Evenly spaced rules then
    take in the pieces where their spacing puts a line (on_grid), and every rule is followed past the
    ends it was found with (followed)."""
    shortest = min(HORIZONTAL_SPAN, EDGE_SPAN) * mask.shape[1]
    # Horizontal pieces are only ever rules; vertical ones may be box walls, as short as a box.
    lying, upright = line_pieces(mask, shortest), line_pieces(mask.T)
    horizontal = double_rules(lying, spanning(lying, mask, HORIZONTAL_SPAN), mask, HORIZONTAL_SPAN)
    vertical = double_rules(upright, spanning(upright, mask.T, VERTICAL_SPAN), mask.T, VERTICAL_SPAN)
    walls, boxes = box_walls([line for line in upright if line not in vertical], horizontal, mask)
    upright = [line for line in upright if line not in walls]
    lying_mask, upright_mask = filled if filled is not None else (mask, mask)
    if filled is not None:
        lying_filled, upright_filled = line_pieces(lying_mask, shortest), line_pieces(upright_mask.T)
        horizontal += unseen(spanning(lying_filled, mask, HORIZONTAL_SPAN, FILLED_ON_PAPER), horizontal)
        vertical += unseen(spanning(upright_filled, mask.T, VERTICAL_SPAN, FILLED_ON_PAPER), vertical + walls)
        lying, upright = lying + lying_filled, upright + upright_filled
    horizontal, vertical = printed_alike(horizontal, mask), printed_alike(vertical, mask.T)
    horizontal += unseen(on_grid(lying, horizontal, mask), horizontal)
    vertical += unseen(on_grid(upright, vertical, mask.T), vertical + walls)
    return ([followed(line, lying_mask) for line in horizontal], [followed(line, upright_mask.T) for line in vertical],
            walls, boxes)


def double_rules(pieces: list[Line], rules: list[Line], mask: np.ndarray, share: float) -> list[Line]:
    """The rules, and the double rules among the pieces (a legal pad's two margin lines, 4 px apart):
    each line of one has the other beside it, so it has paper on both sides only when taken as one
    line across both. A pair of thin pieces, parallel and within their widths and SIDE_PIXELS of each
    other, is looked at as such a line, in place of either found alone: a rule where it has paper
    beside it along FILLED_ON_PAPER of it, and along as much of it as either line alone at least."""
    found, ruled = list(rules), {id(rule) for rule in rules}
    middle = mask.shape[1] / 2
    thin_pieces = sorted((piece for piece in pieces if thin(piece)), key=lambda piece: piece.across_at(middle))
    for first, a in enumerate(thin_pieces):
        for b in thin_pieces[first + 1:]:
            reach = (a.thickness + b.thickness) / 2 + SIDE_PIXELS + 1
            if b.across_at(middle) - a.across_at(middle) > reach + GRID_SLOPE * mask.shape[1]:
                break  # sorted across: the rest lie further still
            if (id(a) in ruled and id(b) in ruled) or abs(a.slope - b.slope) > GRID_SLOPE or not same_line(a, b, reach):
                continue
            along = (max(a.start, b.start) + min(a.end, b.end)) / 2
            pair = Line((a.slope + b.slope) / 2, (a.offset + b.offset) / 2,
                        abs(a.across_at(along) - b.across_at(along)) + max(a.thickness, b.thickness),
                        max(a.start, b.start), min(a.end, b.end))
            # On paper as a printed line is, and as much as either line alone: a rule and the bottoms of
            # the digits sitting on it have strokes beside them still (0.33 against the rule's 0.47).
            if spanning([pair], mask, share, max(FILLED_ON_PAPER, on_paper(a, mask), on_paper(b, mask))):
                found = [rule for rule in found if rule is not a and rule is not b]
                found += unseen([pair], found)
    return found


def printed_alike(rules: list[Line], mask: np.ndarray) -> list[Line]:
    """The rules but those unlike the others: where more than GRID_RULES run one way, a line more than
    GRID_THICKER thicker than their median, with paper beside it along less than FILLED_ON_PAPER of
    it, is strokes that line up (a 2's top and a 7's bar on squared paper: 5.5 px against the grid's
    2.2, paper beside it along 35%), not print: a sheet's rules are printed alike. Squared and notebook
    paper of seeds 0-2 (300 photos each): 291 -> 292 and 293 -> 294 read right; boxes and pages the same."""
    if len(rules) <= GRID_RULES:
        return rules
    thickness = float(median([rule.thickness for rule in rules]))
    return [rule for rule in rules if rule.thickness <= thickness + GRID_THICKER
            or on_paper(rule, mask) >= FILLED_ON_PAPER]


def unseen(lines: list[Line], found: list[Line]) -> list[Line]:
    """The lines not already found, and each once."""
    kept: list[Line] = []
    for line in lines:
        if not any(same_line(line, other) for other in found + kept):
            kept.append(line)
    return kept


def on_grid(pieces: list[Line], rules: list[Line], mask: np.ndarray) -> list[Line]:
    """The pieces that lie where the rules' even spacing puts a rule (a grid's or a notebook's lines,
    GRID_RULES or more of them): the grid lines that digits cut into pieces too short to span the
    picture, or that a shadow leaves too faint in part. Printed as their neighbours are: parallel,
    as thin, and on paper as much as a line found only filled in (the mask's rows run along them).
    A 1 written on a grid line is thicker than the line, and has little paper beside it."""
    if len(rules) < GRID_RULES:
        return []
    middle = mask.shape[1] / 2
    positions = np.sort([rule.across_at(middle) for rule in rules])
    gaps = np.diff(positions)
    pitch = float(median(gaps))
    if pitch <= 0 or np.mean(np.abs(gaps / pitch - np.round(gaps / pitch)) <= GRID_TOLERANCE) < GRID_REGULAR:
        return []  # not evenly spaced: no grid to complete
    found = []
    for piece in pieces:
        along = (piece.start + piece.end) / 2
        distances = np.array([piece.across_at(along) - rule.across_at(along) for rule in rules])
        nearest = int(np.abs(distances).argmin())
        steps = abs(distances[nearest]) / pitch
        if (1 <= round(steps) <= 2 and abs(steps - round(steps)) <= GRID_TOLERANCE
                and abs(piece.slope - rules[nearest].slope) <= GRID_SLOPE and thin(piece)
                and piece.thickness <= rules[nearest].thickness + GRID_THICKER
                and on_paper(piece, mask) >= FILLED_ON_PAPER):
            found.append(piece)
    return found


def followed(line: Line, mask: np.ndarray) -> Line:
    """The rule followed past its ends for as long as the mask (its rows run along the rule) has ink
    on it with paper beside it on one side at least, over gaps up to CROSS_PIXELS: a rule is found
    where its pieces hang together, and digits crossing it, or a shadow, leave its ends as pieces of
    their own, read as digits if they stayed. A stroke lying along the line (a 1 on a grid line) has
    ink on both sides: the rule is not followed along it, or its darkness would be the pen's."""
    length = mask.shape[1]
    along = np.arange(length)
    reach = int(np.ceil(line.thickness / 2))
    on_line = np.logical_or.reduce([ink_along(line, mask, along, step) for step in range(-reach, reach + 1)])
    beside = line.thickness / 2 + SIDE_PIXELS
    clear = on_line & ~(ink_along(line, mask, along, -beside) & ink_along(line, mask, along, beside))
    start, end = (min(max(int(value), 0), length - 1) for value in (line.start, line.end))
    return replace(line, start=float(start - ink_run(clear[start::-1], CROSS_PIXELS)),
                   end=float(end + ink_run(clear[end:], CROSS_PIXELS)))


def ink_run(present: np.ndarray, gap: int) -> int:
    """How far the ink goes on from present[0] before a gap wider than `gap`."""
    index = np.flatnonzero(present)
    if not index.size or index[0] > gap:
        return 0
    breaks = np.flatnonzero(np.diff(index) > gap + 1)
    return int(index[breaks[0]] if breaks.size else index[-1])


def same_line(a: Line, b: Line, reach: float | None = None) -> bool:
    """Whether two lines found apart are one: they overlap along and lie within their thickness across
    (or `reach` px)."""
    start, end = max(a.start, b.start), min(a.end, b.end)
    if end <= start:
        return False
    reach = max(a.thickness, b.thickness) / 2 + 2 if reach is None else reach
    return all(abs(a.across_at(along) - b.across_at(along)) <= reach for along in (start, end))


def spanning(lines: list[Line], mask: np.ndarray, share: float, on_paper_share: float = MIN_ON_PAPER) -> list[Line]:
    """The thin lines on paper spanning `share` of the picture along them (the mask's rows run along
    them), or EDGE_SPAN when they run off it at both ends: a turned page's rule near a corner leaves
    the picture early, and a written 1 or a 7's bar never reaches two sides of its picture. (Box walls
    need neither: ending on two box edges makes them walls.)"""
    return [line for line in lines if thin(line) and line.end - line.start >= mask.shape[1] * (
        EDGE_SPAN if not any(ends_inside(line, mask.shape)) else share) and on_paper(line, mask) >= on_paper_share]


def line_pieces(mask: np.ndarray, shortest: float = 0) -> list[Line]:
    """The thin straight pieces that run along the mask's rows: runs of RUN_PIXELS or more, joined
    where they touch (a turned rule steps from row to row), each with a line fitted through it; pieces
    shorter than `shortest` px (or 3 runs) are not looked at."""
    closed = mask | bridged(mask, GAP_PIXELS)
    runs, _ = ndimage.label(closed, structure=[[0, 0, 0], [1, 1, 1], [0, 0, 0]])
    long_runs = (np.bincount(runs.ravel()) >= RUN_PIXELS)[runs] & (runs > 0)
    pieces, _ = ndimage.label(long_runs, structure=np.ones((3, 3), bool))
    lines = []
    for number, region in enumerate(ndimage.find_objects(pieces), start=1):
        if region is None or region[1].stop - region[1].start < max(3 * RUN_PIXELS, shortest):
            continue
        across, along = np.nonzero(pieces[region] == number)
        lines += fit_lines(along + region[1].start, across + region[0].start)
    return lines


def on_paper(line: Line, mask: np.ndarray) -> float:
    """The share of the line's length where paper lies on both sides of it. Printed rules lie on
    paper but where strokes cross them; a line through a row of digits (their bottoms, or bars that
    line up) has ink beside it nearly everywhere."""
    along = np.arange(int(line.start), int(line.end) + 1)
    beside = line.thickness / 2 + SIDE_PIXELS
    return float(np.mean(~ink_along(line, mask, along, -beside) & ~ink_along(line, mask, along, beside)))


def ink_along(line: Line, mask: np.ndarray, along: np.ndarray, offset: float) -> np.ndarray:
    """Whether the mask (its rows run along the line) has ink `offset` px across from the line at each
    of `along`. Beyond the picture is paper: a grid line at its edge has one side cut off."""
    rows = np.round(line.slope * along + line.offset + offset).astype(int)
    return mask[rows.clip(0, mask.shape[0] - 1), along] & (rows >= 0) & (rows < mask.shape[0])


def bridged(mask: np.ndarray, gap: int) -> np.ndarray:
    """Where the mask has a pixel within `gap` to the left and within `gap` to the right in its row:
    the gaps a faint rule breaks into under noise and JPEG (a closing, by shifted slices)."""
    left, right = np.zeros_like(mask), np.zeros_like(mask)
    for step in range(1, gap + 1):
        left[:, step:] |= mask[:, :-step]
        right[:, :-step] |= mask[:, step:]
    return left & right


def fit_lines(along: np.ndarray, across: np.ndarray) -> list[Line]:
    """The straight lines through a piece's pixels, strongest first. Strokes touching rules join
    them into one piece (two rules and the digit between them, a 1 beside a grid line), so each line
    found takes its pixels out of the piece and the rest is searched again."""
    lines: list[Line] = []
    remaining = np.ones(along.size, bool)
    while len(lines) < MAX_LINES_PER_PIECE and remaining.sum() >= 3 * RUN_PIXELS:
        line = strongest_line(along[remaining], across[remaining])
        if line is None:
            break
        lines.append(line)
        remaining &= np.abs(across - line.across_at(along)) > line.thickness / 2 + 1
    return [line for line in lines if line.thickness <= MAX_THICKNESS]


def strongest_line(along: np.ndarray, across: np.ndarray) -> Line | None:
    """The line with the most pixels on it, among slopes up to FIT_DEGREES: each pixel votes for the
    offset it would give every slope (a Hough transform over the few slopes a photo's rules take),
    then a least-squares fit through the pixels near the winner."""
    slopes = np.tan(np.radians(np.arange(-FIT_DEGREES, FIT_DEGREES + 0.01, FIT_STEP_DEGREES)))
    step = max(1, along.size // FIT_VOTERS)
    offsets = across[None, ::step] - slopes[:, None] * along[None, ::step]
    lowest = np.floor(offsets.min())
    bins = ((offsets - lowest) // FIT_BIN_PIXELS).astype(np.int64)
    width = int(bins.max()) + 1
    votes = np.bincount((bins + width * np.arange(len(slopes))[:, None]).ravel(), minlength=width * len(slopes))
    slope_index, offset_bin = divmod(int(votes.argmax()), width)
    slope, offset = slopes[slope_index], lowest + (offset_bin + 0.5) * FIT_BIN_PIXELS
    near = np.abs(across - (slope * along + offset)) <= MAX_THICKNESS / 2
    if near.sum() < 3 * RUN_PIXELS or np.ptp(along[near]) < 3 * RUN_PIXELS:
        return None
    slope, offset = np.polyfit(along[near], across[near], 1)
    # Again through the rule's core only: strokes touching it pull a fit, and a pull of half a degree
    # leaves a long rule's ends outside its band.
    core = np.abs(across - (slope * along + offset)) <= CORE_PIXELS
    if core.sum() >= 3 * RUN_PIXELS and np.ptp(along[core]) > 0:
        slope, offset = np.polyfit(along[core], across[core], 1)
    on_line = np.abs(across - (slope * along + offset)) <= MAX_THICKNESS / 2
    start, end = int(along[on_line].min()), int(along[on_line].max())
    covered = np.unique(along[on_line]).size / (end - start + 1)
    if covered < MIN_COVERAGE:  # strokes of digits side by side line up too, with gaps between them
        return None
    # Thickness from the rule's thinner stretches, not its mean: strokes crossing it or running along
    # it (a 1 written against a box wall) add to the mean and the median.
    stretches = max(1, (end - start + 1) // FIT_STRETCH)
    stretch = (along[on_line] - start) * stretches // (end - start + 1)
    per_stretch = np.bincount(stretch, minlength=stretches) * stretches / (end - start + 1)
    thickness = float(percentile(per_stretch[per_stretch > 0], THICKNESS_PERCENTILE))
    return Line(float(slope), float(offset), thickness, float(start), float(end))


def thin(line: Line) -> bool:
    return line.thickness <= THIN_RATIO * (line.end - line.start + 1)


def ends_inside(line: Line, shape: tuple[int, int]) -> list[bool]:
    """For each end of the line, whether it lies inside the picture rather than at its edge. `shape`
    is (across, along) in pixels: (height, width) for a horizontal line, (width, height) for a vertical."""
    across_size, along_size = shape
    return [EDGE_PIXELS < along < along_size - 1 - EDGE_PIXELS and
            EDGE_PIXELS < line.across_at(along) < across_size - 1 - EDGE_PIXELS for along in (line.start, line.end)]


def box_walls(upright: list[Line], horizontal: list[Line], mask: np.ndarray
              ) -> tuple[list[Line], list[tuple[float, float, float, float]]]:
    """The vertical pieces that are form box walls, and the boxes between neighbouring walls (x0, y0,
    x1, y1), row by row from the top, left to right. A wall ends on a rule above and one below, and
    those rules end inside the picture: a form's box edges do, a notebook's rules run off the page."""
    edges = [line for line in horizontal if all(ends_inside(line, mask.shape))]

    def edge_at(x: float, y: float) -> int | None:
        for index, edge in enumerate(edges):
            reach = TOUCH_PIXELS + edge.thickness
            if edge.start - reach <= x <= edge.end + reach and abs(edge.across_at(x) - y) <= reach:
                return index
        return None

    rows: dict[tuple[int, int], list[Line]] = {}
    for wall in upright:
        top = edge_at(wall.across_at(wall.start), wall.start)
        bottom = edge_at(wall.across_at(wall.end), wall.end)
        if (top is not None and bottom is not None and top != bottom and on_paper(wall, mask.T) >= WALL_ON_PAPER
                and crosses_into(wall, edges[top], edges[bottom])):
            rows.setdefault((top, bottom), []).append(wall)
    walls, boxes = [], []
    for (top, bottom), members in sorted(rows.items(), key=lambda item: edges[item[0][0]].offset):
        if len(members) < 2:  # one stroke from edge to edge is no box
            continue
        members.sort(key=middle_of)
        walls += members
        for left, right in zip(members, members[1:]):
            x0, x1 = middle_of(left), middle_of(right)
            middle = (x0 + x1) / 2
            boxes.append((x0, edges[top].across_at(middle), x1, edges[bottom].across_at(middle)))
    return walls, boxes


def crosses_into(wall: Line, top: Line, bottom: Line) -> bool:
    """Whether the wall reaches the middle of both edges it ends on: a printed box's sides run into its
    edges (1.4-5.4 px past their middles, detection scale, in four form photos of seeds 0 and 1), while
    a digit's stem from one edge of a long box to the other stops at an edge's inside or short of it
    (at the top edge +0.9 and -6.2 px, at the bottom -7.0 and -6.8 px: seed 0's photo 87)."""
    return (wall.start <= top.across_at(wall.across_at(wall.start))
            and wall.end >= bottom.across_at(wall.across_at(wall.end)))


def middle_of(line: Line) -> float:
    return line.across_at((line.start + line.end) / 2)


def band_of(line: Line, factor: int) -> Line:
    """A line found on the reduced copy, in the full picture's pixels, widened by its anti-aliased rim."""
    centre = (factor - 1) / 2  # a reduced pixel's centre, in full pixels
    return Line(line.slope, line.offset * factor + centre - line.slope * centre,
                line.thickness * factor + 2 * BAND_MARGIN, line.start * factor, line.end * factor + factor - 1)


def band_pixels(line: Line, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(across, along) indices of the line's band, in a picture of `shape` (across, along)."""
    along = np.arange(max(0, int(line.start)), min(shape[1], int(line.end) + 1))
    if along.size == 0:
        return along, along
    centre = line.slope * along + line.offset
    half = line.thickness / 2
    top, bottom = max(0, int(np.floor(centre.min() - half))), min(shape[0], int(np.ceil(centre.max() + half)) + 1)
    across, step = np.nonzero(np.abs(np.arange(top, bottom)[:, None] - centre[None, :]) <= half)
    return across + top, along[step]


def bands_and_pen(colour: np.ndarray, paper: np.ndarray, ink: np.ndarray, lines: list[Line], upright: bool
                  ) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """The lines' bands as a mask of the picture, the pixels in them far darker than their rule (a
    stroke written along a rule: a light grid line under a 1's stem, the bar of a 4 on a notebook rule;
    or over it), and each rule's darkness. A rule's own darkness is the median along it of its darkest
    pixel across (its core, not its blurred rim, wherever the fitted line lies in it; numbers sitting
    on a rule cover a third of it or less); a pixel past it by STROKE_CONTRAST of the way to black is
    pen. A form's black box edges are as dark as the pen: there it finds nothing, and only the crossing
    test (rule_pixels) keeps strokes. The band's 90th percentile, the first measure, took a rule that numbers sit on for as dark
    as their pen: the median read 1,150 of seeds 0-2's 1,200 paper photos right against 1,137 (pages
    +5, notebook +3, squared +4, boxes +1). `upright` lines are vertical (their `along` is the
    picture's rows)."""
    height, width = ink.shape
    band, pen = np.zeros(ink.shape, bool), np.zeros(ink.shape, bool)
    darknesses = []
    for line in lines:
        across, along = band_pixels(line, (width, height) if upright else (height, width))
        rows, columns = (along, across) if upright else (across, along)
        band[rows, columns] = True
        on_ink = ink[rows, columns]
        if np.count_nonzero(on_ink) < 3:
            continue
        under = paper[rows * paper.shape[0] // height, columns * paper.shape[1] // width]
        darkness = (1 - colour[rows, columns] / under).max(axis=1)
        # Its darkness along its length: the darkest band pixel at each step along it (its core,
        # wherever the fit lies), and of those the median: pen along it is a minority of its length.
        ridge = np.full(int(along.max()) - int(along.min()) + 1, -np.inf, np.float32)
        np.maximum.at(ridge, along[on_ink] - int(along.min()), darkness[on_ink])
        rule = float(percentile(ridge[np.isfinite(ridge)], RULE_PERCENTILE))
        stroke = darkness > rule + STROKE_CONTRAST * (1 - rule)
        pen[rows[stroke], columns[stroke]] = True
        darknesses.append(rule)
    return band, pen, darknesses


def rule_pixels(colour: np.ndarray, paper: np.ndarray, ink: np.ndarray, horizontal: list[Line],
                vertical: list[Line], walls: list[Line]) -> tuple[np.ndarray, list[float]]:
    """The rules' bands less the stroke pixels in them: a band pixel that is ink with stroke ink on
    both sides across the rule (CROSS_SLACK) belongs to a stroke the rule crosses, and one far darker
    than its rule is pen (bands_and_pen). Along a box wall, such pixels running further than
    PRESSED_STROKES pen widths are two digits pressed against the wall from both sides, not a stroke
    across it: they go with the wall (else the wall joins the digits and reads as a 1 between them)."""
    band_h, pen_h, dark_h = bands_and_pen(colour, paper, ink, horizontal, upright=False)
    band_w, pen_w, dark_w = bands_and_pen(colour, paper, ink, walls, upright=True)
    band_v, pen_v, dark_v = bands_and_pen(colour, paper, ink, vertical, upright=True)
    stroke = ink & ~band_h & ~band_v & ~band_w
    widest = max((line.thickness for line in horizontal + vertical + walls), default=0)
    reach = int(np.ceil(widest)) + 2
    removed = band_h | band_v | band_w
    for band, upright, slack in ((band_h, False, CROSS_SLACK), (band_v & ~band_w, True, CROSS_SLACK), (band_w, True, 0)):
        if upright:
            columns, rows = np.nonzero((band & ink).T)
            crossing = on_both_sides(widened(stroke.T, slack), columns, rows, reach)
        else:
            rows, columns = np.nonzero(band & ink)
            crossing = on_both_sides(widened(stroke, slack), rows, columns, reach)
        removed[rows[crossing], columns[crossing]] = False
    band_v, pen_v = band_v | band_w, pen_v | pen_w
    if walls:
        removed |= pressed_against(~removed & band_w & ink, PRESSED_STROKES * stroke_width(stroke))
    # Where two rules cross, the print is darker than either: not pen.
    return removed & ~((pen_h | pen_v) & ~(band_h & band_v)), dark_h + dark_v + dark_w


def no_darker_than_print(colour: np.ndarray, paper: np.ndarray, darknesses: list[float]) -> np.ndarray:
    """What a grid leaves once its lines are taken out (their rims, fine lines too faint or cut too
    short to be found): the pixels no darker than pen over its print (STROKE_CONTRAST past the rules'
    median darkness, as bands_and_pen tells pen from print) and more than a pixel from anything darker,
    so a stroke keeps its blurred rim. Left in, a fine grid joined digits to each other and to the
    picture's edges (engineering paper of seeds 0-1, 200 photos: 159 -> 179 read right; squared paper
    +1, every other kind the same). Nothing where the ink is no darker than the print (a black grid)."""
    height, width, channels = colour.shape
    if not darknesses:  # no rule had ink enough to be measured
        return np.zeros((height, width), bool)
    rule = float(median(darknesses))
    floor = rule + STROKE_CONTRAST * (1 - rule)
    under = np.stack([np.asarray(Image.fromarray(paper[..., channel]).resize((width, height), Image.Resampling.BILINEAR))
                      for channel in range(channels)], axis=2)
    darkness = (1 - colour / under).max(axis=2)
    if float(percentile(darkness[::3, ::3], INKIEST_PERCENTILE)) < floor + INK_PAST_FLOOR:
        return np.zeros((height, width), bool)
    return (darkness < floor) & ~grown(darkness >= floor, 3)


def pressed_against(kept: np.ndarray, longest: float) -> np.ndarray:
    """The pieces of `kept` (stroke pixels kept in a wall's band) running more than `longest` rows."""
    pieces, _ = ndimage.label(kept, structure=np.ones((3, 3), bool))
    long = [number for number, region in enumerate(ndimage.find_objects(pieces), start=1)
            if region is not None and region[0].stop - region[0].start > longest]
    return np.isin(pieces, long) if long else np.zeros(kept.shape, bool)


def stroke_width(mask: np.ndarray) -> float:
    """Twice the area over the edge length: a stroke of width w and length l has area w*l and two
    edges of length l. The edge is what a 3x3 cross's erosion takes (beyond the picture is not
    ink), by shifted slices: scipy's erosion costs more in its call than in its work here."""
    inner = mask.copy()
    inner[[0, -1], :] = False
    inner[:, [0, -1]] = False
    inner[1:] &= mask[:-1]
    inner[:-1] &= mask[1:]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    edge = np.count_nonzero(mask) - np.count_nonzero(inner)
    return 2 * np.count_nonzero(mask) / edge if edge else 0.0


# np.percentile and np.median, to the bit, without their general machinery: a picture's reading takes
# a dozen of them on small arrays, where that machinery costs more than the partition itself.
def percentile(values: np.ndarray | list, q: float | list[float]) -> np.ndarray | np.floating:
    """np.percentile(values, q) over all values, by its default linear interpolation."""
    flat = np.asarray(values).ravel()
    if flat.size == 0:
        return np.percentile(flat, q)
    index = (flat.size - 1) * np.asarray(np.true_divide(q, 100))
    lower = np.minimum(np.floor(index), flat.size - 1).astype(np.intp)
    upper = np.minimum(lower + 1, flat.size - 1)
    ordered = np.partition(flat, np.unique(np.concatenate(([0, flat.size - 1], lower.ravel(), upper.ravel()))))
    below, above = ordered[lower], ordered[upper]
    # Scalar q mixes in as a Python float, a list of them as float64, as numpy promotes them.
    weight = float(index - np.floor(index)) if type(q) in (int, float) else index - np.floor(index)
    step = above - below
    result = np.where(np.asarray(weight) >= 0.5, above - step * (1 - weight), below + step * weight)
    return result[()] if result.ndim == 0 else result


def median(values: np.ndarray | list) -> np.floating:
    """np.median(values) over all values: the mean of the middle one or two."""
    flat = np.asarray(values).ravel()
    if flat.size == 0:
        return np.median(flat)
    middle = flat.size // 2
    if flat.size % 2:
        return np.mean(np.partition(flat, middle)[middle:middle + 1])
    return np.mean(np.partition(flat, [middle - 1, middle])[middle - 1:middle + 1])


def on_both_sides(mask: np.ndarray, rows: np.ndarray, columns: np.ndarray, reach: int) -> np.ndarray:
    """For each pixel (rows[i], columns[i]): whether the mask has a pixel within `reach` rows above it
    and within `reach` rows below it, in its column. Only the rules' pixels are looked at, a few
    times each, not the whole picture."""
    above, below = np.zeros(rows.size, bool), np.zeros(rows.size, bool)
    last = mask.shape[0] - 1
    for step in range(1, reach + 1):
        above |= mask[np.maximum(rows - step, 0), columns] & (rows - step >= 0)
        below |= mask[np.minimum(rows + step, last), columns] & (rows + step <= last)
    return above & below
