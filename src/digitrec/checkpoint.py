"""Saving and loading models: training checkpoints (.pt) and shippable weights (.safetensors).

Nothing here unpickles arbitrary objects: checkpoints load with `weights_only=True` and weights
files are safetensors, so a file handed to digitrec can hold numbers but never code.
"""

from __future__ import annotations

import io
import json
import math
import pickle
import re
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from digitrec.classifier import BATCH_SIZE, CHECKPOINT_NAME, parse_normalisation, pretrained_path
from digitrec.data import Dataset, own_augmentation
from digitrec.errors import DigitrecError, write_atomic
from digitrec.models import PRESETS, TTA_MIRRORED_VIEWS, TTA_VIEWS, Ensemble, build_model, classify, count_parameters



class TrainPoint(NamedTuple):
    """A logged training batch."""

    examples: int  # training examples seen before it
    loss: float
    learning_rate: float


class TestPoint(NamedTuple):
    """A test pass: after each epoch, before the first, and every --eval-every batches."""

    epoch: float  # epochs done, with a fraction for a pass inside an epoch
    examples: int  # training examples seen
    loss: float
    accuracy: float


@dataclass
class History:
    """A run's curves, resumes included. Stored as lists of plain numbers, which weights_only loading reads."""

    train: list[TrainPoint] = field(default_factory=list)
    test: list[TestPoint] = field(default_factory=list)

    @classmethod
    def from_stored(cls, stored: dict) -> History:
        return cls([TrainPoint(*row) for row in stored.get("train", [])],
                   [TestPoint(*row) for row in stored.get("test", [])])

    def to_stored(self) -> dict[str, list[list[float]]]:
        return {"train": [list(point) for point in self.train], "test": [list(point) for point in self.test]}

    @property
    def final_test(self) -> TestPoint | None:
        return self.test[-1] if self.test else None


@dataclass
class Checkpoint:
    """Everything needed to continue a run bit for bit, and to know where it came from."""

    config: dict
    model: dict
    optimizer: dict
    scheduler: dict | None = None
    ema: dict | None = None
    epoch: int = 0  # epochs finished
    batch: int = 0  # batches finished in the epoch in progress
    step: int = 0  # optimizer steps in all
    rng: dict = field(default_factory=dict)
    history: History = field(default_factory=History)
    data: dict = field(default_factory=dict)  # name, classes, mean, std, file checksums
    seconds: float = 0.0  # training time so far

    def __post_init__(self) -> None:
        if isinstance(self.history, dict):  # as stored
            self.history = History.from_stored(self.history)

    def to_stored(self) -> dict:
        """Plain values and tensors only: what `torch.load(weights_only=True)` reads back."""
        stored = {item.name: getattr(self, item.name) for item in fields(self)}
        return {**stored, "history": self.history.to_stored()}

    def save(self, path: str | Path) -> Path:
        # Serialised in memory first: torch.save straight to a file on a full disk fails with an
        # obscure RuntimeError, while write_atomic turns the OSError into a clear message.
        buffer = io.BytesIO()
        torch.save(self.to_stored(), buffer)
        return write_atomic(path, buffer.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> "Checkpoint":
        path = Path(path)
        if path.is_dir():
            path = path / CHECKPOINT_NAME
        if not path.is_file():
            if (path.parent / "config.json").is_file():
                raise DigitrecError(f"the run in {path.parent} stopped before its first checkpoint, so there is "
                                    f"nothing to resume; start it again with 'digitrec train --out {path.parent}'")
            raise DigitrecError(f"no checkpoint at {path}; give a run folder made by 'digitrec train' or its checkpoint.pt")
        stored = _torch_load(path)
        if not isinstance(stored, dict) or not {"config", "model", "optimizer"} <= stored.keys():
            raise DigitrecError(f"{path} is not a digitrec checkpoint (it lacks config, model or optimizer)")
        problems = _checkpoint_problems(stored)
        if problems:
            raise DigitrecError(f"{path} is not a valid digitrec checkpoint: {'; '.join(problems)}; "
                                "use an earlier copy or train again")
        known = {name for name in cls.__dataclass_fields__}
        return cls(**{key: value for key, value in stored.items() if key in known})

    def inference_model(self, source: str) -> LoadedModel:
        """The run's network for reading: its weight average where it kept one."""
        name = self.config["model"]
        model = build_model(name)
        load_state(model, self.ema or self.model, source)
        return LoadedModel(model.eval(), name, self.data["mean"], self.data["std"], tuple(self.data["classes"]), source,
                           {"epoch": self.epoch, "dataset": self.data.get("name"), "augment": self.config.get("augment")})


# What each field of a stored checkpoint must be, so a damaged or crafted file fails here, clearly.
FIELD_TYPES = {"config": dict, "model": dict, "optimizer": dict, "scheduler": (dict, type(None)),
               "ema": (dict, type(None)), "epoch": int, "batch": int, "step": int, "rng": dict,
               "history": dict, "data": dict, "seconds": (int, float)}


def _checkpoint_problems(stored: dict) -> list[str]:
    problems = [f"{key} is a {type(stored[key]).__name__}" for key, kind in FIELD_TYPES.items()
                if key in stored and not isinstance(stored[key], kind)]
    if problems:
        return problems
    name = stored["config"].get("model")
    if not isinstance(name, str) or name not in PRESETS:
        problems.append(f"its model {name!r} is not one of {', '.join(PRESETS)}")
    for key in ("model", "ema"):
        state = stored.get(key) or {}
        if not all(isinstance(name, str) and isinstance(value, torch.Tensor) for name, value in state.items()):
            problems.append(f"{key} holds something other than named tensors")
    if not all(isinstance(value, torch.Tensor) for value in stored.get("rng", {}).values()):
        problems.append("rng holds something other than random-generator states")
    history = stored.get("history", {})
    if not all(isinstance(history.get(split), list) for split in ("train", "test")):
        problems.append("history lacks its train and test lists")
    elif not all(_is_row(row, len(kind._fields)) for split, kind in (("train", TrainPoint), ("test", TestPoint))
                 for row in history[split]):
        problems.append("history holds rows other than lists of numbers")
    if any(stored.get(key, 0) < 0 for key in ("epoch", "batch", "step")):
        problems.append("its epoch, batch or step count is negative")
    data = stored.get("data", {})
    try:
        parse_normalisation(data.get("mean"), data.get("std"), data.get("classes"))
    except ValueError as error:
        problems.append(str(error))
    return problems


def _is_row(row, length: int) -> bool:
    return (isinstance(row, (list, tuple)) and len(row) == length
            and all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in row))


def _torch_load(path: Path):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on pickle protocols would bury the one clear message
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"GLOBAL (\S+)", str(error))
        if found:
            raise DigitrecError(f"refused to load {path}: it holds Python objects ({found.group(1)}) other than "
                                "tensors and plain values, which could run code; only load files digitrec wrote") from error
        detail = re.search(r"WeightsUnpickler error:\s*(.+)", str(error))  # e.g. an opcode the safe reader refuses
        raise DigitrecError(f"refused to load {path}: it is damaged or not a file digitrec wrote "
                            f"({detail.group(1) if detail else 'unreadable'}); use an earlier copy or train again") from error
    except Exception as error:  # damaged bytes fail torch's reader in many ways (fuzzing found KeyError too)
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]  # an empty file: bare EOFError
        raise DigitrecError(f"{path} is corrupt or truncated ({reason}); "
                            "use an earlier copy or train again") from error


@dataclass
class LoadedModel:
    """A PyTorch network ready for inference, with what inference needs to feed it: the torch
    implementation of classifier.Classifier."""

    model: nn.Module
    name: str  # the preset
    mean: float
    std: float
    classes: tuple[str, ...]
    source: str
    metadata: dict = field(default_factory=dict)

    @property
    def parameters(self) -> int:
        return count_parameters(self.model)

    def log_probabilities(self, images: np.ndarray, batch_size: int = BATCH_SIZE) -> np.ndarray:
        """Natural-log probabilities float32 (N, classes) of uint8 images (N, 28, 28), `batch_size` at a time."""
        batch = torch.from_numpy(np.ascontiguousarray(images))
        return classify(self.model, batch, self.mean, self.std, batch_size).cpu().numpy()


def load_state(model: nn.Module, state: dict, source: str | Path) -> None:
    """Load weights, naming the expected and found shapes when the architecture does not match."""
    expected = model.state_dict()
    missing = [f"{key} {tuple(expected[key].shape)}" for key in expected if key not in state]
    unexpected = [f"{key} {tuple(state[key].shape)}" for key in state if key not in expected]
    wrong = [f"{key}: expected {tuple(expected[key].shape)}, found {tuple(state[key].shape)}"
             for key in expected if key in state and expected[key].shape != state[key].shape]
    if missing or unexpected or wrong:
        details = "; ".join(filter(None, [
            "missing (expected but not found) " + _first(missing) if missing else "",
            "unexpected (found but not expected) " + _first(unexpected) if unexpected else "",
            _first(wrong, "; ")]))
        raise DigitrecError(f"{source} does not fit the {type(model).__name__} architecture: {details}")
    model.load_state_dict(state)


def _first(items: list[str], separator: str = ", ", count: int = 5) -> str:
    more = f"{separator}and {len(items) - count} more" if len(items) > count else ""
    return separator.join(items[:count]) + more


def save_weights(path: str | Path, model_name: str, model: nn.Module, data: dict, metadata: dict | None = None) -> Path:
    """Write a model as safetensors with its preset, normalisation and classes in the header."""
    from safetensors.torch import save

    header = {"model": model_name, "mean": str(data["mean"]), "std": str(data["std"]),
              "classes": json.dumps(list(data["classes"])), **{k: str(v) for k, v in (metadata or {}).items()}}
    state = {key: value.contiguous() for key, value in model.state_dict().items()}
    return write_atomic(path, save(state, metadata=header))  # bytes first, as in Checkpoint.save


def export_weights(loaded: LoadedModel, data: Dataset, out: str | Path) -> tuple[Path, float]:
    """The shippable form of a model: its (averaged) weights, normalisation, classes and test accuracy
    in the header. Returns the file written and that accuracy."""
    predictions = classify(loaded.model, data.test_images, loaded.mean, loaded.std).argmax(1).cpu()
    accuracy = int((predictions == data.test_labels).sum()) / max(len(data.test_labels), 1)
    normalisation = {"mean": loaded.mean, "std": loaded.std, "classes": loaded.classes}
    path = save_weights(out, loaded.name, loaded.model, normalisation,
                        metadata={"accuracy": f"{accuracy:.4f}", "dataset": data.name, "source": loaded.source,
                                  "data_sha256": json.dumps(data.checksums)})
    return path, accuracy


def _load_safetensors(path: Path) -> LoadedModel:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
            state = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise DigitrecError(f"{path} is not a readable safetensors file ({error})") from error
    name = header.get("model")
    if name not in PRESETS:
        raise DigitrecError(f"{path} does not say which model it holds (metadata 'model' is {name!r}); "
                            f"expected one of {', '.join(PRESETS)}")
    try:
        classes = json.loads(header.get("classes") or "null")
    except ValueError:
        classes = header["classes"]  # not JSON: parse_normalisation names it below
    try:
        mean, std, classes = parse_normalisation(header.get("mean"), header.get("std"), classes)
    except ValueError as error:
        raise DigitrecError(f"{path} lacks what inference needs: {error}") from None
    model = build_model(name)
    load_state(model, state, path)
    return LoadedModel(model.eval(), name, mean, std, classes, str(path), header)


def load_model(reference: str | Path) -> LoadedModel:
    """A run folder, a checkpoint.pt, a .safetensors file, or a preset name (its shipped weights)."""
    path = Path(reference)
    if path.is_dir() or path.suffix == ".pt":
        return Checkpoint.load(path).inference_model(str(path))
    if path.suffix == ".safetensors":
        if not path.is_file():
            raise DigitrecError(f"no weights file at {path}")
        return _load_safetensors(path)
    if str(reference) in PRESETS:
        shipped = pretrained_path(str(reference))
        if shipped is None:
            raise DigitrecError(f"no pretrained weights ship for {reference!r}; train it with "
                                f"'digitrec train --model {reference}' and pass the run folder")
        return _load_safetensors(shipped)
    raise DigitrecError(f"cannot find model {str(reference)!r}: give a run folder, a checkpoint.pt, "
                        f"a .safetensors file or one of {', '.join(PRESETS)}")


def load_ensemble(references: list[str | Path], tta: bool = False) -> LoadedModel:
    """One model from several (the mean of their probabilities), each reading the image as given and,
    with `tta`, moved a pixel each way (and mirrored, for a data set trained with mirroring). One
    reference without `tta` is that model, unchanged."""
    members = [load_model(reference) for reference in references]
    if len(members) == 1 and not tta:
        return members[0]
    first = members[0]
    for other in members[1:]:
        if other.classes != first.classes or not (math.isclose(other.mean, first.mean, abs_tol=1e-4)
                                                  and math.isclose(other.std, first.std, abs_tol=1e-4)):
            raise DigitrecError(f"{other.source} was trained on other data than {first.source} (its classes or "
                                "normalisation differ); an ensemble needs models of one data set")
    names = sorted({member.name for member in members})
    name = "+".join(names) + (f" x{len(members)}" if len(members) > 1 else "") + (" with TTA" if tta else "")
    mirrored = all(_trained_mirrored(member) for member in members)
    views = (TTA_MIRRORED_VIEWS if mirrored else TTA_VIEWS) if tta else ((0, 0, False),)
    ensemble = Ensemble([member.model for member in members], views)
    return LoadedModel(ensemble.eval(), name, first.mean, first.std, first.classes,
                       ", ".join(member.source for member in members),
                       {"dataset": first.metadata.get("dataset"), "members": len(members), "tta": tta})


def _trained_mirrored(member: LoadedModel) -> bool:
    """Whether a model saw mirrored pictures in training: as its run recorded, else as its data set is trained."""
    return (member.metadata.get("augment") or own_augmentation(member.metadata.get("dataset"))) == "flip"
