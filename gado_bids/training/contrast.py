"""Whether a training pair's reference differs from its ce scan by gadolinium alone, read from
the grey/white contrast of both.

Gadolinium brightens T1w signal in proportion to the blood and leaky tissue a voxel holds, and
grey matter holds about twice the blood volume of white matter: on a scale set by the white
matter, the ce scan's grey matter comes closer to its white matter, so a pre-contrast scan of
the same sequence has the larger grey/white gap. A reference with the smaller gap (on gado-pairs,
13 of 34: ce darker than its reference in every tissue, gap up to 4x the reference's) differs by
sequence or site as well, and what its contrast teaches is not what removing gadolinium does.
A curve learnt from both kinds averages them out and keeps the ce scan's contrast (model card,
"Experiments", stage 9)."""
from dataclasses import dataclass

import numpy as np

CORE = 0.8  # template probability above which a voxel counts as that tissue's core


@dataclass(frozen=True)
class PairContrast:
    shifts: dict  # tissue -> median of ce - reference in its core
    reference_gap: float  # median WM - median GM of the reference
    ce_gap: float

    @property
    def gadolinium_only(self) -> bool:
        """The reference has the larger gap, as a same-sequence pre-contrast scan does."""
        return self.reference_gap > self.ce_gap


def tissue_cores(mask: np.ndarray, priors: dict, core: float = CORE) -> dict:
    """tissue -> voxels of the brain mask where the template's probability is above core (the
    pairs are linearly registered to the template, so a core is mostly its tissue)."""
    return {name: mask & (prior > core) for name, prior in priors.items()}


def pair_contrast(pair, priors: dict, core: float = CORE) -> PairContrast:
    """priors: tissue name ("CSF", "GM", "WM") -> template probability on the pair's grid."""
    cores = tissue_cores(pair.mask, priors, core)

    def gap(image):
        return float(np.median(image[cores["WM"]]) - np.median(image[cores["GM"]]))

    difference = pair.ce - pair.target
    return PairContrast({name: float(np.median(difference[voxels]))
                         for name, voxels in cores.items()}, gap(pair.target), gap(pair.ce))
