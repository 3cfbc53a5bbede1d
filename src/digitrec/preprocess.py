"""From a real picture to MNIST-style 28x28 digits, the way MNIST itself was made.

A picture goes through: decode to grayscale -> even out the light and decide which side is ink ->
a two-level (hysteresis) threshold -> connected components, merged into digits and ordered left to
right -> each digit cropped at full resolution, its pen brought into MNIST's range, its longest side
scaled to 20 px with anti-aliasing, padded to 28x28 and centred by centre of mass. A digit much wider
than tall also offers its cuts in two, which predict tries when the model reads it unsurely (two digits
that touch). Everything is whole-array numpy, scipy.ndimage and Pillow work, so a picture takes
milliseconds.
"""

from __future__ import annotations

import io
import math
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, NamedTuple

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from scipy import ndimage

from digitrec.errors import DigitrecError, InputTooLarge, UnsupportedInput
from digitrec.rules import median, percentile, reduce_mean, remove_rules, stroke_width

MAX_PIXELS = 50_000_000  # a 50-megapixel photo; more is a decompression bomb or not a picture of digits
WORK_SIDE = 2048  # bigger pictures are box-reduced to this first: digits in them stay far above 20 px
STROKE_PIXELS = 8  # pictures with wider strokes are box-reduced until they are about this wide
SMALL_SIDE = 64  # pictures less high or wide (a number cropped tight, a thumbnail) are enlarged to this first
PEN_WINDOW = 160  # the pen's width is measured at full resolution in a window this wide
SAMPLE_PIXELS = 10_000  # statistics of the whole picture come from at most this many of its pixels (medians cost)
BACKGROUND_SIDE = 48  # the light is estimated on a picture this small: it varies slowly
BACKGROUND_SHORT_SIDE = 16  # but at least this high, so a long strip of digits stays more than a line
OPENING_STROKES = 3  # the light's estimate looks past ink this many strokes wide
# What lies around the sheet (preprocess.without_surroundings): the sheet is told from it on a copy
# SHEET_SIDE px wide (SHEET_SHORT_SIDE high at least), where the sheet ends in a step of STEP a pixel
# (falling light: 0.01) to something whose level differs from the sheet's by STEP_LEVEL or more; the
# sheet's level is taken SHEET_INSIDE copy pixels inside its even region.
SHEET_SIDE, SHEET_SHORT_SIDE = 96, 32
STEP, STEP_LEVEL = 0.04, 0.05
SHEET_INSIDE = 3
# In the picture's own pixels, the surroundings are what lies SLIVER of the way or more from the
# sheet's level to theirs, past the paper's noise (PAPER_NOISE), joined to what the copy saw or along
# BORDER_SHARE of the picture's border, and EDGE_BLUR px more for the edge's blur (lens, JPEG).
SLIVER, PAPER_NOISE = 0.25, 0.03
BORDER_SHARE = 0.02
EDGE_BLUR = 2
# A patch cut off from the sheet by the surroundings is theirs where it lies at their level: within
# STEP_LEVEL on average, under ISLAND_INK of its pixels INK_OFF or more from it (ink's strokes).
INK_OFF, ISLAND_INK = 0.15, 0.01
# An editor's fill (fill_level): one level at all four corners to CORNER_SPREAD, or, JPEG'd, to
# JPEG_SPREAD where each corner's even patch ends in a step within one of FILL_WINDOWS (px). On the
# copy, fill is what lies within FILL_SPREAD of its level, and the sheet it surrounds is FILL_SHEET of
# the picture at least (a 10-degree turn of a long strip: 47%). JPEG's ringing spreads a fill's corners
# over up to 9 grey steps: with JPEG_SPREAD at 6, turned photos of seeds 0-3 (make_photos, 800) read 747
# right, at 12 752, none fewer; each corner's patch is still what lies within PATCH_SPREAD of the level
# (at 12 too, 755 read right, but read_conditions lost 5 notebook and form photos at half the light,
# faded or blurred, and small pictures 1 of 500: a lens's gradient passed for a fill's edge).
CORNER_SPREAD, JPEG_SPREAD, PATCH_SPREAD = 1.5 / 255, 12 / 255, 6 / 255
FILL_WINDOWS = (32, 128)
FILL_SPREAD = 0.02
FILL_SHEET = 0.4
# A fill is flat: the spread of the picture's pixels within a copy pixel is at most FILL_GRAIN_CORNERS
# times the corners' (JPEG leaves some in a fill) or FILL_GRAIN (0..1; half a grey step) where the
# corners have none; a photographed sheet's is one to two grey steps (0.004-0.007 on a framed photo).
FILL_GRAIN, FILL_GRAIN_CORNERS = 0.002, 3.0
DIGIT_SIDE, FRAME_SIDE, CENTRE = 20, 28, 14.0  # MNIST: longest side 20 px, 28x28, mass centre at (14, 14)


@dataclass(frozen=True)
class ReadingSettings:
    """The tunable choices of reading a picture, passed as a value: a test or a benchmark that tries
    other ones makes its own copy (dataclasses.replace(DEFAULT_SETTINGS, cuts=8)), never changes ours."""

    min_contrast: float = 0.15  # ink differs from the paper by at least this fraction of the paper's brightness
    noise_sigmas: float = 6.0  # and stands out of the paper's noise by this many standard deviations
    min_piece_pixels: int = 3  # ink too small to be worth a look,
    crumb_fraction: float = 0.002  # or smaller than this share of the largest piece,
    max_pieces: int = 100  # and a bound on the pieces looked at
    merge_overlap: float = 0.5  # pieces sharing this much of the narrower one's width belong to one digit
    fragment_height: float = 0.6  # a piece lower than this share of its neighbour, close over or under it, is part of it
    fragment_reach: float = 0.1  # over its columns or beside them, by a gap up to this share of its height,
    fragment_ink: float = 0.4  # if it has less than this share of its ink
    fragment_touch: float = 0.15  # or its ink comes this close (a share of the digit's height): a pen lifted for a moment
    # A fragment may also reach past the digit's middle if it hangs from within this share of the
    # digit's height of its top or bottom: a thin pen's 4 came apart into its stem and the rest, read
    # "61". Seeds 0-1 (1,800 paper, touching and number photos, 4,000 single digits): 2 more read
    # right (a 4 each), none fewer.
    fragment_end: float = 0.15
    # A dot (its longer side under this share of the digit's height) is a fragment only when its ink
    # nearly touches (fragment_touch: a crumbling stroke), and joins no digit it shares columns with:
    # dotted paper's dots, merged into the digit under them one by one, grew it to the picture's top.
    fragment_size: float = 0.15
    # Pieces sharing columns are one digit no further apart than this share of the taller one's height:
    # a stroke broken by a faint stretch is (the gap 0.3 of a half), a column of dots is not (gaps of
    # several dots' heights). Dotted paper of seeds 0-1 (400 photos): 373 -> 395 read right (0.3-1.0
    # the same; fragment_size alone 384); single digits, numbers, touching digits and the other paper
    # kinds (200-2,000 photos of each) the same or better (measured with both in place).
    merge_reach: float = 1.0
    short_fraction: float = 0.3  # digits lower than this share of the tallest one are dots, dashes or dust
    speck_fraction: float = 0.05  # or whose largest piece is smaller than this share of the largest one (crumbs)
    dash_fraction: float = 0.12  # or with less ink than this share of the inkiest digit: a 1 has about a third of an 8's
    # A piece this many times taller than the other pieces with ink enough for a digit (dash_fraction),
    # and narrower than remnant_width of its height, is a printed line the rules left, a margin or a
    # frame's side, not writing: taken as the tallest digit it made every digit beside it a dash, or
    # joined the lines it crosses into one (a legal pad's double margin, read "1" for "351735").
    remnant_height: float = 2.5
    remnant_width: float = 0.25
    pen_range: tuple[float, float] = (1.8, 4.5)  # beyond MNIST's 5th-95th percentiles of stroke width (twice area over edge) at 20 px
    wide_aspect: float = 0.9  # a digit wider than this times its height may be two that touch (the model decides)
    cut_range: tuple[float, float] = (0.3, 0.7)  # where, across its width, such a pair is cut,
    cuts: int = 4  # and in how many places at most
    split_margin: float = 0.3  # how much surer than the whole both halves of a cut must be read (no line reader)
    line_overlap: float = 0.5  # a digit shares this much of the lower one's height with the digit before it on its line
    # A line holding a piece too wide for one digit (two that touch) is read whole by the line reader
    # (weights/line.onnx), which needs no cut: on photos of numbers with two touching digits it read
    # far more right than cutting (docs/line-reader-card.md); False keeps to cutting.
    whole_lines: bool = True
    # In a number (a line of two pieces or more), so is a line with a piece wider than this share of its
    # height: a pair written into each other with a narrow digit in it ("17" in 417) can be read surely as
    # one digit, and is no wider than many single digits (a 4 is 0.78 of its height at the median of
    # single-digit photos, 1.05 at the 95th percentile; a 0 0.9 and 1.25). Touching photos of seeds 0-3
    # (800): 754 -> 757 read right; numbers of seeds 0 and 1 (1,000): one fewer. A lone piece that wide
    # is read whole only when the digit model reads it less surely than lone_unsure.
    line_aspect: float = 0.7
    # A lone piece wider than line_aspect, and read less surely than this, is read whole too: two touching
    # digits with a narrow one in them ("41", "14") make one piece a 4's width that the digit model reads
    # as one digit at 0.88, just under label smoothing's cap near 0.9. Touching photos of seeds 0-3 (800):
    # 757 -> 761 read right (0.89, 0.91 and every wide lone piece the same); single digits, form boxes and
    # notebook paper of seeds 0 and 1 (1,000 each) the same. It sends 29% of single-digit photos to the
    # line reader, where every wide lone piece would send 72%: a digit's median time 0.2-0.3 ms more, not 0.85.
    lone_unsure: float = 0.9
    # So is a line with a digit read less surely than this: two touching digits with a 1 among them
    # ("11", "41") are no wider than one digit. Label smoothing caps sure digits near 0.9; a tenth of
    # single-digit photos fall under 0.86, a twentieth under 0.82 (make_photos, seeds 0 and 1).
    line_unsure: float = 0.8
    # and its reading is taken where it reads each digit with at least this probability, or more surely
    # than the digit model read its least sure digit there (predict._takes_whole): MNIST's flat,
    # open 0 (test digit 1748) was read "87" at 0.68 and 0.54. On 200 touching photos (seeds 0 and 1)
    # floors of 0.6, 0.7 and 0.8 alone read 93.5%, 93.0% and 92.5% right, but at 0.7 two of seed 0's
    # 2,000 single-digit photos came out as two digits (a 0 read "89", a 7 "57").
    line_sure: float = 0.8


DEFAULT_SETTINGS = ReadingSettings()


@dataclass
class Segment:
    """One digit as the network wants it, and where it was in the picture."""

    image: np.ndarray  # (28, 28) uint8, white on black, centred by mass
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in the original picture's pixels (x1, y1 exclusive)
    # For a digit wider than digits are: its cuts in two at a few thin columns, made when asked (two
    # digits that touch, if the model reads both halves far more surely than the whole; predict decides).
    cuts: Callable[[], list[tuple["Segment", "Segment"]]] | None = None
    line: int = 0  # which line of writing it is on, counted from the top


def decode_image(source: bytes | str | Path, name: str | None = None) -> Image.Image:
    """Any picture Pillow reads (file path or bytes) as an upright grayscale "L" image.

    `name` is what error messages call it (default: its path, or "the upload").
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _decode(io.BytesIO(source), name or "the upload")
    try:
        handle = open(source, "rb")
    except IsADirectoryError:
        raise DigitrecError(f"{source} is a folder; give a picture file") from None
    except OSError as error:
        raise DigitrecError(f"cannot read {source}: {error.strerror or error}") from error
    with handle:
        return _decode(handle, name or str(source))


def _decode(handle: BinaryIO, name: str) -> Image.Image:
    if handle.seek(0, io.SEEK_END) == 0:
        raise UnsupportedInput(f"{name} is empty (0 bytes); give a picture file such as a PNG or JPEG")
    handle.seek(0)
    try:
        with warnings.catch_warnings():
            # Pillow warns about big pictures and damaged EXIF blocks; MAX_PIXELS below says the first
            # more clearly, and a picture with broken metadata is still read (or refused in one line).
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            warnings.simplefilter("ignore", UserWarning)
            image = Image.open(handle)
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise InputTooLarge(f"{name} is {width}x{height} pixels, more than the {MAX_PIXELS:,} digitrec "
                                    "reads; scale it down or crop it to the digits")
            if image.format == "JPEG" and image.mode == "RGB":
                image.draft("L", image.size)  # its stored brightness: a fifth faster than decoding colour
            image.load()  # the first frame of an animation
            return _to_grayscale(ImageOps.exif_transpose(image))
    except Image.DecompressionBombError as error:
        raise InputTooLarge(f"{name} is too large to decode ({error}); scale it down or crop it") from error
    except UnidentifiedImageError:
        raise UnsupportedInput(f"{name} is not a picture digitrec can read; give a PNG, JPEG, GIF, BMP, "
                               "WebP or TIFF file") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as error:
        raise UnsupportedInput(f"{name} is a damaged or truncated picture ({error}); "
                               "save or download it again") from error


def _to_grayscale(image: Image.Image) -> Image.Image:
    if image.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        # Deeper than 8 bits: scale the format's range (16-bit for anything above 255) down to bytes.
        values = np.asarray(image, dtype=np.float32)
        top = max(float(values.max(initial=0)), 1.0)
        top = 255.0 if top <= 255 else 65535.0 if top <= 65535 else top
        return Image.fromarray((values.clip(0, top) * (255 / top)).round().astype(np.uint8))
    if image.mode == "P" and "transparency" in image.info or image.mode in ("PA", "RGBa", "La"):
        image = image.convert("RGBA")
    if "A" in image.getbands():
        gray, alpha = (np.asarray(band, dtype=np.float32) for band in image.convert("LA").split())
        if alpha.min() < 255:
            # A drawing canvas: strokes on transparency. Put them on the background that shows
            # them, as the page around the canvas did: white under dark strokes, black under light.
            weight = alpha / 255
            stroke = float((gray * weight).sum() / max(weight.sum(), 1.0))
            background = 255.0 if stroke < 128 else 0.0
            return Image.fromarray((gray * weight + background * (1 - weight)).round().astype(np.uint8))
    try:
        return image.convert("L")
    except ValueError:  # modes such as LAB convert to L only through RGB
        return image.convert("RGB").convert("L")


@dataclass
class Paper:
    """What a small copy of the picture tells about its light, its ink and its strokes."""

    dark_ink: bool
    light: np.ndarray  # the paper's level on the small copy, ink side up (dark ink: 1 - brightness)
    factor: float  # the picture's pixels per small-copy pixel
    inkiest: tuple[int, int]  # (row, column) of the small copy's strongest ink
    # Whether something other than the sheet may lie around it (a table, a frame): much of the border
    # strays from the surface fitted to it, the picture's middle, paper and all, strays from it, or
    # its corners were filled (`fill`).
    surrounded: bool
    fill: float | None  # the level an editor filled the corners with (fill_level); None for none


def small_copy(gray: Image.Image, side: int, short_side: int) -> tuple[np.ndarray, float]:
    """The picture box-reduced to about `side` px on its long side but at least `short_side` on its
    short one (a long strip of digits stays more than a line), as floats 0..1, and the picture's
    pixels per pixel of it."""
    factor = max(1.0, min(max(gray.size) / side, min(gray.size) / short_side))
    size = (max(1, round(gray.width / factor)), max(1, round(gray.height / factor)))
    return np.asarray(gray.resize(size, Image.Resampling.BOX), dtype=np.float32) / 255, factor


def border_values(array: np.ndarray) -> np.ndarray:
    """A 2-D array's outermost rows and columns, each pixel once."""
    return np.concatenate([array[0], array[-1], array[1:-1, 0], array[1:-1, -1]])


def middle_third(array: np.ndarray) -> np.ndarray:
    """The middle third of a 2-D array each way: where a picture's subject is, whatever its edges hold."""
    rows, columns = array.shape
    return array[rows // 3:rows - rows // 3, columns // 3:columns - columns // 3]


def scale_box(box: tuple[int, int, int, int], scale: float, limit: tuple[int, int, int, int]
              ) -> tuple[int, int, int, int]:
    """A box (x0, y0, x1, y1) of a copy `scale` picture pixels to a pixel of it, in the picture's pixels
    from the corner (limit[0], limit[1]), held within `limit` (x1, y1 exclusive, rounded outwards)."""
    x0, y0, x1, y1 = box
    return (limit[0] + int(x0 * scale), limit[1] + int(y0 * scale),
            min(limit[0] + math.ceil(x1 * scale), limit[2]), min(limit[1] + math.ceil(y1 * scale), limit[3]))


def without_surroundings(gray: Image.Image, fill: float | None) -> Image.Image:
    """The picture with what lies around the sheet (a table, a scanner's lid, a frame, the corners a
    turned picture was filled with, at level `fill`: Paper.fill) made paper, continued from the
    sheet's nearest edge; the picture itself where nothing does (`surroundings`, `filled_corners`).

    The small copy finds the surroundings and the levels; the picture's own pixels say where they end
    (`_surroundings_mask`): a turned picture's filled corners end in slivers thinner than a pixel of
    the small copy, which were left as a dark or light streak along the sheet's edge and read as ink."""
    small, _ = small_copy(gray, SHEET_SIDE, SHEET_SHORT_SIDE)
    if min(small.shape) < 12:
        return gray
    closed = without_strokes(small)
    picture = np.asarray(gray, np.float32) / 255
    found = surroundings(closed) or filled_corners(picture, closed, fill)
    if found is None:
        return gray
    if fill is not None:  # a fill's own level, not the small copy's blend of it and the sheet, which
        # can run smoothly from one into the other along the fill's tip
        sheet = found.sheet & (np.abs(closed - median(closed[found.sheet])) < np.abs(closed - fill))
        found = Surroundings(found.outside, sheet if sheet.any() else found.sheet, np.full(closed.shape, fill, np.float32))
    # The sheet's level from well inside it: its even region runs out along a fill's soft tip.
    inside = ndimage.binary_erosion(found.sheet, iterations=SHEET_INSIDE)
    paper = _spread(closed, inside if inside.any() else found.sheet, gray.size)
    mask = _surroundings_mask(picture, paper, _spread(found.level, found.outside, gray.size), found.outside)
    return Image.fromarray(np.where(mask, paper * 255, picture * 255).round().clip(0, 255).astype(np.uint8))


def _surroundings_mask(picture: np.ndarray, paper: np.ndarray, around: np.ndarray, outside: np.ndarray) -> np.ndarray:
    """Where, in the picture's own pixels (0..1), the surroundings lie: what the small copy saw there
    (`outside`, and one copy pixel more), and the pixels a quarter of the way or more from the sheet's
    level (`paper`) to theirs (`around`; the edge's blur, a sliver's antialiased pixels), beyond the
    paper's noise and not past their level (ink darker than a grey table is ink), joined to what it
    saw within two copy pixels of it or lying along the picture's border (a filled corner's tip, cut
    off from the rest where two fills meet); then the patches of sheet they cut off at their level
    (`_cut_off_alike`), grown by the edge's blur. Not two copy pixels of the sheet's edge wholesale:
    a digit written close to it was made paper."""
    size = picture.shape[::-1]
    seen = _resized_mask(ndimage.binary_dilation(outside), size, Image.Resampling.NEAREST)
    near = _resized_mask(ndimage.binary_dilation(outside, iterations=2), size, Image.Resampling.BILINEAR)
    gap, taken = np.abs(around - paper), (picture - paper) * np.sign(around - paper)
    towards = (taken > np.maximum(SLIVER * gap, PAPER_NOISE)) & (taken < gap + PAPER_NOISE)
    pieces, count = ndimage.label(seen | (towards & near))
    joined = np.zeros(count + 1, bool)
    joined[pieces[seen]] = True  # never 0: every seen pixel is in a piece
    slivers, count = ndimage.label(towards)
    ring = border_values(slivers)
    along = np.bincount(ring, minlength=count + 1) >= BORDER_SHARE * len(ring)
    along[0] = False
    mask = joined[pieces] | along[slivers]
    mask |= _cut_off_alike(np.abs(picture - around), mask)
    return ndimage.maximum_filter(mask, size=2 * EDGE_BLUR + 1)


def _resized_mask(mask: np.ndarray, size: tuple[int, int], resample: Image.Resampling) -> np.ndarray:
    """A small copy's mask at `size` (width, height): its own pixels (NEAREST), or with BILINEAR every
    pixel they reach."""
    return np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(size, resample)) > 0


def _cut_off_alike(off: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The patches outside `mask` other than the largest (the sheet) that lie at the surroundings'
    level (`off`: each pixel's distance from it): on average within STEP_LEVEL of it, under ISLAND_INK
    of their pixels INK_OFF or more from it. A vignette's dark end beside a table of its shade, cut
    off from the sheet where the light passes the table's level, is more of the table; ink cut off
    from the sheet is far from its level."""
    islands, count = ndimage.label(~mask)
    areas = np.bincount(islands.ravel(), minlength=count + 1)
    levels = np.bincount(islands.ravel(), off.ravel(), count + 1) / np.maximum(areas, 1)
    inked = np.bincount(islands.ravel(), (off > INK_OFF).ravel(), count + 1) / np.maximum(areas, 1)
    areas[0] = 0
    alike = (levels < STEP_LEVEL) & (inked < ISLAND_INK)
    alike[[0, int(np.argmax(areas))]] = False
    return alike[islands]


class Surroundings(NamedTuple):
    """What lies around the sheet on a picture's small copy: where (`outside`), at what `level` there
    (0..1, the small copy's shape), and where the sheet surely is (`sheet`)."""

    outside: np.ndarray
    sheet: np.ndarray
    level: np.ndarray


def fill_level(gray: Image.Image) -> float | None:
    """The level (0..1) an editor filled a turned or framed picture's corners with; None for a photo.

    A fill is one level at all four corners, to the grey step (CORNER_SPREAD); a photo's corners hardly
    ever are, whatever its lens does to them. JPEG blurs a fill's level by a few steps (JPEG_SPREAD):
    then each corner's even patch must also end all round in a step towards the picture's middle
    (`_fill_ends`), which a lens's evenly darkened corners do not."""
    width, height = gray.size
    pixels = [gray.getpixel((x, y)) for x in (0, width - 1) for y in (0, height - 1)]
    if max(pixels) - min(pixels) > JPEG_SPREAD * 255:  # most photos, told apart at the cost of four pixels
        return None
    corners = [np.asarray(gray.crop((x, y, x + 2, y + 2)), np.float32) / 255
               for x in (0, max(width - 2, 0)) for y in (0, max(height - 2, 0))]
    levels = [float(corner.mean()) for corner in corners]
    spread = max(max(levels) - min(levels), max(float(np.ptp(corner)) for corner in corners))
    level = float(median(levels))
    if spread <= CORNER_SPREAD:
        return level
    if spread > JPEG_SPREAD:
        return None
    middle, _ = small_copy(gray, SHEET_SIDE, SHEET_SHORT_SIDE)
    towards = float(np.sign(median(middle_third(middle)) - level))
    ends = all(_fill_ends(gray, level, towards, right, bottom) for right in (False, True) for bottom in (False, True))
    return level if ends else None


def _fill_ends(gray: Image.Image, level: float, towards: float, right: bool, bottom: bool) -> bool:
    """Whether the even patch at `level` in one corner of the picture ends in a step all round, within
    one of FILL_WINDOWS (px) of the corner, and a step `towards` the picture's middle (+1 up, -1 down):
    a grid's cell in a corner darkened by the lens ends in its dark lines, the sheet beyond it is light."""
    width, height = gray.size
    for side in FILL_WINDOWS:
        side = max(1, min(side, width, height))
        x, y = (width - side) * right, (height - side) * bottom
        window = np.asarray(gray.crop((x, y, x + side, y + side)), np.float32) / 255
        window = window[::-1 if bottom else 1, ::-1 if right else 1]  # the picture's corner at [0, 0]
        pieces, _ = ndimage.label(np.abs(window - level) <= PATCH_SPREAD)
        patch = pieces == pieces[0, 0] if pieces[0, 0] else np.zeros(window.shape, bool)
        if patch.mean() <= 0.9:
            beyond = ndimage.binary_dilation(patch, iterations=3) & ~ndimage.binary_dilation(patch)
            return bool(beyond.any()) and float(percentile((window[beyond] - level) * towards, 20)) >= STEP_LEVEL
    return False


def filled_corners(picture: np.ndarray, closed: np.ndarray, level: float | None) -> Surroundings | None:
    """Where, on the small copy without strokes (`closed`) of a picture (0..1) whose corners were
    filled with `level` (fill_level), that fill lies and where the sheet is; None for no fill, or one
    that is most of the picture or of its middle (a clean scan's white, a drawing's). A turn of a few
    degrees leaves fills too thin for the small copy to see as regions of their own. A flat fill at
    the sheet's own level is taken too: made the sheet's level, it changes nothing but its edge.

    A fill is flat as well as at its level, and it runs in from the picture's border: a sheet darkened
    by the lens to the fill's level, or a dark fill's level met by ink, keeps the grain of paper and
    camera that an editor's fill has not."""
    if level is None:
        return None
    grain = pixel_spread(picture, closed.shape)
    corners = ([0, 0, -1, -1], [0, -1, 0, -1])
    flat = grain <= max(FILL_GRAIN, FILL_GRAIN_CORNERS * float(median(grain[corners])))
    candidates = (np.abs(closed - level) < FILL_SPREAD) & flat
    # Not the paper itself, a drawing's or a clean scan's white around its digits: a sheet is most of
    # the picture, and of its middle, the strokes closed away.
    if middle_third(candidates).mean() > 0.5 or candidates.mean() > 1 - FILL_SHEET:
        return None
    candidates[corners] = True  # a fill thinner than the small copy's pixels is still there
    pieces, _ = ndimage.label(candidates)
    ring = border_values(pieces)
    outside = np.isin(pieces, ring[ring > 0])
    sheet = ~ndimage.binary_dilation(outside, iterations=2)
    if not sheet.any():
        return None
    return Surroundings(outside, sheet, np.full(closed.shape, level, np.float32))


def pixel_spread(picture: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The standard deviation of a picture's pixels (0..1) within each pixel of a box-reduced copy of
    `shape` (rows, columns): its grain, at the copy's size."""
    size = (shape[1], shape[0])
    mean = np.asarray(Image.fromarray(picture).resize(size, Image.Resampling.BOX))
    square = np.asarray(Image.fromarray(picture * picture).resize(size, Image.Resampling.BOX))
    return np.sqrt(np.maximum(square - mean * mean, 0))


def _spread(small: np.ndarray, region: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The small copy's levels on `region` carried to every pixel from its nearest one in it, at `size`."""
    nearest = ndimage.distance_transform_edt(~region, return_distances=False, return_indices=True)
    return np.asarray(Image.fromarray(small[tuple(nearest)]).resize(size, Image.Resampling.BILINEAR))


def without_strokes(small: np.ndarray) -> np.ndarray:
    """A small copy of a picture with thin dark lines (ink, rules, grids) closed away: what lies under them."""
    # A digit's stroke is at most an eighth of the picture's short side (a bold digit filling it).
    return ndimage.grey_closing(small, size=2 * round(min(small.shape) / 16) + 1)


def surroundings(closed: np.ndarray) -> Surroundings | None:
    """Where, on a small copy of a picture (0..1) without its strokes (without_strokes, so they part
    nothing), something lies around the sheet, and the sheet's even region; None where nothing does.

    Around the sheet lies whatever meets the picture's border over a tenth of it or more, is even
    inside and ends at a sharp step from the sheet: the largest even part of the picture's middle, a
    quarter of the picture or more. A lens's or a lamp's falling light has no step in it.
    """
    step = np.hypot(ndimage.sobel(closed, 0), ndimage.sobel(closed, 1)) / 8
    labels, count = ndimage.label(step < STEP)
    area = np.bincount(labels.ravel(), minlength=count + 1)
    in_middle = np.unique(middle_third(labels))
    in_middle = in_middle[in_middle > 0]
    if not len(in_middle):
        return None
    sheet = int(in_middle[np.argmax(area[in_middle])])
    if area[sheet] < closed.size / 4:  # the inside of a big digit's bold stroke or loop, not a sheet
        return None
    ring = border_values(labels)
    along = np.bincount(ring, minlength=count + 1)
    on_sheet = labels == sheet
    outside = [label for label in range(1, count + 1) if label != sheet and along[label] >= 0.1 * len(ring)
               and area[label] >= 0.02 * closed.size and _steps_from(closed, labels == label, on_sheet)]
    return Surroundings(np.isin(labels, outside), on_sheet, closed) if outside else None


def _steps_from(closed: np.ndarray, region: np.ndarray, sheet: np.ndarray) -> bool:
    """Whether a region differs in level from the sheet right beside it: a table does; paper cut off
    from the sheet by a big digit's strokes is as light as the paper across them, however the light
    falls."""
    beside = ndimage.binary_dilation(region, iterations=4) & sheet
    return bool(beside.any()) and abs(float(median(closed[region])) - float(median(closed[beside]))) >= STEP_LEVEL


def survey(gray: Image.Image) -> Paper:
    """The light and the polarity, from a copy BACKGROUND_SIDE px wide (light varies slowly).

    A smooth surface fitted to the copy's border is the paper's light (a gradient, a lens darkening
    the corners); the ink is whichever side of the paper (darker or lighter) strays furthest from it. What the surface misses (a shadow) is a grey opening of the rest with the ink side
    up, three strokes wide: it erases the strokes and keeps the light.
    """
    small, factor = small_copy(gray, BACKGROUND_SIDE, BACKGROUND_SHORT_SIDE)
    surface, border_fit = paper_surface(small)
    strays = small - surface
    # A fifth of the middle is paper even under a big digit; under a frame, none of it is the frame's level.
    fill = fill_level(gray)
    surrounded = (border_fit < 0.85 or float(percentile(np.abs(middle_third(strays)), 20)) > 0.05
                  or fill is not None)
    darkest, lightest = percentile(strays, [1, 99])
    dark_ink = -darkest > lightest
    if dark_ink:
        surface, strays = 1 - surface, -strays
    stroke = max(stroke_width(strays > float(strays.max(initial=0)) / 2), 1.0)
    reach = int(np.clip(round(OPENING_STROKES * stroke), 3, min(small.shape)))
    light = surface + ndimage.uniform_filter(ndimage.grey_opening(strays, size=reach), reach, mode="nearest")
    inkiest = np.unravel_index(int(np.argmax(strays)), strays.shape)
    return Paper(dark_ink, light, factor, (int(inkiest[0]), int(inkiest[1])), surrounded, fill)


def pen_width(gray: Image.Image, paper: Paper) -> float:
    """Stroke width in the picture's own pixels, measured at full resolution in a window around the
    strongest ink (the small copy cannot: it blurs fine strokes close together into one wide one).

    Ink is what is past halfway from the window's median (paper, unless ink fills it) to its 99th
    percentile; a window full of ink measures thin, which only makes the work slower, never wrong.
    """
    half = PEN_WINDOW // 2
    row, column = ((index + 0.5) * paper.factor for index in paper.inkiest)
    left = int(np.clip(column - half, 0, max(gray.width - PEN_WINDOW, 0)))
    top = int(np.clip(row - half, 0, max(gray.height - PEN_WINDOW, 0)))
    box = (left, top, min(left + PEN_WINDOW, gray.width), min(top + PEN_WINDOW, gray.height))
    # Half size, as a float mean: a width of 8 px or more matters, and PIL's reduce rounds a mean
    # ending in .5 up, which reads a picture and its inverse up to 10% apart in width.
    window = reduce_mean(np.asarray(gray.crop(box)), 2)
    if paper.dark_ink:
        window = 255 - window
    paper_level, ink_level = percentile(window, [50, 99])
    return 2 * stroke_width(window > (paper_level + ink_level) / 2)


def ink_map(pixels: np.ndarray, paper: Paper) -> tuple[np.ndarray, float, np.ndarray]:
    """How much ink each pixel holds (0 = paper, about 1 = solid ink), the paper's noise level, and
    an evenly spread sample of the ink map for statistics.

    Ink is measured relative to the paper's brightness, so a shadow does not make it fainter.
    """
    height, width = pixels.shape
    if paper.dark_ink:
        pixels = 1 - pixels
    light = np.asarray(Image.fromarray(paper.light).resize((width, height), Image.Resampling.BILINEAR))
    ink = (pixels - light) / np.maximum(1 - light, 0.2)
    step = max(1, math.ceil(math.sqrt(ink.size / SAMPLE_PIXELS)))
    sample = ink[::step, ::step]
    ink -= median(sample)  # the opening sits on the paper's noise troughs, not its middle
    # Noise from neighbouring pixels' differences: strokes' edges are too few to move their median.
    neighbours = sample[:, 1:] - sample[:, :-1]
    noise = 1.4826 * float(median(np.abs(neighbours))) / math.sqrt(2) if neighbours.size else 0.0
    return ink, noise, sample


def paper_surface(small: np.ndarray, rounds: int = 2) -> tuple[np.ndarray, float]:
    """A quadratic surface through the paper, fitted to the picture's border (paper more than
    anything, whatever the ink in the middle), refitted without the border pixels far from it
    (ink touching the edge); and the share of the border it fits."""
    height, width = small.shape  # float64 below: the normal equations square the range
    rows = (np.arange(height, dtype=np.float64) / max(height, 1) - 0.5)[:, None]
    columns = (np.arange(width, dtype=np.float64) / max(width, 1) - 0.5)[None, :]
    border = np.ones(small.shape, bool)
    border[1:-1, 1:-1] = False
    on_rows, on_columns = np.broadcast_to(rows, small.shape)[border], np.broadcast_to(columns, small.shape)[border]
    terms = np.stack([np.ones_like(on_rows), on_rows, on_columns, on_rows * on_rows, on_columns * on_columns,
                      on_rows * on_columns], -1)
    values = small[border].astype(np.float64)
    inside = np.ones(len(values), bool)
    for _ in range(rounds):
        used = terms[inside]  # least squares by the normal equations: 6x6, far cheaper than lstsq
        coefficients = np.linalg.solve(used.T @ used + 1e-6 * np.eye(6), used.T @ values[inside])
        strays = np.abs(values - terms @ coefficients)
        inside = strays <= 3 * 1.4826 * median(strays) + 0.01
    constant, row, column, row_squared, column_squared, product = coefficients.tolist()
    surface = (constant + row * rows + column * columns + row_squared * (rows * rows)
               + column_squared * (columns * columns) + product * (rows * columns))
    return surface.astype(np.float32), float(inside.mean())


def as_mnist(gray: Image.Image) -> Segment | None:
    """The picture itself (white on black) when it already is an MNIST digit: 28x28 on a black (or
    white) ground, its ink 20 px on its longest side and centred by mass. Preprocessing would only
    blur it a little, and a program sending digits in the model's own form should get them read fast."""
    if gray.size != (FRAME_SIDE, FRAME_SIDE):
        return None
    pixels = np.asarray(gray)
    if median(pixels) >= 128:
        pixels = 255 - pixels
    if median(pixels) > 0 or pixels.max() < 128:
        return None
    rows, columns = np.nonzero(pixels)
    if not DIGIT_SIDE - 2 <= max(np.ptp(rows), np.ptp(columns)) + 1 <= DIGIT_SIDE + 1:
        return None
    if np.abs(np.array(ndimage.center_of_mass(pixels)) - CENTRE).max() > 1:
        return None
    box = (int(columns.min()), int(rows.min()), int(columns.max()) + 1, int(rows.max()) + 1)
    return Segment(np.array(pixels), box)


@dataclass
class TextLine:
    """One line of writing whole, as a line reader reads it."""

    ink: np.ndarray  # (h, w) float32 0..1, white on black: the line's ink at the working scale
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in the original picture's pixels (x1, y1 exclusive)
    scale: float  # the picture's pixels per pixel of `ink` (under 1 for a small picture, enlarged)


def preprocess_image(image: Image.Image, single: bool = False, settings: ReadingSettings = DEFAULT_SETTINGS
                     ) -> list[Segment]:
    """The digits in a picture, its lines top to bottom and each left to right, as MNIST-style 28x28
    images; [] when there is no ink. `single` treats all the ink as one digit."""
    return preprocess_page(image, single, settings)[0]


def preprocess_page(image: Image.Image, single: bool = False, settings: ReadingSettings = DEFAULT_SETTINGS
                    ) -> tuple[list[Segment], list[TextLine]]:
    """preprocess_image's digits, and the lines of writing they are on, whole (TextLine k holds the
    segments whose `line` is k; none for a picture already in MNIST's form)."""
    gray = image if image.mode == "L" else _to_grayscale(image)
    if (digit := as_mnist(gray)) is not None:
        return [digit], []
    paper = survey(gray)
    if paper.surrounded and (cleaned := without_surroundings(gray, paper.fill)) is not gray:
        gray, paper = cleaned, survey(cleaned)
    work, scale = working_copy(gray, paper)
    # Printed rules, grids and form boxes are paper, not ink: taken out before anything is segmented.
    ruling = remove_rules(work, paper.dark_ink)
    ink, noise, sample = ink_map((ruling.cleaned if ruling.found else work).astype(np.float32) / 255, paper)
    found = find_pieces(ink, noise, sample, settings)
    if found is None:
        return [], []
    labels, pieces, low, level = found
    pieces = without_remnants(pieces, settings)
    # Lines first, then digits within each: a digit merged with the one under it would read as neither.
    lines = [[Piece.union(pieces)]] if single else [merge_pieces(line, labels, settings)
                                                     for line in text_lines(pieces, settings)]
    kept = {id(group) for group in drop_specks([group for line in lines for group in line], settings)}
    lines = [line for line in ([group for group in line if id(group) in kept] for line in lines) if line]

    def picture_box(x0: int, y0: int, x1: int, y1: int) -> tuple[int, int, int, int]:
        return scale_box((x0, y0, x1, y1), scale, (0, 0, gray.width, gray.height))

    def ink_of(group: Piece) -> np.ndarray:
        x0, y0, x1, y1 = group.box
        values = np.clip((ink[y0:y1, x0:x1] - low) / max(level - low, 1e-6), 0, 1)
        return np.where(np.isin(labels[y0:y1, x0:x1], group.labels), values, 0).astype(np.float32)

    def segment(crop: np.ndarray, x0: int, y0: int, line: int, cut: bool) -> Segment:
        def cuts() -> list[tuple[Segment, Segment]]:
            return [(segment(left_part, x0 + left_at[1], y0 + left_at[0], line, False),
                     segment(right_part, x0 + right_at[1], y0 + right_at[0], line, False))
                    for (left_part, left_at), (right_part, right_at) in cuts_in_two(crop, settings)]

        wide = cut and crop.shape[1] > settings.wide_aspect * crop.shape[0]
        box = picture_box(x0, y0, x0 + crop.shape[1], y0 + crop.shape[0])
        return Segment(mnist_style(crop, settings), box, cuts if wide else None, line)

    segments = [segment(ink_of(group), group.box[0], group.box[1], number, cut=not single)
                for number, line in enumerate(lines) for group in sorted(line, key=lambda group: group.box[0])]
    whole = [Piece.union(line) for line in lines]
    return segments, [TextLine(ink_of(line), picture_box(*line.box), scale) for line in whole]


def working_copy(gray: Image.Image, paper: Paper) -> tuple[np.ndarray, float]:
    """The picture at the size its digits are found at, and the picture's pixels per pixel of it.

    The smallest size that keeps strokes STROKE_PIXELS wide: a 20 px digit needs no more, and a big
    photo shrinks to a few milliseconds' work. The shrinking goes in half steps, not whole ones: a pen
    12-15 px wide stayed so, with rules and box walls beside it too thick for the search for them, and
    the photos of seeds 0-1 enlarged twice (a phone held closer) read 4,607 of 5,200 right, against
    4,974 at their own size. A picture less than SMALL_SIDE high or wide (a number
    cropped tight) is enlarged to that, bicubic, first: at 27 px high, rule removal took a 2's base or
    a 7's bar for a rule in 7 of 200 such pictures, and 188 of them were read right, 195 enlarged
    (191 enlarged only after rule removal). Photos at least SMALL_SIDE on a side are read as before:
    enlarged, the grids of squared paper 90-128 px high were found worse (docs/predict.md).
    """
    enlarge = min(math.ceil(SMALL_SIDE / max(min(gray.size), 1)), WORK_SIDE // max(gray.size))
    if enlarge > 1:
        size = (gray.width * enlarge, gray.height * enlarge)
        return np.asarray(gray.resize(size, Image.Resampling.BICUBIC)), 1 / enlarge
    # In half steps: a whole factor is PIL's exact reduce, and a pen under 1.5 STROKE_PIXELS wide is
    # left as it is (its photos read as they always did).
    reduce = max(math.ceil(max(gray.size) / WORK_SIDE), math.floor(2 * pen_width(gray, paper) / STROKE_PIXELS) / 2)
    if reduce <= 1:
        return np.asarray(gray), 1.0
    if reduce == int(reduce):
        return np.asarray(gray.reduce(int(reduce))), reduce
    size = (max(1, round(gray.width / reduce)), max(1, round(gray.height / reduce)))
    return np.asarray(gray.resize(size, Image.Resampling.BOX)), gray.width / size[0]


def text_lines(pieces: list[Piece], settings: ReadingSettings = DEFAULT_SETTINGS) -> list[list[Piece]]:
    """Pieces grouped into lines of writing, top to bottom.

    Digit-sized pieces are swept left to right, each joining the line whose last piece shares the most
    of its rows (at least `line_overlap` of the lower one's height), else starting a line: a line
    follows its own tilt and baselines digit by digit, so lines of a turned page, or close under each
    other, stay apart (one span per line grew with a turned page's tilt until it took in the next
    line). Digit-sized is `fragment_height` of a digit's height, the median of the pieces at least
    half as tall as the tallest, not of the tallest: two digits of neighbouring lines that touch are
    one piece twice as tall. A smaller piece (a detached bar, a dot) joins the line of the digit-sized
    piece nearest it, but a thread, lower than `short_fraction` of a digit and wider than two (an
    underline, what is left of a rule at the picture's edge), is on no line: merged with the digits
    whose columns it shares, it made them one. A piece sharing too few rows with any line's last piece
    joins the line of one whose box it overlaps, over most of its columns (stacked_on): the top and
    bottom of a digit broken across its middle, which made two lines of a digit each."""
    tallest = max(piece.height for piece in pieces)
    typical = float(median([piece.height for piece in pieces if 2 * piece.height >= tallest]))
    pieces = [piece for piece in pieces
              if piece.height >= settings.short_fraction * typical or piece.width <= 2 * typical]
    digit_sized = sorted((piece for piece in pieces if piece.height >= settings.fragment_height * typical),
                         key=lambda piece: piece.box[0] + piece.box[2])
    lines: list[list[Piece]] = []
    for piece in digit_sized:
        shared = [rows_shared(piece, line[-1]) / min(piece.height, line[-1].height) for line in lines]
        best = int(np.argmax(shared)) if shared else -1
        if shared and shared[best] >= settings.line_overlap:
            lines[best].append(piece)
        elif (stacked := next((line for line in lines if stacked_on(piece, line[-1], settings)), None)) is not None:
            stacked.append(piece)
        else:
            lines.append([piece])
    line_of = {id(piece): number for number, line in enumerate(lines) for piece in line}
    for piece in pieces:
        if id(piece) not in line_of:
            nearest = min(digit_sized, key=lambda other: box_distance(piece, other))
            lines[line_of[id(nearest)]].append(piece)
    return sorted(lines, key=lambda line: np.mean([(piece.box[1] + piece.box[3]) / 2 for piece in line]))


def stacked_on(piece: Piece, other: Piece, settings: ReadingSettings = DEFAULT_SETTINGS) -> bool:
    """Whether two pieces are the top and bottom of one digit broken across (a 3 or a 5 whose middle
    was written faintly): their boxes overlap, and one lies over most of the other's columns. Digits
    of neighbouring lines seldom overlap so: single digits of seeds 0-1 (4,000 photos) read 2 more
    right, and 1,600 photos of paper, pages, touching digits and numbers read exactly as before."""
    return (rows_shared(piece, other) > 0
            and columns_shared(piece, other) >= settings.merge_overlap * min(piece.width, other.width))


def rows_shared(a: Piece, b: Piece) -> int:
    return min(a.box[3], b.box[3]) - max(a.box[1], b.box[1])


def columns_shared(a: Piece, b: Piece) -> int:
    """The columns two pieces' boxes share (negative: the gap between them)."""
    return min(a.box[2], b.box[2]) - max(a.box[0], b.box[0])


def box_distance(a: Piece, b: Piece) -> float:
    """The gap between two pieces' boxes (0 when they overlap)."""
    across = max(a.box[0] - b.box[2], b.box[0] - a.box[2], 0)
    down = max(a.box[1] - b.box[3], b.box[1] - a.box[3], 0)
    return math.hypot(across, down)


def cuts_in_two(crop: np.ndarray, settings: ReadingSettings = DEFAULT_SETTINGS
                ) -> list[list[tuple[np.ndarray, tuple[int, int]]]]:
    """Ways to cut a crop into two digits: at the thinnest column of each of `cuts` stretches across its
    middle (the thinnest of all can be the bar of a 4, not where two digits meet). Each cut is its two
    halves, cropped to their ink, with their (top, left) in the crop."""
    width = crop.shape[1]
    ink = crop.sum(axis=0)
    bounds = np.linspace(settings.cut_range[0] * width, settings.cut_range[1] * width,
                         settings.cuts + 1).round().astype(int)
    cuts = []
    for start, stop in zip(bounds[:-1], bounds[1:]):
        column = int(start) + int(np.argmin(ink[start:max(stop, start + 1)]))
        halves = []
        for left, part in ((0, crop[:, :column]), (column, crop[:, column:])):
            rows, columns = np.nonzero(part)
            if len(rows):
                halves.append((part[rows.min():rows.max() + 1, columns.min():columns.max() + 1],
                               (int(rows.min()), left + int(columns.min()))))
        if len(halves) == 2:
            cuts.append(halves)
    return cuts


OBJECT_SIDE = 28  # Fashion-MNIST: the object's longest side fills the frame
OBJECT_NOISE_SIGMAS = 6.0  # what stands out of the background's noise by this many deviations is the thing
OBJECT_FLOOR = 1.0  # and by at least a grey level: a clean rendering has no noise to measure


def preprocess_object(image: Image.Image) -> list[Segment]:
    """A picture of one thing (a shoe, a shirt) as Fashion-MNIST has it: light on black, cropped to the
    thing, its longest side scaled to 28 px, centred in a 28x28 frame.

    Unlike a digit, the thing's own shading is what the model reads, so its grey levels are kept
    (only shifted so the background is black), and the frame is filled, not centred by mass.
    """
    gray = np.asarray(image if image.mode == "L" else _to_grayscale(image), dtype=np.float32)
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    background = float(median(border))
    # Product photos are dark things on white; Fashion-MNIST turned them light on black.
    values = (background - gray) if background >= 128 else (gray - background)
    values = values.clip(0, None) * (255 / max(background if background >= 128 else 255 - background, 1.0))
    noise = 1.4826 * float(median(np.abs(border - background)))
    rows, columns = np.nonzero(values > max(OBJECT_NOISE_SIGMAS * noise, OBJECT_FLOOR))
    if not len(rows):
        return []  # blank: nothing stands out from the background
    y0, y1, x0, x1 = int(rows.min()), int(rows.max()) + 1, int(columns.min()), int(columns.max()) + 1
    crop = values[y0:y1, x0:x1].clip(0, 255)
    scale = OBJECT_SIDE / max(crop.shape)
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    thing = np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.LANCZOS)).clip(0, 255)
    frame = np.zeros((OBJECT_SIDE, OBJECT_SIDE), np.float32)
    # Fashion-MNIST puts the odd pixel of padding before the thing, not after.
    top, left = (OBJECT_SIDE - thing.shape[0] + 1) // 2, (OBJECT_SIDE - thing.shape[1] + 1) // 2
    frame[top:top + thing.shape[0], left:left + thing.shape[1]] = thing
    return [Segment(frame.round().astype(np.uint8), (x0, y0, x1, y1))]


def find_pieces(ink: np.ndarray, noise: float, sample: np.ndarray, settings: ReadingSettings = DEFAULT_SETTINGS
                ) -> tuple[np.ndarray, list[Piece], float, float] | None:
    """Connected pieces of ink (labels, pieces, and the threshold and level that made them), or None
    when there is no ink.

    A two-level threshold from the ink's own level: strokes are the pixels past half of it, and each
    stroke keeps its blurred rim down to an eighth of it, as long as that stays out of the noise.
    """
    contrast, noise_floor = settings.min_contrast, settings.noise_sigmas * noise
    if float(ink.max(initial=0)) < max(contrast, noise_floor):
        return None
    candidates = sample[sample > max(contrast / 2, noise_floor)]
    level = float(percentile(candidates, 90)) if candidates.size else float(ink.max())
    high = max(level / 2, contrast / 2, noise_floor)
    low = max(level / 8, 3 * noise)
    labels, count = ndimage.label(ink > low, structure=np.ones((3, 3), bool))
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    strong = np.zeros(count + 1, bool)
    strong[labels[ink > high]] = True
    strong[0] = False
    # Only crumbs go here; whether a small piece is a speck or part of a digit is decided after merging.
    smallest = max(settings.min_piece_pixels, settings.crumb_fraction * sizes[strong].max(initial=0))
    kept = np.flatnonzero(strong & (sizes >= smallest))
    kept = kept[np.argsort(sizes[kept])[::-1][:settings.max_pieces]]
    if not len(kept):
        return None
    slices = ndimage.find_objects(labels)
    pieces = [Piece([int(label)], _box(slices[label - 1]), int(sizes[label]), int(sizes[label])) for label in kept]
    return labels, pieces, low, level


def _box(region: tuple[slice, slice]) -> tuple[int, int, int, int]:
    return region[1].start, region[0].start, region[1].stop, region[0].stop


@dataclass
class Piece:
    """Connected ink, or several pieces taken as one digit."""

    labels: list[int]
    box: tuple[int, int, int, int]  # x0, y0, x1, y1
    pixels: int
    largest: int  # pixels of its largest connected piece

    @property
    def width(self) -> int:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> int:
        return self.box[3] - self.box[1]

    @staticmethod
    def union(pieces: list["Piece"]) -> "Piece":
        boxes = [piece.box for piece in pieces]
        return Piece([label for piece in pieces for label in piece.labels],
                     (min(box[0] for box in boxes), min(box[1] for box in boxes),
                      max(box[2] for box in boxes), max(box[3] for box in boxes)),
                     sum(piece.pixels for piece in pieces), max(piece.largest for piece in pieces))


def share_columns(a: Piece, b: Piece, settings: ReadingSettings = DEFAULT_SETTINGS) -> bool:
    """Pieces sharing most of the narrower one's columns are one digit: a broken stroke, a crossed 7;
    but not a dot with a digit, nor dots with each other (fragment_size, merge_reach)."""
    shared = columns_shared(a, b)
    small, large = sorted((a, b), key=lambda piece: max(piece.width, piece.height))
    gap = max(a.box[1] - b.box[3], b.box[1] - a.box[3], 0)
    return (shared >= settings.merge_overlap * min(a.width, b.width)
            and max(small.width, small.height) >= settings.fragment_size * large.height
            and gap <= settings.merge_reach * max(a.height, b.height))


def fragment_of(short: Piece, tall: Piece, labels: np.ndarray, settings: ReadingSettings = DEFAULT_SETTINGS
                ) -> tuple[float, float] | None:
    """(The gap between their ink, the columns they share (negative: the gap between them)) when
    `short` is a fragment of `tall`, such as the detached bar of a 5: much lower, close over or under
    its top or bottom half (or hanging from its top or bottom), and over its columns or just beside them, with little ink or nearly
    touching; a dot only when it nearly touches (a crumbling stroke's crumbs, not a dotted page's
    dots). None when it is not."""
    if short.height >= settings.fragment_height * tall.height:
        return None
    shared = columns_shared(short, tall)
    middle = (tall.box[1] + tall.box[3]) / 2
    # In its top or bottom half, or hanging from its top or bottom (a thin pen's 4 whose diagonal and bar
    # come down past its stem's middle); a dash across the middle, reaching neither, stays apart.
    reach = settings.fragment_end * tall.height
    off_middle = (short.box[3] <= middle or short.box[1] >= middle
                  or short.box[1] - tall.box[1] <= reach or tall.box[3] - short.box[3] <= reach)
    close = max(tall.box[1] - short.box[3], short.box[1] - tall.box[3]) < settings.fragment_height * tall.height
    if not (off_middle and close and (shared > 0 or -shared < settings.fragment_reach * tall.height)):
        return None
    gap = ink_gap(labels, short, tall)
    # Just beside it, not over it, only a piece with little ink or one that nearly touches it (a flat
    # 2 beside a 0 is a digit); and a dot only one that nearly touches it.
    inky_beside = shared <= 0 and short.pixels >= settings.fragment_ink * tall.pixels
    dot = max(short.width, short.height) < settings.fragment_size * tall.height
    if (inky_beside or dot) and gap > settings.fragment_touch * tall.height:
        return None
    return gap, shared


def ink_gap(labels: np.ndarray, a: Piece, b: Piece) -> float:
    """The shortest distance in pixels between the ink of two pieces."""
    x0, y0 = min(a.box[0], b.box[0]), min(a.box[1], b.box[1])
    x1, y1 = max(a.box[2], b.box[2]), max(a.box[3], b.box[3])
    window = labels[y0:y1, x0:x1]
    distance = ndimage.distance_transform_edt(~np.isin(window, a.labels))
    return float(distance[np.isin(window, b.labels)].min())


def merge_pieces(pieces: list[Piece], labels: np.ndarray, settings: ReadingSettings = DEFAULT_SETTINGS
                 ) -> list[Piece]:
    """Pieces of one digit joined: first each fragment to the piece whose ink it nearly touches (the
    detached bar of a 5 goes to the 5 whose top it left, not to the 0 or 3 under its far end), the
    one it overlaps most among equals; then pieces that share columns."""
    groups = list(pieces)
    while True:
        candidates = [(-round(found[0]), found[1], i, j)
                      for i, short in enumerate(groups) for j, tall in enumerate(groups)
                      if i != j and (found := fragment_of(short, tall, labels, settings)) is not None]
        if not candidates:
            break
        *_, i, j = max(candidates)
        groups[j] = Piece.union([groups[j], groups[i]])
        del groups[i]
    merged = True
    while merged:
        pairs = ((i, j) for i in range(len(groups)) for j in range(i + 1, len(groups)))
        merged = next(((i, j) for i, j in pairs if share_columns(groups[i], groups[j], settings)), None)
        if merged:
            i, j = merged
            groups[i] = Piece.union([groups[i], groups[j]])
            del groups[j]
    return groups


def without_remnants(pieces: list[Piece], settings: ReadingSettings = DEFAULT_SETTINGS) -> list[Piece]:
    """The pieces less any printed line left standing (ReadingSettings.remnant_height): tall and thin
    beside pieces of ink enough for digits that are all far lower. A lone 1 has no such neighbours."""
    most = max(piece.pixels for piece in pieces)
    inky = [piece for piece in pieces if piece.pixels >= settings.dash_fraction * most]

    def remnant(piece: Piece) -> bool:
        others = [other.height for other in inky if other is not piece]
        return (bool(others) and piece.width < settings.remnant_width * piece.height
                and piece.height > settings.remnant_height * float(median(others)))

    kept = [piece for piece in pieces if not remnant(piece)]
    return kept or pieces


def drop_specks(groups: list[Piece], settings: ReadingSettings = DEFAULT_SETTINGS) -> list[Piece]:
    """Dots, dashes and dust: much lower or with much less ink than the biggest digit (a stray mark
    beside a digit, as in some of MNIST's own crops), or made of crumbs alone (a dotted trail is not a
    stroke). The tallest digit is the tallest with ink enough for one: a thread left of a margin, a
    few pixels wide and taller than the digits, made a flat 0 beside it a dash."""
    most = max(group.pixels for group in groups)
    tallest = max(group.height for group in groups if group.pixels >= settings.dash_fraction * most)
    largest = max(group.largest for group in groups)
    return [group for group in groups if group.height >= settings.short_fraction * tallest
            and group.pixels >= settings.dash_fraction * most and group.largest >= settings.speck_fraction * largest]


def even_pen(crop: np.ndarray, settings: ReadingSettings = DEFAULT_SETTINGS) -> np.ndarray:
    """Strokes grown or thinned into MNIST's range of pen widths, measured at its 20 px scale:
    a ballpoint on a big digit becomes a pen, a marker a thinner one."""
    scale = DIGIT_SIDE / max(crop.shape)
    width = stroke_width(crop >= 0.5) * scale
    target = min(max(width, settings.pen_range[0]), settings.pen_range[1])
    size = 2 * round(abs(target - width) / 2 / scale) + 1
    if not width or size == 1:
        return crop
    if width < target:
        return ndimage.maximum_filter(np.pad(crop, size // 2), size=size)
    return ndimage.minimum_filter(crop, size=size)


def mnist_style(crop: np.ndarray, settings: ReadingSettings = DEFAULT_SETTINGS) -> np.ndarray:
    """A tight crop of one digit's ink (floats 0..1) as MNIST has it: 20 px longest side, 28x28, centred."""
    crop = even_pen(crop, settings)
    height, width = crop.shape
    scale = DIGIT_SIDE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # Lanczos keeps a stroke's edge as sharp as MNIST's anti-aliased NIST scans have it; bilinear
    # softened it, and the model read photos' digits less surely (docs/predict.md).
    digit = np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.LANCZOS)).clip(0, 1)
    digit = digit / max(float(digit.max(initial=0)), 1e-6)
    rows, columns = digit.shape
    centre_row, centre_column = ndimage.center_of_mass(digit) if digit.any() else (rows / 2, columns / 2)
    top = int(np.clip(round(CENTRE - centre_row), 0, FRAME_SIDE - rows))
    left = int(np.clip(round(CENTRE - centre_column), 0, FRAME_SIDE - columns))
    frame = np.zeros((FRAME_SIDE, FRAME_SIDE), np.float32)
    frame[top:top + rows, left:left + columns] = digit
    return (frame * 255).round().astype(np.uint8)
