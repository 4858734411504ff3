"""Extra training pairs: gadolinium enhancement simulated on real non-contrast scans.

34 real pairs teach little about the structures gadolinium lights up outside BraTS tumours
(dura, sinuses, cortical veins, choroid plexus), and a real pair's difference mixes enhancement
with the blur of its thick-slice pre-contrast scan. A simulated pair isolates the job: its input is
the real non-contrast scan plus enhancement drawn like the demo generator draws it, its target is
the untouched scan. Sinus, cortical veins, choroid plexus and lesion rims come from
demo.simulate.enhancement_map on the template's anatomy (every scan is affinely registered to it);
they are made once per seed on the 128^3 network grid and saved beside the checkpoints, so a GPU
machine without the template stack can train from them. The dura is drawn per crop around the
scan's own brain outline: the template's outline misses a real brain's edge by a few millimetres,
so a template-placed shell lands in the cortex or floats in the background, and a network trained
on that learns to keep a bright rim that hugs the brain (it turned the demo's dura into a grey,
cortex-like rim). Validation stays on real pairs only.
"""
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional

from gado_bids.demo.simulate import DURA_WEIGHT, enhancement_map
from gado_bids.outputs import atomic
from gado_bids.training.cache import QUANTISATION, quantise

N_MAPS = 24
# Added enhancement in the normalised scale, where white matter sits near 0.5: the demo adds
# 1.4 x white matter, 0.7 here, and real enhancing rims and vessels span roughly 0.2 to 0.5.
AMPLITUDE_RANGE = (0.25, 0.7)
# What the saved maps hold; maps saved under another layout are made again.
# 1: with the template-placed dura; 2: without it (the dura is drawn per scan, dura_around).
MAPS_LAYOUT = 2
# A voxel belongs to the brain above this normalised level (skull-stripped scans are 0 outside).
BRAIN_FLOOR = 0.01


def make_maps(n_maps: int = N_MAPS, seed: int = 0) -> np.ndarray:
    """(n, 128, 128, 128) uint8 enhancement weights, quantised like the cached pairs."""
    from gado_bids.preprocessing import grids
    from gado_bids.preprocessing.template import template_t1, template_tissue_probabilities

    brain = template_t1().get_fdata() > 0
    _, wm, csf = (p.get_fdata().astype(np.float32) for p in template_tissue_probabilities())
    rng = np.random.default_rng(seed)
    maps = []
    for _ in range(n_maps):
        enhancement, _ = enhancement_map(brain, wm, csf, rng, dura=False)
        network = grids.crop_to_network(grids.crop_template_volume(enhancement))
        maps.append(quantise(network))
    return np.stack(maps)


def load_or_make_maps(path: Path, seed: int = 0, n_maps: int = N_MAPS) -> np.ndarray:
    """The maps saved at path for this seed and layout (however many it holds), else n_maps new
    ones."""
    path = Path(path)
    if path.exists():
        with np.load(path) as saved:
            layout = int(saved["layout"]) if "layout" in saved.files else 1
            if int(saved["seed"]) == seed and layout == MAPS_LAYOUT:
                return saved["maps"]
    maps = make_maps(n_maps, seed)
    with atomic.atomic_path(path) as temporary:
        with open(temporary, "wb") as stream:
            np.savez_compressed(stream, maps=maps, seed=np.int64(seed),
                                layout=np.int64(MAPS_LAYOUT))
    return maps


def weights_on(maps: torch.Tensor, index: int, box, device) -> torch.Tensor:
    """One map's crop as float weights in [0, 1], shaped (1, D, H, W) like a training crop."""
    return maps[index][box].to(device, torch.float32)[None] / QUANTISATION


def dura_around(scan: torch.Tensor, thickness: int) -> torch.Tensor:
    """Dura weights for one (1, D, H, W) crop: a shell of `thickness` voxels (1.3-1.6 mm each on
    the network grid; the demo's dura is 2 mm) just outside the scan's brain, DURA_WEIGHT there."""
    brain = (scan > BRAIN_FLOOR).float()[None]
    grown = brain
    for _ in range(thickness):
        grown = functional.max_pool3d(grown, 3, stride=1, padding=1)
    return ((grown - brain)[0] > 0).float() * DURA_WEIGHT


def simulate_ce(target: torch.Tensor, weights: torch.Tensor, amplitude: float) -> torch.Tensor:
    """A post-contrast-like input from a non-contrast volume (same shape, normalised scale)."""
    return (target + amplitude * weights).clamp(0, 1)
