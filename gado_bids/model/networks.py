"""The paper's two 3D U-Nets, 1 channel in, 1 channel out, both UNet3D (build_model):

- "attention-unet": five descending levels, four ascending, attention gates (Oktay et al. 2018,
  AttentionGate) on the skip connections. The default.
- "res-unet": the same encoder-decoder with a ResidualModule after each descending block and
  plain skip connections.

Normalisation: ChannelNorm, a LayerNorm over channels at each voxel. Its statistics depend on
neither the batch (the paper's code left BatchNorm in training mode at inference) nor the
spatial extent (InstanceNorm's would differ between 64^3 training crops and the 128^3 volume),
so a network trained on crops behaves the same on whole volumes, at any batch size.

Two formulations of the output (weights files record theirs as meta "formulation"):

- "enhancement" (the default since gadosynth 0.2, on the 1 mm grid): gadolinium only brightens
  T1w signal, so the network predicts a non-negative enhancement map E (softplus of its head) and
  the synthetic image is f(x) - E, where f is a learnt monotone intensity curve, adapted to the
  scan's intensity quantiles, applied voxel by voxel (the sequences' different grey/white
  contrast). Neither part can blur: f is pointwise and
  E is subtracted only where the network puts it, so the input's detail survives by
  construction, and E is the map of removed contrast that the product writes for QC.
- "direct" (gadosynth 0.1, the paper's 128^3 grid): a correction added to a filtered copy of the
  input (global residual through a learnable 3x3x3 filter started as the identity). That filter
  and the regression onto blurred thick-slice targets are what made its images blurred.
"""
import math

import torch
from torch import nn
from torch.nn import functional

from gado_bids.preprocessing.intensity import SATURATION

DEFAULT_WIDTH = 16
LEVELS = 5
FORMULATIONS = ("enhancement", "direct")
CURVE_KNOTS = 16
DESCRIPTOR_QUANTILES = 16
# E = softplus(beta * h) / beta: with the head's bias at -0.1 the network starts at E ~ 0.006
# (a near-identity image) with a gradient of sigmoid(-2) = 0.12, not at a dead zero.
ENHANCEMENT_BETA = 20.0
ENHANCEMENT_START = -0.1


def enhancement_from_head(head: torch.Tensor, gradient_floor: float = 0.0) -> torch.Tensor:
    """E = softplus(beta * head) / beta, whose gradient sigmoid(beta * head) dies where E is near
    zero (0.002 at E = 0.0001), so a map pushed to zero in the tissue by a sparsity term may not
    learn a broad low part there again. gradient_floor (training only) adds that much to the
    gradient and nothing to the value, so trained weights and their images are unchanged.
    Measured (model card, stages 12 and 13): with it the map learns a broad part in the CSF
    spaces, still none in grey matter."""
    enhancement = functional.softplus(head, beta=ENHANCEMENT_BETA)
    if gradient_floor > 0 and head.requires_grad:
        enhancement = enhancement + gradient_floor * (head - head.detach())
    return enhancement


class ChannelNorm(nn.Module):
    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1, channels, 1, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1, 1))
        self.eps = eps

    def forward(self, x):
        # The same two-pass variance as x.var(dim=1, unbiased=False), from the centred values
        # the output needs anyway: torch's var over the channel axis of an NCDHW tensor is a slow
        # strided reduction on the CPU. Measured: the norm 2.5x faster, a 1 mm inference of the
        # bundled weights 9% faster (20.7 -> 18.9 s, 2 threads), outputs within 1.2e-7.
        centred = x - x.mean(dim=1, keepdim=True)
        variance = (centred * centred).mean(dim=1, keepdim=True)
        return centred * torch.rsqrt(variance + self.eps) * self.weight + self.bias


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

    def start_as_identity(self):
        """Zero the body's last norm scale, so the module passes its input on (up to the leaky
        ReLU's negative slope) until training moves it: how a res-unet starts from another
        network's trained layers without scrambling their features."""
        with torch.no_grad():
            self.body[-1].weight.zero_()

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


def intensity_descriptor(volume: torch.Tensor) -> torch.Tensor:
    """(B, DESCRIPTOR_QUANTILES) quantiles of each volume's brain (non-zero) voxels: what the
    intensity curve adapts to. Always of the whole volume (training passes its crops the whole
    scan's), so a crop and the volume it came from get the same curve."""
    levels = torch.linspace(0.02, 0.98, DESCRIPTOR_QUANTILES, device=volume.device)
    rows = []
    for sample in volume.reshape(volume.shape[0], -1):
        brain = sample[sample > 0]
        if brain.numel() > 2_000_000:  # quantiles of a regular subsample: same to ~1e-3
            brain = brain[:: brain.numel() // 1_000_000 + 1]
        rows.append(torch.quantile(brain.float(), levels) if brain.numel() else
                    torch.zeros_like(levels))
    return torch.stack(rows)


class IntensityCurve(nn.Module):
    """A monotone piecewise-linear intensity map with f(0) = 0 (background stays background),
    one non-negative slope per knot interval of [0, 1], adapted to each scan: a small network
    turns the scan's intensity quantiles into slope offsets (the sequences' grey/white contrast
    differs from site to site; on gado-pairs a curve fitted to each pair gains 0.1-1.8 dB over
    one curve for all). Started as the identity whatever the scan (zero last layer).

    top_floor: from the normalisation's anchor (the brain's 90th percentile, in white matter, at
    1 / SATURATION) up to top_floor times the anchor, no slope may fall below the slope of the knot
    just under the anchor (0: no floor; SATURATION: the whole bright end). A curve fitted to
    whole-scan quantiles otherwise bends flat there to squeeze the ce scan's enhanced top ranks
    into the target's white-matter top, and flattens real white matter with them (model card,
    "Where the top end is lost"); floored over the range real white matter's top occupies, it
    keeps the input's spread there and leaves the enhancement above it to the curve and the map.
    """

    def __init__(self, knots: int = CURVE_KNOTS, top_floor: float = 0.0):
        super().__init__()
        self.knots = knots
        self.floor_top(top_floor)
        self.raw_slopes = nn.Parameter(torch.zeros(knots))
        self.adapt = nn.Sequential(nn.Linear(DESCRIPTOR_QUANTILES, 16), nn.Tanh(),
                                   nn.Linear(16, knots))
        nn.init.zeros_(self.adapt[2].weight)
        nn.init.zeros_(self.adapt[2].bias)

    def floor_top(self, multiple: float):
        """Set top_floor (also on a trained curve: it changes no parameter)."""
        if multiple and not 1.0 <= multiple <= SATURATION:
            raise ValueError(f"the curve's top floor reaches {multiple:g} times the anchor: "
                             f"give 0 (none) or a multiple from 1 to {SATURATION:g}")
        self.top_floor = multiple

    def slopes(self, descriptor: torch.Tensor) -> torch.Tensor:
        """(B, knots) slopes for (B, DESCRIPTOR_QUANTILES) descriptors."""
        raw = self.raw_slopes + self.adapt(descriptor - 0.5)
        slopes = functional.softplus(raw) / math.log(2.0)
        if not self.top_floor:
            return slopes
        anchor = round(self.knots / SATURATION)
        ceiling = max(anchor, min(self.knots, round(self.knots * self.top_floor / SATURATION)))
        floor = slopes[:, anchor - 1:anchor]
        return torch.cat([slopes[:, :anchor], torch.maximum(slopes[:, anchor:ceiling], floor),
                          slopes[:, ceiling:]], dim=1)

    def forward(self, x, descriptor=None):
        """x: (B, 1, ...) volumes (or any shape with descriptor of B = 1)."""
        batch = x.shape[0] if x.dim() >= 2 else 1
        if descriptor is None:
            descriptor = intensity_descriptor(x.reshape(batch, -1))
        width = 1.0 / self.knots
        out = []
        for sample, slopes in zip(x.reshape(batch, -1), self.slopes(descriptor)):
            starts = torch.cat([slopes.new_zeros(1), torch.cumsum(slopes * width, 0)[:-1]])
            index = (sample.clamp(0, 1) * self.knots).long().clamp(0, self.knots - 1)
            out.append(starts[index] + slopes[index] * (sample - index.to(sample.dtype) * width))
        return torch.stack(out).reshape(x.shape)


class UNet3D(nn.Module):
    def __init__(self, width: int = DEFAULT_WIDTH, attention: bool = True,
                 residual_encoder: bool = False, formulation: str = "direct",
                 curve_top_floor: float = 0.0):
        super().__init__()
        if formulation not in FORMULATIONS:
            raise ValueError(f"unknown formulation '{formulation}': choose from {FORMULATIONS}")
        self.formulation = formulation
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
        self.attention = attention
        self.enhancement_gradient_floor = 0.0  # training only: enhancement_from_head
        if formulation == "enhancement":
            nn.init.constant_(self.head.bias, ENHANCEMENT_START)
            self.intensity_curve = IntensityCurve(top_floor=curve_top_floor)
            return
        # The global residual path is a learnable 3x3x3 filter started as the identity: the
        # linear part of the translation (the blur and contrast of the pre-contrast scans) is
        # learnt here in a few hundred steps, leaving the U-Net the non-linear part (enhancement).
        self.linear_path = nn.Conv3d(1, 1, 3, padding=1)
        with torch.no_grad():
            self.linear_path.weight.zero_()
            self.linear_path.weight[0, 0, 1, 1, 1] = 1.0
            self.linear_path.bias.zero_()

    def _features(self, x):
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
        return self.head(features)

    def decompose(self, x, descriptor=None):
        """(intensity-mapped input f(x), enhancement map E >= 0); the image is their difference.
        Only for the enhancement formulation. descriptor: the whole scans' intensity_descriptor
        when x are crops of them (default: x's own)."""
        if self.formulation != "enhancement":
            raise ValueError("decompose() needs the enhancement formulation")
        enhancement = enhancement_from_head(self._features(x), self.enhancement_gradient_floor)
        return self.intensity_curve(x, descriptor), enhancement

    def forward(self, x, descriptor=None):
        if self.formulation == "enhancement":
            mapped, enhancement = self.decompose(x, descriptor)
            return mapped - enhancement
        return self.linear_path(x) + self._features(x)


MODELS = {
    "attention-unet": dict(attention=True),
    "res-unet": dict(attention=False, residual_encoder=True),
}


def build_model(name: str, width: int = DEFAULT_WIDTH, formulation: str = "direct",
                curve_top_floor: float = 0.0) -> UNet3D:
    if name not in MODELS:
        raise ValueError(f"unknown model '{name}': choose from {sorted(MODELS)}")
    if curve_top_floor and formulation != "enhancement":
        raise ValueError("curve_top_floor needs the enhancement formulation")
    return UNet3D(width, formulation=formulation, curve_top_floor=curve_top_floor,
                  **MODELS[name])


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
