"""The model registry: each preset is a network plus the training recipe that goes with it.

Every network takes normalised images (N, 1, 28, 28) and returns log-probabilities (N, 10).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from digitrec.augmentation import move_images
from digitrec.data import normalize
from digitrec.errors import DigitrecError


class TutorialNet(nn.Module):
    """The lab's network, layer for layer (the classic PyTorch MNIST tutorial CNN)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.conv2_drop = nn.Dropout2d()
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        x = x.flatten(1)
        x = F.relu(self.fc1(x))
        x = F.dropout(x, training=self.training)
        return F.log_softmax(self.fc2(x), dim=1)


class MultiLayerPerceptron(nn.Module):
    """The fully connected network of the lab's theory section: 784-256-128-10 with ReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.layers(x), dim=1)


def conv_block(inputs: int, outputs: int, kernel: int, padding: int = 0, pool: bool = False) -> list[nn.Module]:
    """Convolution, (max-pool,) batch norm, ReLU. Pooling first gives batch norm and ReLU a quarter of the
    values to touch, which is a third less time per step on a CPU for nearly the same network."""
    convolution = nn.Conv2d(inputs, outputs, kernel, padding=padding, bias=False)
    return [convolution, *([nn.MaxPool2d(2)] if pool else []), nn.BatchNorm2d(outputs), nn.ReLU()]


class FastNet(nn.Module):
    """A small batch-normalised CNN that reaches 99% in one short epoch on a CPU."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *conv_block(1, 16, 5, pool=True),   # 28 -> 24 -> 12
            *conv_block(16, 32, 3, pool=True),  # 12 -> 10 -> 5
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(32 * 5 * 5, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.classifier(self.features(x)), dim=1)


class BestNet(nn.Module):
    """A VGG-style CNN, wide enough for 99.8% with augmentation, small enough for a CPU. The classifier
    reads the last 5x5 map whole: where a stroke lies tells digits apart (averaging the map away, the same
    network and recipe read 99.67-99.68%)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *conv_block(1, 32, 3, 1), *conv_block(32, 32, 3, 1, pool=True),    # 28 -> 14
            *conv_block(32, 64, 3, 1), *conv_block(64, 64, 3, 1, pool=True),   # 14 -> 7
            *conv_block(64, 128, 3),                                            # 7 -> 5
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(128 * 5 * 5, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.classifier(self.features(x)), dim=1)


# Test-time augmentation: the picture as given and moved one pixel each way (x, y in pixels, and whether
# mirrored left to right). Digits are centred by mass to a pixel's accuracy, so each of these is as
# likely a way to have written them; pictures of things trained with mirroring are also read mirrored.
View = tuple[int, int, bool]
TTA_VIEWS: tuple[View, ...] = ((0, 0, False), (1, 0, False), (-1, 0, False), (0, 1, False), (0, -1, False))
TTA_MIRRORED_VIEWS: tuple[View, ...] = TTA_VIEWS + tuple((dx, dy, True) for dx, dy, _ in TTA_VIEWS)


class Ensemble(nn.Module):
    """Several networks, each seeing one or more views of the image, voting with the mean of their
    probabilities; it returns log-probabilities like any single network."""

    def __init__(self, networks: list[nn.Module], views: tuple[View, ...] = ((0, 0, False),)) -> None:
        super().__init__()
        self.networks = nn.ModuleList(networks)
        self.image_views = views

    def views(self, images: torch.Tensor) -> torch.Tensor:
        """Every view of every image, stacked view by view: (views * N, 1, H, W)."""
        dx, dy, mirror = (torch.tensor(column, device=images.device).repeat_interleave(len(images))
                          for column in zip(*self.image_views))
        batch = images.repeat(len(self.image_views), 1, 1, 1)
        # What comes in at the edge is background: each image's darkest value (0 before normalisation).
        background = batch.amin(dim=(1, 2, 3), keepdim=True)
        return move_images(batch - background, dx, dy, mirror) + background

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = self.views(x) if self.image_views != ((0, 0, False),) else x
        probabilities = torch.stack([network(batch).exp() for network in self.networks]).mean(0)
        probabilities = probabilities.view(len(self.image_views), len(x), -1).mean(0)
        return probabilities.clamp_min(1e-12).log()


@dataclass(frozen=True)
class Preset:
    build: Callable[[], nn.Module]
    description: str
    recipe: dict = field(default_factory=dict)  # training settings that differ from the lab's defaults


PRESETS: dict[str, Preset] = {
    # channels_last changes only how the tensors lie in memory, not the lab's math.
    "tutorial": Preset(TutorialNet, "the lab's CNN and recipe: SGD 0.01/0.5, batch 64, 3 epochs", dict(
        channels_last=True)),
    "mlp": Preset(MultiLayerPerceptron, "the lab's fully connected 784-256-128-10 network, same recipe"),
    "fast": Preset(FastNet, "small BN CNN, Adam with one-cycle: 99% in seconds", dict(
        epochs=1, batch_size=256, optimizer="adam", lr=0.01, schedule="onecycle",
        label_smoothing=0.1, log_interval=50, channels_last=True)),
    "best": Preset(BestNet, "VGG-style BN CNN, augmentation, EMA: about 99.8%", dict(
        epochs=20, batch_size=128, optimizer="nesterov", lr=0.1, momentum=0.9, weight_decay=5e-4,
        schedule="onecycle", label_smoothing=0.1, augment="auto", ema=0.999, log_interval=100,
        channels_last=True, precision="auto")),
}


def build_model(name: str) -> nn.Module:
    if name not in PRESETS:
        raise DigitrecError(f"unknown model {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name].build()


@torch.inference_mode()
def classify(model: nn.Module, images: torch.Tensor, mean: float, std: float, batch_size: int = 1000) -> torch.Tensor:
    """Log-probabilities (N, 10) for uint8 images (N, H, W), in batches, with the model in eval mode."""
    model.eval()
    parameter = next(model.parameters(), None)  # None: a network without weights, fed on the CPU
    device = parameter.device if parameter is not None else torch.device("cpu")
    outputs = [model(normalize(images[start:start + batch_size].to(device), mean, std)).float()
               for start in range(0, len(images), batch_size)]
    return torch.cat(outputs) if outputs else torch.empty(0, 10)


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """PyTorch's CPU threads set to `count` inside (0: left as they are), as many as before after
    (torch.set_num_threads is process-wide)."""
    previous = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        if count:
            torch.set_num_threads(previous)


def count_parameters(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())
