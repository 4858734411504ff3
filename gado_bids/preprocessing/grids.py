"""The two model-facing grids and exact maps between them.

Cropped template grid: 169x208x179 voxels at 1 mm, the size Clinica's t1-linear crops to. On our
template (nilearn's MNI152NLin2009aSym, 197x233x189) the box is voxels x 14:183, y 14:222, z 0:179:
centred on the template brain's bounding box (x 26-170, y 27-207) and starting at the lowest
brain slice (the template's brain touches z = 0), so the whole template brain lies inside it.

Padded grid: the cropped grid zero-padded at the far end of each axis to 176x208x192, the
nearest sizes a five-level U-Net accepts (multiples of 16); the 1 mm networks run on it.

Network grid (the paper's, gadosynth 0.1's): 128^3, each axis of the cropped grid resampled trilinearly with its end voxels
aligned ("align corners"), so that both directions are the same linear coordinate map.
"""
import functools

import nibabel as nib
import numpy as np
from scipy import ndimage

from gado_bids.preprocessing.template import template_t1, template_tissue_probabilities

CROP_START = (14, 14, 0)
CROP_SHAPE = (169, 208, 179)
NETWORK_SHAPE = (128, 128, 128)
PADDING_MULTIPLE = 16
PADDED_SHAPE = tuple(-(-n // PADDING_MULTIPLE) * PADDING_MULTIPLE for n in CROP_SHAPE)


def pad_crop(volume: np.ndarray) -> np.ndarray:
    """Cropped-grid volume zero-padded to PADDED_SHAPE (the voxels keep their indices)."""
    volume = np.asarray(volume, np.float32)
    if volume.shape != CROP_SHAPE:
        raise ValueError(f"expected the cropped grid {CROP_SHAPE}, got {volume.shape}")
    return np.pad(volume, [(0, p - n) for n, p in zip(CROP_SHAPE, PADDED_SHAPE)])


def unpad_crop(volume: np.ndarray) -> np.ndarray:
    return np.asarray(volume)[tuple(slice(0, n) for n in CROP_SHAPE)]


def cropped_template_affine() -> np.ndarray:
    affine = template_t1().affine.copy()
    affine[:3, 3] = affine[:3, :3] @ np.array(CROP_START) + affine[:3, 3]
    return affine


def crop_template_volume(volume: np.ndarray) -> np.ndarray:
    box = tuple(slice(s, s + n) for s, n in zip(CROP_START, CROP_SHAPE))
    return np.asarray(volume)[box]


@functools.lru_cache(maxsize=1)
def cropped_tissue_probabilities() -> tuple:
    """(GM, WM, CSF) template probabilities on the cropped 1 mm grid, float32, read-only: loaded
    once per process for everything that uses them there (the group level's segmentation
    priors, the weights' grey-matter blood-pool term)."""
    priors = []
    for image in template_tissue_probabilities():
        prior = np.ascontiguousarray(crop_template_volume(np.asarray(image.dataobj)),
                                     np.float32)
        prior.setflags(write=False)
        priors.append(prior)
    return tuple(priors)


def _scales(source_shape, target_shape):
    return np.array([(s - 1) / (t - 1) for s, t in zip(source_shape, target_shape)])


def network_affine() -> np.ndarray:
    """Voxel-to-world of the 128^3 grid (so network-space files overlay the template)."""
    scaling = np.diag(list(_scales(CROP_SHAPE, NETWORK_SHAPE)) + [1.0])
    return cropped_template_affine() @ scaling


def _resample(volume, source_shape, target_shape, order):
    scales = _scales(source_shape, target_shape)
    coordinates = np.indices(target_shape, dtype=np.float32) * scales[:, None, None, None].astype(
        np.float32)
    return ndimage.map_coordinates(np.asarray(volume, np.float32), coordinates, order=order,
                                   mode="nearest")


def crop_to_network(volume: np.ndarray, order: int = 1) -> np.ndarray:
    return _resample(volume, CROP_SHAPE, NETWORK_SHAPE, order)


def network_to_crop(volume: np.ndarray, order: int = 1) -> np.ndarray:
    return _resample(volume, NETWORK_SHAPE, CROP_SHAPE, order)


def as_crop_image(volume: np.ndarray) -> nib.Nifti1Image:
    return nib.Nifti1Image(np.asarray(volume, np.float32), cropped_template_affine())

