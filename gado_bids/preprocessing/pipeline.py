"""Preprocess one session the way the model expects (Clinica t1-linear, plus masking).

For the ce scan: brain mask -> N4 in the mask -> affine registration of the brain to the MNI
template -> resampling into the cropped template grid (169x208x179, 1 mm) -> normalisation
(preprocessing.intensity) -> 128^3 network grid. The session's non-contrast scan gets the same
steps, except that it is registered rigidly to the ce scan and reaches the template through the
ce scan's affine, so the two land in the same grid with one interpolation each.
"""
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import nibabel as nib
import numpy as np

from gado_bids import runtime
from gado_bids.preprocessing import brain_mask, grids, intensity, registration
from gado_bids.preprocessing.template import template_brain_mask, template_t1

LOG = logging.getLogger(__name__)


@dataclass
class PreprocessedScan:
    n4_native: nib.Nifti1Image  # bias-corrected, native grid
    native_mask: np.ndarray  # bool, native grid
    mask_method: str
    crop: np.ndarray  # normalised, cropped template grid
    crop_mask: np.ndarray  # bool, cropped template grid
    network_input: np.ndarray  # normalised, 128^3
    anchor: float  # the intensity normalisation's scale (preprocessing.intensity)
    transforms: list  # ANTs transform files, native -> template (apply order as ANTs lists it)
    template_mask_dice: float  # QC: template brain warped to native vs native mask
    timings: dict = field(default_factory=dict)
    peak_memory_gb: dict = field(default_factory=dict)


@dataclass
class PreprocessedSession:
    ce: PreprocessedScan
    reference: Optional[PreprocessedScan]
    ce_to_template: str  # .mat
    reference_to_ce: Optional[str]  # .mat


def _crop_reference():
    return registration.to_ants(grids.as_crop_image(np.zeros(grids.CROP_SHAPE, np.float32)))


def _rss_gb() -> float:
    try:
        with open("/proc/self/statm") as stream:
            return int(stream.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 30
    except (OSError, ValueError):  # not Linux: memory is simply not reported
        return 0.0


class _Timer:
    """Wall time and peak resident memory per stage (sampled every 50 ms)."""

    def __init__(self):
        self.timings = {}
        self.peak_memory_gb = {}

    def __call__(self, name):
        timer = self

        class _Stage:
            def __enter__(self):
                self.started = time.perf_counter()
                self.peak = _rss_gb()
                self.done = threading.Event()
                self.sampler = threading.Thread(target=self._sample, daemon=True)
                self.sampler.start()

            def _sample(self):
                while not self.done.wait(0.05):
                    self.peak = max(self.peak, _rss_gb())

            def __exit__(self, *exc):
                self.done.set()
                self.sampler.join()
                timer.timings[name] = round(timer.timings.get(name, 0) +
                                            time.perf_counter() - self.started, 2)
                timer.peak_memory_gb[name] = round(max(timer.peak_memory_gb.get(name, 0),
                                                       self.peak, _rss_gb()), 3)
        return _Stage()

    def record(self, name, seconds, peak_memory_gb):
        """A stage that ran in a child process: its wall time and the child's peak memory."""
        self.timings[name] = round(self.timings.get(name, 0) + seconds, 2)
        self.peak_memory_gb[name] = round(max(self.peak_memory_gb.get(name, 0),
                                              peak_memory_gb), 3)


def _mask_and_correct(image: nib.Nifti1Image, mask_method: str, seed: int, timer):
    with timer("masking"):
        mask, method = brain_mask.native_brain_mask(image, mask_method, seed)
    # Magnitude images are positive; negatives are resampling overshoot and break N4's log.
    native = registration.to_ants(
        nib.Nifti1Image(np.clip(image.get_fdata(dtype=np.float32), 0, None), image.affine))
    mask_ants = native.new_image_like(mask.astype(np.float32))
    with timer("n4"):
        corrected = registration.n4(native, mask_ants)
    return native, corrected, mask, mask_ants, method


def _finish(corrected, mask, mask_ants, method, transforms, invert, timer) -> PreprocessedScan:
    crop_reference = _crop_reference()
    with timer("resampling"):
        crop = registration.apply(crop_reference, corrected, transforms).numpy()
        crop_mask = registration.apply(crop_reference, mask_ants, transforms,
                                       "nearestNeighbor").numpy() > 0.5
        crop = np.clip(crop, 0, None)
    with timer("normalisation"):
        normalised, anchor = intensity.normalise(crop, crop_mask)
        network_input = grids.crop_to_network(normalised)
    with timer("masking"):
        template_mask = registration.to_ants(template_brain_mask())
        # Back through the inverse: the template's own brain, seen in the subject's grid.
        back = registration.apply(corrected, template_mask, transforms[::-1], "nearestNeighbor",
                                  invert=[not flag for flag in invert[::-1]]).numpy() > 0.5
        agreement = brain_mask.dice(back, mask)
    return PreprocessedScan(registration.to_nibabel(corrected), mask, method, normalised,
                            crop_mask, network_input, anchor, list(transforms), agreement,
                            timer.timings, timer.peak_memory_gb)


def preprocess_session(ce_image: nib.Nifti1Image, reference_image: Optional[nib.Nifti1Image],
                       work_dir: Path, seed: int, mask_method: str = "auto") -> PreprocessedSession:
    runtime.seed_ants(seed)
    template = registration.to_ants(template_t1())
    ce_timer = _Timer()
    _, ce_corrected, ce_mask, ce_mask_ants, ce_method = _mask_and_correct(
        ce_image, mask_method, seed, ce_timer)
    ce_brain = ce_corrected * ce_mask_ants
    jobs = [(template, ce_brain, registration.TEMPLATE_TRANSFORM, None)]
    if reference_image is not None:
        reference_timer = _Timer()
        _, ref_corrected, ref_mask, ref_mask_ants, ref_method = _mask_and_correct(
            reference_image, mask_method, seed, reference_timer)
        jobs.append((ce_brain, ref_corrected * ref_mask_ants, "Rigid", None))
    # independent once both scans are corrected: side by side (registration.py says why)
    registered = registration.register_side_by_side(jobs, work_dir)
    ce_timer.record("registration", registered[0].seconds, registered[0].peak_memory_gb)
    ce_to_template = registered[0].transform
    ce = _finish(ce_corrected, ce_mask, ce_mask_ants, ce_method, [ce_to_template], [False],
                 ce_timer)
    LOG.info("ce scan preprocessed (%s mask, template Dice %.3f): %s", ce_method,
             ce.template_mask_dice, ce.timings)
    if reference_image is None:
        return PreprocessedSession(ce, None, ce_to_template, None)

    reference_timer.record("registration", registered[1].seconds, registered[1].peak_memory_gb)
    reference_to_ce = registered[1].transform
    reference = _finish(ref_corrected, ref_mask, ref_mask_ants, ref_method,
                        [ce_to_template, reference_to_ce], [False, False], reference_timer)
    LOG.info("non-contrast scan preprocessed (%s mask, template Dice %.3f): %s", ref_method,
             reference.template_mask_dice, reference.timings)
    return PreprocessedSession(ce, reference, ce_to_template, reference_to_ce)


def native_to_crop(image: nib.Nifti1Image, transforms: list) -> np.ndarray:
    """A native-grid volume on the cropped template grid (linear interpolation), e.g. a
    simulation's tissue map brought where its scan was segmented."""
    return registration.apply(_crop_reference(), registration.to_ants(image),
                              list(transforms)).numpy()


def crop_to_native(volume: np.ndarray, native_image: nib.Nifti1Image, transforms: list,
                   label: bool = False) -> np.ndarray:
    """Bring a cropped-template-grid volume back onto a scan's native grid.

    transforms are the scan's native -> template list (PreprocessedScan.transforms); labels use
    nearest-neighbour, images linear interpolation.
    """
    moving = registration.to_ants(grids.as_crop_image(volume))
    fixed = registration.to_ants(native_image)
    out = registration.apply(fixed, moving, transforms[::-1],
                             "nearestNeighbor" if label else "linear",
                             invert=[True] * len(transforms))
    return out.numpy()


def network_to_native(volume: np.ndarray, native_image: nib.Nifti1Image, transforms: list,
                      label: bool = False) -> np.ndarray:
    crop = grids.network_to_crop(volume, order=0 if label else 1)
    return crop_to_native(crop, native_image, transforms, label)


def reference_on_ce_grid(reference_image: nib.Nifti1Image, ce_image: nib.Nifti1Image,
                         reference_to_ce: str, ce_mask: np.ndarray) -> np.ndarray:
    """The session's raw non-contrast scan on the ce scan's native grid, N4-corrected there.

    One interpolation (through the saved rigid transform), then N4 in the ce scan's brain mask:
    the same correction, in the same mask and grid, that made the ce scan's desc-n4 image, so the
    two are bias-corrected alike for the native-grid evaluation. Known limit: linear
    interpolation blurs the reference a little where the transform shifts it by part of a voxel
    (gado-pairs sub-018: weakest/strongest-axis sharpness 0.93 raw, 0.82 here); a windowed-sinc
    interpolator would not.
    """
    fixed = registration.to_ants(ce_image)
    moving = registration.to_ants(nib.Nifti1Image(
        np.clip(reference_image.get_fdata(dtype=np.float32), 0, None), reference_image.affine))
    resampled = registration.apply(fixed, moving, [str(reference_to_ce)])
    corrected = registration.n4(resampled, resampled.new_image_like(
        np.asarray(ce_mask, np.float32)))
    return np.clip(corrected.numpy(), 0, None)
