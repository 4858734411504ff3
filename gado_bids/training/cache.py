"""Preprocessed training pairs, cached compactly so later runs start in seconds.

Each session becomes one .npz: the ce input and non-contrast target in the 1 mm cropped template
grid (exactly the inference preprocessing: preprocessing.pipeline), quantised to uint8 (steps of
1/255 of the normalised scale, ~0.4%, well under the errors we measure), and the union brain mask.
34 sessions pack into ~100 MB, small enough to carry to a GPU machine. A sidecar .json records the
inputs' SHA-256 (a changed input is re-preprocessed) and what training needs to know about the
target: its blur relative to the ce scan per axis and its reference class (metrics.resolution,
measured the way metrics.evaluation measures it), so the loss can compare a thick-slice target
with the output blurred like it instead of teaching the network that blur.

The preprocessing comes from preprocessing.pipeline, or from a participant-level output folder
(derivatives_dir) where that run's outputs for the same input bytes are complete.
"""
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gado_bids import __version__, atomic, hashing
from gado_bids.outputs import derivatives, spec
from gado_bids.preprocessing import grids

LOG = logging.getLogger(__name__)
QUANTISATION = 255.0
CACHE_FORMAT = 2  # 2: 1 mm cropped grid with target blur and class; 1 (0.1.x): 128^3


@dataclass
class TrainingPair:
    name: str
    subject: str
    ce: np.ndarray  # float32, cropped template grid (169x208x179, 1 mm), in [0, 1]
    target: np.ndarray
    mask: np.ndarray  # bool: union of both brain masks
    target_blur: tuple = (0.0, 0.0, 0.0)  # voxels per axis, relative to the ce scan
    reference_class: str = "3D"


def quantise(volume):
    return np.round(np.clip(volume, 0, 1) * QUANTISATION).astype(np.uint8)


def _cache_name(job) -> str:
    return job.key.replace("_T1w", "")


def cached_pair_path(cache_dir: Path, job) -> Path:
    return Path(cache_dir) / f"{_cache_name(job)}.npz"


def _fingerprint(job) -> dict:
    return {"ce_sha256": hashing.sha256_of(job.ce_path),
            "target_sha256": hashing.sha256_of(job.reference_path),
            "gadosynth": __version__, "cache_format": CACHE_FORMAT}


def target_resolution(ce, target, ce_mask, target_mask) -> dict:
    """The target's blur relative to the ce scan and its reference class, as the evaluation
    measures them (both clipped at their 97th percentile; both brain masks)."""
    from gado_bids.metrics import evaluation, resolution
    mask = ce_mask & target_mask
    clipped_target = evaluation.clip_baseline(target, mask)
    blur = resolution.estimate_relative_blur(evaluation.clip_baseline(ce, mask), clipped_target,
                                             mask)
    return {"target_blur_voxels": [round(float(s), 3) for s in blur],
            "reference_class": resolution.reference_class(
                blur, resolution.sharpness(clipped_target, mask))}


def _crops_from_preprocessing(job, cache_dir, seed):
    # Imported here: training from an existing cache (a GPU machine) needs no ANTs.
    from gado_bids.discovery.nifti_checks import load_3d_image
    from gado_bids.preprocessing.pipeline import preprocess_session
    with tempfile.TemporaryDirectory(dir=cache_dir) as work:
        session = preprocess_session(load_3d_image(job.ce_path), load_3d_image(job.reference_path),
                                     Path(work), seed)
    return (session.ce.crop, session.reference.crop, session.ce.crop_mask,
            session.reference.crop_mask, "preprocessing")


def _crops_from_derivatives(job, derivatives_dir, fingerprint):
    """The crops a participant-level run wrote for these same input bytes, or None."""
    import nibabel as nib
    outputs = spec.predict(job, derivatives_dir)
    keys = ("ce_crop", "ref_crop", "ce_mask", "ref_mask")
    if not all(derivatives.output_is_complete(outputs[k]) for k in keys):
        return None
    expected = {Path(job.ce_path).name: fingerprint["ce_sha256"],
                Path(job.reference_path).name: fingerprint["target_sha256"]}
    if any(derivatives.read_sidecar(outputs[k]).get("InputsSha256") != expected for k in keys):
        return None
    volumes = [np.asarray(nib.load(str(outputs[k])).dataobj) for k in keys]
    return (volumes[0].astype(np.float32), volumes[1].astype(np.float32), volumes[2] > 0,
            volumes[3] > 0, str(Path(derivatives_dir)))


def cache_pair(job, cache_dir: Path, seed: int = 0, derivatives_dir: Path = None) -> Path:
    """One session's pair into the cache, unless an up-to-date entry exists: from the
    participant-level outputs in derivatives_dir when they are complete for these inputs,
    else preprocessed here."""
    path = cached_pair_path(cache_dir, job)
    meta_path = path.with_suffix(".json")
    fingerprint = _fingerprint(job)
    if path.exists() and meta_path.exists() and json.loads(meta_path.read_text()).get(
            "fingerprint") == fingerprint:
        return path
    crops = _crops_from_derivatives(job, derivatives_dir, fingerprint) if derivatives_dir \
        else None
    ce, target, ce_mask, target_mask, source = crops or _crops_from_preprocessing(
        job, cache_dir, seed)
    with atomic.atomic_path(path) as temporary:
        with open(temporary, "wb") as stream:
            np.savez_compressed(stream, ce=quantise(ce), target=quantise(target),
                                mask=np.packbits(ce_mask | target_mask))
    atomic.write_json(meta_path, {"fingerprint": fingerprint, "subject": job.subject,
                                  "source": source,
                                  **target_resolution(ce, target, ce_mask, target_mask)})
    return path


def load_pair(path: Path) -> TrainingPair:
    path = Path(path)
    meta = json.loads(path.with_suffix(".json").read_text())
    if meta.get("fingerprint", {}).get("cache_format") != CACHE_FORMAT:
        raise ValueError(f"{path} is a cache entry of an older gadosynth (128^3 grid): run "
                         "gadosynth-train without --pairs_from_cache to rebuild it")
    with np.load(path) as arrays:
        mask = np.unpackbits(arrays["mask"])[: np.prod(grids.CROP_SHAPE)]
        return TrainingPair(path.stem, meta["subject"],
                            arrays["ce"].astype(np.float32) / QUANTISATION,
                            arrays["target"].astype(np.float32) / QUANTISATION,
                            mask.reshape(grids.CROP_SHAPE).astype(bool),
                            tuple(meta["target_blur_voxels"]), meta["reference_class"])


def cached_pairs(cache_dir: Path) -> list:
    """Every pair already in a cache (each .npz with its .json), in name order."""
    return sorted(p for p in Path(cache_dir).glob("*.npz") if p.with_suffix(".json").exists())


def build_cache(jobs, cache_dir: Path, seed: int = 0, derivatives_dir: Path = None) -> list:
    """Cache every pair (jobs without a non-contrast scan are left out); returns the paths."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    usable = [job for job in jobs if job.reference_path]
    for index, job in enumerate(usable, 1):
        LOG.info("[%d/%d] caching %s", index, len(usable), job.key)
        try:
            paths.append(cache_pair(job, cache_dir, seed, derivatives_dir))
        except Exception as error:  # one bad pair must not stop a long preprocessing run
            LOG.error("  %s left out of training: %s", job.key, error)
    return paths
