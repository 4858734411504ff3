"""How sharp an image is along each axis, and how much blurrier a reference is than the ce scan.

Why: a synthetic image can score well against a blurry (thick-slice) reference by being blurry
itself, and a mean over sharp and blurry references hides it. These measures are scale- and
contrast-free, so they compare images of any intensity range.

- Sharpness along axis a: RMS of 1-voxel differences over RMS of 4-voxel differences, over the
  voxels i of the eroded brain mask whose partner i + 4 along a is in it too. White noise gives
  1, a smooth ramp 0.25; blurring lowers it; multiplying or offsetting the image does not change
  it.
- Relative blur: the per-axis Gaussian sigma (in voxels of the grid) that, applied to the ce scan,
  gives it the reference's sharpness on every axis (found axis by axis by bisection, two sweeps,
  because blurring one axis slightly changes the others' sharpness). When the reference's
  header says it was acquired with thicker voxels than the ce scan (voxel size, or the sidecar's
  SliceThickness), the blur its slices imply is a lower bound (`acquisition_blur`).
- Reference class: "3D" or "thick-slice", from how anisotropic the reference's sharpness and
  relative blur are (see THICK_SLICE_SHARPNESS_RATIO).
"""
import numpy as np
from scipy import ndimage

from gado_bids.metrics.similarity import bounding_box

NEAR, FAR = 1, 4  # voxel offsets of the two differences
MASK_EROSION = 2  # voxels: differences across the brain's edge are edges of the mask, not detail
MAX_SIGMA = 6.0  # voxels: beyond this the bisection reports the bound
BISECTION_STEPS = 9  # interval 6 / 2^9 = 0.012 voxels
SWEEPS = 2
GAUSSIAN_TRUNCATE = 4.0  # scipy's default: the blur's kernel reaches 4 sigma
# Sharpness falls with sigma^2 near sigma = 0, so a difference in the last digits of the two
# images' sharpness would read as a visible blur: a relative difference below this is none.
SHARPNESS_TOLERANCE = 0.002
FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))
# A reference is "thick-slice" when either sign of slices thicker than its in-plane voxels shows:
# its own weakest-axis sharpness is below THICK_SLICE_SHARPNESS_RATIO of its strongest (this
# catches pairs whose ce scan is thick-slice too, e.g. gado-pairs sub-023/024/028, where the
# relative blur is 0 along the slices), or its blur relative to the ce scan differs between axes by
# THICK_SLICE_ANISOTROPY voxels or more (a thick-slice reference of a sharp ce scan, when its
# own in-plane detail is poor too). Measured on the raw gado-pairs (co-registered 1 mm grids): the
# 3D references (002, 004, 010, 012-014, 018-022, 026) have ratios 0.90-1.00 and anisotropy at
# most 0.70 voxels; every other reference has a ratio of 0.57-0.82.
THICK_SLICE_SHARPNESS_RATIO = 0.85
THICK_SLICE_ANISOTROPY = 0.75
CLASSES = ("3D", "thick-slice")


class _Sampler:
    """The voxel pairs each axis's differences are taken over, fixed once per mask: the flat
    positions (C order) of the voxels whose pair partners FAR voxels on are also inside; the
    bisection asks for them dozens of times, so they are gathered, not masked, each time."""

    def __init__(self, mask):
        mask = np.asarray(mask, bool)
        if not mask.any():
            raise ValueError("empty mask: sharpness needs brain voxels")
        self.box = bounding_box(mask, FAR + MASK_EROSION + 1)
        inner = ndimage.binary_erosion(mask[self.box], iterations=MASK_EROSION)
        if not inner.any():
            inner = mask[self.box]
        self.shape = inner.shape
        self.positions = []
        for axis in range(3):
            both = np.zeros_like(inner)
            head = [slice(None)] * 3
            tail = [slice(None)] * 3
            head[axis], tail[axis] = slice(0, -FAR), slice(FAR, None)
            both[tuple(head)] = inner[tuple(head)] & inner[tuple(tail)]
            self.positions.append(np.flatnonzero(both))

    def crop(self, volume):
        return np.asarray(volume, np.float32)[self.box]

    def axis_sharpness(self, cropped, axis) -> float:
        flat = np.ravel(cropped)
        positions = self.positions[axis]
        stride = int(np.prod(self.shape[axis + 1:]))
        ratios = []
        for offset in (NEAR, FAR):
            difference = flat[positions + offset * stride] - flat[positions]
            ratios.append(np.sqrt(np.mean(np.square(difference, dtype=np.float64))))
        near, far = ratios
        return float(near / far) if far > 0 else float("nan")


def sharpness(volume, mask) -> tuple:
    """(sharpness along axis 0, 1, 2) of a volume inside a brain mask (see the module text)."""
    sampler = _Sampler(mask)
    cropped = sampler.crop(volume)
    return tuple(sampler.axis_sharpness(cropped, axis) for axis in range(3))


def sharpness_ratio(image_sharpness, input_sharpness) -> tuple:
    """Per axis image / input: 1.0 = as sharp as the input."""
    return tuple(float(a / b) for a, b in zip(image_sharpness, input_sharpness))


def blur(volume, sigma_voxels) -> np.ndarray:
    """Anisotropic Gaussian blur (sigma per axis in voxels; 0 leaves that axis alone)."""
    volume = np.asarray(volume, np.float32)
    for axis, sigma in enumerate(sigma_voxels):
        if sigma > 0:
            volume = ndimage.gaussian_filter1d(volume, float(sigma), axis=axis, mode="nearest",
                                               truncate=GAUSSIAN_TRUNCATE)
    return volume


def estimate_relative_blur(sharp, blurred, mask, floor=(0.0, 0.0, 0.0)) -> np.ndarray:
    """Per-axis Gaussian sigma (voxels) that makes `sharp` as sharp as `blurred` inside the mask.

    floor: per-axis lower bounds (e.g. from acquisition_blur); the estimate never goes below.
    """
    sampler = _Sampler(mask)
    sharp_cropped = sampler.crop(sharp)
    blurred_cropped = sampler.crop(blurred)
    target = [sampler.axis_sharpness(blurred_cropped, axis) for axis in range(3)]
    sigma = np.zeros(3)
    for _ in range(SWEEPS):
        for axis in range(3):
            others = sigma.copy()
            others[axis] = 0.0
            base = blur(sharp_cropped, others)
            sigma[axis] = _bisect_axis(sampler, base, axis, target[axis])
    return np.maximum(sigma, np.asarray(floor, np.float64))


def _bisect_axis(sampler, base, axis, target) -> float:
    """Smallest sigma along one axis at which base's sharpness falls to target."""
    if not np.isfinite(target) or \
            sampler.axis_sharpness(base, axis) <= target * (1.0 + SHARPNESS_TOLERANCE):
        return 0.0
    low, high = 0.0, MAX_SIGMA
    if sampler.axis_sharpness(blur(base, _one_axis(axis, high)), axis) > target:
        return MAX_SIGMA
    for _ in range(BISECTION_STEPS):
        middle = 0.5 * (low + high)
        if sampler.axis_sharpness(blur(base, _one_axis(axis, middle)), axis) > target:
            low = middle
        else:
            high = middle
    return 0.5 * (low + high)


def _one_axis(axis, sigma):
    values = [0.0, 0.0, 0.0]
    values[axis] = sigma
    return values


def acquisition_blur(reference_affine, grid_affine, slice_thickness_mm=None) -> np.ndarray:
    """Per-axis sigma (voxels of the target grid) implied by the reference's own voxels.

    A voxel of extent d mm is modelled as a Gaussian of FWHM d. The reference's voxel axes are
    projected on the target grid's axes; the part of the reference's FWHM beyond the target
    voxel's own is the extra blur the reference carries. slice_thickness_mm (BIDS sidecar
    SliceThickness) replaces the reference's largest voxel extent when it is larger (gaps or
    overlapping slices; with isotropic voxels, the last voxel axis, the usual slice axis).
    reference_affine: the raw reference's voxel-to-world, grid_affine: the target grid's, both in
    the same (co-registered) world.
    """
    reference_axes = np.asarray(reference_affine, np.float64)[:3, :3]
    extents = np.linalg.norm(reference_axes, axis=0)
    directions = reference_axes / extents
    if slice_thickness_mm:
        thickest = 2 - int(np.argmax(extents[::-1]))  # ties: the last axis, where slices go
        extents[thickest] = max(extents[thickest], float(slice_thickness_mm))
    grid_axes = np.asarray(grid_affine, np.float64)[:3, :3]
    grid_extents = np.linalg.norm(grid_axes, axis=0)
    grid_directions = grid_axes / grid_extents
    # FWHM of the reference along each target axis: |projection| of each reference voxel axis.
    cosines = np.abs(grid_directions.T @ directions)  # [target axis, reference axis]
    fwhm = np.sqrt((cosines ** 2 * extents ** 2).sum(axis=1))
    extra = np.sqrt(np.clip(fwhm ** 2 - grid_extents ** 2, 0, None))
    return extra / FWHM_PER_SIGMA / grid_extents


def reference_class(relative_blur, reference_sharpness) -> str:
    """'thick-slice' or '3D' (see THICK_SLICE_SHARPNESS_RATIO and THICK_SLICE_ANISOTROPY)."""
    relative_blur = np.asarray(relative_blur, np.float64)
    reference_sharpness = np.asarray(reference_sharpness, np.float64)
    anisotropy = float(relative_blur.max() - relative_blur.min())
    own_ratio = float(reference_sharpness.min() / reference_sharpness.max())
    if own_ratio < THICK_SLICE_SHARPNESS_RATIO or anisotropy >= THICK_SLICE_ANISOTROPY:
        return "thick-slice"
    return "3D"
