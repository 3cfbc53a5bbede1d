"""How far reading carries beyond MNIST's handwriting: the same photos made of drawn digits.

    python benchmarks/other_handwriting.py [--seed 0] [--no-write]

Every kind of benchmarks/make_photos.py that issue 15 sets a goal for, made twice with the same seed:
from MNIST test digits (as read_photos reads them) and from digits drawn from pen strokes in other
styles (benchmarks/drawn_digits.py: flagged and footed 1s, crossed 7s, open 4s, ...), side by side
in one run. Both models were trained on MNIST's training digits alone, so the drawn column is
handwriting they have never seen. The first row is the digit model on the digits themselves, in
their 28x28 form: how much of a gap is the model's, and how much the reading of a photo.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from drawn_digits import drawn_digits  # noqa: E402
from make_photos import make_photos  # noqa: E402
from markdown import table, write_section  # noqa: E402
from read_photos import ours, percent, share_right  # noqa: E402

from digitrec.data import load_dataset  # noqa: E402
from digitrec.inference import default_model  # noqa: E402

KINDS = {"single": ("single digits", 1000), "number": ("numbers of 2-8 digits", 300),
         "touching": ("numbers with two digits touching", 200), "ruled": ("notebook paper", 100),
         "squared": ("squared paper", 100), "boxes": ("form boxes", 100), "page": ("a page of 2-4 numbers", 100)}
DRAWN = 10_000  # drawn digits the photos pick from, as MNIST's test split has


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", help="MNIST folder (default: DIGITREC_DATA or the cache)")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    loaded = default_model()
    mnist = load_dataset("mnist", args.data)
    sources = {"MNIST test digits": (mnist.test_images.numpy(), mnist.test_labels.numpy()),
               "drawn digits": drawn_digits(DRAWN, args.seed)}
    rows = [["digit model on the digits themselves (28x28)"] + [
        f"{percent(float(np.mean(loaded.log_probabilities(images).argmax(1) == labels)))} of {len(labels):,}"
        for images, labels in sources.values()]]
    for kind, (shows, count) in KINDS.items():
        row = [f"{shows} ({count} photos), read fully right"]
        for images, labels in sources.values():
            photos = make_photos(images, labels, kind, count, args.seed)
            row.append(percent(share_right([ours(photo.data, loaded) for photo in photos], photos)))
        rows.append(row)
    body = table([""] + list(sources), rows)
    print(body)
    if not args.no_write:
        notes = (f"Model: {loaded.name} from {loaded.source}, and the shipped line reader. Photos from "
                 f"`benchmarks/make_photos.py` with seed {args.seed}, the same layouts, paper and camera for both "
                 "columns; the drawn digits are benchmarks/drawn_digits.py's, in styles MNIST has few of.")
        write_section("other_handwriting", "Other handwriting (digits drawn from strokes, not MNIST)", notes + "\n\n" + body)


if __name__ == "__main__":
    main()
