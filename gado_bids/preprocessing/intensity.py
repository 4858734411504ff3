"""Intensity normalisation shared by training and inference.

The paper min-max rescaled each image; on a contrast-enhanced scan the maximum is an enhanced
vessel or lesion, so a handful of voxels would squash the whole brain towards zero and make
the scale depend on how much enhances. We anchor the scale on the brain's bulk instead:

    normalised = clip(x / P90(x in brain), 0, 2) / 2

The 90th percentile of a T1w brain falls in white matter (the brightest tissue, ~40% of the
brain), and enhancement covers a few percent of brain voxels, so it barely moves P90: white
matter lands near 0.5 on both pre- and post-contrast scans, and everything above twice the
white-matter level (only enhancement reaches it) saturates at 1. Voxels outside the dilated
brain mask are set to 0 so that skull-stripped and whole-head scans look alike to the network.
"""
import numpy as np

ANCHOR_PERCENTILE = 90.0
SATURATION = 2.0  # multiples of the anchor


def normalise(volume: np.ndarray, brain_mask: np.ndarray) -> tuple:
    """(normalised volume in [0, 1], anchor value) for one scan in its brain mask."""
    volume = np.asarray(volume, np.float32)
    inside = volume[brain_mask > 0]
    if inside.size == 0:
        raise ValueError("empty brain mask: cannot normalise intensities")
    anchor = float(np.percentile(inside, ANCHOR_PERCENTILE))
    if anchor <= 0:
        raise ValueError("brain intensities are not positive: cannot normalise")
    scaled = np.clip(volume / anchor, 0.0, SATURATION) / SATURATION
    return np.where(brain_mask > 0, scaled, 0.0).astype(np.float32), anchor


def scale_with_anchor(volume: np.ndarray, anchor: float) -> np.ndarray:
    """The normalised scale of a scan whose anchor is known (e.g. its native grid, with the
    anchor measured in the cropped grid), without masking."""
    return (np.clip(np.asarray(volume, np.float32) / anchor, 0.0, SATURATION) /
            SATURATION).astype(np.float32)


def denormalise(volume: np.ndarray, anchor: float) -> np.ndarray:
    """Back to the scanner scale of the scan whose anchor is given."""
    return np.asarray(volume, np.float32) * SATURATION * anchor
