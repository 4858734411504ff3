"""The one evaluation of a synthetic image against its session's real non-contrast scan.

Used by the group level (native and 1 mm template grids), gadosynth-train's final table and the
benchmarks (128^3 network grid, a secondary view), so every number the product prints about
image quality comes from here.

Inputs are images of one grid, each already bias-corrected the same way (N4 in the brain mask),
and one evaluation mask. Each image is put on one scale by its own statistics, never by a fit to
the reference:

    scaled = x / (2 * P90(x in the mask))   (not clipped; white matter ~0.5; data range R = 1)

which is the product's normalisation (preprocessing.intensity) without its clipping, so that an
enhancement left in the image counts in full. Then, against the reference:

- plain MAE / PSNR / SSIM (metrics.similarity) of the ce scan, the two non-learned baselines and
  the synthetic image: "clip" (the ce scan clipped at its 97th brain percentile) and
  "clip-and-blur" (the same smoothed by a 1 mm Gaussian). On sharp references clipping alone is
  the stronger baseline, on thick-slice ones clip-and-blur;
- resolution-matched MAE / PSNR / SSIM: the reference's blur relative to the ce scan is estimated
  per axis (metrics.resolution, with the reference's acquisition voxels as a lower bound), every
  compared image is blurred by it, then compared (the estimate is made on both images clipped at
  their 97th brain percentile, so that enhancing vessels do not read as resolution). An image cannot win these by being blurrier
  than its reference;
- sharpness per axis of every image and its ratio to the ce scan's (1.0 = as sharp as the input);
- top end: (P99.5 / P95 - 1) in percent over the mask; a saturated white matter makes it small.
"""
import numpy as np
from scipy import ndimage

from gado_bids.metrics import resolution
from gado_bids.metrics.similarity import SSIM_RADIUS, bounding_box, metrics_against

SCALE = "x / (2 * P90(x in the evaluation mask)), not clipped; data range R = 1"
SCALE_PERCENTILE = 90.0
CLIP_PERCENTILE = 97.0
BASELINE_SIGMA_MM = 1.0
TOP_END_PERCENTILES = (95.0, 99.5)
COMPARED = ("ce", "clip", "clip-and-blur", "synthetic")
METRICS = ("MAE", "PSNR", "SSIM")


def to_scale(volume, mask) -> np.ndarray:
    volume = np.asarray(volume, np.float32)
    anchor = float(np.percentile(volume[mask], SCALE_PERCENTILE))
    if not anchor > 0:
        raise ValueError("brain intensities are not positive: cannot put the image on scale")
    return volume / (2.0 * anchor)


def clip_baseline(ce, mask) -> np.ndarray:
    ce = np.asarray(ce, np.float32)
    return np.minimum(ce, np.float32(np.percentile(ce[np.asarray(mask, bool)], CLIP_PERCENTILE)))


def clip_and_blur_baseline(ce, mask, voxel_mm=(1.0, 1.0, 1.0)) -> np.ndarray:
    sigma = [BASELINE_SIGMA_MM / float(v) for v in voxel_mm]
    return ndimage.gaussian_filter(clip_baseline(ce, mask), sigma).astype(np.float32)


def top_end_percent(volume, mask) -> float:
    low, high = np.percentile(np.asarray(volume, np.float32)[mask], TOP_END_PERCENTILES)
    return float(100.0 * (high / low - 1.0)) if low > 0 else float("nan")


def compare(ce, synthetic, reference, mask, voxel_mm=(1.0, 1.0, 1.0),
            blur_floor=(0.0, 0.0, 0.0)) -> dict:
    """Every measure of one session on one grid (see the module text).

    blur_floor: per-axis lower bound of the reference's relative blur, in voxels of this grid
    (resolution.acquisition_blur). Returns plain floats and lists only (JSON-ready).
    """
    mask = np.asarray(mask, bool)
    if not mask.any():
        raise ValueError("empty evaluation mask")
    reference = to_scale(reference, mask)
    ce = to_scale(ce, mask)
    images = {"ce": ce, "clip": to_scale(clip_baseline(ce, mask), mask),
              "clip-and-blur": to_scale(clip_and_blur_baseline(ce, mask, voxel_mm), mask),
              "synthetic": to_scale(synthetic, mask)}
    # Estimated between the two images clipped at their 97th percentiles: the edges of
    # enhancing vessels are detail that only the ce scan has, and would read as the reference
    # being blurrier than it is.
    relative_blur = resolution.estimate_relative_blur(
        images["clip"], clip_baseline(reference, mask), mask, blur_floor)
    sharpness = {name: resolution.sharpness(image, mask) for name, image in images.items()}
    sharpness["reference"] = resolution.sharpness(reference, mask)
    result = {
        "scale": SCALE,
        "mask_voxels": int(mask.sum()),
        "relative_blur_voxels": [float(s) for s in relative_blur],
        "blur_floor_voxels": [float(s) for s in blur_floor],
        "reference_class": resolution.reference_class(relative_blur, sharpness["reference"]),
        "sharpness": {name: list(values) for name, values in sharpness.items()},
        "sharpness_ratio": {name: list(resolution.sharpness_ratio(sharpness[name],
                                                                  sharpness["ce"]))
                            for name in list(images) + ["reference"]},
        "top_end_percent": {name: top_end_percent(image, mask)
                            for name, image in {**images, "reference": reference}.items()},
        "plain": metrics_against(images, reference, mask),
        "matched": _matched_metrics(images, reference, mask, relative_blur),
    }
    return result


def _matched_metrics(images, reference, mask, relative_blur) -> dict:
    """Each image blurred by the reference's relative blur, then compared. Blurred on the mask's
    box grown by the blur's and the SSIM window's radii, which gives every mask voxel the numbers
    of a whole-volume blur exactly (see metrics.similarity) at a fraction of the cost."""
    radius = max(int(resolution.GAUSSIAN_TRUNCATE * float(s) + 0.5) for s in relative_blur)
    box = bounding_box(mask, radius + SSIM_RADIUS)
    return metrics_against({name: resolution.blur(image[box], relative_blur)
                            for name, image in images.items()}, reference[box], mask[box])
