"""Scoring a model on a test split: loss, accuracy, per-class accuracy, confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from digitrec.checkpoint import LoadedModel
from digitrec.data import Dataset
from digitrec.models import classify


@dataclass
class Evaluation:
    loss: float
    accuracy: float
    correct: int
    total: int
    per_class: dict[str, float]  # class name -> accuracy (recall) on that class
    confusion: list[list[int]]  # rows: true class, columns: predicted class
    log_probabilities: torch.Tensor = field(repr=False)

    def summary(self) -> dict:
        return {"accuracy": self.accuracy, "loss": self.loss, "correct": self.correct, "total": self.total,
                "per_class": self.per_class, "confusion": self.confusion}


def evaluate(loaded: LoadedModel, data: Dataset, batch_size: int = 1000) -> Evaluation:
    log_probabilities = classify(loaded.model, data.test_images, loaded.mean, loaded.std, batch_size).cpu()
    labels = data.test_labels
    predictions = log_probabilities.argmax(1)
    classes = len(data.classes)
    confusion = torch.bincount(labels * classes + predictions, minlength=classes * classes).reshape(classes, classes)
    per_class = confusion.diag().double() / confusion.sum(1).clamp(min=1).double()
    correct = int(confusion.diag().sum())
    return Evaluation(
        loss=F.nll_loss(log_probabilities, labels).item() if len(labels) else 0.0,
        accuracy=correct / max(len(labels), 1), correct=correct, total=len(labels),
        per_class={name: round(value, 6) for name, value in zip(data.classes, per_class.tolist())},
        confusion=confusion.tolist(), log_probabilities=log_probabilities)
