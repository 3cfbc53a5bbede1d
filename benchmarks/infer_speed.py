"""Inference speed of every preset on every backend: batch-1 latency and batch-256 throughput.

    python benchmarks/infer_speed.py [--models tutorial,best] [--rounds 30] [--no-write]

Backends: PyTorch eager (the baseline), PyTorch with inference_mode and channels_last, onnxruntime
fp32, and onnxruntime int8 by static and by dynamic quantization. Every backend runs through the
session inference uses (classifier.OnnxClassifier.run for onnxruntime), on normalised real MNIST test images.
Weights are the shipped ones where a preset has them, else random (speed does not depend on them).

The machine may be shared, so every measurement lets the backends take turns round by round (a
busy spell slows them all alike), and each number is chosen to say something even then:
- batch-1 latency, wall clock, one thread (as `digitrec serve` runs each request), p50 and p99
  over every call;
- batch-256 throughput, wall clock, all cores: the best round, the closest to what the machine
  does when nobody else runs;
- batch-256 throughput on one thread timed in CPU time: each backend's work per core, which other
  processes cannot inflate.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from markdown import table, write_section  # noqa: E402

from digitrec.checkpoint import LoadedModel, load_model, pretrained_path  # noqa: E402
from digitrec.data import load_dataset, normalize  # noqa: E402
from digitrec.classifier import OnnxClassifier, session_options  # noqa: E402
from digitrec.export import calibration_images, quantize, to_onnx  # noqa: E402
from digitrec.models import PRESETS, build_model, torch_threads  # noqa: E402

BATCH = 256
CALLS_PER_ROUND = 20  # batch-1 calls per backend per round
GOALS = {"tutorial": (60_000, 0.1), "best": (5_000, None)}  # images/s at batch 256, ms at batch 1
EAGER = "PyTorch eager"


def load_weights(name: str, mean: float, std: float) -> tuple[LoadedModel, str]:
    if pretrained_path(name):
        return load_model(name), "shipped"
    torch.manual_seed(0)
    return LoadedModel(build_model(name).eval(), name, mean, std, tuple(str(d) for d in range(10)), "random"), "random"


def backends(loaded: LoadedModel, graphs: dict[str, bytes], threads: int) -> dict[str, Callable]:
    """Each backend as a function of a normalised batch; onnxruntime sessions use `threads` (0: all cores)."""
    model = loaded.model.eval()
    channels_last = build_model(loaded.name).eval()
    channels_last.load_state_dict(model.state_dict())
    channels_last = channels_last.to(memory_format=torch.channels_last)

    def eager(images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(images)

    def inference_mode(images: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return channels_last(images.contiguous(memory_format=torch.channels_last))

    return {EAGER: eager, "PyTorch inference_mode + channels_last": inference_mode,
            **{f"onnxruntime {precision}": session_runner(content, threads=threads)
               for precision, content in graphs.items()}}


def session_runner(graph: bytes, **options) -> Callable:
    """An onnxruntime session as a function of a normalised batch, like the PyTorch ones."""
    classifier = OnnxClassifier(graph, options=session_options(**options))
    return lambda images: classifier.run(images.numpy())


def timings(runners: dict, inputs: torch.Tensor, rounds: int, calls: int,
            clock: Callable[[], float] = time.perf_counter) -> dict[str, list[float]]:
    """Seconds per call of each runner; the runners take turns, `calls` calls each per round."""
    for run in runners.values():  # warm-up: allocators, thread pools, one-off graph work
        run(inputs)
    times = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            for _ in range(calls):
                started = clock()
                run(inputs)
                times[name].append(clock() - started)
    return times


def measure(loaded: LoadedModel, graphs: dict[str, bytes], images: torch.Tensor, rounds: int) -> dict[str, dict]:
    single, batch = images[:1].clone(), images[:BATCH].clone()
    with torch_threads(1):
        one_thread = backends(loaded, graphs, threads=1)
        latency = timings(one_thread, single, rounds, CALLS_PER_ROUND)
        work = timings(one_thread, batch, rounds, 1, clock=time.thread_time)
    # Three calls a turn: the previous backend's idle threads still spin (OpenMP, onnxruntime) for a
    # while after its turn and slow the first call; the best of a turn's calls is free of that.
    throughput = timings(backends(loaded, graphs, threads=0), batch, rounds, 3)
    return {name: {"p50_ms": 1e3 * float(np.percentile(latency[name], 50)),
                   "p99_ms": 1e3 * float(np.percentile(latency[name], 99)),
                   "images_per_s": BATCH / min(throughput[name]),
                   "core_images_per_s": BATCH / float(np.median(work[name]))}
            for name in latency}


def session_settings(loaded: LoadedModel, graphs: dict[str, bytes], images: torch.Tensor, rounds: int) -> list[list]:
    """The onnxruntime settings tried: graph optimisation level, executor, threads.

    The optimisation levels change the work itself, so they are also timed per core in CPU time;
    threads and executor only change how work spreads over cores, which only the wall clock shows.
    """
    settings = {
        "chosen: all optimisations, sequential, 1 thread per core": {},
        "basic optimisations only": {"optimization": "basic"},
        "extended optimisations (no NCHWc layout)": {"optimization": "extended"},
        "1 intra-op thread": {"threads": 1},
        "parallel executor": {"parallel": True},
    }
    per_work = [label for label, setting in settings.items() if set(setting) <= {"optimization"}]
    precisions = ("fp32", "int8 static")
    runners = {(precision, label): session_runner(graphs[precision], **setting)
               for precision in precisions for label, setting in settings.items()}
    single = {(precision, label): session_runner(graphs[precision], **{"threads": 1, **settings[label]})
              for precision in precisions for label in per_work}
    latency = timings(runners, images[:1].clone(), rounds, CALLS_PER_ROUND)
    throughput = timings(runners, images[:BATCH].clone(), rounds, 3)
    work = timings(single, images[:BATCH].clone(), rounds, 1, clock=time.thread_time)
    return [[loaded.name, precision, label, f"{1e3 * np.percentile(latency[(precision, label)], 50):.3f}",
             f"{BATCH / min(throughput[(precision, label)]):,.0f}",
             f"{BATCH / np.median(work[(precision, label)]):,.0f}" if label in per_work else "-"]
            for precision, label in runners]


def goal_line(name: str, results: dict[str, dict]) -> str:
    throughput_goal, latency_goal = GOALS[name]
    fastest = max(results, key=lambda backend: results[backend]["images_per_s"])
    quickest = min(results, key=lambda backend: results[backend]["p50_ms"])
    best_rate, best_latency = results[fastest]["images_per_s"], results[quickest]["p50_ms"]
    line = (f"`{name}` goal {throughput_goal:,} images/s at batch {BATCH}: {best_rate:,.0f} with {fastest} "
            + ("(met)" if best_rate >= throughput_goal else f"(not met: {best_rate / throughput_goal:.0%} of the goal)"))
    if latency_goal:
        line += (f"; goal {latency_goal} ms at batch 1: {best_latency:.3f} ms with {quickest} "
                 + ("(met)" if best_latency <= latency_goal else "(not met)"))
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(PRESETS), help="comma-separated presets")
    parser.add_argument("--rounds", type=int, default=15, help="turns per backend and measurement")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    data = load_dataset("mnist", allow_download=False)
    calibration = calibration_images(data)
    rows, summary, options_rows = [], [], []
    for name in args.models.split(","):
        loaded, weights = load_weights(name, data.mean, data.std)
        images = normalize(data.test_images[:BATCH], loaded.mean, loaded.std)
        graph = to_onnx(loaded)
        graphs = {"fp32": graph.SerializeToString(),
                  **{f"int8 {method}": quantize(graph, calibration, loaded.mean, loaded.std, method).SerializeToString()
                     for method in ("static", "dynamic")}}
        results = measure(loaded, graphs, images, args.rounds)
        eager = results[EAGER]
        for backend, result in results.items():
            rows.append([name, weights, backend, f"{result['p50_ms']:.3f}", f"{result['p99_ms']:.3f}",
                         f"{result['images_per_s']:,.0f}", f"{result['core_images_per_s']:,.0f}",
                         f"{eager['p50_ms'] / result['p50_ms']:.2f}x",
                         f"{result['images_per_s'] / eager['images_per_s']:.2f}x",
                         f"{result['core_images_per_s'] / eager['core_images_per_s']:.2f}x"])
            print(" | ".join(rows[-1]), flush=True)
        if name in GOALS:
            summary.append(goal_line(name, results))
        if name in ("tutorial", "best"):
            options_rows += session_settings(loaded, graphs, images, args.rounds)

    body = table(["model", "weights", "backend", "batch 1 p50 ms", "batch 1 p99 ms",
                  f"batch {BATCH} images/s", f"batch {BATCH} images/s, 1 thread (CPU time)",
                  "latency vs eager", "throughput vs eager", "1-thread throughput vs eager"], rows)
    body += ("\n\nBatch 1: wall clock, one thread (as the server runs each request). Batch 256: wall clock on "
             "all cores, the best of the rounds; and on one thread in CPU time, which other processes cannot "
             "inflate. Ratios are speed-ups over PyTorch eager (above 1 is faster).\n\n")
    body += "\n".join(f"- {line}" for line in summary)
    body += (f"\n\nLoad average (other processes included) {load_before:.1f} at the start and "
             f"{os.getloadavg()[0]:.1f} at the end, on {os.cpu_count()} cores.")
    body += "\n\n### onnxruntime session options\n\n" + table(
        ["model", "precision", "setting", "batch 1 p50 ms (the setting's threads)", f"batch {BATCH} images/s",
         f"batch {BATCH} images/s, 1 thread (CPU time)"], options_rows)
    print(body)
    if not args.no_write:
        write_section("infer_speed", "Inference speed by backend", body)


if __name__ == "__main__":
    main()
