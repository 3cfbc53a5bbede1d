"""`digitrec predict` on one picture, from a cold start: wall time and peak memory of the whole command.

Reading needs no PyTorch: the shipped model runs on onnxruntime. This times the command as it is,
against the same reading with PyTorch imported first (what `digitrec predict` cost before reading
went torch-free: the ONNX model, with torch loaded beside it) and against the PyTorch backend.
Each command runs in a fresh process, the three taking turns; the table gives the median of the runs.
Peak memory is the child's maximum resident set size, and CPU time its user plus system time, as
/usr/bin/time measures them; on a shared machine the CPU time shows the work when the wall time also
shows the others' (the load average is in the note under the table).
"""

from __future__ import annotations

import argparse
import os
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


def run_once(command: list[str]) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user and system) and peak resident megabytes of one run of `command`."""
    with tempfile.NamedTemporaryFile("r") as report:
        started = time.perf_counter()
        subprocess.run(["/usr/bin/time", "-f", "%U %S %M", "-o", report.name, *command], check=True,
                       stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - started
        user, system, kilobytes = report.read().split()[-3:]
    return seconds, float(user) + float(system), int(kilobytes) / 1024


def measure(runs: int, picture: str) -> dict[str, tuple[list[float], list[float], list[float]]]:
    results = {name: ([], [], []) for name in commands(picture)}
    for name, command in commands(picture).items():  # warm-up: the page cache holds the libraries
        run_once(command)
    for _ in range(runs):
        for name, command in commands(picture).items():
            for values, value in zip(results[name], run_once(command)):
                values.append(value)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="runs of each command (default 7)")
    parser.add_argument("--picture", default=str(PICTURE), help="the picture read (default: docs/img/predict-digit.jpg)")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    args = parser.parse_args()
    results = measure(args.runs, args.picture)
    load = os.getloadavg()[0]  # other work on the machine shows in every row alike
    rows = [[name, f"{statistics.median(seconds):.2f} s", f"{min(seconds):.2f}-{max(seconds):.2f} s",
             f"{statistics.median(cpu):.2f} s", f"{statistics.median(megabytes):.0f} MB"]
            for name, (seconds, cpu, megabytes) in results.items()]
    body = table(["command", "wall time (median)", "range", "CPU time (median)", "peak RSS (median)"], rows)
    new_seconds, _, new_megabytes = (statistics.median(values) for values in results[next(iter(results))])
    verdict = "met" if new_seconds <= GOAL_SECONDS and new_megabytes <= GOAL_MB else "NOT met"
    body += (f"\n\n{args.runs} runs of each, taking turns, after one warm-up run each; `digitrec predict "
             f"{Path(args.picture).name}`; load average {load:.1f} on {os.cpu_count()} cores when they ended. "
             f"Goal: at most {GOAL_SECONDS} s and {GOAL_MB} MB (median): {verdict}.")
    print(body)
    if args.no_write:
        return
    write_section("predict-startup", "Start-up of `digitrec predict`", body)


if __name__ == "__main__":
    main()
