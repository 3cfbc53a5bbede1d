"""The training loop: the lab's recipe on whole tensors, exact checkpoints, resume.

The data set lives in memory as one uint8 tensor; each batch is a slice through a shuffled index,
normalised (and optionally augmented) as a whole. Everything that changes while a run trains is one
TrainingState, which is what a checkpoint saves and restores: every random state and the position
inside the epoch, so a resumed run continues bit for bit where it stopped.
"""

from __future__ import annotations

import math
import signal
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from digitrec.augmentation import augment
from digitrec.checkpoint import Checkpoint, History, TestPoint, TrainPoint, load_state
from digitrec.config import (AUTO, Optimizer, Precision, Schedule, TrainConfig, changed_config, refuse_unknown,
                             stored_config)
from digitrec.data import Dataset, load_dataset, own_augmentation
from digitrec.device import bfloat16_is_fast, pick_device
from digitrec.distributed import agree_on_stop, check_ranks_agree, process_group
from digitrec.errors import DigitrecError, Interrupted
from digitrec.models import PRESETS, build_model, classify, torch_threads
from digitrec.run import Run

__all__ = ["TrainConfig", "make_config", "train", "resume", "TrainingState", "train_step", "run_epoch"]

Log = Callable[[str], None]


# --- What a run trains with ---------------------------------------------------------------------

def make_config(model: str = "tutorial", **overrides) -> TrainConfig:
    """Lab defaults, then the preset's recipe, then whatever the user set (None means not set)."""
    if model not in PRESETS:
        raise DigitrecError(f"unknown model {model!r}; choose one of: {', '.join(PRESETS)}")
    refuse_unknown(overrides, "the settings given")
    refuse_unknown(PRESETS[model].recipe, f"the {model} preset's recipe")
    settings = {**PRESETS[model].recipe, **{k: v for k, v in overrides.items() if v is not None}}
    if settings.get("augment") == AUTO:  # the data set's own kind of augmentation, recorded as such
        settings["augment"] = own_augmentation(settings.get("dataset"))
    if settings.get("precision") == AUTO:
        settings["precision"] = Precision.BF16 if bfloat16_is_fast(settings.get("device") or "auto") else Precision.FP32
    return TrainConfig(model=model, **settings)


def make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    # foreach: one multi-tensor update per step instead of a Python loop over the parameters, which
    # PyTorch only picks by itself on CUDA; for the small networks that loop is a visible part of a step.
    parameters, options = model.parameters(), {"weight_decay": config.weight_decay, "foreach": True}
    if config.optimizer in (Optimizer.SGD, Optimizer.NESTEROV):
        return torch.optim.SGD(parameters, lr=config.lr, momentum=config.momentum,
                               nesterov=config.optimizer == Optimizer.NESTEROV, **options)
    adaptive = {Optimizer.ADAM: torch.optim.Adam, Optimizer.ADAMW: torch.optim.AdamW,
                Optimizer.ADADELTA: torch.optim.Adadelta}
    return adaptive[config.optimizer](parameters, lr=config.lr, **options)


def make_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int,
                   warm_up: float = 0.25) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The config's schedule over its epochs; one-cycle rises for `warm_up` of the steps."""
    if config.schedule == Schedule.ONECYCLE:
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch,
            pct_start=warm_up, cycle_momentum=config.optimizer in (Optimizer.SGD, Optimizer.NESTEROV))
    if config.schedule == Schedule.STEP:
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=steps_per_epoch, gamma=config.gamma)
    return None


def memory_layout(config: TrainConfig) -> torch.memory_format:
    return torch.channels_last if config.channels_last else torch.contiguous_format


class WeightAverage:
    """An exponential moving average of all weights and buffers, kept beside the model."""

    def __init__(self, model: nn.Module, decay: float, state: dict | None = None, warm_up: bool = True) -> None:
        self.decay = decay
        self.warm_up = warm_up  # off where the model starts from trained weights
        self.state = {k: v.detach().clone() for k, v in (state or model.state_dict()).items()}

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        # A short warm-up, so the average does not drag the random initial weights along for long.
        decay = min(self.decay, (1 + step) / (10 + step)) if self.warm_up else self.decay
        current = model.state_dict()
        floats = [k for k, v in self.state.items() if v.is_floating_point()]
        torch._foreach_lerp_([self.state[k] for k in floats], [current[k] for k in floats], 1 - decay)
        for key, value in self.state.items():
            if not value.is_floating_point():
                value.copy_(current[key])


# --- The training state: what a checkpoint saves and restores ---------------------------------------

@dataclass
class TrainingState:
    """Everything that changes while a run trains."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    average: WeightAverage | None
    shuffle_generator: torch.Generator  # draws each epoch's order of the images
    augment_generator: torch.Generator
    epoch_shuffle_state: torch.Tensor  # the shuffle generator as it was when this epoch's order was drawn
    epoch: int = 0  # epochs finished
    batch: int = 0  # batches finished in the epoch in progress
    step: int = 0  # optimizer steps in all
    seconds: float = 0.0  # training time, less tests and saves
    history: History = field(default_factory=History)

    @classmethod
    def start(cls, config: TrainConfig, device: torch.device, steps_per_epoch: int) -> TrainingState:
        """A new run's state; the global seed first, so the initial weights depend on it alone."""
        torch.manual_seed(config.seed)
        model = build_model(config.model).to(device).to(memory_format=memory_layout(config))
        optimizer = make_optimizer(config, model)
        scheduler = make_scheduler(config, optimizer, steps_per_epoch)
        shuffle_generator = torch.Generator().manual_seed(config.seed)
        augment_generator = torch.Generator().manual_seed(config.seed + 1)
        average = WeightAverage(model, config.ema) if config.ema else None
        return cls(model, optimizer, scheduler, average, shuffle_generator, augment_generator,
                   shuffle_generator.get_state())

    def restore(self, checkpoint: Checkpoint, config: TrainConfig, source: Path) -> None:
        """Continue from `checkpoint`, made by `to_checkpoint` (`config` may have more epochs)."""
        try:
            load_state(self.model, checkpoint.model, source)
            self.optimizer.load_state_dict(checkpoint.optimizer)
            if self.scheduler is not None and checkpoint.scheduler:
                _restore_schedule(self.scheduler, checkpoint, config)
            if self.average is not None and checkpoint.ema:
                self.average = WeightAverage(self.model, config.ema, checkpoint.ema)
            self.epoch, self.batch, self.step, self.seconds = (checkpoint.epoch, checkpoint.batch, checkpoint.step,
                                                               checkpoint.seconds)
            self.history = History(list(checkpoint.history.train), list(checkpoint.history.test))
            torch.set_rng_state(checkpoint.rng["torch"])
            self.shuffle_generator.set_state(checkpoint.rng["shuffle_epoch_start"])
            self.augment_generator.set_state(checkpoint.rng["augment"])
            if self._on_cuda() and "cuda" in checkpoint.rng:
                torch.cuda.set_rng_state(checkpoint.rng["cuda"])
            self.epoch_shuffle_state = checkpoint.rng["shuffle_epoch_start"]
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as error:
            raise DigitrecError(f"{source} cannot be resumed: its training state is damaged "
                                f"({type(error).__name__}: {str(error)[:150]}); start again or use a copy") from error

    def to_checkpoint(self, config: TrainConfig, data: dict) -> Checkpoint:
        """The state as plain tensors on the CPU, with the run's settings and data record."""
        rng = {"torch": torch.get_rng_state(), "shuffle_epoch_start": self.epoch_shuffle_state,
               "augment": self.augment_generator.get_state()}
        if self._on_cuda():
            rng["cuda"] = torch.cuda.get_rng_state()
        return Checkpoint(
            config=config.to_dict(), model={k: v.cpu() for k, v in self.model.state_dict().items()},
            optimizer=_to_cpu(self.optimizer.state_dict()),
            scheduler=self.scheduler.state_dict() if self.scheduler else None,
            ema={k: v.cpu() for k, v in self.average.state.items()} if self.average else None,
            epoch=self.epoch, batch=self.batch, step=self.step, rng=rng, history=self.history, data=data,
            seconds=self.seconds)

    def evaluation_model(self, config: TrainConfig) -> nn.Module:
        """The network tests score: the weight average where the run keeps one."""
        if self.average is None:
            return self.model
        device = next(self.model.parameters()).device
        averaged = build_model(config.model).to(device, memory_format=memory_layout(config))
        averaged.load_state_dict(self.average.state)
        return averaged

    def _on_cuda(self) -> bool:
        return next(self.model.parameters()).device.type == "cuda"


def _restore_schedule(scheduler: torch.optim.lr_scheduler.LRScheduler, checkpoint: Checkpoint,
                      config: TrainConfig) -> None:
    if checkpoint.config.get("epochs") == config.epochs:
        scheduler.load_state_dict(checkpoint.scheduler)
        return
    # A longer run: lay the schedule out over the new length and move it to where the run is.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(checkpoint.step):
            scheduler.step()


def _to_cpu(value):
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_cpu(v) for v in value]
    return value


# --- What stays fixed while a run trains -----------------------------------------------------------

@dataclass
class DeviceData:
    """The splits a run trains and tests on, on its device, with the normalisation it keeps."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    mean: float
    std: float
    record: dict  # what the checkpoint says of the data: name, classes, normalisation, checksums

    @classmethod
    def place(cls, config: TrainConfig, data: Dataset, resume: Checkpoint | None, device: torch.device) -> DeviceData:
        if resume is not None:
            _check_same_data(resume, data)
        train_images, train_labels = data.train_images, data.train_labels
        if config.train_subset:
            train_images, train_labels = train_images[:config.train_subset], train_labels[:config.train_subset]
        if len(train_images) == 0:
            raise DigitrecError("the training split is empty")
        mean, std = (resume.data["mean"], resume.data["std"]) if resume else (data.mean, data.std)
        record = {"name": data.name, "classes": list(data.classes), "mean": mean, "std": std,
                  "folder": str(data.folder), "checksums": data.checksums}
        return cls(train_images.to(device), train_labels.to(device), data.test_images.to(device),
                   data.test_labels.to(device), mean, std, record)

    @property
    def count(self) -> int:
        return len(self.train_images)


def _check_same_data(checkpoint: Checkpoint, data: Dataset) -> None:
    stored = checkpoint.data.get("checksums", {})
    if stored and stored != data.checksums:
        raise DigitrecError(f"the data in {data.folder} differs from the data this run was trained on "
                            f"({checkpoint.data.get('folder')}); resume with the same files (--data DIR)")


@dataclass
class Session:
    """A run as it trains: its settings, data, folder and processes, and where its lines go."""

    config: TrainConfig
    run: Run
    data: DeviceData
    network: nn.Module  # the model, or its DistributedDataParallel wrapper
    rank: int
    world: int
    log: Log
    show_bar: bool

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.data.count / self.config.batch_size)

    def training_batch(self, order: torch.Tensor, index: int,
                       generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch `index` of the epoch's `order`: this process's share, normalised and augmented."""
        size = self.config.batch_size
        # Every rank draws the same order; each takes its share of the global batch.
        indices = order[index * size:(index + 1) * size][self.rank::self.world]
        images = self.data.train_images[indices].unsqueeze(1).float().div_(255)
        images = augment(images, self.config.augment, generator)
        images = images.sub_(self.data.mean).div_(self.data.std).contiguous(memory_format=memory_layout(self.config))
        return images, self.data.train_labels[indices]


# --- Testing ---------------------------------------------------------------------------------------

@dataclass
class TestResult:
    __test__ = False  # not a pytest class

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


def test_now(state: TrainingState, session: Session) -> TestResult:
    """A test pass, recorded in the history at the run's position."""
    config, data = session.config, session.data
    result = test(state.evaluation_model(config), data.test_images, data.test_labels, data.mean, data.std,
                  config.test_batch_size)
    epoch = state.epoch + (state.batch / session.steps_per_epoch if state.batch else 0)
    examples = state.epoch * data.count + state.batch * config.batch_size
    state.history.test.append(TestPoint(epoch, examples, result.loss, result.accuracy))
    return result


def reached_target(config: TrainConfig, result: TestResult) -> bool:
    return bool(config.target_accuracy) and result.accuracy >= config.target_accuracy


# --- The loop ------------------------------------------------------------------------------------

class StopSignals:
    """Turn SIGINT and SIGTERM into a flag the loop checks between batches, so saves finish first."""

    def __init__(self) -> None:
        self.received: int | None = None

    def __enter__(self) -> StopSignals:
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


class Clock:
    """Training time: laps are added to the run's seconds, the pauses between them (tests, saves) are not."""

    def __init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        self.started = time.perf_counter()

    def lap(self) -> float:
        now = time.perf_counter()
        elapsed, self.started = now - self.started, now
        return elapsed


def save(state: TrainingState, session: Session) -> Checkpoint:
    checkpoint = state.to_checkpoint(session.config, session.data.record)
    if session.rank == 0:
        session.run.save(checkpoint)
    return checkpoint


def train_step(state: TrainingState, network: nn.Module, images: torch.Tensor, targets: torch.Tensor,
               config: TrainConfig) -> torch.Tensor:
    """One optimizer step on one batch; returns its loss."""
    state.optimizer.zero_grad(set_to_none=True)
    with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=config.precision == Precision.BF16):
        output = network(images)
    output = output.float()
    if config.label_smoothing:
        loss = F.cross_entropy(output, targets, label_smoothing=config.label_smoothing)
    else:
        loss = F.nll_loss(output, targets)
    loss.backward()
    state.optimizer.step()
    if state.scheduler is not None:
        state.scheduler.step()
    if state.average is not None:
        state.average.update(state.model, state.step)
    state.step += 1
    return loss


def epoch_order(state: TrainingState, session: Session) -> torch.Tensor:
    if state.batch == 0:
        state.epoch_shuffle_state = state.shuffle_generator.get_state()
    else:  # regenerate the interrupted epoch's order from the state it started with
        state.shuffle_generator.set_state(state.epoch_shuffle_state)
    return torch.randperm(session.data.count, generator=state.shuffle_generator).to(session.data.train_images.device)


def run_epoch(state: TrainingState, session: Session, signals: StopSignals) -> bool:
    """The rest of the epoch in progress; True if a test inside it reached the target accuracy."""
    order = epoch_order(state, session)
    state.model.train()
    bar = _progress_bar(session.show_bar, session.steps_per_epoch, state.batch, state.epoch + 1)
    clock = Clock()
    try:
        for index in range(state.batch, session.steps_per_epoch):
            images, targets = session.training_batch(order, index, state.augment_generator)
            loss = train_step(state, session.network, images, targets, session.config)
            state.batch = index + 1
            if index % session.config.log_interval == 0:
                _log_loss(state, session, index, loss.item(), bar)
            if bar is not None:
                bar.update(1)
            if _test_inside_epoch(state, session, clock):
                return True
            _save_if_due(state, session, signals, clock)
        return False
    finally:
        state.seconds += clock.lap()
        if bar is not None:
            bar.close()


def _log_loss(state: TrainingState, session: Session, index: int, loss: float, bar) -> None:
    size, count = session.config.batch_size, session.data.count
    state.history.train.append(TrainPoint(index * size + state.epoch * count, loss,
                                          state.optimizer.param_groups[0]["lr"]))
    if bar is not None:
        bar.set_postfix_str(f"loss {loss:.4f}")
        return
    session.log(f"Train Epoch: {state.epoch + 1} [{index * size}/{count} "
                f"({100.0 * index / session.steps_per_epoch:.0f}%)]\tLoss: {loss:.6f}")


def _test_inside_epoch(state: TrainingState, session: Session, clock: Clock) -> bool:
    """Every --eval-every batches, a test pass; True if it reached the target accuracy."""
    every = session.config.eval_every
    if not (every and state.batch % every == 0 and state.batch < session.steps_per_epoch):
        return False
    state.seconds += clock.lap()
    result = test_now(state, session)
    clock.restart()
    if reached_target(session.config, result):
        session.log(test_line(result) + f" - target {session.config.target_accuracy:.2%} reached")
        return True
    state.model.train()
    return False


def _save_if_due(state: TrainingState, session: Session, signals: StopSignals, clock: Clock) -> None:
    """Save every --checkpoint-every steps, and after a stop signal, which then ends the run."""
    if session.world > 1:  # all ranks stop at the same batch, or the next all-reduce would hang
        signals.received = agree_on_stop(signals.received)
    every = session.config.checkpoint_every
    if not (signals.received or (every and state.step % every == 0)):
        return
    state.seconds += clock.lap()
    save(state, session)
    clock.restart()
    if signals.received:
        name = "SIGINT" if signals.received == signal.SIGINT else "SIGTERM"
        raise Interrupted(f"{name} received: checkpoint saved at epoch {state.epoch + 1}, batch {state.batch} "
                          f"of {session.steps_per_epoch}; continue with: digitrec resume {session.run.folder}",
                          signals.received)


def _progress_bar(show: bool, total: int, done: int, epoch: int):
    if not show:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=done, desc=f"epoch {epoch}", unit="batch", leave=False, dynamic_ncols=True)


def train_loop(state: TrainingState, session: Session) -> Checkpoint:
    """Test, then per epoch: train, test, save; until the last epoch or the target accuracy."""
    config, log = session.config, session.log
    if session.rank == 0:
        session.run.write_config(config.to_dict())
    if not state.history.test:
        log(test_line(test_now(state, session)))
    saved = None  # the checkpoint of the state as it is now, once written
    with StopSignals() as signals:
        while state.epoch < config.epochs:
            saved = None
            if run_epoch(state, session, signals):
                break
            state.epoch, state.batch = state.epoch + 1, 0
            state.epoch_shuffle_state = state.shuffle_generator.get_state()  # where the next epoch's order starts
            result = test_now(state, session)
            log(test_line(result))
            saved = save(state, session)
            if reached_target(config, result):
                break
    final = saved if saved is not None else save(state, session)  # the last epoch's is not written twice
    if session.world > 1:
        check_ranks_agree(state.model, session.world, log)
    return final


# --- Starting and continuing runs --------------------------------------------------------------------

def train(config: TrainConfig, run_dir: str | Path | Run, resume: Checkpoint | None = None,
          data: Dataset | None = None, log: Log = print, progress: bool | None = None) -> Checkpoint:
    """Train (or continue) a run in `run_dir`; returns the final checkpoint, also saved there."""
    run = run_dir if isinstance(run_dir, Run) else Run(run_dir)
    with process_group() as (rank, world), torch_threads(config.threads):
        run.folder.mkdir(parents=True, exist_ok=True)
        device = pick_device(config.device)
        if config.batch_size % world:
            raise DigitrecError(f"--batch-size {config.batch_size} must divide evenly among {world} processes")
        if rank != 0:  # rank 0 alone logs and writes; the others train their shard in silence
            log, progress = (lambda line: None), False
        placed = DeviceData.place(config, data or load_dataset(config.dataset, config.data_dir), resume, device)
        state = TrainingState.start(config, device, math.ceil(placed.count / config.batch_size))
        if resume is not None:
            state.restore(resume, config, run.checkpoint_path)
        network = state.model if world == 1 else nn.parallel.DistributedDataParallel(state.model)
        show_bar = sys.stdout.isatty() if progress is None else progress
        return train_loop(state, Session(config, run, placed, network, rank, world, log, show_bar))


def resume(run_dir: str | Path | Run, epochs: int | None = None, data_dir: str | None = None, log: Log = print,
           progress: bool | None = None, data: Dataset | None = None, **overrides) -> Checkpoint:
    """Continue the run in `run_dir` from its checkpoint, optionally to a new number of epochs."""
    run = Run.open(run_dir)
    checkpoint = run.checkpoint
    if epochs is not None and epochs < checkpoint.epoch:
        raise DigitrecError(f"the run already has {checkpoint.epoch} epochs; --epochs must be at least that")
    config = changed_config(stored_config(checkpoint.config, run.source), epochs=epochs, data_dir=data_dir,
                            **overrides)
    run.clean_leftovers()
    if checkpoint.epoch >= config.epochs and checkpoint.batch == 0:
        log(f"{run.source} already finished {checkpoint.epoch} epochs; pass --epochs N to go further")
        return checkpoint
    return train(config, run, resume=checkpoint, data=data, log=log, progress=progress)
