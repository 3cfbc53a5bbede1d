"""Scoring a model on a test split: loss, accuracy, per-class metrics, confusion, calibration, mistakes."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from digitrec.classifier import Classifier
from digitrec.data import Dataset

CALIBRATION_BINS = 15  # the usual choice for expected calibration error (Guo et al., 2017)


@dataclass
class Evaluation:
    loss: float
    accuracy: float
    correct: int
    total: int
    per_class: dict[str, float]  # class name -> accuracy (recall) on that class
    confusion: list[list[int]]  # rows: true class, columns: predicted class
    log_probabilities: torch.Tensor = field(repr=False)
    labels: torch.Tensor | None = field(default=None, repr=False)
    classes: tuple[str, ...] = ()

    def summary(self) -> dict:
        """Every number of the evaluation as plain JSON values; the report's metrics.json holds the same."""
        return {"accuracy": self.accuracy, "loss": self.loss, "correct": self.correct, "total": self.total,
                "per_class": self.per_class, "confusion": self.confusion, "classes": list(self.classes),
                "class_metrics": self.class_metrics(), "macro_f1": self.macro_f1(),
                "calibration": self.calibration(), "confused_pairs": self.confused_pairs(),
                "worst_mistakes": self.worst_mistakes()}

    def class_metrics(self) -> dict[str, dict[str, float]]:
        """Precision, recall, F1 and support per class, from the confusion matrix."""
        confusion = torch.tensor(self.confusion, dtype=torch.float64)
        hits, predicted, actual = confusion.diag(), confusion.sum(0), confusion.sum(1)
        precision = hits / predicted.clamp(min=1)
        recall = hits / actual.clamp(min=1)
        f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
        return {name: {"precision": round(p, 6), "recall": round(r, 6), "f1": round(f, 6), "support": int(s)}
                for name, p, r, f, s in zip(self.classes, precision.tolist(), recall.tolist(), f1.tolist(),
                                            actual.tolist())}

    def macro_f1(self) -> float:
        scores = [metrics["f1"] for metrics in self.class_metrics().values()]
        return round(sum(scores) / max(len(scores), 1), 6)

    def calibration(self, bins: int = CALIBRATION_BINS) -> dict:
        """Expected calibration error and the reliability diagram's bins (confidence = top probability)."""
        confidence, predictions = self.log_probabilities.exp().max(1)
        correct = (predictions == self.labels).double()
        # Bin b holds confidences in (b/bins, (b+1)/bins]; a confidence of exactly 0 cannot occur with 10 classes.
        index = (confidence.double() * bins).ceil().long().clamp(1, bins) - 1
        count = torch.bincount(index, minlength=bins)
        mean_confidence = torch.bincount(index, confidence.double(), minlength=bins) / count.clamp(min=1)
        accuracy = torch.bincount(index, correct, minlength=bins) / count.clamp(min=1)
        ece = ((mean_confidence - accuracy).abs() * count).sum().item() / max(self.total, 1)
        return {"ece": round(ece, 6), "bins": [
            {"lower": round(b / bins, 6), "upper": round((b + 1) / bins, 6), "count": int(n),
             "confidence": round(c, 6), "accuracy": round(a, 6)}
            for b, (n, c, a) in enumerate(zip(count.tolist(), mean_confidence.tolist(), accuracy.tolist()))]}

    def confused_pairs(self, count: int = 10) -> list[dict]:
        """The (true, predicted) pairs the model mixes up most often, most frequent first."""
        confusion = torch.tensor(self.confusion)
        off_diagonal = confusion.clone().fill_diagonal_(0).flatten()
        order = off_diagonal.argsort(descending=True, stable=True)[:count]
        classes = len(self.classes)
        return [{"true": self.classes[i // classes], "predicted": self.classes[i % classes],
                 "count": int(off_diagonal[i])} for i in order.tolist() if off_diagonal[i] > 0]

    def worst_mistakes(self, count: int = 16) -> list[dict]:
        """The test images the model got most confidently wrong, with its top three guesses."""
        probabilities = self.log_probabilities.exp()
        confidence, predictions = probabilities.max(1)
        wrong = (predictions != self.labels).nonzero().flatten()
        chosen = wrong[confidence[wrong].argsort(descending=True, stable=True)[:count]]
        top_probabilities, top_classes = probabilities[chosen].topk(min(3, probabilities.shape[1]), dim=1)
        return [{"index": index, "true": self.classes[int(self.labels[index])],
                 "predicted": self.classes[int(predictions[index])],
                 "top3": [[self.classes[c], round(p, 6)] for c, p in zip(classes_row, probability_row)]}
                for index, classes_row, probability_row in zip(chosen.tolist(), top_classes.tolist(),
                                                               top_probabilities.tolist())]


def evaluate(classifier: Classifier, data: Dataset) -> Evaluation:
    """Score any classifier (PyTorch or onnxruntime) on `data`'s test split."""
    log_probabilities = torch.from_numpy(classifier.log_probabilities(data.test_images.numpy()))
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
        confusion=confusion.tolist(), log_probabilities=log_probabilities, labels=labels, classes=data.classes)
