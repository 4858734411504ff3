"""Extra training pairs: gadolinium enhancement simulated on real non-contrast scans.

34 real pairs teach little about the structures gadolinium lights up outside BraTS tumours
(dura, sinuses, cortical veins, choroid plexus), and a real pair's difference mixes enhancement
with the blur of its thick-slice pre-contrast scan. A simulated pair isolates the job: its input is
the real non-contrast scan plus enhancement drawn like the demo generator draws it
(demo.simulate.enhancement_map on the template's anatomy, which every scan is affinely registered
to), its target is the untouched scan. The maps are made once per seed on the 1 mm cropped template grid
and saved beside the checkpoints, so a GPU machine without the template stack can train from them.
Validation stays on real pairs only.
"""
from pathlib import Path

import numpy as np
import torch

from gado_bids.outputs import atomic
from gado_bids.training.cache import QUANTISATION, quantise

N_MAPS = 24
# Added enhancement in the normalised scale, where white matter sits near 0.5: the demo adds
# 1.4 x white matter, 0.7 here, and real enhancing rims and vessels span roughly 0.2 to 0.5.
AMPLITUDE_RANGE = (0.25, 0.7)


def make_maps(n_maps: int = N_MAPS, seed: int = 0) -> np.ndarray:
    """(n, 169, 208, 179) uint8 enhancement weights (cropped grid), quantised like the cached
    pairs."""
    from gado_bids.demo.simulate import enhancement_map
    from gado_bids.preprocessing import grids
    from gado_bids.preprocessing.template import template_t1, template_tissue_probabilities

    brain = template_t1().get_fdata() > 0
    _, wm, csf = (p.get_fdata().astype(np.float32) for p in template_tissue_probabilities())
    rng = np.random.default_rng(seed)
    maps = []
    for _ in range(n_maps):
        enhancement, _ = enhancement_map(brain, wm, csf, rng)
        maps.append(quantise(grids.crop_template_volume(enhancement)))
    return np.stack(maps)


def load_or_make_maps(path: Path, seed: int = 0, n_maps: int = N_MAPS) -> np.ndarray:
    """The maps saved at path for this seed and grid (however many it holds), else N_MAPS new
    ones."""
    from gado_bids.preprocessing import grids
    path = Path(path)
    if path.exists():
        with np.load(path) as saved:
            if int(saved["seed"]) == seed and saved["maps"].shape[1:] == grids.CROP_SHAPE:
                return saved["maps"]
    maps = make_maps(n_maps, seed)
    with atomic.atomic_path(path) as temporary:
        with open(temporary, "wb") as stream:
            np.savez_compressed(stream, maps=maps, seed=np.int64(seed))
    return maps


def weights_on(maps: torch.Tensor, index: int, box, device) -> torch.Tensor:
    """One map's crop as float weights in [0, 1], shaped (1, D, H, W) like a training crop."""
    return maps[index][box].to(device, torch.float32)[None] / QUANTISATION


def simulate_ce(target: torch.Tensor, weights: torch.Tensor, amplitude: float) -> torch.Tensor:
    """A post-contrast-like input from a non-contrast volume (same shape, normalised scale)."""
    return (target + amplitude * weights).clamp(0, 1)
