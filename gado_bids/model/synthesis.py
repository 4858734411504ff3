"""Inference: one loaded network turns a preprocessed ce scan into a synthetic non-contrast image
and the map of the enhancement it removed.

Weights of the enhancement formulation (networks.py; gadosynth >= 0.2) run fully convolutionally
on the 1 mm cropped template grid, padded to the network's multiple; their intensity curve is
also exposed (map_intensities) so the native-grid image can be composed from the native ce scan
itself (workflows.scan); weights that carry a grey-matter blood-pool level also remove that
smooth term and count it in the map (blood_pool.py). Weights of the direct formulation
(gadosynth 0.1, the paper's) run on the 128^3 grid and are interpolated back; their "removed
enhancement" is what they darkened.

The model is loaded once per run. On CPU it runs in fp32 (bf16 is ~200x slower on our AVX2 CPUs)
with deterministic kernels, so the same input gives byte-identical output. On CUDA it runs under
bf16 autocast: `REDUCED_PRECISION_TOLERANCE` is the largest voxel difference from fp32 we accept
(checked by `check_reduced_precision` on the first scan of a run; beyond it the run falls back to
fp32).
"""
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from gado_bids.model import blood_pool
from gado_bids.model import weights as weights_io
from gado_bids.model.networks import intensity_descriptor
from gado_bids.preprocessing import grids

LOG = logging.getLogger("gadosynth")
REDUCED_PRECISION_TOLERANCE = 0.02  # on the [0, 1] normalised scale


@dataclass
class Synthesis:
    synthetic: np.ndarray  # cropped template grid, normalised scale, zero outside the mask
    enhancement: np.ndarray  # removed enhancement, same grid and scale, >= 0
    descriptor: Optional[np.ndarray] = None  # the intensity curve's input (enhancement weights)


@torch.no_grad()
def run_network(model, volume: np.ndarray, device, reduced: bool = False,
                extra_enhancement: Optional[np.ndarray] = None) -> tuple:
    """(image clipped to [0, 1], enhancement map or None) of one volume on the network's own
    grid: the one inference path, for the participant level and training's validation.
    extra_enhancement (enhancement formulation, same grid): removed besides the map and counted
    in it (the weights' blood-pool term, blood_pool.py)."""
    model.eval()
    tensor = torch.from_numpy(np.ascontiguousarray(volume, np.float32))[None, None].to(device)
    with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=reduced):
        if getattr(model, "formulation", "direct") == "enhancement":
            mapped, enhancement = model.decompose(tensor)
            enhancement = enhancement.float()
            if extra_enhancement is not None:
                enhancement = enhancement + torch.from_numpy(np.ascontiguousarray(
                    extra_enhancement, np.float32))[None, None].to(enhancement.device)
            output = mapped.float() - enhancement
        else:
            if extra_enhancement is not None:
                raise ValueError("extra_enhancement needs the enhancement formulation")
            output, enhancement = model(tensor).float(), None
    image = output.clamp(0, 1)[0, 0].cpu().numpy()
    return image, None if enhancement is None else enhancement[0, 0].cpu().numpy()


class Synthesiser:
    def __init__(self, model_name: str, device: torch.device, weights_path: Optional[Path] = None,
                 seed: int = 42):
        torch.manual_seed(seed)
        if weights_path:
            model, meta, digest = weights_io.load_weights(weights_path, device=device)
            source = str(weights_path)
        else:
            model, meta, digest = weights_io.load_bundled(model_name, device=device)
            source = f"bundled:{weights_io.bundled_manifest()[model_name]['file']}"
        self.model, self.meta, self.device = model, meta, device
        self.formulation = meta.get("formulation", "direct")
        self.grid = meta.get("grid", "128")
        self.provenance = {"Model": meta["model"], "ModelWidth": meta["width"],
                           "Formulation": self.formulation, "NetworkGrid": self.grid,
                           "Weights": source, "WeightsSha256": digest, "Device": str(device)}
        grey_matter_level = blood_pool.level(meta)
        self.blood_pool_term = (blood_pool.enhancement_term(grey_matter_level)
                                if grey_matter_level else None)
        if self.formulation == "enhancement":
            self.provenance["GreyMatterEnhancement"] = grey_matter_level
        self.reduced_precision = device.type == "cuda"
        self._checked = False
        if device.type == "cpu":
            torch.use_deterministic_algorithms(True, warn_only=True)

    @property
    def precision(self) -> str:
        return "bf16-autocast" if self.reduced_precision else "fp32"

    def _forward(self, volume: np.ndarray, reduced: bool) -> tuple:
        return run_network(self.model, volume, self.device, reduced, self.blood_pool_term)

    def _network_input(self, crop: np.ndarray) -> np.ndarray:
        return grids.pad_crop(crop) if self.grid == "1mm" else grids.crop_to_network(crop)

    def check_reduced_precision(self, volume: np.ndarray) -> float:
        difference = float(np.abs(self._forward(volume, True)[0] -
                                  self._forward(volume, False)[0]).max())
        if difference > REDUCED_PRECISION_TOLERANCE:
            LOG.warning("bf16 differs from fp32 by %.4f (> %.3f): using fp32", difference,
                        REDUCED_PRECISION_TOLERANCE)
            self.reduced_precision = False
        return difference

    def __call__(self, crop: np.ndarray, crop_mask: np.ndarray) -> Synthesis:
        """crop: the normalised ce scan in the cropped template grid; crop_mask its brain."""
        started = time.perf_counter()
        network_input = self._network_input(crop)
        if self.reduced_precision and not self._checked:
            self.check_reduced_precision(network_input)
            self._checked = True
        image, enhancement = self._forward(network_input, self.reduced_precision)
        if self.grid == "1mm":
            synthetic = grids.unpad_crop(image)
            enhancement = grids.unpad_crop(enhancement)
        else:
            synthetic = grids.network_to_crop(image)
            enhancement = np.clip(crop - synthetic, 0, None)
        synthetic = np.where(crop_mask, synthetic, 0.0).astype(np.float32)
        enhancement = np.where(crop_mask, enhancement, 0.0).astype(np.float32)
        descriptor = None
        if self.maps_intensities:  # what the curve saw: the quantiles of the network input
            descriptor = intensity_descriptor(torch.from_numpy(
                np.ascontiguousarray(network_input, np.float32))[None]).numpy()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()  # bounded GPU memory across participants
        LOG.debug("inference %.2f s", time.perf_counter() - started)
        return Synthesis(synthetic, enhancement, descriptor)

    @property
    def maps_intensities(self) -> bool:
        return self.formulation == "enhancement"

    @torch.no_grad()
    def map_intensities(self, normalised: np.ndarray, descriptor: np.ndarray) -> np.ndarray:
        """The network's voxel-wise intensity curve f, as it was for the scan whose Synthesis
        gave the descriptor, on any grid (enhancement formulation)."""
        tensor = torch.from_numpy(np.ascontiguousarray(normalised, np.float32))[None]
        curve = self.model.intensity_curve
        device = next(curve.parameters()).device
        mapped = curve(tensor.to(device), torch.from_numpy(descriptor).to(device))
        return mapped[0].cpu().numpy().astype(np.float32)
