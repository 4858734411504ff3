"""Random training crops with augmentation, in torch on the training device.

Geometry (applied to input, target and mask alike): left-right flip, a small affine (rotation
up to 5 degrees, scaling up to 5%). Intensity (input only, so the network learns to ignore it):
gamma, global scale, a smooth multiplicative bias field, Gaussian noise. The target keeps the
common normalised scale the model must produce.
"""
import math

import torch
from torch.nn import functional


def random_crop_origin(mask: torch.Tensor, size: int, generator: torch.Generator):
    """Corner of a size^3 crop centred on a random brain voxel, kept inside the volume."""
    voxels = mask.nonzero()
    centre = voxels[torch.randint(len(voxels), (1,), generator=generator).item()]
    limits = torch.tensor(mask.shape) - size
    return torch.clamp(centre - size // 2, min=torch.zeros(3, dtype=torch.long), max=limits)


def _rotation(angles):
    ax, ay, az = angles
    rx = torch.tensor([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = torch.tensor([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = torch.tensor([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _uniform(generator, low, high, shape=()):
    return low + (high - low) * torch.rand(shape, generator=generator)


def augment(ce, target, mask, generator: torch.Generator, strength: float = 1.0, *companions):
    """ce, target, mask and any companion masks: (1, D, H, W) float tensors of one crop; returns
    augmented copies (ce, target, mask, *companions); companions follow the geometry as the
    mask does."""
    stacked = torch.stack([ce, target, mask, *companions])  # (3 + K, 1, D, H, W)
    if torch.rand((), generator=generator) < 0.5:
        stacked = stacked.flip(-3)  # x is left-right in the template grid (RAS)
    if strength > 0 and torch.rand((), generator=generator) < 0.7:
        angles = _uniform(generator, -1, 1, (3,)) * math.radians(5) * strength
        scale = 1 + _uniform(generator, -0.05, 0.05) * strength
        theta = torch.zeros(1, 3, 4)
        theta[0, :, :3] = _rotation(angles.tolist()) / scale
        grid = functional.affine_grid(theta.to(ce.device), [1, 1, *ce.shape[1:]],
                                      align_corners=False).expand(len(stacked), -1, -1, -1, -1)
        stacked = functional.grid_sample(stacked, grid, mode="bilinear", padding_mode="zeros",
                                         align_corners=False)
    ce, target = stacked[0], stacked[1]
    mask, *companions = ((volume > 0.5).float() for volume in stacked[2:])
    if strength > 0:
        gamma = math.exp(float(_uniform(generator, -0.15, 0.15)) * strength)
        ce = ce.clamp(min=0) ** gamma * (1 + float(_uniform(generator, -0.05, 0.05)) * strength)
        coarse = 1 + 0.1 * strength * (2 * torch.rand((1, 1, 3, 3, 3), generator=generator) - 1)
        field = functional.interpolate(coarse.to(ce.device), size=ce.shape[1:],
                                       mode="trilinear", align_corners=True)[0]
        noise = torch.randn(ce.shape, generator=generator).to(ce.device)
        ce = ce * field + noise * float(_uniform(generator, 0, 0.02)) * strength * (ce > 0)
    return (ce.clamp(0, 1), target, mask, *companions)
