"""Every setting of a training run in one place: its type, its allowed values, its help, its checks.

`digitrec train`'s flags are made from these fields, so a setting is added here and nowhere else.
A run's settings are stored (config.json, the checkpoint) as plain JSON values: the enums below are
strings, and `TrainConfig.to_dict()` hands them out as plain `str`. Nothing here imports torch, so
building the command line costs nothing.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field, fields, replace
from enum import Enum, StrEnum
from typing import Any

from digitrec.errors import DigitrecError

AUTO = "auto"  # for settings whose metadata allows it: chosen for the data set or the machine


class Optimizer(StrEnum):
    SGD = "sgd"
    NESTEROV = "nesterov"  # SGD with Nesterov momentum
    ADAM = "adam"
    ADAMW = "adamw"
    ADADELTA = "adadelta"


class Schedule(StrEnum):
    NONE = "none"
    ONECYCLE = "onecycle"
    STEP = "step"  # the learning rate times --gamma after each epoch


class Augmentation(StrEnum):
    NONE = "none"
    AFFINE = "affine"  # random rotation, scale, shear, shift and pen width: handwriting
    ELASTIC = "elastic"  # affine plus a smooth random warp
    FLIP = "flip"  # mirror and shift: pictures of things, such as Fashion-MNIST


class Precision(StrEnum):
    FP32 = "fp32"
    BF16 = "bf16"  # the forward pass under bfloat16 autocast; weights, updates and tests stay fp32


def setting(default: Any, help: str = "", *, auto: bool = False, counts: bool = False, flag: bool = True) -> Any:
    """A TrainConfig field with what `digitrec train --help` says of it. `auto`: the value "auto" is
    also accepted, and chosen by make_config; `counts`: 0 or more; `flag`: a --flag of its own."""
    return field(default=default, metadata={"help": help, "auto": auto, "counts": counts, "flag": flag})


@dataclass
class TrainConfig:
    """Every setting of a run. The defaults are the lab's; a preset's recipe overrides some."""

    model: str = setting("tutorial", flag=False)
    dataset: str = setting("mnist", flag=False)
    data_dir: str | None = setting(None, flag=False)
    epochs: int = setting(3, "epochs in all")
    batch_size: int = setting(64, "training images per step (split among --nproc processes)")
    test_batch_size: int = setting(1000, "images per batch of a test pass")
    optimizer: Optimizer = setting(Optimizer.SGD, "nesterov is SGD with Nesterov momentum")
    lr: float = setting(0.01, "learning rate (the peak one for --schedule onecycle)")
    momentum: float = setting(0.5, "SGD's momentum")
    weight_decay: float = setting(0.0, "L2 penalty on the weights")
    schedule: Schedule = setting(Schedule.NONE, "how the learning rate changes over the run")
    gamma: float = setting(0.7, "learning-rate factor per epoch for --schedule step")
    label_smoothing: float = setting(0.0, "share of each target spread over the other classes")
    augment: Augmentation = setting(Augmentation.NONE, (
        "affine (random rotation, scale, shear, shift and pen width: handwriting), elastic (affine plus a "
        "smooth random warp), flip (mirror and shift: pictures of things, such as Fashion-MNIST) or auto "
        "(the data set's own)"), auto=True)
    ema: float = setting(0.0, "decay of a moving average of the weights, e.g. 0.999; 0 is off")
    seed: int = setting(1, "seeds the weights, the order of the images and the augmentation")
    log_interval: int = setting(10, "batches between log lines")
    checkpoint_every: int = setting(0, "also save every N batches (0: only at the end of each epoch)", counts=True)
    eval_every: int = setting(0, "test every N batches inside an epoch (for --target-accuracy)", counts=True)
    target_accuracy: float = setting(0.0, "stop once the test accuracy reaches this, e.g. 0.99")
    train_subset: int = setting(0, "train on the first N images only (0: all)", counts=True)
    device: str = setting("auto", "auto (default), cpu, cuda, cuda:N or mps")
    threads: int = setting(0, "CPU threads (default: all cores)", counts=True)
    channels_last: bool = setting(False, "NHWC memory layout: faster convolutions on CPUs for the BN CNNs")
    precision: Precision = setting(Precision.FP32, (
        "fp32, bf16 (the forward pass in bfloat16, weights kept in fp32: about 2x faster on CPUs with "
        "AVX512-BF16 or AMX) or auto (bf16 where it is native)"), auto=True)

    def __post_init__(self) -> None:
        for item in fields(self):
            setattr(self, item.name, _checked(item, SETTING_TYPES[item.name], getattr(self, item.name)))
        validate_config(self)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (enums as `str`), as config.json and a checkpoint store them."""
        return {item.name: _plain(getattr(self, item.name)) for item in fields(self)}


SETTING_TYPES = typing.get_type_hints(TrainConfig)
SETTINGS = tuple(item.name for item in fields(TrainConfig))
FLAG_SETTINGS = tuple(item for item in fields(TrainConfig) if item.metadata["flag"])  # those the CLI sets


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def choices(name: str) -> tuple[str, ...] | None:
    """The values a setting may take, "auto" included where it is allowed; None for a free one."""
    kind = SETTING_TYPES[name]
    if not (isinstance(kind, type) and issubclass(kind, Enum)):
        return None
    item = next(item for item in fields(TrainConfig) if item.name == name)
    return tuple(member.value for member in kind) + ((AUTO,) if item.metadata["auto"] else ())


def _checked(item, kind, value):
    """`value` as the field's type (an enum member for an enum), or a DigitrecError that names the setting."""
    if isinstance(kind, type) and issubclass(kind, Enum):
        try:
            return kind(value)
        except ValueError:
            allowed = choices(item.name)
            listed = ", ".join(allowed[:-1]) + " or " + allowed[-1] if item.metadata["auto"] else ", ".join(allowed)
            raise DigitrecError(f"{flag_name(item.name)} must be one of {listed}, not {value!r}") from None
    allowed = typing.get_args(kind) or (kind,)
    if float in allowed:
        allowed += (int,)
    if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
        names = " or ".join("None" if option is type(None) else option.__name__ for option in allowed)
        raise DigitrecError(f"setting {item.name} must be {names}, not {value!r}")
    return value


def _plain(value):
    return value.value if isinstance(value, Enum) else value


def validate_config(config: TrainConfig) -> None:
    checks = [
        (config.epochs >= 1, "--epochs must be at least 1"),
        (config.batch_size >= 1, "--batch-size must be at least 1"),
        (config.test_batch_size >= 1, "--test-batch-size must be at least 1"),
        (config.lr > 0, "--lr must be positive"),
        (0 <= config.momentum < 1, "--momentum must be in [0, 1)"),
        (config.weight_decay >= 0, "--weight-decay must not be negative"),
        (0 <= config.label_smoothing < 1, "--label-smoothing must be in [0, 1)"),
        (0 <= config.ema < 1, "--ema must be in [0, 1)"),
        (0 <= config.target_accuracy <= 1, "--target-accuracy is a fraction in [0, 1], e.g. 0.99"),
        (config.log_interval >= 1, "--log-interval must be at least 1"),
        (config.checkpoint_every >= 0 and config.eval_every >= 0, "--checkpoint-every and --eval-every must not be negative"),
        (config.train_subset >= 0, "--train-subset must not be negative"),
        (config.threads >= 0, "--threads must not be negative"),
    ]
    for ok, message in checks:
        if not ok:
            raise DigitrecError(message)


def refuse_unknown(settings: dict, where: str) -> None:
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise DigitrecError(f"unknown setting{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                            f"in {where}; the settings are: {', '.join(SETTINGS)}")


def stored_config(stored: dict, source: str) -> TrainConfig:
    """The settings a run stored, checked; settings this version does not know are left out."""
    try:
        return TrainConfig(**{key: value for key, value in stored.items() if key in SETTINGS})
    except (TypeError, DigitrecError) as error:
        raise DigitrecError(f"the settings stored in {source} are damaged ({error})") from error


def changed_config(config: TrainConfig, **changes) -> TrainConfig:
    """`config` with the settings given (None: unchanged), checked like a new one."""
    refuse_unknown(changes, "the settings given")
    return replace(config, **{key: value for key, value in changes.items() if value is not None})
