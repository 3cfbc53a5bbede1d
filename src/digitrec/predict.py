"""Reading the digits in a picture: preprocessing, then one batch through the model."""

from __future__ import annotations

import base64
import functools
import io
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from digitrec.checkpoint import LoadedModel, load_model
from digitrec.errors import UnsupportedInput
from digitrec.models import classify
from digitrec.preprocess import Segment, decode_image, preprocess_image

UNCERTAIN_BELOW = 0.6  # a digit read with less probability than this is flagged; label smoothing caps them near 0.9


@dataclass
class Item:
    """One digit read: the model's answer, all ten probabilities, and where it was."""

    digit: int
    probability: float
    probabilities: list[float]
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in the picture's pixels

    def to_json(self) -> dict:
        return {"digit": self.digit, "probability": self.probability, "probabilities": self.probabilities,
                "box": list(self.box)}


@dataclass
class Reading:
    """All the digits in one picture, left to right."""

    digits: str
    confidence: float  # the probability that every digit is right: the product of theirs
    items: list[Item]
    segments: list[Segment]  # the 28x28 images the model saw, one per item

    @property
    def image28(self) -> list[torch.Tensor]:
        return [segment.image for segment in self.segments]

    @property
    def uncertain(self) -> bool:
        return any(item.probability < UNCERTAIN_BELOW for item in self.items)

    def to_json(self, include_inputs: bool = False) -> dict:
        """The `digitrec predict --json` object; `include_inputs` adds the 28x28 inputs as base64 PNGs."""
        result = {"digits": self.digits, "confidence": self.confidence, "items": [item.to_json() for item in self.items]}
        if self.uncertain:
            result["uncertain"] = True
        if include_inputs:
            for item, image in zip(result["items"], self.image28):
                item["input_png"] = _png_base64(image)
        return result


def _png_base64(image: torch.Tensor) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image.numpy()).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def read_image(source: bytes | str | Path | Image.Image, loaded: LoadedModel, single: bool = False) -> Reading:
    """The digits in a picture (bytes, a path or a decoded image), read left to right.

    A picture with no ink in it raises UnsupportedInput: there is nothing to read.
    """
    image = source if isinstance(source, Image.Image) else decode_image(source)
    segments = preprocess_image(image, single=single)
    if not segments:
        raise UnsupportedInput("no digits found: the picture is blank or its marks are too faint or small; "
                               "write the digits darker and larger than the specks around them")
    log_probabilities = classify(loaded.model, torch.stack([segment.image for segment in segments]),
                                 loaded.mean, loaded.std)
    probabilities = log_probabilities.exp().cpu()
    items = []
    for segment, row in zip(segments, probabilities):
        digit = int(row.argmax())
        items.append(Item(digit, round(float(row[digit]), 6), [round(value, 6) for value in row.tolist()],
                          segment.box))
    confidence = float(torch.prod(probabilities.max(1).values))
    return Reading("".join(str(item.digit) for item in items), round(confidence, 6), items, segments)


@functools.lru_cache(maxsize=1)
def default_model() -> LoadedModel:
    """The `best` weights that ship inside the package, loaded once."""
    return load_model("best")
