"""What reading needs of a model, without PyTorch: the `Classifier` interface, and its onnxruntime
implementation for exported .onnx files.

A classifier takes uint8 images (N, 28, 28), white on black as MNIST has them, and answers natural-log
probabilities (N, classes). The other implementation, a PyTorch network (checkpoint.LoadedModel),
lives on the torch side; inference.open_model opens either from any model reference.

The exported graph's input `images` is normalised float32 (N, 1, 28, 28) with N free; its output
`log_probabilities` float32 (N, classes). The file's metadata_props hold the preset, mean, std,
classes and the weights it came from, so an .onnx file alone is enough to read digits.
"""

from __future__ import annotations

import json
import math
from importlib import resources
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from digitrec.errors import DigitrecError

CHECKPOINT_NAME = "checkpoint.pt"  # a run folder's checkpoint (checkpoint.Checkpoint reads and writes it)
INPUT_NAME = "images"
OUTPUT_NAME = "log_probabilities"
BATCH_SIZE = 1000  # images per run of the model: a test split at once would hold 10,000 feature maps
# The presets an .onnx file may name (models.PRESETS holds their networks, on the torch side).
PRESET_NAMES = ("tutorial", "mlp", "fast", "best")


@runtime_checkable
class Classifier(Protocol):
    """A model ready to read: what it is, how its inputs are normalised, and its log-probabilities."""

    name: str  # the preset
    source: str  # where it was loaded from
    classes: tuple[str, ...]
    mean: float
    std: float
    metadata: dict

    @property
    def parameters(self) -> int | None:
        """Trainable numbers in the network (None where the runtime does not say)."""

    def log_probabilities(self, images: np.ndarray, batch_size: int = BATCH_SIZE) -> np.ndarray:
        """Natural-log probabilities float32 (N, classes) of uint8 images (N, 28, 28), `batch_size` at a time."""


def normalize_pixels(images: np.ndarray, mean: float, std: float) -> np.ndarray:
    """uint8 (N, H, W) -> float32 (N, 1, H, W), as data.normalize does for torch tensors."""
    return ((images.astype(np.float32)[:, None] / 255 - np.float32(mean)) / np.float32(std)).astype(np.float32)


def parse_normalisation(mean, std, classes) -> tuple[float, float, tuple[str, ...]]:
    """mean, std and class names as stored in a model file, checked: ValueError says what is wrong."""
    try:
        mean, std = float(mean), float(std)
    except (TypeError, ValueError):
        raise ValueError(f"its normalisation (mean {mean!r}, std {std!r}) is not two numbers") from None
    if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
        raise ValueError(f"its normalisation (mean {mean}, std {std}) needs finite numbers and a positive std")
    if not (isinstance(classes, (list, tuple)) and classes and all(isinstance(name, str) for name in classes)):
        raise ValueError(f"its class names {str(classes)[:80]} are not a list of strings")
    return mean, std, tuple(classes)


def pretrained_path(name: str, suffix: str = ".safetensors") -> Path | None:
    """The weights shipped inside the package for a preset (or their checked ONNX export), if any."""
    resource = resources.files("digitrec") / "weights" / f"{name}{suffix}"
    return Path(str(resource)) if resource.is_file() else None


def session_options(threads: int = 0, parallel: bool = False, optimization: str = "all"):
    """onnxruntime settings; the defaults measured fastest here (see benchmarks/infer_speed.py).

    A chain of layers has no branches to run side by side, so the parallel executor only adds overhead;
    `all` includes the NCHWc layout that gives the fastest convolutions; threads 0 is one per core.
    """
    import onnxruntime as ort

    levels = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
    options = ort.SessionOptions()
    options.graph_optimization_level = levels[optimization]
    options.execution_mode = ort.ExecutionMode.ORT_PARALLEL if parallel else ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    return options


class OnnxClassifier:
    """An exported model in an onnxruntime session, described by the metadata the export wrote."""

    def __init__(self, model: bytes | str | Path, threads: int = 0, options=None, source: str | None = None) -> None:
        self.session = open_session(model, options or session_options(threads))
        self.source = source or ("the exported graph" if isinstance(model, bytes) else str(model))
        header = dict(self.session.get_modelmeta().custom_metadata_map)
        self.name = header.get("model")
        if self.name not in PRESET_NAMES:
            raise DigitrecError(f"{self.source} is not a digitrec ONNX file (metadata 'model' is {self.name!r}); "
                                "export one with 'digitrec export'")
        try:
            self.mean, self.std, self.classes = parse_normalisation(
                header.get("mean"), header.get("std"), json.loads(header.get("classes") or "null"))
        except ValueError as error:
            raise DigitrecError(f"{self.source} lacks what inference needs: {error}; export it again with "
                                "'digitrec export'") from None
        self.metadata = {**header, "backend": "onnx"}

    @property
    def parameters(self) -> int | None:
        return None  # the graph's initializers include folded constants, so their size is not the network's

    def log_probabilities(self, images: np.ndarray, batch_size: int = BATCH_SIZE) -> np.ndarray:
        outputs = [self.run(normalize_pixels(images[start:start + batch_size], self.mean, self.std))
                   for start in range(0, len(images), batch_size)]
        return np.concatenate(outputs) if outputs else np.empty((0, len(self.classes)), np.float32)

    def run(self, normalised: np.ndarray) -> np.ndarray:
        """The graph itself: normalised float32 (N, 1, 28, 28) in, log-probabilities out."""
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(normalised, np.float32)})[0]


def open_session(model: bytes | str | Path, options, remedy: str = "export it again with 'digitrec export'"):
    """An onnxruntime session on the CPU, or one line naming what is wrong with the file and `remedy`."""
    import onnxruntime as ort
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

    source = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except (ort_errors.InvalidProtobuf, ort_errors.InvalidGraph, ort_errors.Fail, ort_errors.NoSuchFile,
            ort_errors.NotImplemented, ort_errors.InvalidArgument) as error:
        name = "the exported graph" if isinstance(model, bytes) else model
        raise DigitrecError(f"onnxruntime cannot load {name}: {str(error).splitlines()[0][:300]}; {remedy}") from error


def load_onnx(path: str | Path, threads: int = 0) -> OnnxClassifier:
    """An exported .onnx file, ready to read with."""
    path = Path(path)
    if not path.is_file():
        raise DigitrecError(f"no ONNX file at {path}")
    return OnnxClassifier(path, threads)
