"""Extra training pairs: gadolinium enhancement simulated on real non-contrast scans.

34 real pairs teach little about the structures gadolinium lights up outside BraTS tumours
(dura, sinuses, cortical veins, choroid plexus), and a real pair's difference mixes enhancement
with the blur of its thick-slice pre-contrast scan. A simulated pair isolates the job: its input is
the real non-contrast scan plus enhancement drawn by enhancement_map (the demo generator draws
its enhancement with it too) on the template's anatomy, which every scan is affinely registered
to; its target is the untouched scan. The maps are made once per seed on the 1 mm cropped template grid
and saved beside the checkpoints, so a GPU machine without the template stack can train from them.
Validation stays on real pairs only.
"""
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from gado_bids import atomic
from gado_bids.training.cache import QUANTISATION, quantise

N_MAPS = 24
# Added enhancement in the normalised scale, where white matter sits near 0.5: the demo adds
# 1.4 x white matter, 0.7 here, and real enhancing rims and vessels span roughly 0.2 to 0.5.
AMPLITUDE_RANGE = (0.25, 0.7)
# A looser skull strip than BraTS' (a clinical one, the demo's) keeps a rim of enhancing dura
# around the brain: 1-4 voxels (mm) wide, as bright as 0.6-1 times the sample's enhancement.
RIM_WIDTH_VOXELS = (1, 4)
RIM_WEIGHT_RANGE = (0.6, 1.0)


def _ball(shape, centre, radius):
    grid = np.indices(shape, dtype=np.float32)
    distance = np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, centre)))
    return distance, distance <= radius


def enhancement_map(brain: np.ndarray, wm: np.ndarray, csf: np.ndarray, rng) -> tuple:
    """(enhancement weight in [0,1], lesion core mask), both on the 1 mm template grid."""
    shape = brain.shape
    enhancement = np.zeros(shape, np.float32)
    # Dura: a 2 mm shell hugging the brain's outer surface.
    outer = ndimage.binary_dilation(brain, iterations=2) & ~brain
    enhancement[outer] = 0.6
    # Superior sagittal sinus: a 3 mm tube along the top of the midline.
    mid_x = shape[0] // 2
    for y in range(shape[1]):
        column = np.nonzero(brain[mid_x, y, :])[0]
        if column.size:
            _, disk = _ball(shape[1:], (y, column.max() + 1), 3.0)
            enhancement[mid_x - 2:mid_x + 3][:, disk] = 1.0
    # Cortical veins: smooth random walks along the cortex (in sulcal CSF near the surface).
    surface = brain & ~ndimage.binary_erosion(brain, iterations=6) & (csf > 0.3)
    candidates = np.argwhere(surface)
    for _ in range(12):
        point = candidates[rng.integers(len(candidates))].astype(float)
        direction = rng.normal(size=3)
        for _ in range(40):
            direction = direction / np.linalg.norm(direction) + 0.3 * rng.normal(size=3)
            point = np.clip(point + direction / np.linalg.norm(direction), 0,
                            np.array(shape) - 1)
            i, j, k = np.round(point).astype(int)
            enhancement[max(i - 1, 0):i + 1, max(j - 1, 0):j + 1, max(k - 1, 0):k + 1] = 1.0
    # Choroid plexus: blobs inside the lateral ventricles (deep CSF near the centre).
    centre = np.array(shape) / 2 + np.array([0, 5, 10])
    distance_to_centre, near_centre = _ball(shape, centre, 35)
    ventricles = (csf > 0.8) & near_centre & ndimage.binary_erosion(brain, iterations=15)
    ventricles = ndimage.binary_opening(ventricles, iterations=1)
    plexus = ventricles & (rng.random(shape) < 0.4)
    plexus = ndimage.binary_dilation(plexus, iterations=1) & ventricles
    enhancement[plexus] = 0.8
    # Ring-enhancing lesion: in the white matter of a random hemisphere.
    deep_wm = np.argwhere((wm > 0.9) & ndimage.binary_erosion(brain, iterations=20))
    lesion_centre = deep_wm[rng.integers(len(deep_wm))]
    radius = rng.uniform(7, 11)
    distance, lesion = _ball(shape, lesion_centre, radius)
    ring = lesion & (distance > radius - 2.5)
    core = lesion & ~ring
    enhancement[ring] = 1.0
    return enhancement * 1.0, core


def make_maps(n_maps: int = N_MAPS, seed: int = 0) -> np.ndarray:
    """(n, 169, 208, 179) uint8 enhancement weights (cropped grid), quantised like the cached
    pairs."""
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


def strip_rim(mask: torch.Tensor, width: int) -> torch.Tensor:
    """The voxels within width voxels (a ball) outside mask, (1, D, H, W) like a training crop:
    where a looser strip than the pair's own would have kept the dura. The brain masks of
    skull-stripped training pairs end at the brain, so enhancement drawn on the template's dura
    shell lands on their background, away from the brain or over its cortex, while a loose strip
    puts it against the brain's own edge; this rim is drawn on the pair's own mask instead."""
    offsets = torch.arange(-width, width + 1, dtype=torch.float32)
    x, y, z = torch.meshgrid(offsets, offsets, offsets, indexing="ij")
    ball = ((x ** 2 + y ** 2 + z ** 2) <= width ** 2 + 0.5).to(torch.float32)
    inside = (mask > 0).to(torch.float32)
    reached = torch.nn.functional.conv3d(inside[None], ball.to(inside.device)[None, None],
                                         padding=width)[0] > 0.5
    return reached & ~(mask > 0)


def simulate_ce(target: torch.Tensor, weights: torch.Tensor, amplitude: float) -> torch.Tensor:
    """A post-contrast-like input from a non-contrast volume (same shape, normalised scale)."""
    return (target + amplitude * weights).clamp(0, 1)
