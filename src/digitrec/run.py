"""A run folder: the names of its files, reading them once, and writing them as training goes.

    runs/fast/checkpoint.pt     every state needed to resume bit for bit (Checkpoint)
    runs/fast/config.json       the settings, as the run was last started
    runs/fast/metrics.csv       the history, one row per logged batch and per test pass
    runs/fast/summary.json      the last test pass: a run's accuracy without loading its checkpoint
    runs/fast/*.png             the lab's figures (digitrec plot)
    runs/fast/checkpoint.onnx   the ONNX export, made on first use by the onnx backend
"""

from __future__ import annotations

import csv
import io
import json
from functools import cached_property
from pathlib import Path

from digitrec.checkpoint import CHECKPOINT_NAME, Checkpoint, History, LoadedModel, TestPoint
from digitrec.data import Dataset, load_dataset
from digitrec.errors import DigitrecError, remove_leftover_writes, write_atomic

CONFIG_NAME = "config.json"
METRICS_NAME = "metrics.csv"
SUMMARY_NAME = "summary.json"
PLOT_NAMES = ("samples.png", "loss.png", "predictions.png")


class Run:
    """One run folder. The checkpoint is loaded at most once, on first use."""

    def __init__(self, folder: str | Path, checkpoint_path: str | Path | None = None) -> None:
        self.folder = Path(folder)
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path else self.folder / CHECKPOINT_NAME
        self.source = str(checkpoint_path or folder)  # as the user named it, for messages and reports

    @classmethod
    def open(cls, reference: str | Path | Run) -> Run:
        """A run folder, or a checkpoint file in one."""
        if isinstance(reference, Run):
            return reference
        path = Path(reference)
        return cls(path.parent, path) if path.suffix == ".pt" else cls(path)

    def __repr__(self) -> str:
        return f"Run({str(self.folder)!r})"

    @property
    def config_path(self) -> Path:
        return self.folder / CONFIG_NAME

    @property
    def metrics_path(self) -> Path:
        return self.folder / METRICS_NAME

    @property
    def summary_path(self) -> Path:
        return self.folder / SUMMARY_NAME

    @property
    def plot_paths(self) -> dict[str, Path]:
        return {name.removesuffix(".png"): self.folder / name for name in PLOT_NAMES}

    def holds_run(self) -> bool:
        return self.checkpoint_path.exists()

    @cached_property
    def checkpoint(self) -> Checkpoint:
        return Checkpoint.load(self.checkpoint_path)

    @property
    def config(self) -> dict:
        """The settings as stored: config.json, or the checkpoint's once that is loaded (or config.json is gone)."""
        if "checkpoint" not in self.__dict__:
            try:
                return json.loads(self.config_path.read_text())
            except (OSError, ValueError):
                pass
        return self.checkpoint.config

    @property
    def final_test(self) -> TestPoint | None:
        """The last test pass, from summary.json; from the checkpoint for a run written before it existed
        (or a checkpoint file under another name, which summary.json does not describe)."""
        if self.checkpoint_path.name == CHECKPOINT_NAME:
            try:
                return TestPoint(**json.loads(self.summary_path.read_text())["final_test"])
            except (OSError, ValueError, KeyError, TypeError):
                pass
        return self.checkpoint.history.final_test

    @property
    def accuracy(self) -> float | None:
        final = self.final_test
        return final.accuracy if final else None

    def inference_model(self) -> LoadedModel:
        """The network for reading (its weight average where it kept one), from the cached checkpoint."""
        return self.checkpoint.inference_model(self.source)

    def dataset(self, name: str | None = None, folder: str | Path | None = None) -> Dataset:
        """The data set the run was trained on, unless `name` or `folder` say otherwise. Loads the run's
        checkpoint (once), which every caller needs next: a damaged run fails before the data is read."""
        stored = self.checkpoint.config
        return load_dataset(name or stored.get("dataset", "mnist"), folder or stored.get("data_dir"))

    def refuse_to_overwrite(self, force: bool) -> None:
        if self.holds_run() and not force:
            raise DigitrecError(f"{self.folder} already holds a run; continue it with 'digitrec resume {self.folder}', "
                                "choose another --out, or pass --force to start it again")

    def clean_leftovers(self) -> None:
        """Remove what writes cut short by a kill left behind (the files they were writing are whole)."""
        for path in (self.checkpoint_path, self.config_path, self.metrics_path, self.summary_path):
            remove_leftover_writes(path)

    def write_config(self, config: dict) -> None:
        write_atomic(self.config_path, json.dumps(config, indent=2) + "\n")

    def save(self, checkpoint: Checkpoint) -> None:
        """The checkpoint, then the files read from it: metrics.csv and summary.json."""
        checkpoint.save(self.checkpoint_path)
        self.__dict__["checkpoint"] = checkpoint  # the newest, so what reads the run after training sees it
        write_atomic(self.metrics_path, metrics_csv(checkpoint.history))
        final = checkpoint.history.final_test
        summary = {"epoch": checkpoint.epoch, "step": checkpoint.step, "seconds": checkpoint.seconds,
                   "final_test": final._asdict() if final else None}
        write_atomic(self.summary_path, json.dumps(summary, indent=2) + "\n")


def metrics_csv(history: History) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["split", "epoch", "examples_seen", "loss", "accuracy", "learning_rate"])
    for point in history.train:
        writer.writerow(["train", "", point.examples, f"{point.loss:.6f}", "", f"{point.learning_rate:.6g}"])
    for point in history.test:
        writer.writerow(["test", point.epoch, point.examples, f"{point.loss:.6f}", f"{point.accuracy:.6f}", ""])
    return buffer.getvalue()


def default_run_dir(model: str, root: str | Path = "runs") -> Path:
    """runs/MODEL, or runs/MODEL-2, -3 and so on when that is taken."""
    root = Path(root)
    candidate = root / model
    number = 2
    while candidate.exists():
        candidate = root / f"{model}-{number}"
        number += 1
    return candidate
