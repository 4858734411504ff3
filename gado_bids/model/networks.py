"""The paper's two 3D U-Nets, 1 channel in, 1 channel out.

- AttentionUNet: five descending levels, four ascending, attention gates (Oktay et al. 2018) on
  the skip connections. The default.
- ResidualUNet: the same encoder-decoder with a residual module after each descending block and
  plain skip connections.

Normalisation: ChannelNorm, a LayerNorm over channels at each voxel. Its statistics depend on
neither the batch (the paper's code left BatchNorm in training mode at inference) nor the
spatial extent (InstanceNorm's would differ between 64^3 training crops and the 128^3 volume),
so a network trained on crops behaves the same on whole volumes, at any batch size.

Both predict a correction added to a filtered copy of their input (global residual through a
learnable 3x3x3 filter started as the identity): most of a post-contrast scan is already right,
and the network only has to learn what gadolinium (and the blurrier pre-contrast acquisition)
changed. With a plain identity residual, L1 training sat at the identity for hundreds of steps.
"""
import torch
from torch import nn
from torch.nn import functional

DEFAULT_WIDTH = 16
LEVELS = 5


class ChannelNorm(nn.Module):
    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1, channels, 1, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1, 1))
        self.eps = eps

    def forward(self, x):
        mean = x.mean(dim=1, keepdim=True)
        variance = x.var(dim=1, keepdim=True, unbiased=False)
        return (x - mean) * torch.rsqrt(variance + self.eps) * self.weight + self.bias


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(in_channels, out_channels, 3, padding=1), ChannelNorm(out_channels),
        nn.LeakyReLU(0.1, inplace=True),
        nn.Conv3d(out_channels, out_channels, 3, padding=1), ChannelNorm(out_channels),
        nn.LeakyReLU(0.1, inplace=True))


class ResidualModule(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv3d(channels, channels, 3, padding=1), ChannelNorm(channels),
            nn.LeakyReLU(0.1, inplace=True),
            nn.Conv3d(channels, channels, 3, padding=1), ChannelNorm(channels))
        self.activation = nn.LeakyReLU(0.1, inplace=True)

    def forward(self, x):
        return self.activation(x + self.body(x))


class AttentionGate(nn.Module):
    """Weights a skip connection by what the coarser level (the gate) finds relevant."""

    def __init__(self, skip_channels: int, gate_channels: int, inner_channels: int):
        super().__init__()
        self.skip = nn.Conv3d(skip_channels, inner_channels, 1)
        self.gate = nn.Conv3d(gate_channels, inner_channels, 1)
        self.psi = nn.Sequential(nn.Conv3d(inner_channels, 1, 1), nn.Sigmoid())

    def forward(self, skip, gate):
        gate = functional.interpolate(self.gate(gate), size=skip.shape[2:], mode="trilinear",
                                      align_corners=False)
        return skip * self.psi(functional.relu(self.skip(skip) + gate))


class UNet3D(nn.Module):
    def __init__(self, width: int = DEFAULT_WIDTH, attention: bool = True,
                 residual_encoder: bool = False):
        super().__init__()
        widths = [width * 2 ** level for level in range(LEVELS)]
        self.encoders = nn.ModuleList()
        in_channels = 1
        for channels in widths:
            block = [conv_block(in_channels, channels)]
            if residual_encoder:
                block.append(ResidualModule(channels))
            self.encoders.append(nn.Sequential(*block))
            in_channels = channels
        self.upsamplers = nn.ModuleList()
        self.gates = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for level in reversed(range(LEVELS - 1)):
            coarse, fine = widths[level + 1], widths[level]
            self.upsamplers.append(nn.Conv3d(coarse, fine, 1))
            self.gates.append(AttentionGate(fine, coarse, max(fine // 2, 1)) if attention
                              else nn.Identity())
            self.decoders.append(conv_block(2 * fine, fine))
        self.head = nn.Conv3d(widths[0], 1, 1)
        nn.init.zeros_(self.head.weight)  # start as the identity map (global residual)
        nn.init.zeros_(self.head.bias)
        # The global residual path is a learnable 3x3x3 filter started as the identity: the
        # linear part of the translation (the blur and contrast of the pre-contrast scans) is
        # learnt here in a few hundred steps, leaving the U-Net the non-linear part (enhancement).
        self.linear_path = nn.Conv3d(1, 1, 3, padding=1)
        with torch.no_grad():
            self.linear_path.weight.zero_()
            self.linear_path.weight[0, 0, 1, 1, 1] = 1.0
            self.linear_path.bias.zero_()
        self.attention = attention

    def forward(self, x):
        if any(size % 2 ** (LEVELS - 1) for size in x.shape[2:]):
            raise ValueError(f"spatial size {tuple(x.shape[2:])} must be divisible by "
                             f"{2 ** (LEVELS - 1)}")
        skips = []
        features = x
        for level, encoder in enumerate(self.encoders):
            if level:
                features = functional.max_pool3d(features, 2)
            features = encoder(features)
            skips.append(features)
        for upsample, gate, decoder, skip in zip(self.upsamplers, self.gates, self.decoders,
                                                 reversed(skips[:-1])):
            coarse = features
            features = upsample(functional.interpolate(coarse, scale_factor=2, mode="trilinear",
                                                       align_corners=False))
            gated = gate(skip, coarse) if self.attention else skip
            features = decoder(torch.cat([gated, features], dim=1))
        return self.linear_path(x) + self.head(features)


MODELS = {
    "attention-unet": lambda width=DEFAULT_WIDTH: UNet3D(width, attention=True),
    "res-unet": lambda width=DEFAULT_WIDTH: UNet3D(width, attention=False, residual_encoder=True),
}


def build_model(name: str, width: int = DEFAULT_WIDTH) -> UNet3D:
    if name not in MODELS:
        raise ValueError(f"unknown model '{name}': choose from {sorted(MODELS)}")
    return MODELS[name](width)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
