"""Random distortions of whole training batches, and whole-pixel moves of images (also used for TTA).

Each function takes a batch (N, 1, H, W) on [0, 1] and draws all its randomness from the generator it
is given, in a fixed order, so a resumed run draws exactly what an uninterrupted one would.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from digitrec.config import Augmentation

ELASTIC_PIXELS = 2.0  # about how far `--augment elastic` moves a pixel at most, on top of the affine distortion


def augment(images: torch.Tensor, kind: str, generator: torch.Generator) -> torch.Tensor:
    """The batch distorted as `kind` says (an Augmentation), or unchanged for none."""
    if kind in (Augmentation.AFFINE, Augmentation.ELASTIC):
        return augment_batch(images, generator, elastic=ELASTIC_PIXELS * (kind == Augmentation.ELASTIC))
    if kind == Augmentation.FLIP:
        return flip_shift_batch(images, generator)
    return images


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
        grid = grid + _elastic_field(images, generator, elastic)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # Pens vary: a fifth of the batch gets a thicker stroke (dilation), a fifth a thinner one (erosion).
    pen = torch.rand(count, generator=generator).to(images.device).view(-1, 1, 1, 1)
    thicker = F.max_pool2d(images, 3, stride=1, padding=1)
    thinner = -F.max_pool2d(F.pad(-images, (0, 1, 0, 1), value=-1.0), 2, stride=1)
    return torch.where(pen < 0.2, thicker, torch.where(pen < 0.4, thinner, images))


def _elastic_field(images: torch.Tensor, generator: torch.Generator, pixels: float) -> torch.Tensor:
    """A smooth random displacement of grid_sample's grid (N, H, W, 2), up to about `pixels` pixels."""
    # Simard et al. (2003): the distortion that helps handwriting most. Random pulls on a 4x4 lattice,
    # spread over the image by bicubic interpolation.
    height, width = images.shape[-2:]
    pulls = torch.rand(len(images), 2, 4, 4, generator=generator).mul_(2).sub_(1).to(images.device)
    field = F.interpolate(pulls, size=(height, width), mode="bicubic", align_corners=True)
    field = field * (2 * pixels / torch.tensor([width, height], device=images.device).view(1, 2, 1, 1))
    return field.permute(0, 2, 3, 1)


def flip_shift_batch(images: torch.Tensor, generator: torch.Generator, shift: int = 2) -> torch.Tensor:
    """Half the batch mirrored left to right and every image moved up to `shift` whole pixels each way:
    the augmentation for pictures of things (Fashion-MNIST), where a mirrored shoe is still a shoe but
    a thicker outline or a tilt is not how the data set was made."""
    draws = torch.rand(len(images), 3, generator=generator).to(images.device)
    moves = (draws[:, 1:] * (2 * shift + 1)).floor() - shift  # whole pixels in [-shift, shift]
    return move_images(images, moves[:, 0], moves[:, 1], draws[:, 0] < 0.5)


def move_images(images: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor, mirror: torch.Tensor) -> torch.Tensor:
    """Each image (N, 1, H, W) mirrored left to right where `mirror`, then moved dx, dy whole pixels
    (right and down), zeros coming in at the edges; one grid_sample that hits pixel centres exactly."""
    height, width = images.shape[-2:]
    ones, zeros = torch.ones(len(images), device=images.device), torch.zeros(len(images), device=images.device)
    theta = torch.stack([torch.stack([torch.where(mirror, -ones, ones), zeros, -2 * dx / width], dim=1),
                         torch.stack([zeros, ones, -2 * dy / height], dim=1)], dim=1).to(images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="nearest", padding_mode="zeros", align_corners=False)
