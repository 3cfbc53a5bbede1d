"""The draw-a-digit page in a real browser: Debian's Chromium, driven by Playwright, against a live server."""

from __future__ import annotations

import io
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import CHROMIUM, picture_of_digits, require, serving
from digitrec.errors import write_atomic
from digitrec.server import create_app

from playwright import sync_api

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
# DIGITREC_SCREENSHOTS=docs/img refreshes the README's pictures; otherwise a test run leaves the tree alone.
SCREENSHOTS = Path(os.environ.get("DIGITREC_SCREENSHOTS") or tempfile.mkdtemp(prefix="digitrec-screenshots-"))



@pytest.fixture(autouse=True)
def chromium_installed() -> None:
    require(shutil.which(CHROMIUM) is not None, f"{CHROMIUM} is missing: apt-get install chromium")

# Strokes as fractions of the pad, the way a person draws each digit.
ONE = [[(0.52, 0.15), (0.50, 0.50), (0.48, 0.85)]]
SEVEN = [[(0.25, 0.2), (0.75, 0.2), (0.45, 0.85)]]
ZERO = [[(0.5 + 0.22 * math.sin(2 * math.pi * t / 40), 0.5 - 0.33 * math.cos(2 * math.pi * t / 40)) for t in range(41)]]


@pytest.fixture(scope="module")
def url(quick_model):
    with serving(create_app(quick_model)) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, url):
    """A fresh page at / with no way out of this machine, that fails the test on any console error,
    uncaught exception or request for something from another site."""
    context = browser.new_context(viewport={"width": 1000, "height": 1000})
    problems = []
    context.route(lambda address: not address.startswith(url),
                  lambda route: problems.append(f"fetched {route.request.url}") or route.abort())
    page = context.new_page()
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto(url)
    yield page
    context.close()
    assert problems == [], f"console errors or outside requests: {problems}"


def segments(points, spacing: float = 0.05):
    """The stroke's corners with points in between, as a moving mouse reports them."""
    yield points[0]
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        steps = max(1, math.ceil(math.dist((x0, y0), (x1, y1)) / spacing))
        for step in range(1, steps + 1):
            yield x0 + (x1 - x0) * step / steps, y0 + (y1 - y0) * step / steps


def draw(page, strokes) -> None:
    box = page.locator("#pad").bounding_box()
    for stroke in strokes:
        at = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in segments(stroke)]
        page.mouse.move(*at[0])
        page.mouse.down()
        for point in at[1:]:
            page.mouse.move(*point)
        page.mouse.up()
    settle(page, "#reading")


def settle(page, section: str) -> None:
    page.wait_for_selector(f"{section}[aria-busy=false]", timeout=15_000)


def shown(page) -> dict:
    """What the page shows: the digit, each bar's probability and width, and the ink in the 28x28 view."""
    return page.evaluate("""async () => {
        const seen = document.getElementById("seen");
        let ink = 0;
        if (!seen.hidden) {
            await seen.decode();
            const canvas = document.createElement("canvas");
            canvas.width = canvas.height = 28;
            const context = canvas.getContext("2d");
            context.drawImage(seen, 0, 0);
            const pixels = context.getImageData(0, 0, 28, 28).data;
            for (let index = 0; index < pixels.length; index += 4) ink += pixels[index];
        }
        return {
            digit: document.getElementById("digit").textContent,
            top: [...document.querySelectorAll("#bars li.top")].map((row) => row.dataset.digit),
            bars: [...document.querySelectorAll("#bars li")].map((row) => Number(row.dataset.probability || 0)),
            widths: [...document.querySelectorAll("#bars .fill")].map((fill) => parseFloat(fill.style.width || 0)),
            seen: ink,
            status: document.getElementById("status").textContent,
        };
    }""")


@pytest.mark.parametrize("strokes, digit", [(ONE, "1"), (SEVEN, "7"), (ZERO, "0")], ids=["one", "seven", "zero"])
def test_a_drawn_digit_is_read_with_its_bars_and_28x28_view(page, strokes, digit):
    draw(page, strokes)
    view = shown(page)
    assert view["status"] == ""
    assert view["digit"] == digit
    assert view["top"] == [digit]
    assert sum(view["bars"]) == pytest.approx(1, abs=0.01)
    assert max(view["bars"]) == view["bars"][int(digit)] > 0.5
    assert view["widths"] == pytest.approx([100 * p for p in view["bars"]], abs=0.1)
    assert view["seen"] > 10 * 255  # the view shows the digit's ink, white on black


def test_undo_clear_and_keyboard(page):
    draw(page, ONE)
    assert shown(page)["digit"] == "1"
    draw(page, [[(0.2, 0.3), (0.5, 0.15)]])  # a flag on top of the 1
    page.locator("#pad").focus()
    page.keyboard.press("Control+z")
    settle(page, "#reading")
    assert shown(page)["digit"] == "1"
    page.keyboard.press("Escape")
    settle(page, "#reading")
    assert shown(page)["digit"] == "?" and sum(shown(page)["bars"]) == 0
    draw(page, SEVEN)
    page.get_by_role("button", name="Undo").click()
    settle(page, "#reading")
    assert shown(page)["digit"] == "?"
    draw(page, SEVEN)
    page.get_by_role("button", name="Clear").focus()
    page.keyboard.press("Enter")  # buttons work from the keyboard
    settle(page, "#reading")
    view = shown(page)
    assert view["digit"] == "?" and view["seen"] == 0
    page.locator("#width").focus()
    page.keyboard.press("ArrowRight")
    assert page.locator("#width-value").text_content() == "22"


def test_an_uploaded_or_dropped_photo_is_read_with_a_box_per_digit(page, mnist):
    picture = picture_of_digits([mnist.test_images[0], mnist.test_images[1]])
    labels = "".join(str(int(label)) for label in mnist.test_labels[:2])
    page.set_input_files("#file", files=[{"name": "two.png", "mimeType": "image/png", "buffer": picture}])
    settle(page, "#photo-reading")
    assert page.locator("#photo-digits").text_content() == labels
    boxes = page.locator(".box")
    assert boxes.count() == 2
    first, second = boxes.nth(0).bounding_box(), boxes.nth(1).bounding_box()
    photo = page.locator("#photo-image").bounding_box()
    assert photo["x"] <= first["x"] and first["x"] + first["width"] <= second["x"]
    assert second["x"] + second["width"] <= photo["x"] + photo["width"] + 1
    assert [boxes.nth(index).text_content() for index in range(2)] == list(labels)

    other = picture_of_digits([mnist.test_images[2], mnist.test_images[3], mnist.test_images[4]])
    transfer = page.evaluate_handle("""(bytes) => {
        const transfer = new DataTransfer();
        transfer.items.add(new File([new Uint8Array(bytes)], "three.png", { type: "image/png" }));
        return transfer;
    }""", list(other))
    page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})
    settle(page, "#photo-reading")
    assert page.locator("#photo-digits").text_content() == "".join(str(int(label)) for label in mnist.test_labels[2:5])
    assert page.locator(".box").count() == 3


def test_a_number_drawn_on_the_pad_is_read_whole(page):
    left = [[(x * 0.5, y) for x, y in stroke] for stroke in ONE]
    right = [[(0.5 + x * 0.5, y) for x, y in stroke] for stroke in SEVEN]
    draw(page, left + right)
    view = shown(page)
    assert view["status"] == "" and view["digit"] == "17"
    assert page.locator("#confidence").text_content().startswith("2 digits; the least sure, ")


def test_a_photo_of_several_lines_shows_each_line(page, mnist):
    lines = [np.asarray(Image.open(io.BytesIO(picture_of_digits([mnist.test_images[i] for i in row], (600, 160)))))
             for row in ([0, 1, 2], [3, 4])]
    buffer = io.BytesIO()
    Image.fromarray(np.concatenate(lines)).save(buffer, "PNG")
    page.set_input_files("#file", files=[{"name": "page.png", "mimeType": "image/png", "buffer": buffer.getvalue()}])
    settle(page, "#photo-reading")
    labels = [str(int(label)) for label in mnist.test_labels[:5]]
    assert page.locator("#photo-digits").inner_text().splitlines() == ["".join(labels[:3]), "".join(labels[3:])]
    assert page.locator(".box").count() == 5


def test_a_finger_draws_on_a_phone_sized_screen(browser, url):
    context = browser.new_context(viewport={"width": 375, "height": 740}, has_touch=True, is_mobile=True)
    page = context.new_page()
    page.goto(url)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375  # no sideways scrolling
    box = page.locator("#pad").bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 375
    touch = context.new_cdp_session(page)
    points = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in segments(SEVEN[0])]
    for kind, (x, y) in [("touchStart", points[0]), *[("touchMove", point) for point in points[1:]]]:
        touch.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": [{"x": x, "y": y}]})
    touch.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    settle(page, "#reading")
    assert shown(page)["digit"] == "7"
    scroll = page.evaluate("window.scrollY")
    assert scroll == 0  # drawing did not scroll the page
    write_atomic(SCREENSHOTS / "serve-phone.png", page.screenshot(full_page=True))
    context.close()


def test_the_api_docs_page_works_offline(page, url):
    page.goto(f"{url}/docs")
    page.wait_for_selector(".opblock", timeout=15_000)
    paths = page.locator(".opblock-summary-path").all_text_contents()
    assert {"/api/predict", "/api/predict/batch", "/api/models", "/health"} <= {path.strip() for path in paths}


def test_screenshot_for_the_readme(page, mnist):
    draw(page, SEVEN)
    picture = picture_of_digits([mnist.test_images[index] for index in (0, 1, 2, 3)])
    page.set_input_files("#file", files=[{"name": "number.png", "mimeType": "image/png", "buffer": picture}])
    settle(page, "#photo-reading")
    path = write_atomic(SCREENSHOTS / "serve.png", page.screenshot(full_page=True))
    assert path.stat().st_size > 10_000
