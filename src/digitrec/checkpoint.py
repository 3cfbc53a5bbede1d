"""Saving and loading models: training checkpoints (.pt) and shippable weights (.safetensors).

Nothing here unpickles arbitrary objects: checkpoints load with `weights_only=True` and weights
files are safetensors, so a file handed to digitrec can hold numbers but never code.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from digitrec.errors import DigitrecError, write_atomic
from digitrec.models import PRESETS, build_model

CHECKPOINT_NAME = "checkpoint.pt"


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
    history: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)  # name, classes, mean, std, file checksums
    seconds: float = 0.0  # training time so far

    def save(self, path: str | Path) -> Path:
        return write_atomic(path, lambda temporary: torch.save(asdict(self), temporary))

    @classmethod
    def load(cls, path: str | Path) -> "Checkpoint":
        path = Path(path)
        if path.is_dir():
            path = path / CHECKPOINT_NAME
        if not path.is_file():
            raise DigitrecError(f"no checkpoint at {path}; give a run folder made by 'digitrec train' or its checkpoint.pt")
        stored = _torch_load(path)
        if not isinstance(stored, dict) or not {"config", "model", "optimizer"} <= stored.keys():
            raise DigitrecError(f"{path} is not a digitrec checkpoint (it lacks config, model or optimizer)")
        known = {name for name in cls.__dataclass_fields__}
        return cls(**{key: value for key, value in stored.items() if key in known})


def _torch_load(path: Path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise DigitrecError(f"refused to load {path}: it holds Python objects other than tensors and plain "
                            "values, which could run code; only load files digitrec wrote") from error
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as error:
        raise DigitrecError(f"{path} is corrupt or truncated ({str(error).splitlines()[0][:200]}); "
                            "use an earlier copy or train again") from error


@dataclass
class LoadedModel:
    """A network ready for inference, with what inference needs to feed it."""

    model: nn.Module
    name: str  # the preset
    mean: float
    std: float
    classes: tuple[str, ...]
    source: str
    metadata: dict = field(default_factory=dict)


def load_state(model: nn.Module, state: dict, source: str | Path) -> None:
    """Load weights, naming the expected and found shapes when the architecture does not match."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{key}: expected {tuple(expected[key].shape)}, found {tuple(state[key].shape)}"
             for key in expected if key in state and expected[key].shape != state[key].shape]
    if missing or unexpected or wrong:
        details = "; ".join(filter(None, [
            "missing " + ", ".join(missing[:5]) if missing else "",
            "unexpected " + ", ".join(unexpected[:5]) if unexpected else "",
            *wrong[:5]]))
        raise DigitrecError(f"{source} does not fit the {type(model).__name__} architecture: {details}")
    model.load_state_dict(state)


def save_weights(path: str | Path, model_name: str, model: nn.Module, data: dict, metadata: dict | None = None) -> Path:
    """Write a model as safetensors with its preset, normalisation and classes in the header."""
    from safetensors.torch import save_file

    header = {"model": model_name, "mean": str(data["mean"]), "std": str(data["std"]),
              "classes": json.dumps(list(data["classes"])), **{k: str(v) for k, v in (metadata or {}).items()}}
    state = {key: value.contiguous() for key, value in model.state_dict().items()}
    return write_atomic(path, lambda temporary: save_file(state, str(temporary), metadata=header))


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
    model = build_model(name)
    load_state(model, state, path)
    return LoadedModel(model.eval(), name, float(header["mean"]), float(header["std"]),
                       tuple(json.loads(header["classes"])), str(path), header)


def _from_checkpoint(checkpoint: Checkpoint, source: str, use_ema: bool = True) -> LoadedModel:
    name = checkpoint.config["model"]
    model = build_model(name)
    state = checkpoint.ema if use_ema and checkpoint.ema else checkpoint.model
    load_state(model, state, source)
    data = checkpoint.data
    return LoadedModel(model.eval(), name, data["mean"], data["std"], tuple(data["classes"]), source,
                       {"epoch": checkpoint.epoch, "dataset": data.get("name")})


def pretrained_path(name: str) -> Path | None:
    """The weights shipped inside the package for a preset, if any."""
    resource = resources.files("digitrec") / "weights" / f"{name}.safetensors"
    return Path(str(resource)) if resource.is_file() else None


def load_model(reference: str | Path) -> LoadedModel:
    """A run folder, a checkpoint.pt, a .safetensors file, or a preset name (its shipped weights)."""
    path = Path(reference)
    if path.is_dir() or path.suffix == ".pt":
        return _from_checkpoint(Checkpoint.load(path), str(path))
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
