"""Reading pictures as users make them: accuracy and speed of `digitrec predict` on generated photos.

    python benchmarks/read_photos.py [--model best] [--count 2000] [--numbers 500] [--touching 200] [--no-write]

The photos come from benchmarks/make_photos.py (MNIST test digits in ink on paper, with uneven
light, blur, noise and JPEG). Each photo is read end to end from its encoded bytes, as
`digitrec predict` reads a file: decode, preprocess, one batch through the model, on one thread.

Side by side in one run:
- clean: the same model on the same MNIST test digits as they are in MNIST (the ceiling);
- digitrec: the photos through digitrec.predict.read_image;
- naive baseline: what one does without preprocessing: the whole photo in grayscale, inverted if
  its paper is light, resized to 28x28; for numbers, cut into as many equal columns as the number
  has digits (it is told the count; digitrec is not).
Photo and baseline take turns photo by photo, so a busy spell on a shared CPU slows both alike.
"""

from __future__ import annotations

import argparse
import io
from typing import Callable
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_photos import Photo, enlarged, make_photos, number_photo  # noqa: E402
from markdown import table, write_section  # noqa: E402

from digitrec.classifier import Classifier  # noqa: E402
from digitrec.data import load_dataset  # noqa: E402
from digitrec.errors import DigitrecError  # noqa: E402
from digitrec.inference import default_model, open_model  # noqa: E402
from digitrec.predict import read_image  # noqa: E402
from digitrec.preprocess import DEFAULT_SETTINGS, ReadingSettings  # noqa: E402

SPEED_PHOTOS = 100  # 1000x300 photos of six digits, timed apart from the accuracy set


def naive_read(data: bytes, loaded: Classifier, count: int = 1) -> str:
    """The baseline: grayscale, light paper inverted, `count` equal columns each resized to 28x28."""
    gray = np.asarray(Image.open(io.BytesIO(data)).convert("L"))
    if np.median(gray) > 127:
        gray = 255 - gray
    columns = np.array_split(gray, count, axis=1)
    images = [np.asarray(Image.fromarray(column).resize((28, 28), Image.Resampling.BILINEAR)) for column in columns]
    predictions = loaded.log_probabilities(np.stack(images)).argmax(1)
    return "".join(str(int(digit)) for digit in predictions)


def ours(data: bytes | Image.Image, loaded: Classifier, settings: ReadingSettings = DEFAULT_SETTINGS) -> str:
    """digitrec's reading of a photo (its bytes, or decoded), "" where it finds no digits."""
    try:
        return read_image(data, loaded, settings=settings).digits
    except DigitrecError:
        return ""


def read_all(photos: list[Photo], loaded: Classifier) -> dict[str, tuple[list[str], list[float], list[float]]]:
    """Answers, wall-clock seconds and CPU seconds per photo, ours and the baseline's, taking turns.

    CPU time is the work itself: on a CPU shared with other jobs, wall-clock time also holds the
    time this process waited for a core."""
    results = {"digitrec": ([], [], []), "naive": ([], [], [])}
    for photo in photos:
        for name, read in (("digitrec", lambda: ours(photo.data, loaded)),
                           ("naive", lambda: naive_read(photo.data, loaded, len(photo.digits)))):
            wall, cpu = time.perf_counter(), time.process_time()
            answer = read()
            results[name][1].append(time.perf_counter() - wall)
            results[name][2].append(time.process_time() - cpu)
            results[name][0].append(answer)
    return results


def right_with(photos: list[Photo], loaded: Classifier, **settings) -> float:
    """The share read right with these ReadingSettings changed (whole_lines=False: no line reader)."""
    changed = replace(DEFAULT_SETTINGS, **settings)
    return share_right([ours(photo.data, loaded, changed) for photo in photos], photos)


def share_right(answers: list[str], photos: list[Photo]) -> float:
    return float(np.mean([answer == photo.digits for answer, photo in zip(answers, photos)]))


def percent(value: float) -> str:
    return f"{100 * value:.2f}%"


PAPER_KINDS = {  # kind: what its photos show; issue 15 sets each a goal of 97% read fully right
    "ruled": "notebook paper, rules through and under the digits, a margin", "squared": "squared paper",
    "boxes": "a form's row of boxes, one digit a box", "page": "a page of 2-4 numbers, one a line"}
# Paper beyond the kinds, added after its rules were tuned (double_rules came from the legal
# pad): how far the reader carries to paper it was not made on. No goal is set for them.
OTHER_PAPER_KINDS = {
    "graph": "other paper: engineering paper, a fine grid with every fifth line heavier",
    "legal": "other paper: a legal pad, yellow, a double red margin, 1-3 numbers",
    "dotted": "other paper: dotted paper"}


def paper_rows(images: np.ndarray, labels: np.ndarray, loaded: Classifier, count: int, seed: int,
               clean: Callable[[list[Photo]], float]) -> tuple[list[list[str]], list[Photo], list[str]]:
    """A row per paper kind: read fully right, and the median CPU time of a photo with its size; and
    every kind's photos with digitrec's answers, for closer_row."""
    rows, every_photo, every_answer = [], [], []
    for kind, shows in {**PAPER_KINDS, **OTHER_PAPER_KINDS}.items():
        photos = make_photos(images, labels, kind, count, seed)
        answers, _, cpu = read_all(photos, loaded)["digitrec"]
        every_photo += photos
        every_answer += answers
        right = share_right(answers, photos)
        sizes = [Image.open(io.BytesIO(photo.data)).size for photo in photos]
        largest = max(sizes, key=lambda size: size[0] * size[1])
        goal = kind in PAPER_KINDS
        rows.append([f"{shows} ({count} photos, up to {largest[0]}x{largest[1]}), read fully right", percent(clean(photos)),
                     f"{percent(right)}; {1000 * float(np.median(cpu)):.1f} ms CPU a photo", "", "",
                     "at least 97%" if goal else "none set", ("yes" if right >= 0.97 else "no") if goal else ""])
    return rows, every_photo, every_answer


def closer_row(photos: list[Photo], answers: list[str], loaded: Classifier) -> list[str]:
    """The paper photos enlarged twice (a phone held closer, a finer scan), beside their `answers` at their own size."""
    closer = share_right([ours(enlarged(photo.data), loaded) for photo in photos], photos)
    return [f"the paper photos above enlarged twice ({len(photos)} photos), read fully right", "",
            f"{percent(closer)} (at their own size {percent(share_right(answers, photos))})", "", "", "none set", ""]


def big_page_row(images: np.ndarray, labels: np.ndarray, loaded: Classifier, seed: int, count: int = 10) -> list[str]:
    """Pages of four lines enlarged to 2000x1500 (a phone's photo of a page): the time to read one."""
    pages = [photo for photo in make_photos(images, labels, "page", 8 * count, seed) if photo.digits.count("\n") == 3]
    seconds, right = [], 0
    for photo in pages[:count]:
        big = enlarged(photo.data, size=(2000, 1500))
        started = time.process_time()
        right += ours(big, loaded) == photo.digits
        seconds.append(time.process_time() - started)
    return [f"2000x1500 page of four lines, end to end, median CPU ms ({len(seconds)} pages, {right} read fully right)",
            "", f"{1000 * float(np.median(seconds)):.0f}", "", "", "at most 200 ms",
            "yes" if np.median(seconds) <= 0.2 else "no"]


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="best", help="preset (its shipped weights), run folder or weights file")
    parser.add_argument("--count", type=int, default=2000, help="photos of single digits")
    parser.add_argument("--numbers", type=int, default=500, help="photos of numbers of 2-8 digits")
    parser.add_argument("--touching", type=int, default=200, help="photos of numbers of 2-4 digits, two of them touching")
    parser.add_argument("--small", type=int, default=500, help="photos of numbers in pictures 20-63 px high")
    parser.add_argument("--framed", type=int, default=200, help="photos of numbers on a sheet with a table or frame around it")
    parser.add_argument("--turned", type=int, default=200, help="photos of numbers turned in an editor, the corners filled")
    parser.add_argument("--paper", type=int, default=100, help="photos of each paper kind: ruled, squared, boxes, page, graph, legal, dotted")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", help="MNIST folder (default: DIGITREC_DATA or the cache)")
    parser.add_argument("--backend", choices=["torch", "onnx"],
                        help="default: as `digitrec predict` (onnx for the shipped weights, else torch)")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    return parser.parse_args()


# make_photos kind: the argument that says how many photos of it are read
PHOTO_COUNTS = {"single": "count", "number": "numbers", "touching": "touching", "small": "small", "framed": "framed",
                "turned": "turned"}
UNGOALED = {"small": "in small pictures, 20-63 px high", "framed": "on a sheet with a table or a frame around it",
            "turned": "turned 1-10 degrees in an editor, the corners filled"}  # kinds of numbers the issue sets no goal for
HEADER = ["", "clean MNIST (ceiling)", "digitrec", "naive baseline", "digitrec vs baseline", "goal", "met"]
Results = dict[str, tuple[list[str], list[float], list[float]]]  # read_all's answers and times, ours and the baseline's


@dataclass
class Bench:
    """What every row reads with: the model, and MNIST's test digits the photos are made of."""

    loaded: Classifier
    images: np.ndarray
    labels: np.ndarray

    def clean_answers(self, photos: list[Photo]) -> list[str]:
        """What the model reads from the same digits as MNIST has them (a page's lines as the photo has them)."""
        answers = []
        for photo in photos:
            read = iter(self.loaded.log_probabilities(self.images[photo.indices]).argmax(1).tolist())
            answers.append("".join(character if character == "\n" else str(next(read)) for character in photo.digits))
        return answers

    def clean(self, photos: list[Photo]) -> float:
        return share_right(self.clean_answers(photos), photos)


def errors_ratio(ours_right: float, naive_right: float) -> str:
    return f"{(1 - naive_right) / max(1 - ours_right, 1e-9):.1f}x fewer errors"


def reading_row(bench: Bench, shows: str, photos: list[Photo], results: Results, goal: str = "",
                met: Callable[[float, float], str] = lambda right, clean: "") -> list[str]:
    """A row of photos read fully right: the ceiling, digitrec, the baseline; `met` says from digitrec's
    share and the ceiling's whether the `goal` is met."""
    right = {name: share_right(answers, photos) for name, (answers, *_) in results.items()}
    clean = bench.clean(photos)
    return [shows, percent(clean), percent(right["digitrec"]), percent(right["naive"]),
            errors_ratio(right["digitrec"], right["naive"]), goal, met(right["digitrec"], clean)]


def at_least(share: float) -> Callable[[float, float], str]:
    return lambda right, clean: "yes" if right >= share else "no"


def under_clean(right: float, clean: float) -> str:
    gap = round(100 * (clean - right), 6)
    return f"{'yes' if gap <= 0.5 else 'no'} ({gap:.2f} points under)"


def reading_rows(bench: Bench, photos: dict[str, list[Photo]], results: dict[str, Results]) -> list[list[str]]:
    """The rows of single digits and numbers, the issue's goals first."""
    return [
        reading_row(bench, f"single digits read right ({len(photos['single']):,} photos)", photos["single"],
                    results["single"], "at most 0.5 points under clean", under_clean),
        reading_row(bench, f"numbers of 2-8 digits read fully right ({len(photos['number']):,} photos)",
                    photos["number"], results["number"], "at least 97%", at_least(0.97)),
        reading_row(bench, f"1000x300 photos of six digits read fully right ({len(photos['six'])} photos)",
                    photos["six"], results["six"]),
        reading_row(bench, f"numbers of 2-4 digits, two of them touching ({len(photos['touching'])} photos)",
                    photos["touching"], results["touching"], "at least 95%", at_least(0.95)),
        *(reading_row(bench, f"numbers of 2-8 digits {shows} ({len(photos[kind])} photos)", photos[kind],
                      results[kind], "none set") for kind, shows in UNGOALED.items())]


def speed_row(shows: str, results: Results, goal_ms: float) -> list[str]:
    """Median CPU (and wall) milliseconds a photo, digitrec's beside the baseline's, and the goal."""
    cpu = {name: 1000 * float(np.median(times)) for name, (_, _, times) in results.items()}
    wall = {name: 1000 * float(np.median(seconds)) for name, (_, seconds, _) in results.items()}
    return [f"{shows}, end to end, median CPU ms (wall ms)", "",
            *(f"{cpu[name]:.2f} ({wall[name]:.2f})" for name in ("digitrec", "naive")),
            f"{cpu['digitrec'] / cpu['naive']:.1f}x the time", f"at most {goal_ms:g} ms",
            "yes" if cpu["digitrec"] <= goal_ms else "no"]


def notes(bench: Bench, numbers: list[Photo], touching: list[Photo], number_answers: list[str], seed: int) -> str:
    """What the table is, and how the numbers read wrong split between the model and the photo."""
    loaded = bench.loaded
    wrong = [photo for answer, photo in zip(number_answers, numbers) if answer != photo.digits]
    model_errors = sum(clean != photo.digits for clean, photo in zip(bench.clean_answers(wrong), wrong))
    epoch = f" (epoch {loaded.metadata['epoch']})" if "epoch" in loaded.metadata else ""
    return (f"Model: {loaded.name} from {loaded.source}{epoch}. Photos from `benchmarks/make_photos.py` with seed "
            f"{seed}; end to end means from the encoded JPEG bytes to the digits, on one thread; the speed "
            "goals are judged on CPU time, the work itself, as wall-clock time on a shared CPU also "
            "holds the waits for a core. The naive "
            "baseline resizes the whole photo to 28x28 (inverted when the paper is light) and, for numbers, is "
            "told how many digits to cut it into. "
            f"Of the {len(wrong)} numbers digitrec reads wrong, {model_errors} hold a digit the model misreads "
            "even as MNIST has it; the rest are the photo's doing. Without the line reader, which reads wide "
            "and unsure digits' lines whole, digitrec cuts wide digits in two instead: then it reads "
            f"{percent(right_with(numbers, loaded, whole_lines=False))} of the numbers and "
            f"{percent(right_with(touching, loaded, whole_lines=False))} of the ones with touching digits; "
            f"with neither, {percent(right_with(numbers, loaded, whole_lines=False, split_margin=float('inf')))} "
            f"and {percent(right_with(touching, loaded, whole_lines=False, split_margin=float('inf')))}.")


def main() -> None:
    args = parse_arguments()
    torch.set_num_threads(1)  # as `digitrec predict` runs
    if args.model == "best" and args.backend is None:
        loaded = default_model()
    else:
        loaded = open_model(args.model, args.backend, data_dir=args.data, threads=1)
    data = load_dataset("mnist", args.data)
    bench = Bench(loaded, data.test_images.numpy(), data.test_labels.numpy())
    photos = {kind: make_photos(bench.images, bench.labels, kind, getattr(args, count), args.seed)
              for kind, count in PHOTO_COUNTS.items()}
    photos["six"] = [number_photo(bench.images, bench.labels, np.random.default_rng([args.seed, 6, k]), length=6,
                                  size=(1000, 300)) for k in range(SPEED_PHOTOS)]
    for photo in photos["single"][:20]:  # warm-up: allocators, the model's first calls
        ours(photo.data, loaded)
    results = {kind: read_all(photos[kind], loaded) for kind in ("single", "number", "six", "touching", *UNGOALED)}
    rows = reading_rows(bench, photos, results)
    rows += [speed_row("one digit", results["single"], 5), speed_row("1000x300 photo of six digits", results["six"], 30)]
    paper, paper_photos, paper_answers = paper_rows(bench.images, bench.labels, loaded, args.paper, args.seed, bench.clean)
    rows += paper
    rows.append(closer_row(paper_photos, paper_answers, loaded))
    rows.append(big_page_row(bench.images, bench.labels, loaded, args.seed))
    body = table(HEADER, rows)
    print(body)
    if not args.no_write:
        write_section("read_photos", "Reading photos (`digitrec predict`)",
                      notes(bench, photos["number"], photos["touching"], results["number"]["digitrec"][0], args.seed) + "\n\n" + body)


if __name__ == "__main__":
    main()
