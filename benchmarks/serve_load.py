"""Load test of `digitrec serve` on loopback: how many readings a second, how fast, and what overload does.

Starts the server as a subprocess, then runs bounded phases (each at most --seconds and a fixed count):
single 28x28 MNIST PNGs as fast as N clients go, the same at a fixed offered rate (--rate) and at
twice it, and 600x200 photos of numbers. The baseline is the same reading called in process, in one
thread, with no HTTP. Latency is measured from when a request was due, so a slow server cannot hide
its queue by slowing the clients down.

    python benchmarks/serve_load.py [--model RUN] [--backend onnx] [--workers 1 2] [--rate 500] [--seconds 6]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_photos import number_photo  # noqa: E402  (the photo generator of the reading benchmark)
from markdown import table, write_section  # noqa: E402

HOST = "127.0.0.1"  # loopback only: this benchmark never sends traffic anywhere else


@dataclass
class Phase:
    name: str
    latencies: list[float] = field(default_factory=list)  # seconds, of 200 answers
    statuses: Counter = field(default_factory=Counter)  # HTTP status, or "connection error"
    seconds: float = 0.0

    @property
    def answered(self) -> int:
        return self.statuses[200]

    @property
    def rate(self) -> float:
        return self.answered / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        return 1000 * float(np.percentile(self.latencies, q)) if self.latencies else float("nan")

    @property
    def failures(self) -> int:
        """Answers that are errors rather than refusals: 5xx other than 503, and dropped connections."""
        return sum(count for key, count in self.statuses.items()
                   if key == "connection error" or (isinstance(key, int) and key >= 500 and key != 503))

    def row(self, baseline: float | None) -> list:
        others = ", ".join(f"{key}: {count}" for key, count in sorted(self.statuses.items(), key=str) if key != 200)
        return [self.name, f"{sum(self.statuses.values()):,}", f"{self.rate:,.0f}",
                f"{self.rate / baseline:.2f}x" if baseline else "1.00x",
                f"{self.percentile(50):.1f}", f"{self.percentile(99):.1f}", others or "none", self.failures]


def mnist_pngs(data_dir: str | None, count: int) -> list[bytes]:
    from digitrec.data import load_dataset

    images = load_dataset("mnist", data_dir).test_images[:count].numpy()
    encoded = []
    for image in images:
        buffer = BytesIO()
        Image.fromarray(image).save(buffer, "PNG")
        encoded.append(buffer.getvalue())
    return encoded


def readable(png: bytes, loaded) -> bool:
    from digitrec.errors import DigitrecError
    from digitrec.predict import read_image

    try:
        read_image(png, loaded, single=True)
        return True
    except DigitrecError:
        return False


def number_photos(data_dir: str | None, count: int) -> list[bytes]:
    from digitrec.data import load_dataset

    data = load_dataset("mnist", data_dir)
    images, labels = data.test_images.numpy(), data.test_labels.numpy()
    return [number_photo(images, labels, np.random.default_rng([7, k]), length=4, size=(600, 200)).data
            for k in range(count)]


def request_bytes(path: str, body: bytes, content_type: str) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def exchange(connection: list, port: int, request: bytes) -> int:
    """One request on a kept-alive connection (reopened when the server closed it): its status."""
    if connection[0] is None:
        connection[:] = await asyncio.open_connection(HOST, port)
    reader, writer = connection
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {line.split(":", 1)[0].lower(): line.split(":", 1)[1].strip() for line in lines[1:] if ":" in line}
    await reader.readexactly(int(headers.get("content-length", 0)))
    if headers.get("connection", "").lower() == "close":
        writer.close()
        connection[:] = [None, None]
    return int(lines[0].split()[1])


async def run_phase(phase: Phase, port: int, requests: list[bytes], clients: int, count: int,
                    seconds: float, rate: float | None) -> Phase:
    """`clients` connections; with `rate`, request i is due at i / rate (open loop), else as soon as possible."""
    start = time.perf_counter()
    deadline = start + seconds
    next_index = 0

    async def client() -> None:
        nonlocal next_index
        connection = [None, None]
        while True:
            index = next_index
            next_index += 1
            due = start + index / rate if rate else time.perf_counter()
            if index >= count or due >= deadline:
                break
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            try:
                status = await exchange(connection, port, requests[index % len(requests)])
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                status = "connection error"
                connection = [None, None]
            phase.statuses[status] += 1
            if status == 200:
                phase.latencies.append(time.perf_counter() - due)
        if connection[1] is not None:
            connection[1].close()

    await asyncio.gather(*(client() for _ in range(clients)))
    phase.seconds = time.perf_counter() - start
    return phase


def in_process(name: str, sources: list[bytes], loaded, single: bool, count: int, seconds: float) -> Phase:
    """The baseline: decode and read in this process, one image after another, no HTTP."""
    from digitrec.errors import DigitrecError
    from digitrec.predict import read_image
    from digitrec.preprocess import decode_image

    phase = Phase(name)
    start = time.perf_counter()
    for index in range(count):
        began = time.perf_counter()
        if began - start >= seconds:
            break
        try:
            read_image(decode_image(sources[index % len(sources)]), loaded, single=single)
        except DigitrecError:  # what the server answers with 422: nothing to read
            phase.statuses[422] += 1
            continue
        phase.latencies.append(time.perf_counter() - began)
        phase.statuses[200] += 1
    phase.seconds = time.perf_counter() - start
    return phase


def connections(rate: float) -> int:
    """Enough connections to keep offering `rate` requests/s while answers take up to 100 ms."""
    return max(16, int(rate / 10))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def start_server(model: str | None, backend: str, workers: int) -> tuple[subprocess.Popen, int]:
    port = free_port()
    command = [sys.executable, "-m", "digitrec", "serve", "--host", HOST, "--port", str(port), "--backend", backend,
               "--workers", str(workers), *(["--model", model] if model else [])]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(600):
        if server.poll() is not None:
            raise SystemExit(f"the server exited: {server.stderr.read().decode()}")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/health", timeout=1):
                return server, port
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit("the server did not answer /health within 60 s")


def alive(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/health", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="run folder or weights (default: the shipped best weights)")
    parser.add_argument("--data", help="MNIST folder (default: DIGITREC_DATA or the cache)")
    parser.add_argument("--rate", type=float, default=500, help="offered single-digit requests per second")
    parser.add_argument("--seconds", type=float, default=6, help="longest time for each phase")
    parser.add_argument("--clients", type=int, default=8,
                        help="connections for the flat-out phases: fewer than the server holds, so they measure "
                             "readings rather than refusals")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="server processes to try")
    parser.add_argument("--backend", default="torch", help="torch or onnx (see `digitrec serve --backend`)")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    return parser.parse_args()


def serve_phases(args: argparse.Namespace, workers: int, single: list[bytes], photo: list[bytes], count: int,
                 digit_baseline: Phase, photo_baseline: Phase) -> tuple[list[list], list, str]:
    """A server with `workers` processes under the digit phases (flat out, the offered rate, twice it)
    and the photo phase: their rows, and a note on whether the goal held and the server survived."""
    server, port = start_server(args.model, args.backend, workers)
    label = f"serve --workers {workers}"
    phases, digit_rows = [], []
    try:
        for name, clients, rate in ((f"{args.clients} clients flat out", args.clients, None),
                                    (f"offered {args.rate:.0f}/s", connections(args.rate), args.rate),
                                    (f"offered {2 * args.rate:.0f}/s (twice)", connections(2 * args.rate),
                                     2 * args.rate)):
            phase = asyncio.run(run_phase(Phase(f"{label}: {name}"), port, single, clients, count,
                                          args.seconds, rate))
            phases.append(phase)
            digit_rows.append(phase.row(digit_baseline.rate))
            print(digit_rows[-1], flush=True)
        survived = alive(port)
        phase = asyncio.run(run_phase(Phase(f"{label}: {args.clients} clients flat out"), port, photo,
                                      args.clients, count, args.seconds, None))
        photo_row = phase.row(photo_baseline.rate)
    finally:
        server.terminate()
        server.wait(timeout=30)
    offered, twice = phases[-2:]
    met = offered.answered >= 0.95 * sum(offered.statuses.values()) and offered.percentile(99) < 50 \
        and not offered.failures
    note = (f"`--workers {workers}`: goal at {args.rate:.0f}/s {'met' if met else 'NOT met'}; at twice "
            f"that, {twice.failures} errors, {twice.statuses[503]:,} refused with 503, and the server "
            f"{'still answered' if survived else 'did NOT answer'} /health right after.")
    return digit_rows, photo_row, note


def main() -> None:
    args = parse_arguments()
    import torch

    from digitrec.inference import open_model

    torch.set_num_threads(1)  # as the server does: one image is too small to share out, and on a busy
    # machine a second thread waiting for a preempted first one costs tens of milliseconds
    loaded = open_model(args.model or "best", args.backend, threads=1)
    tested = mnist_pngs(args.data, 1000)
    digits = [png for png in tested if readable(png, loaded)]
    photos = number_photos(args.data, 50)
    count = int(2 * args.rate * args.seconds)  # what the twice-the-rate phase offers: the most any phase sends
    single = [request_bytes("/api/predict?single=true", png, "image/png") for png in digits]
    photo = [request_bytes("/api/predict", jpeg, "image/jpeg") for jpeg in photos]

    load_before = os.getloadavg()[0]  # other work on the machine moves every number below
    name = "in process, 1 thread, no HTTP (baseline)"
    digit_baseline = in_process(name, digits, loaded, True, count, args.seconds)
    photo_baseline = in_process(name, photos, loaded, False, count, args.seconds)
    digit_rows, photo_rows, notes = [digit_baseline.row(None)], [photo_baseline.row(None)], []
    for workers in args.workers:
        rows, photo_row, note = serve_phases(args, workers, single, photo, count, digit_baseline, photo_baseline)
        digit_rows += rows
        photo_rows.append(photo_row)
        notes.append(note)
    rows = [["28x28 digit", *row] for row in digit_rows] + [["600x200 photo, 4 digits", *row] for row in photo_rows]

    header = ["request", "phase", "sent", "answered/s", "vs baseline", "p50 ms", "p99 ms", "other answers",
              "errors"]
    left_out = (f" ({len(tested) - len(digits)} more read as 'no digits found' even in process and are left out)"
                if len(digits) < len(tested) else "")
    body = (f"Model `{loaded.name}` from `{Path(loaded.source).name}` on {args.backend}; {len(digits)} MNIST test "
            f"digits as 28x28 PNGs{left_out} and 50 photos of 4-digit numbers as 600x200 JPEGs. Goal: at least "
            f"{args.rate:.0f} single-digit readings/s with p99 under 50 ms and no errors; at twice that offered "
            "load, no crash and no 5xx but 503 (busy). Latency is of 200 answers, from when each request was due; "
            "'errors' are 5xx other than 503 and dropped connections. Load average (1 min) on the machine: "
            f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after.\n\n"
            f"{table(header, rows)}\n\n" + "\n".join(f"- {note}" for note in notes))
    print(body)
    if not args.no_write:
        write_section("serve_load", "Serving under load (`digitrec serve`)", body)


if __name__ == "__main__":
    main()
