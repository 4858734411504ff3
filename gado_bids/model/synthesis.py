"""Inference: one loaded network turns 128^3 network inputs into synthetic non-contrast images.

The model is loaded once per run. On CPU it runs in fp32 (bf16 is ~200x slower on our AVX2 CPUs)
with deterministic kernels, so the same input gives byte-identical output. On CUDA it runs under
bf16 autocast: `FP16_TOLERANCE` is the largest voxel difference from fp32 we accept (checked by
`check_reduced_precision` on the first scan of a run; beyond it the run falls back to fp32).
"""
import logging
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from gado_bids.model import weights as weights_io

LOG = logging.getLogger("gadosynth")
REDUCED_PRECISION_TOLERANCE = 0.02  # on the [0, 1] normalised scale


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
        self.provenance = {"Model": meta["model"], "ModelWidth": meta["width"],
                           "Weights": source, "WeightsSha256": digest, "Device": str(device)}
        self.reduced_precision = device.type == "cuda"
        self._checked = False
        if device.type == "cpu":
            torch.use_deterministic_algorithms(True, warn_only=True)

    @property
    def precision(self) -> str:
        return "bf16-autocast" if self.reduced_precision else "fp32"

    @torch.no_grad()
    def _forward(self, volume: np.ndarray, reduced: bool) -> np.ndarray:
        tensor = torch.from_numpy(np.ascontiguousarray(volume, np.float32))[None, None]
        tensor = tensor.to(self.device)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=reduced):
            output = self.model(tensor)
        return output.float().clamp(0, 1)[0, 0].cpu().numpy()

    def check_reduced_precision(self, volume: np.ndarray) -> float:
        difference = float(np.abs(self._forward(volume, True) - self._forward(volume, False)).max())
        if difference > REDUCED_PRECISION_TOLERANCE:
            LOG.warning("bf16 differs from fp32 by %.4f (> %.3f): using fp32", difference,
                        REDUCED_PRECISION_TOLERANCE)
            self.reduced_precision = False
        return difference

    def __call__(self, network_input: np.ndarray, mask: Optional[np.ndarray] = None) -> np.ndarray:
        started = time.perf_counter()
        if self.reduced_precision and not self._checked:
            self.check_reduced_precision(network_input)
            self._checked = True
        output = self._forward(network_input, self.reduced_precision)
        if mask is not None:
            output = np.where(mask, output, 0.0)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()  # bounded GPU memory across participants
        LOG.debug("inference %.2f s", time.perf_counter() - started)
        return output.astype(np.float32)
