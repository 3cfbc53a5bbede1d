"""The lab's three figures as PNG files: sample digits, the loss curves, predictions."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from digitrec.checkpoint import Checkpoint, load_model  # noqa: E402
from digitrec.data import Dataset  # noqa: E402
from digitrec.errors import write_atomic  # noqa: E402
from digitrec.models import classify  # noqa: E402


def sample_indices(count: int, seed: int, how_many: int = 6) -> torch.Tensor:
    return torch.randperm(count, generator=torch.Generator().manual_seed(seed))[:how_many]


def save_figure(figure, path: Path) -> Path:
    write_atomic(path, lambda temporary: figure.savefig(temporary, format="png", dpi=100, bbox_inches="tight"))
    plt.close(figure)
    return path


def digit_grid(images: torch.Tensor, titles: list[str], path: Path) -> Path:
    figure, axes = plt.subplots(2, 3, figsize=(6, 4.4))
    for axis, image, title in zip(axes.flat, images, titles):
        axis.imshow(image.numpy(), cmap="gray", interpolation="none")
        axis.set_title(title)
        axis.set_xticks([])
        axis.set_yticks([])
    figure.tight_layout()
    return save_figure(figure, path)


def loss_plot(history: dict, path: Path) -> Path:
    figure, axis = plt.subplots(figsize=(7, 4.5))
    if history["train"]:
        seen, losses = zip(*[(row[0], row[1]) for row in history["train"]])
        axis.plot(seen, losses, color="blue", linewidth=0.8, label="Train Loss")
    if history["test"]:
        seen, losses = zip(*[(row[1], row[2]) for row in history["test"]])
        axis.scatter(seen, losses, color="red", zorder=3, label="Test Loss")
    axis.legend(loc="upper right")
    axis.set_xlabel("number of training examples seen")
    axis.set_ylabel("negative log likelihood loss")
    figure.tight_layout()
    return save_figure(figure, path)


def draw_run_plots(run_dir: str | Path, data: Dataset) -> list[Path]:
    """samples.png, loss.png and predictions.png in the run folder, from its checkpoint."""
    run_dir = Path(run_dir)
    checkpoint = Checkpoint.load(run_dir)
    loaded = load_model(run_dir)
    chosen = sample_indices(len(data.test_images), checkpoint.config.get("seed", 1))
    images, labels = data.test_images[chosen], data.test_labels[chosen]
    predictions = classify(loaded.model, images, loaded.mean, loaded.std).argmax(1)
    names = data.classes
    return [
        digit_grid(images, [f"Ground Truth: {names[i]}" for i in labels], run_dir / "samples.png"),
        loss_plot(checkpoint.history, run_dir / "loss.png"),
        digit_grid(images, [f"Prediction: {names[i]}" for i in predictions], run_dir / "predictions.png"),
    ]
