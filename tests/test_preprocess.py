"""Preprocessing real pictures into MNIST-style digits: decoding, light and polarity, segmentation."""

from __future__ import annotations

import io
import math
import time
import zlib

import numpy as np
import pytest
from PIL import Image, ImageDraw
from scipy import ndimage

from digitrec.errors import DigitrecError, InputTooLarge, UnsupportedInput
from digitrec.preprocess import MAX_PIXELS, WORK_SIDE, decode_image, preprocess_image

PAPER, INK = 225, 40


def encode(image: Image.Image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format, **options)
    return buffer.getvalue()


def page(size=(600, 240), strokes=(), width=14, paper=PAPER, ink=INK) -> Image.Image:
    """Dark lines on light paper: each stroke is a list of points, scaled from a 0-100 square."""
    image = Image.new("L", size, paper)
    draw = ImageDraw.Draw(image)
    for points in strokes:
        draw.line(points, fill=ink, width=width, joint="curve")
    return image


def zero(x: int, y: int, height: int = 150) -> list:
    """An ellipse as a closed line whose bounding box starts at (x, y)."""
    angles = np.linspace(0, 2 * np.pi, 40)
    return [(x + height * 0.3 * (1 + np.cos(a)), y + height * 0.5 * (1 + np.sin(a))) for a in angles]


def one(x: int, y: int, height: int = 150) -> list:
    return [(x, y), (x, y + height)]


def ink_box(image: np.ndarray) -> tuple[int, int]:
    rows, columns = np.nonzero(image)
    return rows.max() - rows.min() + 1, columns.max() - columns.min() + 1


def difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two 28x28 images, at the best of one-pixel shifts (centring rounds)."""
    a, b = a.astype(int), b.astype(int)
    return min(np.abs(np.roll(a, (dy, dx), (0, 1)) - b).mean() for dy in (-1, 0, 1) for dx in (-1, 0, 1))


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels: a decompression bomb's calling card."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([1, 0, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(64))) + chunk(b"IEND", b"")


# --- Decoding ----------------------------------------------------------------------------------

def test_jpeg_exif_rotation_is_applied():
    wide = page((300, 120), [one(40, 10, 100)])
    rotated = wide.transpose(Image.Transpose.ROTATE_270)  # what the sensor stored: the picture on its side
    exif = Image.Exif()
    exif[0x0112] = 8  # orientation: turn it 90 degrees anticlockwise to view
    decoded = decode_image(encode(rotated, "JPEG", exif=exif, quality=95))
    assert decoded.size == wide.size and decoded.mode == "L"
    assert np.abs(np.asarray(decoded, float) - np.asarray(wide, float)).mean() < 3


def test_sixteen_bit_grey_is_scaled_not_clipped():
    values = np.linspace(0, 65535, 256 * 4, dtype=np.uint16).reshape(4, 256)
    decoded = np.asarray(decode_image(encode(Image.fromarray(values), "PNG")), int)
    assert decoded.min() == 0 and decoded.max() == 255
    assert np.all(np.diff(decoded[0]) >= 0) and len(np.unique(decoded)) > 200


def test_gif_first_frame_is_read():
    first, second = page((120, 120), [one(60, 10, 100)]), Image.new("L", (120, 120), PAPER)
    data = encode(first.convert("P"), "GIF", save_all=True, append_images=[second.convert("P")], duration=50)
    assert np.asarray(decode_image(data))[60, 60] < 100


@pytest.mark.parametrize("stroke, background", [((0, 0, 0), 255), ((255, 255, 255), 0), ((30, 60, 200), 255)])
def test_canvas_strokes_on_transparency_land_on_a_background_that_shows_them(stroke, background):
    canvas = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).line([(50, 10), (50, 90)], fill=(*stroke, 255), width=8)
    decoded = np.asarray(decode_image(encode(canvas, "PNG")), int)
    assert decoded[5, 5] == background
    assert abs(decoded[50, 50] - background) > 100


def test_palette_and_cmyk_pictures_decode_to_the_same_grey():
    gray = page((200, 100), [one(100, 10, 80)])
    reference = np.asarray(gray, float)
    for data in (encode(gray.convert("P"), "PNG"), encode(gray.convert("CMYK"), "TIFF"),
                 encode(gray.convert("RGB"), "WEBP", lossless=True), encode(gray, "BMP")):
        assert np.abs(np.asarray(decode_image(data), float) - reference).mean() < 2


@pytest.mark.parametrize("content, error, words", [
    (b"", UnsupportedInput, "empty"),
    (b"just some text\n", UnsupportedInput, "not a picture"),
    (png_declaring(10_000, 10_000), InputTooLarge, f"more than the {MAX_PIXELS:,}"),
    (png_declaring(100_000, 100_000), InputTooLarge, "too large"),
    (encode(page(), "PNG")[:300], UnsupportedInput, "damaged or truncated"),
], ids=["empty", "text", "bomb", "bomb-beyond-pillow", "truncated"])
def test_bad_files_get_one_clear_error(content, error, words, tmp_path):
    path = tmp_path / "picture.png"
    path.write_bytes(content)
    started = time.perf_counter()
    for source in (content, path):
        with pytest.raises(error, match=words):
            decode_image(source)
    assert time.perf_counter() - started < 2, "a bomb must be refused from its header, before decoding"


def test_missing_files_and_folders_are_named(tmp_path):
    with pytest.raises(DigitrecError, match="cannot read .*nothing.png"):
        decode_image(tmp_path / "nothing.png")
    with pytest.raises(DigitrecError, match="is a folder"):
        decode_image(tmp_path)


# --- One digit, MNIST style --------------------------------------------------------------------

def test_a_digit_comes_out_as_mnist_has_it():
    [segment] = preprocess_image(page((400, 300), [zero(150, 60)]))
    image = segment.image
    assert isinstance(image, np.ndarray) and image.shape == (28, 28) and image.dtype == np.uint8
    assert max(ink_box(image)) in (20, 21)  # longest side 20 px (plus anti-aliasing)
    assert image.max() == 255 and image[:3].sum() == 0 and image[:, :3].sum() == 0
    centre = ndimage.center_of_mass(image.astype(float))
    assert np.allclose(centre, (14, 14), atol=0.5)
    x0, y0, x1, y1 = segment.box  # the ellipse spans x 150-240, y 60-210, plus half the pen
    assert abs(x0 - 143) <= 4 and abs(y0 - 53) <= 4 and abs(x1 - 247) <= 4 and abs(y1 - 217) <= 4


def test_polarity_is_decided_by_the_picture():
    dark_on_light = page((300, 300), [zero(100, 70)])
    light_on_dark = Image.eval(dark_on_light, lambda value: 255 - value)
    [dark], [light] = preprocess_image(dark_on_light), preprocess_image(light_on_dark)
    # The same digit in the same place; a pen 13.8 px wide is shrunk by 1.5, which rounds a grey
    # step differently here and there.
    assert dark.box == light.box
    assert np.abs(dark.image.astype(int) - light.image.astype(int)).max() <= 1


def test_uneven_light_is_evened_out():
    flat = page((500, 300), [zero(80, 70), one(300, 70)])
    rows, columns = np.mgrid[0:300, 0:500]
    shadow = 0.45 + 0.55 * columns / 500 - 0.3 * ((rows / 300 - 0.5) ** 2)  # dark on the left, darker corners
    lit = Image.fromarray((np.asarray(flat, float) * shadow).astype(np.uint8))
    assert np.asarray(lit)[5, 5] < np.asarray(lit)[150, 250] - INK  # the paper in the corner is darker than ink-free middle
    even, uneven = preprocess_image(flat), preprocess_image(lit)
    assert len(uneven) == 2
    for a, b in zip(even, uneven):
        assert difference(a.image, b.image) < 4


@pytest.mark.parametrize("frame, most", [(18, 8), (2, 11)])
def test_an_mnist_image_comes_back_nearly_unchanged(mnist, frame, most):
    """Framed by more pixels, so that it is not in MNIST's form and goes through every step: 64 px on
    a side at its own size, 32 px enlarged first (SMALL_SIDE), which softens its edges a little."""
    images = mnist.test_images[:200]
    outputs = [preprocess_image(Image.fromarray(np.pad(image.numpy(), frame))) for image in images]
    assert all(len(segments) == 1 for segments in outputs)
    difference = np.mean([np.abs(segments[0].image.astype(int) - image.numpy()).mean()
                          for segments, image in zip(outputs, images)])
    assert difference < most  # out of 255: the same strokes in the same place


def test_a_digit_already_in_mnist_form_is_read_as_it_is(mnist):
    for image in mnist.test_images[:300]:
        for picture in (image.numpy(), 255 - image.numpy()):  # white on black, or black on white
            [segment] = preprocess_image(Image.fromarray(picture))
            assert segment.image.dtype == np.uint8 and np.array_equal(segment.image, image.numpy())
    moved = np.roll(mnist.test_images[0].numpy(), (4, 3), (0, 1))  # off-centre: not MNIST's form, so centred
    [segment] = preprocess_image(Image.fromarray(moved))
    rows, columns = np.nonzero(segment.image > 64)
    assert abs(rows.mean() - 14) < 1.5 and abs(columns.mean() - 14) < 1.5


def test_a_big_photo_reports_boxes_in_its_own_pixels():
    size = (3 * WORK_SIDE // 2, WORK_SIDE // 2)  # over WORK_SIDE, so it is worked on reduced
    [segment] = preprocess_image(page(size, [zero(1000, 200, 500)], width=50))
    x0, y0, x1, y1 = segment.box
    assert abs(x0 - 975) <= 12 and abs(y0 - 175) <= 12 and abs(x1 - 1325) <= 12 and abs(y1 - 725) <= 12


# --- Several digits ---------------------------------------------------------------------------

def test_digits_come_out_left_to_right_with_their_boxes():
    starts = [60, 420, 250, 560]  # drawn out of order
    image = page((760, 260), [zero(x, 50) if k % 2 else one(x, 50) for k, x in enumerate(starts)])
    segments = preprocess_image(image)
    assert [segment.box[0] for segment in segments] == sorted(segment.box[0] for segment in segments)
    assert len(segments) == 4
    for segment, x in zip(segments, sorted(starts)):
        assert segment.box[0] - 10 <= x <= segment.box[2]


def test_a_five_with_a_detached_top_bar_is_one_digit():
    body = [(100, 110), (110, 90), (150, 85), (180, 120), (175, 170), (140, 195), (95, 185)]
    stem = [(102, 45), (100, 105)]
    bar = [(115, 40), (185, 40)]  # drawn apart from the stem, as people do
    segments = preprocess_image(page((300, 260), [body, stem, bar], width=12))
    assert len(segments) == 1
    assert segments[0].box[1] <= 40 - 6 + 2  # the bar is inside the digit's box


def test_a_detached_bar_goes_to_the_five_it_nearly_touches_not_the_zero_under_its_end():
    five = [(130, 45), (130, 120), (120, 170), (95, 185), (75, 170)]  # a narrow 5, its stem at the right
    bar = [(148, 40), (235, 40)]  # long, beside the stem's top, reaching over the 0
    segments = preprocess_image(page((420, 260), [five, bar, zero(205, 70)], width=12))
    assert len(segments) == 2
    assert segments[0].box[1] <= 40 - 6 + 2 and segments[0].box[2] >= 235  # the bar is the 5's
    assert segments[1].box[1] >= 60  # the 0 alone


def test_a_broken_stroke_is_one_digit_and_a_dash_between_digits_is_dropped():
    broken = [[(100, 40), (100, 110)], [(100, 130), (100, 200)]]
    dash = [[(180, 120), (220, 120)]]
    segments = preprocess_image(page((420, 240), broken + dash + [zero(270, 45)], width=12))
    assert len(segments) == 2
    assert segments[0].box[1] < 45 and segments[0].box[3] > 195  # both halves of the stroke


def test_dots_of_dotted_paper_join_no_digit_but_a_crumbling_strokes_crumbs_do():
    """Dotted paper: a dot is smaller than a fragment (ReadingSettings.fragment_size) and lies apart
    from the strokes, so it joins no digit, not even one whose columns it shares (merged one by one,
    the dots above grew the digits to the picture's top and into each other). A dot nearly touching a
    stroke is a crumb of it."""
    strokes = [one(100, 60), zero(200, 60)]
    image = page((420, 300), strokes, width=12)
    draw = ImageDraw.Draw(image)
    # Rows of dots over and under the digits, in their columns, and between them: all more than a
    # crumb's reach (fragment_touch) from the strokes.
    dots = [(x, y) for x in (40, 100, 160, 245, 340, 400) for y in (15, 255, 290)]
    for x, y in dots + [(40, 135), (160, 135), (340, 135), (400, 135)]:
        draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=INK)
    segments = preprocess_image(image)
    assert len(segments) == 2
    assert all(60 - 12 <= segment.box[1] and segment.box[3] <= 210 + 12 for segment in segments)
    crumbled = page((420, 300), strokes, width=12)
    ImageDraw.Draw(crumbled).ellipse([97, 214, 105, 222], fill=INK)  # just under the 1's foot
    assert preprocess_image(crumbled)[0].box[3] >= 220


def test_a_stray_mark_beside_a_digit_is_dropped_but_a_one_is_kept():
    """Some MNIST crops hold a thin mark of a neighbouring digit: tall enough to pass for a digit, but with
    far less ink than a 1, which has about a third of a 0's."""
    image = page((560, 240), [one(100, 45), zero(250, 45)], width=12)
    ImageDraw.Draw(image).line([(440, 90), (440, 160)], fill=INK, width=5)  # 70 px tall, a thin pen
    segments = preprocess_image(image)
    assert len(segments) == 2
    assert segments[0].box[0] < 100 < segments[0].box[2] and segments[1].box[2] < 440


def test_specks_are_dropped_and_a_blank_page_has_no_digits():
    rng = np.random.default_rng(0)
    noisy = np.asarray(page((400, 200), [one(200, 30)]), float) + rng.normal(0, 6, (200, 400))
    for x, y in rng.integers(10, 190, (12, 2)):  # dust: a few pixels each
        noisy[y:y + 3, x:x + 3] = INK
    assert len(preprocess_image(Image.fromarray(noisy.clip(0, 255).astype(np.uint8)))) == 1
    blank = Image.fromarray((PAPER + rng.normal(0, 6, (200, 400))).clip(0, 255).astype(np.uint8))
    assert preprocess_image(blank) == []
    assert preprocess_image(Image.new("L", (50, 50), 0)) == []


def test_single_takes_all_the_ink_as_one_digit():
    image = page((500, 240), [one(100, 40), zero(300, 40)])
    assert len(preprocess_image(image)) == 2
    [whole] = preprocess_image(image, single=True)
    assert whole.box[0] < 100 < 390 < whole.box[2]


def test_reading_settings_are_a_value_each_call_can_change():
    from dataclasses import FrozenInstanceError, replace

    from digitrec.preprocess import DEFAULT_SETTINGS

    with pytest.raises(FrozenInstanceError):
        DEFAULT_SETTINGS.min_contrast = 0.9  # nobody changes the reading for everyone else
    picture = page((500, 240), [one(100, 40), zero(300, 40)])
    assert len(preprocess_image(picture)) == 2
    # Ink must now differ from the paper by more than it does: nothing stands out, for this call only.
    assert preprocess_image(picture, settings=replace(DEFAULT_SETTINGS, min_contrast=0.95)) == []
    # A digit with less than 90% of the inkiest one's ink is taken for a dash: the 1 goes, the 0 stays.
    [zero_only] = preprocess_image(picture, settings=replace(DEFAULT_SETTINGS, dash_fraction=0.9))
    assert zero_only.box[0] > 250
    assert len(preprocess_image(picture)) == 2


def test_lines_of_a_turned_page_close_under_each_other_stay_apart():
    """Three numbers of ten digits, a line pitch of 1.15 digit heights (a tight notebook), the page
    turned 5 degrees: each line follows its own tilt digit by digit (a line's span, grown by each
    piece, took in the next line)."""
    height, pitch = 80, 92
    strokes = [zero(60 + 70 * k, 90 + pitch * line, height) if (k + line) % 2 else one(80 + 70 * k, 90 + pitch * line, height)
               for line in range(3) for k in range(10)]
    turned = page((820, 480), strokes, width=9).rotate(5, Image.Resampling.BICUBIC, fillcolor=PAPER)
    segments = preprocess_image(turned)
    assert [sum(segment.line == line for segment in segments) for line in range(3)] == [10, 10, 10]
    for line in range(3):  # and each line left to right
        xs = [segment.box[0] for segment in segments if segment.line == line]
        assert xs == sorted(xs)


def test_an_underline_is_on_no_line_and_joins_no_digits():
    """A thread under a number, wider than two digits and much lower than one, shares the columns of
    every digit over it: merged in, it made them one."""
    underline = [(40, 215), (400, 215)]
    segments = preprocess_image(page((460, 250), [one(80, 30), zero(160, 30), one(300, 30), underline], width=10))
    assert len(segments) == 3
    assert all(segment.box[3] < 200 for segment in segments)


def test_a_tall_thin_line_beside_far_lower_digits_is_dropped_but_a_lone_or_tall_written_one_is_not():
    """A printed line left standing (a margin from the top of the picture to its bottom) beside digits
    a third of its height is no digit; a 1 alone, or as tall as the digits beside it, still is."""
    margin = [(30, 0), (30, 299)]
    segments = preprocess_image(page((460, 300), [margin, one(120, 110, 80), zero(200, 110, 80), one(300, 110, 80)],
                                     width=8))
    assert len(segments) == 3 and all(segment.box[0] > 60 for segment in segments)
    assert len(preprocess_image(page((200, 300), [[(100, 20), (100, 280)]], width=8))) == 1
    assert len(preprocess_image(page((460, 300), [one(120, 40, 220), zero(200, 60, 200)], width=8))) == 2


def test_a_digit_broken_across_its_middle_is_one_digit_on_one_line(monkeypatch):
    """A 3 whose middle was written faintly: its top ends lower than its bottom begins, a little to one
    side, so the two pieces' boxes overlap by a few rows, far less than a line's digits share. Lines
    are found before pieces are merged; the lower piece went to a line of its own, and one digit was
    read as two lines ("7" over "2")."""
    top = [(40, 30), (90, 30), (90, 60), (65, 85)]
    bottom = [(85, 82), (95, 100), (95, 140), (40, 140)]
    picture = page((160, 180), [top, bottom], width=6)
    [digit] = preprocess_image(picture)
    assert digit.line == 0 and digit.box[1] < 35 and digit.box[3] > 135
    from digitrec import preprocess  # the pieces as they were taken before: two lines, a piece each

    monkeypatch.setattr(preprocess, "stacked_on", lambda piece, other, settings: False)
    assert sorted(segment.line for segment in preprocess_image(picture)) == [0, 1]


def test_a_tall_thread_with_little_ink_does_not_make_a_flat_digit_a_dash():
    """What a margin leaves at the picture's edge, a thread a few pixels wide and taller than the
    digits, is no digit's height to measure dashes by: against it a flat 0 (37 px high beside digits of
    45-54) was lower than short_fraction of the tallest and dropped ("83020" read "8320")."""
    from digitrec.preprocess import Piece, drop_specks

    thread = Piece([1], (17, 7, 24, 138), 114, 81)
    digits = [Piece([2], (93, 151, 128, 198), 952, 952), Piece([3], (184, 159, 236, 196), 936, 936),
              Piece([4], (127, 74, 174, 128), 1007, 1007)]
    kept = drop_specks([thread, *digits])
    assert kept == digits  # the thread itself has too little ink for a digit


def test_a_four_whose_stem_came_apart_from_the_rest_is_one_digit():
    """A thin pen's 4: its diagonal and bar, one piece, come down past the middle of its stem, the
    other piece, and stop just short of it. Hanging from the stem's top, the piece is a fragment of the
    4 (ReadingSettings.fragment_end); judged by halves alone it crossed the middle, like a dash, and
    the 4 was read as two digits ("61")."""
    from dataclasses import replace

    from digitrec.preprocess import DEFAULT_SETTINGS

    four = page((160, 180), [[(62, 18), (30, 100), (76, 100)], [(86, 14), (86, 160)]], width=6)
    [digit] = preprocess_image(four)
    assert digit.box[0] < 32 and digit.box[2] > 84
    assert len(preprocess_image(four, settings=replace(DEFAULT_SETTINGS, fragment_end=0.0))) == 2


@pytest.mark.parametrize("pen", [6, 12, 14, 20, 36])
def test_a_wide_pen_is_shrunk_to_the_stroke_width_reading_is_tuned_for_in_half_steps(pen):
    """Strokes `pen` px wide on a 600x400 picture: the working copy has them at most 1.5 STROKE_PIXELS
    wide (a 14 px pen shrinks by 1.5, where a whole factor left it 14 px, and the rules beside it too
    thick to be searched for), or as they were when thinner; the scale maps the copy back onto the picture."""
    from digitrec.preprocess import STROKE_PIXELS, pen_width, survey, working_copy

    picture = np.full((400, 600), 230, np.uint8)
    for column in (150, 300, 450):  # three tall strokes, and a bar joining them
        picture[80:320, column:column + pen] = 30
    picture[190:190 + pen, 150:450 + pen] = 30
    gray = Image.fromarray(picture)
    paper = survey(gray)
    work, scale = working_copy(gray, paper)
    assert abs(work.shape[1] * scale - gray.width) <= scale
    assert scale == pytest.approx(max(1.0, math.floor(2 * pen_width(gray, paper) / STROKE_PIXELS) / 2), rel=0.01)
    assert pen / scale <= 1.5 * STROKE_PIXELS
