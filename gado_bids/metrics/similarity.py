"""MAE, PSNR and SSIM inside a brain mask, on the normalised scale the model works in.

Definitions (images x, y on the [0, 1] normalised scale, M = the brain mask, |M| its voxels):
- MAE (%)  = 100 * mean_{M} |x - y|
- PSNR (dB) = 10 log10(R^2 / mean_{M} (x - y)^2), data range R = 1 (the scale's full range)
- SSIM     = mean_{M} of the local SSIM map of Wang et al. (2004): Gaussian window with
             sigma = 1.5 voxels (truncated at 3.5 sigma), C1 = (0.01 R)^2, C2 = (0.03 R)^2,
             computed on the whole volume (the window sees the neighbourhood) and averaged over
             the mask's voxels only - not the paper code's single global window, and nothing
             outside the mask enters the mean.

The three are computed on the mask's bounding box grown by the SSIM window's radius: every voxel
of the mask then sees exactly the neighbourhood it has in the whole volume (where the box meets
the volume's edge, the same reflection), so the numbers are the whole-volume ones, bit for bit,
and the work scales with the brain's box, not with the field of view (on the demo's tight grids
the box is most of the volume and nothing is saved; on gado-pairs sub-004's native 240 x 240 x
155 grid, box 140 x 181 x 145, one MAE/PSNR/SSIM took 0.5 s instead of 3.0 s).
"""
import numpy as np
from scipy import ndimage

DATA_RANGE = 1.0
SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
SSIM_RADIUS = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)  # scipy's kernel half-width, in voxels


def bounding_box(mask, margin: int) -> tuple:
    """Slices of the mask's bounding box grown by margin voxels, clipped to the volume."""
    mask = np.asarray(mask, bool)
    if not mask.any():
        raise ValueError("empty mask: no bounding box")
    box = []
    for axis, size in enumerate(mask.shape):  # the mask's extent along each axis, projected
        others = tuple(a for a in range(mask.ndim) if a != axis)
        occupied = np.flatnonzero(mask.any(axis=others))
        box.append(slice(max(int(occupied[0]) - margin, 0),
                         min(int(occupied[-1]) + margin + 1, size)))
    return tuple(box)


def _check(x, y, mask):
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    mask = np.asarray(mask, bool)
    if x.shape != y.shape or x.shape != mask.shape:
        raise ValueError(f"shapes differ: {x.shape}, {y.shape}, mask {mask.shape}")
    if not mask.any():
        raise ValueError("empty mask")
    return x, y, mask


def mae_percent(x, y, mask) -> float:
    x, y, mask = _check(x, y, mask)
    return float(100.0 * np.abs(x - y)[mask].mean() / DATA_RANGE)


def psnr(x, y, mask) -> float:
    x, y, mask = _check(x, y, mask)
    mse = float(((x - y) ** 2)[mask].mean())
    return float("inf") if mse == 0 else float(10.0 * np.log10(DATA_RANGE ** 2 / mse))


def _blur(volume):
    return ndimage.gaussian_filter(volume, SSIM_SIGMA, truncate=SSIM_TRUNCATE, mode="reflect")


def _moments(y) -> tuple:
    """(local mean, local variance) of an image: the reference's half of the SSIM map, the same
    for every image compared with it."""
    mu_y = _blur(y)
    return mu_y, _blur(y * y) - mu_y ** 2


def ssim_map(x, y, y_moments=None) -> np.ndarray:
    """y_moments: _moments(y), when several images are compared with one reference."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    c1, c2 = (0.01 * DATA_RANGE) ** 2, (0.03 * DATA_RANGE) ** 2
    mu_y, var_y = _moments(y) if y_moments is None else y_moments
    mu_x = _blur(x)
    var_x = _blur(x * x) - mu_x ** 2
    covariance = _blur(x * y) - mu_x * mu_y
    return ((2 * mu_x * mu_y + c1) * (2 * covariance + c2)) / (
        (mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))


def ssim(x, y, mask) -> float:
    x, y, mask = _check(x, y, mask)
    return float(ssim_map(x, y)[mask].mean())


def all_metrics(x, y, mask) -> dict:
    return metrics_against({"x": x}, y, mask)["x"]


def metrics_against(images: dict, reference, mask) -> dict:
    """{name: all three metrics} of several images against one reference, on the mask's box
    grown by the SSIM radius; the reference's local moments are computed once (the same numbers
    as one all_metrics call per image, bit for bit)."""
    mask = np.asarray(mask, bool)
    if not mask.any():
        raise ValueError("empty mask")
    box = bounding_box(mask, SSIM_RADIUS)
    y, mask = np.asarray(reference, np.float64)[box], mask[box]
    y_moments = _moments(y)
    result = {}
    for name, image in images.items():
        x, _, _ = _check(np.asarray(image)[box], y, mask)
        result[name] = {"MAE": mae_percent(x, y, mask), "PSNR": psnr(x, y, mask),
                        "SSIM": float(ssim_map(x, y, y_moments)[mask].mean())}
    return result
