"""The training loop: the lab's recipe on whole tensors, exact checkpoints, resume.

The data set lives in memory as one uint8 tensor; each batch is a slice through a shuffled index,
normalised (and optionally augmented) as a whole. Checkpoints carry every random state and the
position inside the epoch, so a resumed run continues bit for bit where it stopped.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import signal
import sys
import time
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from digitrec.checkpoint import CHECKPOINT_NAME, Checkpoint, load_state
from digitrec.data import Dataset, load_dataset, own_augmentation
from digitrec.errors import DigitrecError, write_atomic
from digitrec.models import PRESETS, build_model, classify, move_images

OPTIMIZERS = ("sgd", "nesterov", "adam", "adamw", "adadelta")
SCHEDULES = ("none", "onecycle", "step")
AUGMENTATIONS = ("none", "affine", "elastic", "flip")
PRECISIONS = ("fp32", "bf16")
ELASTIC_PIXELS = 2.0  # about how far `--augment elastic` moves a pixel at most, on top of the affine distortion


@dataclass
class TrainConfig:
    """Every setting of a run. The defaults are the lab's; a preset's recipe overrides some."""

    model: str = "tutorial"
    dataset: str = "mnist"
    data_dir: str | None = None
    epochs: int = 3
    batch_size: int = 64
    test_batch_size: int = 1000
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.5
    weight_decay: float = 0.0
    schedule: str = "none"
    gamma: float = 0.7  # learning-rate decay per epoch for the step schedule
    label_smoothing: float = 0.0
    augment: str = "none"
    ema: float = 0.0  # decay of the weights' moving average; 0 turns it off
    seed: int = 1
    log_interval: int = 10
    checkpoint_every: int = 0  # batches; 0 saves only at the end of each epoch
    eval_every: int = 0  # batches between test passes inside an epoch (for --target-accuracy)
    target_accuracy: float = 0.0  # stop as soon as the test accuracy reaches this
    train_subset: int = 0  # use only the first N training images (0: all)
    device: str = "auto"
    threads: int = 0  # 0: all cores
    channels_last: bool = False  # NHWC memory layout: faster convolutions on CPUs for the BN CNNs
    precision: str = "fp32"  # bf16: the forward pass under bfloat16 autocast; weights, updates and tests stay fp32


def make_config(model: str = "tutorial", **overrides) -> TrainConfig:
    """Lab defaults, then the preset's recipe, then whatever the user set (None means not set)."""
    if model not in PRESETS:
        raise DigitrecError(f"unknown model {model!r}; choose one of: {', '.join(PRESETS)}")
    known = {field.name for field in fields(TrainConfig)}
    unknown = set(overrides) - known
    if unknown:
        raise DigitrecError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    settings = {**PRESETS[model].recipe, **{k: v for k, v in overrides.items() if v is not None}}
    if settings.get("augment") == "auto":  # the data set's own kind of augmentation, recorded as such
        settings["augment"] = own_augmentation(settings.get("dataset"))
    if settings.get("precision") == "auto":
        settings["precision"] = "bf16" if bfloat16_is_fast(settings.get("device") or "auto") else "fp32"
    config = TrainConfig(model=model, **settings)
    validate_config(config)
    return config


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
        (config.optimizer in OPTIMIZERS, f"--optimizer must be one of {', '.join(OPTIMIZERS)}"),
        (config.schedule in SCHEDULES, f"--schedule must be one of {', '.join(SCHEDULES)}"),
        (config.augment in AUGMENTATIONS, f"--augment must be one of {', '.join(AUGMENTATIONS)} or auto"),
        (config.precision in PRECISIONS, f"--precision must be one of {', '.join(PRECISIONS)} or auto"),
    ]
    for ok, message in checks:
        if not ok:
            raise DigitrecError(message)


def bfloat16_is_fast(device: str) -> bool:
    """Whether this machine computes in bfloat16 natively (a recent GPU, or a CPU with AVX512-BF16 or AMX);
    elsewhere bfloat16 is emulated and slower than fp32."""
    kind = pick_device(device).type
    if kind == "cuda":
        return torch.cuda.is_bf16_supported()
    if kind == "cpu":
        return bool(getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)())
    return False


def distributed_context() -> tuple[int, int]:
    """(rank, world size): under torchrun, joins the process group (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world


def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
        torch.empty(1, device=device)
    except (RuntimeError, AssertionError) as error:
        raise DigitrecError(f"device {name!r} is not available here ({str(error).splitlines()[0]}); use --device cpu") from error
    return device


def make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    # foreach: one multi-tensor update per step instead of a Python loop over the parameters, which
    # PyTorch only picks by itself on CUDA; for the small networks that loop is a visible part of a step.
    parameters, options = model.parameters(), {"weight_decay": config.weight_decay, "foreach": True}
    if config.optimizer in ("sgd", "nesterov"):
        return torch.optim.SGD(parameters, lr=config.lr, momentum=config.momentum,
                               nesterov=config.optimizer == "nesterov", **options)
    if config.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=config.lr, **options)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(parameters, lr=config.lr, **options)
    return torch.optim.Adadelta(parameters, lr=config.lr, **options)


def make_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int):
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch,
            pct_start=0.25, cycle_momentum=config.optimizer in ("sgd", "nesterov"))
    if config.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=steps_per_epoch, gamma=config.gamma)
    return None


def augment_batch(images: torch.Tensor, generator: torch.Generator, rotation: float = 12.0,
                  scale: float = 0.12, shift: float = 0.12, shear: float = 0.15, elastic: float = 0.0) -> torch.Tensor:
    """Random affine distortions of a whole batch (N, 1, H, W) on [0, 1] in one grid_sample call; with
    `elastic`, also a smooth random warp that moves each pixel up to about that many pixels."""
    count = len(images)
    uniform = torch.rand(count, 6, generator=generator).mul_(2).sub_(1).to(images.device)
    angle = uniform[:, 0] * math.radians(rotation)
    zoom = 1 + uniform[:, 1] * scale
    stretch = 1 + uniform[:, 2] * scale / 2  # a little change of aspect: thin and wide writers
    skew = uniform[:, 3] * shear
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([
        torch.stack([cos / (zoom * stretch), (-sin + skew) / zoom, uniform[:, 4] * shift * 2], dim=1),
        torch.stack([sin / (zoom * stretch), cos / zoom, uniform[:, 5] * shift * 2], dim=1),
    ], dim=1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    if elastic:
        # Simard et al. (2003): a smooth random displacement field, the distortion that helps handwriting
        # most. Random pulls on a 4x4 lattice, spread over the image by bicubic interpolation.
        height, width = images.shape[-2:]
        pulls = torch.rand(count, 2, 4, 4, generator=generator).mul_(2).sub_(1).to(images.device)
        field = F.interpolate(pulls, size=(height, width), mode="bicubic", align_corners=True)
        field = field * (2 * elastic / torch.tensor([width, height], device=images.device).view(1, 2, 1, 1))
        grid = grid + field.permute(0, 2, 3, 1)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # Pens vary: a fifth of the batch gets a thicker stroke (dilation), a fifth a thinner one (erosion).
    pen = torch.rand(count, generator=generator).to(images.device).view(-1, 1, 1, 1)
    thicker = F.max_pool2d(images, 3, stride=1, padding=1)
    thinner = -F.max_pool2d(F.pad(-images, (0, 1, 0, 1), value=-1.0), 2, stride=1)
    return torch.where(pen < 0.2, thicker, torch.where(pen < 0.4, thinner, images))


def flip_shift_batch(images: torch.Tensor, generator: torch.Generator, shift: int = 2) -> torch.Tensor:
    """Half the batch mirrored left to right and every image moved up to `shift` whole pixels each way:
    the augmentation for pictures of things (Fashion-MNIST), where a mirrored shoe is still a shoe but
    a thicker outline or a tilt is not how the data set was made."""
    draws = torch.rand(len(images), 3, generator=generator).to(images.device)
    moves = (draws[:, 1:] * (2 * shift + 1)).floor() - shift  # whole pixels in [-shift, shift]
    return move_images(images, moves[:, 0], moves[:, 1], draws[:, 0] < 0.5)


class WeightAverage:
    """An exponential moving average of all weights and buffers, kept beside the model."""

    def __init__(self, model: nn.Module, decay: float, state: dict | None = None) -> None:
        self.decay = decay
        self.state = {k: v.detach().clone() for k, v in (state or model.state_dict()).items()}

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        # A short warm-up, so the average does not drag the random initial weights along for long.
        decay = min(self.decay, (1 + step) / (10 + step))
        current = model.state_dict()
        floats = [k for k, v in self.state.items() if v.is_floating_point()]
        torch._foreach_lerp_([self.state[k] for k in floats], [current[k] for k in floats], 1 - decay)
        for key, value in self.state.items():
            if not value.is_floating_point():
                value.copy_(current[key])


class Interrupted(Exception):
    """Raised after a Ctrl-C or SIGTERM, once the checkpoint is safely written."""

    def __init__(self, message: str, signal_number: int) -> None:
        super().__init__(message)
        self.signal_number = signal_number


@dataclass
class TestResult:
    loss: float
    correct: int
    total: int

    @property
    def accuracy(self) -> float:
        return self.correct / max(self.total, 1)


def test(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, mean: float, std: float,
         batch_size: int = 1000) -> TestResult:
    """Average negative log-likelihood and correct count over a split, as the lab's test() does."""
    log_probabilities = classify(model, images, mean, std, batch_size)
    labels = labels.to(log_probabilities.device)
    loss = F.nll_loss(log_probabilities, labels, reduction="sum").item() / max(len(labels), 1)
    correct = int((log_probabilities.argmax(1) == labels).sum())
    return TestResult(loss, correct, len(labels))


def test_line(result: TestResult) -> str:
    return (f"Test set: Avg. loss: {result.loss:.4f}, Accuracy: {result.correct}/{result.total} "
            f"({100 * result.accuracy:.0f}%)")


def write_metrics(run_dir: Path, history: dict) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["split", "epoch", "examples_seen", "loss", "accuracy", "learning_rate"])
    for examples, loss, learning_rate in history["train"]:
        writer.writerow(["train", "", examples, f"{loss:.6f}", "", f"{learning_rate:.6g}"])
    for epoch, examples, loss, accuracy in history["test"]:
        writer.writerow(["test", epoch, examples, f"{loss:.6f}", f"{accuracy:.6f}", ""])
    write_atomic(run_dir / "metrics.csv", buffer.getvalue())


class StopSignals:
    """Turn SIGINT and SIGTERM into a flag the loop checks between batches, so saves finish first."""

    def __init__(self) -> None:
        self.received: int | None = None

    def __enter__(self) -> "StopSignals":
        self.previous = {}
        for number in (signal.SIGINT, signal.SIGTERM):
            try:
                self.previous[number] = signal.signal(number, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, number, frame) -> None:
        self.received = number

    def __exit__(self, *exc) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)


def _data_record(data: Dataset, mean: float, std: float) -> dict:
    return {"name": data.name, "classes": list(data.classes), "mean": mean, "std": std,
            "folder": str(data.folder), "checksums": data.checksums}


def train(config: TrainConfig, run_dir: str | Path, resume: Checkpoint | None = None,
          data: Dataset | None = None, log: Callable[[str], None] = print, progress: bool | None = None) -> Checkpoint:
    """Train (or continue) a run in `run_dir`; returns the final checkpoint, also saved there."""
    rank, world = distributed_context()
    try:
        return _train(config, Path(run_dir), resume, data, log, progress, rank, world)
    finally:
        if world > 1:  # gloo's threads left running at exit abort the process (pytorch/pytorch#190489)
            import torch.distributed as dist

            dist.destroy_process_group()


def _train(config: TrainConfig, run_dir: Path, resume: Checkpoint | None, data: Dataset | None,
           log: Callable[[str], None], progress: bool | None, rank: int, world: int) -> Checkpoint:
    run_dir.mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = pick_device(config.device)
    if config.batch_size % world:
        raise DigitrecError(f"--batch-size {config.batch_size} must divide evenly among {world} processes")
    if rank != 0:  # rank 0 alone logs and writes; the others train their shard in silence
        log, progress = (lambda line: None), False
    data = data or load_dataset(config.dataset, config.data_dir)
    if resume is not None:
        _check_same_data(resume, data)
    train_images, train_labels = data.train_images, data.train_labels
    if config.train_subset:
        train_images, train_labels = train_images[:config.train_subset], train_labels[:config.train_subset]
    mean, std = (resume.data["mean"], resume.data["std"]) if resume else (data.mean, data.std)
    train_images, train_labels = train_images.to(device), train_labels.to(device)
    test_images, test_labels = data.test_images.to(device), data.test_labels.to(device)
    count = len(train_images)
    if count == 0:
        raise DigitrecError("the training split is empty")
    steps_per_epoch = math.ceil(count / config.batch_size)

    torch.manual_seed(config.seed)
    model = build_model(config.model).to(device)
    layout = torch.channels_last if config.channels_last else torch.contiguous_format
    model = model.to(memory_format=layout)
    network = model if world == 1 else nn.parallel.DistributedDataParallel(model)
    optimizer = make_optimizer(config, model)
    scheduler = make_scheduler(config, optimizer, steps_per_epoch)
    shuffle_generator = torch.Generator().manual_seed(config.seed)
    augment_generator = torch.Generator().manual_seed(config.seed + 1)
    history = {"train": [], "test": []}
    epoch, batch, step, seconds = 0, 0, 0, 0.0
    epoch_shuffle_state = shuffle_generator.get_state()
    average = WeightAverage(model, config.ema) if config.ema else None

    if resume is not None:
        try:
            load_state(model, resume.model, run_dir / CHECKPOINT_NAME)
            optimizer.load_state_dict(resume.optimizer)
            if scheduler is not None and resume.scheduler:
                if resume.config.get("epochs") == config.epochs:
                    scheduler.load_state_dict(resume.scheduler)
                else:  # a longer run: lay the schedule out over the new length and move it to where the run is
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        for _ in range(resume.step):
                            scheduler.step()
            if average is not None and resume.ema:
                average = WeightAverage(model, config.ema, resume.ema)
            epoch, batch, step, seconds = resume.epoch, resume.batch, resume.step, resume.seconds
            history = resume.history
            torch.set_rng_state(resume.rng["torch"])
            shuffle_generator.set_state(resume.rng["shuffle_epoch_start"])
            augment_generator.set_state(resume.rng["augment"])
            if device.type == "cuda" and "cuda" in resume.rng:
                torch.cuda.set_rng_state(resume.rng["cuda"])
            epoch_shuffle_state = resume.rng["shuffle_epoch_start"]
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as error:
            raise DigitrecError(f"{run_dir / CHECKPOINT_NAME} cannot be resumed: its training state is damaged "
                                f"({type(error).__name__}: {str(error)[:150]}); start again or use a copy") from error

    def evaluation_model() -> nn.Module:
        if average is None:
            return model
        averaged = build_model(config.model).to(device, memory_format=layout)
        averaged.load_state_dict(average.state)
        return averaged

    def snapshot() -> Checkpoint:
        rng = {"torch": torch.get_rng_state(), "shuffle_epoch_start": epoch_shuffle_state,
               "augment": augment_generator.get_state()}
        if device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state()
        return Checkpoint(
            config=asdict(config), model={k: v.cpu() for k, v in model.state_dict().items()},
            optimizer=_to_cpu(optimizer.state_dict()), scheduler=scheduler.state_dict() if scheduler else None,
            ema={k: v.cpu() for k, v in average.state.items()} if average else None,
            epoch=epoch, batch=batch, step=step, rng=rng, history=history,
            data=_data_record(data, mean, std), seconds=seconds)

    def save() -> Checkpoint:
        checkpoint = snapshot()
        if rank == 0:
            checkpoint.save(run_dir / CHECKPOINT_NAME)
            write_metrics(run_dir, history)
        return checkpoint

    def run_test() -> TestResult:
        result = test(evaluation_model(), test_images, test_labels, mean, std, config.test_batch_size)
        history["test"].append([epoch + (batch / steps_per_epoch if batch else 0), epoch * count + batch * config.batch_size,
                                result.loss, result.accuracy])
        return result

    if rank == 0:
        write_atomic(run_dir / "config.json", json.dumps(asdict(config), indent=2) + "\n")
    if not history["test"]:
        log(test_line(run_test()))
    show_bar = sys.stdout.isatty() if progress is None else progress
    reached_target = False
    with StopSignals() as signals:
        while epoch < config.epochs and not reached_target:
            if batch == 0:
                epoch_shuffle_state = shuffle_generator.get_state()
            else:  # regenerate the interrupted epoch's order from the state it started with
                shuffle_generator.set_state(epoch_shuffle_state)
            order = torch.randperm(count, generator=shuffle_generator).to(device)
            model.train()
            bar = _progress_bar(show_bar, steps_per_epoch, batch, epoch + 1)
            started = time.perf_counter()
            for batch_index in range(batch, steps_per_epoch):
                # Every rank draws the same order; each takes its share of the global batch.
                indices = order[batch_index * config.batch_size:(batch_index + 1) * config.batch_size][rank::world]
                images = train_images[indices].unsqueeze(1).float().div_(255)
                if config.augment in ("affine", "elastic"):
                    images = augment_batch(images, augment_generator, elastic=ELASTIC_PIXELS * (config.augment == "elastic"))
                elif config.augment == "flip":
                    images = flip_shift_batch(images, augment_generator)
                images = images.sub_(mean).div_(std).contiguous(memory_format=layout)
                targets = train_labels[indices]
                optimizer.zero_grad(set_to_none=True)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16"):
                    output = network(images)
                output = output.float()
                if config.label_smoothing:
                    loss = F.cross_entropy(output, targets, label_smoothing=config.label_smoothing)
                else:
                    loss = F.nll_loss(output, targets)
                loss.backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                if average is not None:
                    average.update(model, step)
                step += 1
                batch = batch_index + 1
                if batch_index % config.log_interval == 0:
                    value = loss.item()
                    history["train"].append([batch_index * config.batch_size + epoch * count, value,
                                             optimizer.param_groups[0]["lr"]])
                    line = (f"Train Epoch: {epoch + 1} [{batch_index * config.batch_size}/{count} "
                            f"({100.0 * batch_index / steps_per_epoch:.0f}%)]\tLoss: {value:.6f}")
                    if bar is None:
                        log(line)
                    else:
                        bar.set_postfix_str(f"loss {value:.4f}")
                if bar is not None:
                    bar.update(1)
                if config.eval_every and batch % config.eval_every == 0 and batch < steps_per_epoch:
                    seconds += time.perf_counter() - started
                    result = run_test()
                    started = time.perf_counter()
                    if config.target_accuracy and result.accuracy >= config.target_accuracy:
                        log(test_line(result) + f" - target {config.target_accuracy:.2%} reached")
                        reached_target = True
                        break
                    model.train()
                if world > 1:  # all ranks stop at the same batch, or the next all-reduce would hang
                    signals.received = _agree_on_stop(signals.received)
                if signals.received or (config.checkpoint_every and step % config.checkpoint_every == 0):
                    seconds += time.perf_counter() - started
                    save()
                    started = time.perf_counter()
                    if signals.received:
                        if bar is not None:
                            bar.close()
                        name = "SIGINT" if signals.received == signal.SIGINT else "SIGTERM"
                        raise Interrupted(f"{name} received: checkpoint saved at epoch {epoch + 1}, batch {batch} "
                                          f"of {steps_per_epoch}; continue with: digitrec resume {run_dir}",
                                          signals.received)
            seconds += time.perf_counter() - started
            if bar is not None:
                bar.close()
            if reached_target:
                break
            epoch, batch = epoch + 1, 0
            epoch_shuffle_state = shuffle_generator.get_state()  # where the next epoch's order starts
            result = run_test()
            log(test_line(result))
            if config.target_accuracy and result.accuracy >= config.target_accuracy:
                reached_target = True
            save()
    final = save()
    if world > 1:
        _check_ranks_agree(model, world, log)
    return final


def _agree_on_stop(received: int | None) -> int | None:
    import torch.distributed as dist

    flag = torch.tensor([received or 0])
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return int(flag) or None


def _check_ranks_agree(model: nn.Module, world: int, log: Callable[[str], None]) -> None:
    """DDP keeps replicas identical; prove it at the end rather than trust it."""
    import torch.distributed as dist

    for buffer in model.buffers():  # batch-norm statistics: each rank's last forward saw its own shard
        dist.broadcast(buffer, 0)
    flat = torch.cat([value.detach().flatten().float().cpu() for value in model.state_dict().values()])
    gathered = [torch.empty_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    if not all(torch.equal(replica, gathered[0]) for replica in gathered):
        raise DigitrecError(f"the {world} processes ended with different weights")
    log(f"Weights identical on all {world} processes")


def _progress_bar(show: bool, total: int, done: int, epoch: int):
    if not show:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=done, desc=f"epoch {epoch}", unit="batch", leave=False, dynamic_ncols=True)


def _to_cpu(value):
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_cpu(v) for v in value]
    return value


def _check_same_data(checkpoint: Checkpoint, data: Dataset) -> None:
    stored = checkpoint.data.get("checksums", {})
    if stored and stored != data.checksums:
        raise DigitrecError(f"the data in {data.folder} differs from the data this run was trained on "
                            f"({checkpoint.data.get('folder')}); resume with the same files (--data DIR)")


def resume(run_dir: str | Path, epochs: int | None = None, data_dir: str | None = None,
           log: Callable[[str], None] = print, progress: bool | None = None, data: Dataset | None = None,
           **overrides) -> Checkpoint:
    """Continue the run in `run_dir` from its checkpoint, optionally to a new number of epochs."""
    checkpoint = Checkpoint.load(run_dir)
    stored = dict(checkpoint.config)
    if epochs is not None:
        if epochs < checkpoint.epoch:
            raise DigitrecError(f"the run already has {checkpoint.epoch} epochs; --epochs must be at least that")
        stored["epochs"] = epochs
    if data_dir is not None:
        stored["data_dir"] = data_dir
    stored.update({k: v for k, v in overrides.items() if v is not None})
    try:
        config = TrainConfig(**{k: v for k, v in stored.items() if k in {f.name for f in fields(TrainConfig)}})
        validate_config(config)
    except TypeError as error:
        raise DigitrecError(f"the settings stored in {run_dir} are damaged ({error})") from error
    for leftover in Path(run_dir).glob(f".{CHECKPOINT_NAME}.*.tmp"):  # from a write cut short by a kill
        leftover.unlink(missing_ok=True)
    if checkpoint.epoch >= config.epochs and checkpoint.batch == 0:
        log(f"{run_dir} already finished {checkpoint.epoch} epochs; pass --epochs N to go further")
        return checkpoint
    return train(config, run_dir, resume=checkpoint, data=data, log=log, progress=progress)


def default_run_dir(model: str, root: str | Path = "runs") -> Path:
    root = Path(root)
    candidate = root / model
    number = 2
    while candidate.exists():
        candidate = root / f"{model}-{number}"
        number += 1
    return candidate


def check_run_dir(run_dir: Path, force: bool) -> None:
    if (run_dir / CHECKPOINT_NAME).exists() and not force:
        raise DigitrecError(f"{run_dir} already holds a run; continue it with 'digitrec resume {run_dir}', "
                            "choose another --out, or pass --force to start it again")
