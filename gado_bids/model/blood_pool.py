"""Gadolinium's blood-pool enhancement of grey matter: the broad part of the removed enhancement
that the network's sparse map does not learn.

Why: with the blood-brain barrier intact gadolinium stays in the vessels, and grey matter holds
about twice white matter's blood volume, so a ce scan's grey matter sits closer to its white
matter than the same sequence's without contrast (on the gado-pairs validation subjects with a 3D
reference, grey matter's place between CSF and white matter, (GM - CSF) / (WM - CSF) of the
medians, is 0.79-0.87 on the ce scan against 0.70-0.85 on the real one). The map E (networks.py)
learns vessels, sinuses, dura and lesion rims, but in no recipe tried this broad, low part (model
card, stages 12-16 and 27), and the synthetic image kept the ce scan's bright grey matter. So an
enhancement network's weights may carry one more number, the level b of a term b * P_GM, where P_GM
is the template's grey-matter probability on the 1 mm cropped grid (the ce scan is registered
there), added to the removed enhancement: the image is f(x) - E - b * P_GM. P_GM is smooth, so the
term changes contrast, not detail. b is fitted by least squares on the run's training pairs
(training/blood_pool.py), never on validation subjects; weights without it have b = 0.
"""
import math

import numpy as np

from gado_bids.errors import ExitCode, GadoError
from gado_bids.preprocessing import grids

META_KEY = "grey_matter_enhancement"


def level(meta: dict) -> float:
    """The weights' blood-pool level b (0 for weights fitted without it); a level the weights
    cannot carry (negative, not a number, or on a network without the 1 mm enhancement map it
    joins) is a usage error, not a silent zero."""
    value = meta.get(META_KEY, 0.0)
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise GadoError(f"weights meta {META_KEY} = {value!r}: it must be a number >= 0",
                        ExitCode.USAGE)
    if value and (meta.get("formulation", "direct") != "enhancement" or meta.get("grid") != "1mm"):
        raise GadoError(f"weights meta {META_KEY} = {value!r}: a grey-matter blood-pool level "
                        "needs the enhancement formulation on the 1 mm grid", ExitCode.USAGE)
    return float(value)


def grey_matter_prior() -> np.ndarray:
    """The template's grey-matter probability on the 1 mm cropped grid (read-only)."""
    return grids.cropped_tissue_probabilities()[0]


def enhancement_term(grey_matter_level: float) -> np.ndarray:
    """b * P_GM on the network's padded 1 mm grid: what run_network subtracts besides E."""
    return grids.pad_crop(grey_matter_level * grey_matter_prior())
