"""Training speed and accuracy: the lab's recipe and pytorch/examples' recipe against our presets.

Every recipe runs in its own subprocess (clean peak memory, no warm caches shared), one after the
other in this one run, on the real MNIST, and the table quotes ours as ratios to the two baselines.

    python benchmarks/train_speed.py --data ../shared/data/mnist            # everything but `best`
    python benchmarks/train_speed.py --best-run runs/best runs/best-seed2    # take `best` from finished runs
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from markdown import table, write_section  # noqa: E402

THRESHOLDS = (0.98, 0.99, 0.995)


def per_sample_loaders(data_dir: str):
    """The lab's data path: torchvision's `MNIST` with `Compose([ToTensor(), Normalize(...)])`.

    torchvision is not installed here (its wheels want a CUDA torch), so each sample goes through the
    same steps its code takes, in that order: index the uint8 tensor and take `int()` of the label, a PIL
    image from the array, a copied numpy array viewed as HWC and made CHW-contiguous, a float division by
    255, then Normalize's clone, mean and std made tensors, its zero-std check and the in-place
    subtract and divide."""
    import numpy as np
    import torch
    from PIL import Image

    from digitrec.data import load_dataset

    data = load_dataset("mnist", data_dir)

    def to_tensor(picture: Image.Image) -> torch.Tensor:
        array = torch.from_numpy(np.array(picture, np.uint8, copy=True))
        array = array.view(picture.size[1], picture.size[0], len(picture.getbands()))
        return array.permute((2, 0, 1)).contiguous().to(dtype=torch.get_default_dtype()).div(255)

    def normalize(tensor: torch.Tensor, mean=(0.1307,), std=(0.3081,)) -> torch.Tensor:
        tensor = tensor.clone()
        mean = torch.as_tensor(mean, dtype=tensor.dtype, device=tensor.device)
        std = torch.as_tensor(std, dtype=tensor.dtype, device=tensor.device)
        if (std == 0).any():
            raise ValueError("std is zero")
        return tensor.sub_(mean.view(-1, 1, 1)).div_(std.view(-1, 1, 1))

    class PerSampleMNIST(torch.utils.data.Dataset):
        def __init__(self, images, labels):
            self.data, self.targets, self.transforms = images, labels, [to_tensor, normalize]

        def __len__(self):
            return len(self.data)

        def __getitem__(self, index):
            image, target = self.data[index], int(self.targets[index])
            image = Image.fromarray(image.numpy(), mode="L")
            for transform in self.transforms:  # Compose
                image = transform(image)
            return image, target

    train = torch.utils.data.DataLoader(PerSampleMNIST(data.train_images, data.train_labels), batch_size=64, shuffle=True)
    test = torch.utils.data.DataLoader(PerSampleMNIST(data.test_images, data.test_labels), batch_size=1000, shuffle=True)
    return train, test


def examples_network():
    """pytorch/examples mnist/main.py's Net."""
    import torch.nn.functional as F
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(1, 32, 3, 1), nn.Conv2d(32, 64, 3, 1)
            self.dropout1, self.dropout2 = nn.Dropout(0.25), nn.Dropout(0.5)
            self.fc1, self.fc2 = nn.Linear(9216, 128), nn.Linear(128, 10)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2)
            x = F.relu(self.fc1(self.dropout1(x).flatten(1)))
            return F.log_softmax(self.fc2(self.dropout2(x)), dim=1)

    return Net()


def run_baseline(name: str, data_dir: str, epochs: int) -> dict:
    """The lab's loop as written (per-sample DataLoader), with the lab's or pytorch/examples' recipe."""
    import torch
    import torch.nn.functional as F

    from digitrec.models import TutorialNet

    torch.manual_seed(1)
    train_loader, test_loader = per_sample_loaders(data_dir)
    if name == "lab":
        network = TutorialNet()
        optimizer = torch.optim.SGD(network.parameters(), lr=0.01, momentum=0.5)
        scheduler = None
    else:
        network = examples_network()
        optimizer = torch.optim.Adadelta(network.parameters(), lr=1.0)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    curve, seconds = [], 0.0
    for _ in range(epochs):
        network.train()
        started = time.perf_counter()
        for batch_index, (images, targets) in enumerate(train_loader):
            optimizer.zero_grad()
            loss = F.nll_loss(network(images), targets)
            loss.backward()
            optimizer.step()
            if batch_index % 10 == 0:
                loss.item()  # the lab logs every 10 batches
        seconds += time.perf_counter() - started
        if scheduler:
            scheduler.step()
        network.eval()
        correct = 0
        with torch.no_grad():
            for images, targets in test_loader:
                correct += int((network(images).argmax(1) == targets).sum())
        curve.append([seconds, correct / len(test_loader.dataset)])
    return {"curve": curve}


def run_preset(name: str, data_dir: str, seed: int, epochs: int | None) -> dict:
    """Our presets through the same function `digitrec train` calls."""
    from digitrec.data import load_dataset
    from digitrec.training import make_config, train

    data = load_dataset("mnist", data_dir)
    with tempfile.TemporaryDirectory() as folder:
        final = train(make_config(name, seed=seed, epochs=epochs, data_dir=data_dir), folder, data=data,
                      log=lambda line: None, progress=False)
    return {"curve": curve_from_history(final.history, final.seconds)}


def curve_from_history(history, seconds: float) -> list[list[float]]:
    """[training seconds, test accuracy] after each epoch (of a digitrec History), spreading the time
    evenly over epochs."""
    epochs = [point for point in history.test if point.epoch > 0]
    last = max(point.epoch for point in epochs) if epochs else 1
    return [[seconds * point.epoch / last, point.accuracy] for point in epochs]


def run_cli_fast(data_dir: str, seed: int) -> dict:
    """The whole `digitrec train --model fast` command, start-up and data loading included."""
    from digitrec.checkpoint import Checkpoint

    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "digitrec", "train", "--model", "fast", "--seed", str(seed),
                        "--data", data_dir, "--out", folder, "--force", "--no-plots"], check=True,
                       capture_output=True)
        wall = time.perf_counter() - started
        final = Checkpoint.load(folder)
    return {"curve": curve_from_history(final.history, final.seconds), "command_seconds": wall}


def child(args: argparse.Namespace) -> None:
    if args.only in ("lab", "examples"):
        result = run_baseline(args.only, args.data, args.baseline_epochs if args.only == "examples" else 3)
    elif args.only == "fast-cli":
        result = run_cli_fast(args.data, args.seed)
    else:
        result = run_preset(args.only, args.data, args.seed, None)
    peaks = (resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    result["peak_mb"] = max(peaks) / 1024  # fast-cli trains in a child: the `digitrec` command itself
    print("RESULT " + json.dumps(result))


def measure(only: str, args: argparse.Namespace, seed: int = 1) -> dict:
    command = [sys.executable, __file__, "--only", only, "--data", args.data, "--seed", str(seed),
               "--baseline-epochs", str(args.baseline_epochs)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    result = json.loads(next(line for line in output.splitlines() if line.startswith("RESULT "))[7:])
    print(f"  {only} (seed {seed}): final {100 * result['curve'][-1][1]:.2f}% "
          f"after {result['curve'][-1][0]:.1f} s", flush=True)
    return result


def time_to(curve: list[list[float]], threshold: float) -> str:
    return next((f"{seconds:.1f} s" for seconds, accuracy in curve if accuracy >= threshold), "not reached")


def best_from_runs(run_dirs: list[str], data_dir: str) -> tuple[dict, list[list[str]]]:
    """`best` from finished runs (one per seed): the mean row, and each run alone, with test-time
    augmentation, and all of them as one ensemble."""
    from digitrec.checkpoint import Checkpoint, load_ensemble
    from digitrec.data import load_dataset
    from digitrec.evaluation import evaluate

    data = load_dataset("mnist", data_dir)
    finals = [Checkpoint.load(run_dir) for run_dir in run_dirs]
    curves = [curve_from_history(final.history, final.seconds) for final in finals]
    mean_curve = [[sum(curve[k][0] for curve in curves) / len(curves), sum(curve[k][1] for curve in curves) / len(curves)]
                  for k in range(min(len(curve) for curve in curves))]
    rows = []
    for run_dir, final in zip(run_dirs, finals):
        alone, tta = (evaluate(load_ensemble([run_dir], tta), data).accuracy for tta in (False, True))
        rows.append([f"{run_dir} (seed {final.config['seed']})", f"{final.seconds / 60:.1f} min",
                     f"{100 * alone:.2f}%", f"{100 * tta:.2f}%"])
    if len(run_dirs) > 1:
        together, tta = (evaluate(load_ensemble(run_dirs, tta), data).accuracy for tta in (False, True))
        rows.append([f"ensemble of the {len(run_dirs)}", "", f"{100 * together:.2f}%", f"{100 * tta:.2f}%"])
    return {"curve": mean_curve, "peak_mb": float("nan"), "runs": len(run_dirs)}, rows


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="MNIST folder (default: $DIGITREC_DATA)")
    parser.add_argument("--only", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--baseline-epochs", type=int, default=2, help="epochs of the pytorch/examples recipe")
    parser.add_argument("--seeds", type=int, default=3, help="seeds for the fast preset's mean")
    parser.add_argument("--best-run", nargs="+", metavar="RUN", help="take `best` from these finished run folders "
                        "(one per seed) instead of training it; also scores each with --tta and all as an ensemble")
    parser.add_argument("--train-best", action="store_true", help="train `best` here too (about 12 minutes with bfloat16, 25 without)")
    args = parser.parse_args()
    args.data = args.data or os.environ.get("DIGITREC_DATA")
    if not args.data:
        parser.error("give --data DIR or set DIGITREC_DATA")
    return args


def seconds_per_epoch(result: dict) -> float:
    return result["curve"][-1][0] / len(result["curve"])


def recipe_rows(results: dict[str, dict], fast_runs: list[dict]) -> list[list]:
    """A row per recipe (fast: the mean of its seeds, its first seed's curve), speeds against the lab's
    and pytorch/examples' epochs."""
    labels = {"lab": "lab recipe (per-sample DataLoader)", "examples": "pytorch/examples recipe (per-sample)",
              "tutorial": "digitrec tutorial", "fast": f"digitrec fast (mean of {len(fast_runs)} seeds)",
              "mlp": "digitrec mlp",
              "best": f"digitrec best (mean of {results['best'].get('runs', 1)} seeds)" if "best" in results else ""}
    lab_epoch, examples_epoch = seconds_per_epoch(results["lab"]), seconds_per_epoch(results["examples"])
    # Each recipe's curve (fast: its first seed's), seconds an epoch, final accuracy and peak MB.
    summaries = {name: (result["curve"], seconds_per_epoch(result), result["curve"][-1][1], result["peak_mb"])
                 for name, result in results.items()}
    summaries["fast"] = (fast_runs[0]["curve"], sum(map(seconds_per_epoch, fast_runs)) / len(fast_runs),
                         sum(run["curve"][-1][1] for run in fast_runs) / len(fast_runs),
                         max(run["peak_mb"] for run in fast_runs))
    rows = []
    for name in [name for name in labels if name in summaries]:
        curve, epoch, accuracy, peak_mb = summaries[name]
        rows.append([labels[name], len(curve), f"{epoch:.1f}", f"{lab_epoch / epoch:.2f}x", f"{examples_epoch / epoch:.2f}x",
                     *[time_to(curve, threshold) for threshold in THRESHOLDS], f"{100 * accuracy:.2f}%", f"{peak_mb:.0f}"])
    return rows


def notes_text(results: dict[str, dict], fast_runs: list[dict], best_runs: list[str] | None,
               best_rows: list[list[str]]) -> str:
    fast_detail = ", ".join(f"seed {seed}: {100 * run['curve'][-1][1]:.2f}% in {run['curve'][-1][0]:.1f} s of training, "
                            f"{run['command_seconds']:.1f} s for the whole command"
                            for seed, run in enumerate(fast_runs, start=1))
    lab_curve = ", ".join(f"{100 * accuracy:.2f}%" for _, accuracy in results["lab"]["curve"])
    notes = (f"\n\nTimes are training seconds (test passes excluded), cumulative at each epoch's test. "
             f"`fast` per seed: {fast_detail}. The lab recipe's accuracy after each epoch: {lab_curve}. "
             f"Peak MB is the process's maximum resident memory. The lab's data path takes each step "
             f"torchvision's `MNIST` with `ToTensor` and `Normalize` takes, per sample (`per_sample_loaders` "
             f"above); pytorch/examples' recipe reads its data the same way.")
    if best_rows:
        notes += (f" `best` comes from the finished runs {', '.join(best_runs)} (their checkpoints' histories), "
                  "not retrained here; each of them, with test-time augmentation (`digitrec evaluate RUN --tta`: "
                  "the mean over the image and its four one-pixel shifts) and as one ensemble (`digitrec evaluate "
                  "RUN RUN RUN`, the mean of their probabilities):\n\n"
                  + table(["best run", "training time", "test accuracy", "with --tta"], best_rows))
    return notes


def main() -> None:
    args = parse_arguments()
    if args.only:
        return child(args)
    print("Measuring, one recipe at a time:", flush=True)
    results = {"lab": measure("lab", args), "examples": measure("examples", args),
               "tutorial": measure("tutorial", args)}
    results["mlp"] = measure("mlp", args)
    fast_runs = [measure("fast-cli", args, seed) for seed in range(1, args.seeds + 1)]
    best_rows = []
    if args.best_run:
        results["best"], best_rows = best_from_runs(args.best_run, args.data)
    elif args.train_best:
        results["best"] = measure("best", args)
    header = ["recipe", "epochs", "s/epoch", "speed vs lab", "speed vs examples", "time to 98%", "time to 99%",
              "time to 99.5%", "final accuracy", "peak MB"]
    body = table(header, recipe_rows(results, fast_runs))
    notes = notes_text(results, fast_runs, args.best_run, best_rows)
    print(body + notes)
    write_section("train_speed", "Training speed and accuracy (MNIST)", body + notes)


if __name__ == "__main__":
    main()
