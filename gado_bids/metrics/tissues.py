"""GM / WM / CSF segmentation with ANTs Atropos and template priors, and tissue volumes in cm3.

Why Atropos with priors: it is the classical segmentation of the ANTs stack we already ship
(antspyx), and every image here already lies in the template's cropped grid, so the template's
tissue maps are valid priors voxel for voxel without another registration. The three images of a
session (real non-contrast, ce, synthetic) are segmented inside the same mask - the union of the
two scans' brain masks, eroded by MASK_EROSION_VOXELS (below) - so volume differences come from
intensities, never from masking.

Segmentation runs on the 1 mm cropped template grid, where the images are written: on the 128^3
network grid (1.32 x 1.63 x 1.40 mm voxels) every image is blurred alike, which hides what blur
does to the volumes (a blurred cortex turns partial-volume GM into WM or CSF). The instrument's
own noise is measured on every session (repeatability_copy): the real non-contrast scan is
segmented again after a half-voxel shift on every axis (cubic spline) with Gaussian noise of 1% of
its 90th brain percentile; the volume change per tissue is what a difference between two images
must exceed before it says anything about the images.

Labels follow FSL FAST / BIDS dseg practice: 1 = CSF, 2 = GM, 3 = WM. Volumes are voxel counts of
the hard labels (what anyone re-reading the dseg file will find) times the voxel volume.
Native-space volumes rescale template-space ones by |det| of the scan's affine transform: the ANTs
transform maps template points to native points, so 1 template mm3 is |det| native mm3.
"""
import tempfile
from pathlib import Path

import numpy as np

from gado_bids import runtime
from gado_bids.preprocessing import grids

TISSUES = ("CSF", "GM", "WM")
LABELS = {name: index for index, name in enumerate(TISSUES, start=1)}
# Repeatability (repeatability_copy) on the 8 gado-pairs validation sessions through the group
# level, with the settings below: GM 0.1-7.1 cm3 (mean 3.3), WM 0.2-3.4 (1.6), CSF 0.6-4.5
# (2.0). Before the mask's outer layers were left out: GM 1.0-21.1 (mean 10.7), WM 5.2, CSF 5.7.
# Tried and not adopted (sub-013, whole mask, GM 20-21 cm3 with these settings): 10 EM
# iterations, GM 17.6 cm3 at twice the time; a prior-weighted Gaussian mixture in numpy, GM 11-13
# cm3 but its volumes moved by ~200 cm3 with the prior weight.
# Which part of the copy moves the volumes (1 mm cache targets; GM change in cm3 for sub-013 /
# sub-004 / sub-034): 1% noise alone +1.6 / +1.8 / +1.6 (CSF and WM within 2.0); a whole-voxel
# shift of image and mask together, with the noise, +1.3 / +7.9 / -3.4; the half-voxel spline
# shift -20.8 / -0.3 / -8.3, the same without the noise (-20.6 / -1.3 / -9.3) and nearly the
# same with a Fourier (non-smoothing) shift (sub-013 -19.3). On sub-013 a whole-voxel shift of the
# image alone, the mask left in place, gives -37.5: the instrument is repeatable to ~2 cm3
# against noise; what it does not hold still is where the anatomy sits against the brain mask's
# edge and the template priors, which moves GM by up to ~20 cm3 per half voxel on some brains.
# Hence the erosion: segmenting inside the mask eroded by 2 voxels (6-connected), the copy moves
# GM by -0.2 / +4.4 / -3.6 (sub-013 / sub-004 / sub-034; CSF and WM within 4.2; the real-data
# test's sub-005: -5.5), by 1 voxel -3.3 / +3.3 / -6.7; the
# outer layers are partial volumes of brain and the zero background of a skull-stripped scan, so
# their labels say where the edge falls inside a voxel (half a voxel of registration), not which
# tissue is there. The volumes are therefore those of the brain less its outer 2 mm, in every
# table; what is left of the copy's change is the anatomy against the priors and the MRF.
# MRF smoothing 0.2 with a 3D radius (Atropos' documented default radius is 2D: FIELD-NOTES);
# 3 EM iterations (5 gave the same volumes within 0.1 % on the template itself); prior weight
# 0.25: the data lead, the template keeps enhancing vessels and dura from becoming "tissue".
# r 0: Atropos' own fixed seed. By default it seeds from the clock (ANTS_RANDOM_SEED is not read),
# and the same sub-004 image segmented twice differed in 13,832 voxels (0.1 cm3 of CSF); with it,
# the labels repeat exactly.
ATROPOS_SETTINGS = {"m": "[0.2,1x1x1]", "c": "[3,0]", "priorweight": 0.25, "r": 0}
MASK_EROSION_VOXELS = 2


VOXEL_VOLUME_MM3 = float(abs(np.linalg.det(grids.cropped_template_affine()[:3, :3])))
GRID = "1 mm cropped template grid"
REPEAT_SHIFT_VOXELS = 0.5
REPEAT_NOISE_FRACTION = 0.01  # of the image's 90th brain percentile


def segmentation_settings() -> dict:
    """What decides the labels, for sidecars and for knowing when a stored dseg is stale."""
    return {"Atropos": ATROPOS_SETTINGS, "MaskErosionVoxels": MASK_EROSION_VOXELS}


def segmentation_mask(mask: np.ndarray) -> np.ndarray:
    """The voxels that are labelled: the brain mask less its outer MASK_EROSION_VOXELS layers."""
    from scipy import ndimage
    return ndimage.binary_erosion(np.asarray(mask, bool),
                                  ndimage.generate_binary_structure(3, 1),
                                  iterations=MASK_EROSION_VOXELS)


def template_priors() -> tuple:
    """(CSF, GM, WM) template probabilities on the cropped 1 mm grid, in label order."""
    gm, wm, csf = grids.cropped_tissue_probabilities()
    return csf, gm, wm


def repeatability_copy(image: np.ndarray, mask: np.ndarray, seed: int = 0) -> np.ndarray:
    """The image shifted by half a voxel on every axis, with a little noise (see module text)."""
    from scipy import ndimage
    image = np.asarray(image, np.float32)
    shifted = ndimage.shift(image, [REPEAT_SHIFT_VOXELS] * 3, order=3, mode="nearest")
    scale = float(np.percentile(image[np.asarray(mask, bool)], 90))
    noise = np.random.default_rng(seed).normal(0.0, REPEAT_NOISE_FRACTION * scale, image.shape)
    return np.clip(shifted + noise.astype(np.float32), 0, None)


def segment(image: np.ndarray, mask: np.ndarray, seed: int = 0) -> np.ndarray:
    """Hard labels (uint8) of an image on the cropped 1 mm grid; 0 outside segmentation_mask."""
    image = np.asarray(image, np.float32)
    mask = np.asarray(mask, bool)
    if image.shape != grids.CROP_SHAPE or mask.shape != grids.CROP_SHAPE:
        raise ValueError(f"segmentation expects the cropped grid {grids.CROP_SHAPE}, "
                         f"got {image.shape} and mask {mask.shape}")
    mask = segmentation_mask(mask)
    if mask.sum() < 1000:
        raise ValueError(f"brain mask has only {int(mask.sum())} voxels once its outer "
                         f"{MASK_EROSION_VOXELS} layers are left out: nothing to segment")
    runtime.seed_ants(seed)
    with tempfile.TemporaryDirectory(prefix="gadosynth-atropos-") as folder:
        labels = _atropos_labels(image, mask, Path(folder))
    labels[~mask] = 0
    return labels


def _atropos_labels(image: np.ndarray, mask: np.ndarray, folder: Path) -> np.ndarray:
    """Atropos' labels, asked of the ANTs program directly.

    Why not ants.atropos: it also asks Atropos for the three posterior probability images, which
    Atropos computes after the last iteration (a pass with the MRF per class) and antspyx writes
    gzip-compressed to tempfile.mktemp names it never deletes. We use the labels only: the same
    program with the same options, without the posteriors, gives the same labels voxel for voxel
    (tests/metrics/test_tissues.py) in 28-30 s instead of 34-36 (sub-004 of gado-pairs, 1 mm
    grid, one thread), and the priors go to a folder of ours that is removed afterwards.
    ants.internal is antspyx's own plumbing (pinned 0.6.3 in pyproject.toml)."""
    import ants
    from ants.internal import get_lib_fn, get_pointer_string, process_arguments
    as_ants = lambda volume: ants.from_numpy(np.ascontiguousarray(volume, np.float32))
    pattern = str(folder / "prior%02d.nii")
    priors = template_priors()
    for index, prior in enumerate(priors, start=1):
        ants.image_write(as_ants(prior), pattern % index)
    settings = dict(ATROPOS_SETTINGS)
    prior_weight = settings.pop("priorweight")
    target = as_ants(image)
    labels = target.clone("unsigned int")
    arguments = {"d": 3, "a": target, "x": as_ants(mask).clone("unsigned int"),
                 "i": f"PriorProbabilityImages[{len(priors)},{pattern},{prior_weight}]",
                 "o": get_pointer_string(labels), **settings}
    status = get_lib_fn("Atropos")(process_arguments(arguments))
    if status != 0:
        raise RuntimeError(f"Atropos exited with status {status}")
    return labels.numpy().astype(np.uint8)


def volumes_cm3(labels: np.ndarray, voxel_volume_mm3: float = VOXEL_VOLUME_MM3) -> dict:
    labels = np.asarray(labels)
    return {name: float((labels == index).sum()) * voxel_volume_mm3 / 1000.0
            for name, index in LABELS.items()}


def dice_per_tissue(labels: np.ndarray, reference: np.ndarray) -> dict:
    """Per tissue, the Dice overlap of an image's labels with the real scan's. Why beside the
    volumes: two segmentations can have equal volumes and disagree voxel by voxel (a ce scan that
    calls some real CSF grey matter and as much real grey matter CSF has no CSF volume error);
    agreement with the real scan's segmentation is what a user of the image needs. None where
    neither labels the tissue."""
    labels, reference = np.asarray(labels), np.asarray(reference)
    if labels.shape != reference.shape:
        raise ValueError(f"labels of shape {labels.shape} against {reference.shape}")
    result = {}
    for name, index in LABELS.items():
        mine, theirs = labels == index, reference == index
        total = int(mine.sum()) + int(theirs.sum())
        result[name] = 2.0 * int(np.logical_and(mine, theirs).sum()) / total if total else None
    return result


def probability_volumes_cm3(probabilities: dict, mask: np.ndarray,
                            voxel_volume_mm3: float = VOXEL_VOLUME_MM3) -> dict:
    """Volumes of tissue probability maps (a simulation's truth) where segment() labels: the
    mask less its outer layers, so truth and labels cover the same voxels."""
    inside = segmentation_mask(mask)
    return {name: float(np.asarray(probabilities[name], np.float64)[inside].sum())
            * voxel_volume_mm3 / 1000.0 for name in TISSUES}


def template_to_native_scale(transform_path) -> float:
    """|det| of the linear part of an ANTs affine .mat (template -> native point map)."""
    import ants
    transform = ants.read_transform(str(transform_path))
    matrix = np.asarray(transform.parameters[:9], np.float64).reshape(3, 3)
    return float(abs(np.linalg.det(matrix)))


def label_table() -> str:
    """The BIDS dseg look-up table (index, name) written beside the segmentations."""
    return "index\tname\n" + "".join(f"{index}\t{name}\n" for name, index in LABELS.items())
