"""`digitrec predict` on one picture, from a cold start: wall time and peak memory of the whole command.

Reading needs no PyTorch: the shipped model runs on onnxruntime. This times the command as it is,
against the same reading with PyTorch imported first (what `digitrec predict` cost before reading
went torch-free: the ONNX model, with torch loaded beside it) and against the PyTorch backend.
Each command runs in a fresh process, the three taking turns; the table gives the median of the runs.
Peak memory is the child's maximum resident set size, as /usr/bin/time measures it.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from markdown import table, write_section  # noqa: E402

PICTURE = Path(__file__).resolve().parent.parent / "docs" / "img" / "predict-digit.jpg"
DIGITREC = Path(sys.executable).with_name("digitrec")
GOAL_SECONDS, GOAL_MB = 0.5, 150
CLI = "import sys; from digitrec.cli import main; sys.exit(main(sys.argv[1:]))"


def commands(picture: str) -> dict[str, list[str]]:
    return {
        "digitrec predict (onnxruntime, no torch)": [str(DIGITREC), "predict", picture],
        "the same with torch imported first (as before)": [sys.executable, "-c", "import torch; " + CLI,
                                                           "predict", picture],
        "digitrec predict --backend torch": [str(DIGITREC), "predict", picture, "--backend", "torch"],
    }


def run_once(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak resident megabytes of one run of `command`."""
    with tempfile.NamedTemporaryFile("r") as report:
        started = time.perf_counter()
        subprocess.run(["/usr/bin/time", "-f", "%M", "-o", report.name, *command], check=True,
                       stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - started
        kilobytes = int(report.read().split()[-1])
    return seconds, kilobytes / 1024


def measure(runs: int, picture: str) -> dict[str, tuple[list[float], list[float]]]:
    results = {name: ([], []) for name in commands(picture)}
    for name, command in commands(picture).items():  # warm-up: the page cache holds the libraries
        run_once(command)
    for _ in range(runs):
        for name, command in commands(picture).items():
            seconds, megabytes = run_once(command)
            results[name][0].append(seconds)
            results[name][1].append(megabytes)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="runs of each command (default 7)")
    parser.add_argument("--picture", default=str(PICTURE), help="the picture read (default: docs/img/predict-digit.jpg)")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    args = parser.parse_args()
    results = measure(args.runs, args.picture)
    rows = [[name, f"{statistics.median(seconds):.2f} s", f"{min(seconds):.2f}-{max(seconds):.2f} s",
             f"{statistics.median(megabytes):.0f} MB"] for name, (seconds, megabytes) in results.items()]
    body = table(["command", "wall time (median)", "range", "peak RSS (median)"], rows)
    new_seconds, new_megabytes = (statistics.median(values) for values in results[next(iter(results))])
    verdict = "met" if new_seconds <= GOAL_SECONDS and new_megabytes <= GOAL_MB else "NOT met"
    body += (f"\n\n{args.runs} runs of each, taking turns, after one warm-up run each; `digitrec predict "
             f"{Path(args.picture).name}`. Goal: at most {GOAL_SECONDS} s and {GOAL_MB} MB: {verdict}.")
    print(body)
    if args.no_write:
        return
    write_section("predict-startup", "Start-up of `digitrec predict`", body)


if __name__ == "__main__":
    main()
