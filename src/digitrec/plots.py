"""The lab's three figures as PNG files: sample digits, the loss curves, predictions.

Figures are made with matplotlib's object API (`Figure`), never through pyplot: no backend is chosen
for the whole process, no window can open, and nothing is left open between calls.
"""

from __future__ import annotations

from pathlib import Path

import torch
from matplotlib.figure import Figure

from digitrec.checkpoint import History
from digitrec.data import Dataset
from digitrec.errors import write_atomic
from digitrec.models import classify
from digitrec.run import Run


def sample_indices(count: int, seed: int, how_many: int = 6) -> torch.Tensor:
    return torch.randperm(count, generator=torch.Generator().manual_seed(seed))[:how_many]


def save_figure(figure: Figure, path: Path) -> Path:
    return write_atomic(path, lambda temporary: figure.savefig(temporary, format="png", dpi=100, bbox_inches="tight"))


def digit_grid(images: torch.Tensor, titles: list[str], path: Path) -> Path:
    figure = Figure(figsize=(6, 4.4))
    for axis, image, title in zip(figure.subplots(2, 3).flat, images, titles):
        axis.imshow(image.numpy(), cmap="gray", interpolation="none")
        axis.set_title(title)
        axis.set_xticks([])
        axis.set_yticks([])
    figure.tight_layout()
    return save_figure(figure, path)


def loss_plot(history: History, path: Path) -> Path:
    figure = Figure(figsize=(7, 4.5))
    axis = figure.subplots()
    if history.train:
        axis.plot([point.examples for point in history.train], [point.loss for point in history.train],
                  color="blue", linewidth=0.8, label="Train Loss")
    if history.test:
        axis.scatter([point.examples for point in history.test], [point.loss for point in history.test],
                     color="red", zorder=3, label="Test Loss")
    axis.legend(loc="upper right")
    axis.set_xlabel("number of training examples seen")
    axis.set_ylabel("negative log likelihood loss")
    figure.tight_layout()
    return save_figure(figure, path)


def draw_run_plots(run_dir: str | Path | Run, data: Dataset) -> list[Path]:
    """samples.png, loss.png and predictions.png in the run folder, from its checkpoint."""
    run = Run.open(run_dir)
    checkpoint = run.checkpoint
    loaded = run.inference_model()
    chosen = sample_indices(len(data.test_images), checkpoint.config.get("seed", 1))
    images, labels = data.test_images[chosen], data.test_labels[chosen]
    predictions = classify(loaded.model, images, loaded.mean, loaded.std).argmax(1)
    names, paths = data.classes, run.plot_paths
    return [
        digit_grid(images, [f"Ground Truth: {names[i]}" for i in labels], paths["samples"]),
        loss_plot(checkpoint.history, paths["loss"]),
        digit_grid(images, [f"Prediction: {names[i]}" for i in predictions], paths["predictions"]),
    ]
