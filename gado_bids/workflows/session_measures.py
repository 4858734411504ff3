"""Group-level measures of one session: similarity to the real scan, tissue segmentations, volumes.

Everything is computed from the participant-level outputs (never from raw data) and cached: the
segmentations are written beside the session's images as BIDS dseg files, the numbers in
group/sessions/. A re-run reuses both when the SHA-256 of every input, as recorded in the
participant-level sidecars, is unchanged - and recomputes only what changed.
"""
import json
import logging
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from gado_bids import __version__
from gado_bids.metrics import similarity, tissues
from gado_bids.outputs import atomic, derivatives, naming
from gado_bids.outputs.group_report import thumbnail
from gado_bids.preprocessing import grids
from gado_bids.preprocessing.template import SPACE
from gado_bids.workflows.scan import NIFTI, planned_outputs, reference_entities

LOG = logging.getLogger("gadosynth")
INPUT_KEYS = ("ce_crop", "ce_mask", "synthetic_crop", "ce_xfm", "ref_crop", "ref_mask")
# The three images of a session, as named in the tables, and the output each one is.
IMAGE_OUTPUTS = {"real": "ref_crop", "ce": "ce_crop", "synthetic": "synthetic_crop"}


def segmentation_paths(job, output_dir: Path) -> dict:
    ce = job.entities
    paths = {"ce": naming.derivative_path(output_dir, ce, "dseg", NIFTI, space=SPACE,
                                          res="128"),
             "synthetic": naming.derivative_path(output_dir, ce, "dseg", NIFTI, space=SPACE,
                                                 res="128", desc="synthetic")}
    if job.reference_path:
        paths["real"] = naming.derivative_path(output_dir, reference_entities(job), "dseg",
                                               NIFTI, space=SPACE, res="128")
    return paths


def cache_path(job, output_dir: Path) -> Path:
    return Path(output_dir) / "group" / "sessions" / naming.derivative_name(
        job.entities, "measures", ".json", space=SPACE)


def input_fingerprint(job, output_dir: Path) -> dict:
    """The FileSha256 the participant level recorded for each input (checked by is_complete)."""
    outputs = planned_outputs(job, output_dir)
    return {key: derivatives.read_sidecar(outputs[key])["FileSha256"]
            for key in INPUT_KEYS if key in outputs}


def _settings() -> dict:
    return {"gadosynth": __version__, "Atropos": tissues.ATROPOS_SETTINGS,
            "SegmentationVoxel_mm3": round(tissues.VOXEL_VOLUME_MM3, 4),
            "SSIMSigma": similarity.SSIM_SIGMA, "DataRange": similarity.DATA_RANGE}


def cached_measures(job, output_dir: Path):
    """The cached numbers when they still describe the current inputs, else None."""
    path = cache_path(job, output_dir)
    if not path.is_file():
        return None
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if cached.get("inputs") != input_fingerprint(job, output_dir) or \
            cached.get("settings") != _settings():
        return None
    if not all(derivatives.output_is_complete(p)
               for p in segmentation_paths(job, output_dir).values()):
        return None
    return cached


def _load(path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj, np.float32)


def _segmentation(job, output_dir, image_name, volume, network_mask, sources, sources_sha,
                  seed, provenance):
    """Labels of one image: reused from its dseg file when made from the same inputs."""
    path = segmentation_paths(job, output_dir)[image_name]
    if derivatives.output_is_complete(path):
        sidecar = derivatives.read_sidecar(path)
        if sidecar.get("SourcesSha256") == sources_sha and \
                sidecar.get("Atropos") == tissues.ATROPOS_SETTINGS:
            return np.asarray(nib.load(str(path)).dataobj, np.uint8), 0.0
    started = time.perf_counter()
    labels = tissues.segment(tissues.to_segmentation_grid(volume), network_mask, seed)
    seconds = round(time.perf_counter() - started, 1)
    derivatives.write_with_sidecar(
        path, lambda temporary: nib.save(nib.Nifti1Image(labels, grids.network_affine()),
                                         str(temporary)),
        sources, provenance, SourcesSha256=sources_sha,
        Description=f"GM/WM/CSF segmentation of the {image_name} image (ANTs Atropos, template "
                    "priors) inside the union of the session's ce and non-contrast brain masks, "
                    "on the 128^3 network grid",
        Atropos=tissues.ATROPOS_SETTINGS, Labels={str(v): k for k, v in tissues.LABELS.items()},
        SegmentationSeconds=seconds)
    return labels, seconds


def measure_session(job, output_dir: Path, seed: int, provenance: dict) -> dict:
    """Similarity metrics and tissue volumes of one session (from cache when still valid)."""
    cached = cached_measures(job, output_dir)
    if cached is not None:
        return {**cached, "reused": True}
    outputs = planned_outputs(job, output_dir)
    fingerprint = input_fingerprint(job, output_dir)
    has_real = "ref_crop" in outputs
    volumes = {"ce": _load(outputs["ce_crop"]), "synthetic": _load(outputs["synthetic_crop"])}
    mask = _load(outputs["ce_mask"]) > 0
    if has_real:
        volumes["real"] = _load(outputs["ref_crop"])
        mask = mask | (_load(outputs["ref_mask"]) > 0)
    result = {"inputs": fingerprint, "settings": _settings(), "mask_voxels": int(mask.sum()),
              "similarity": {}, "volumes_template_cm3": {}, "volumes_native_cm3": {},
              "segmentation_seconds": {}}
    if has_real:
        for image in ("ce", "synthetic"):
            result["similarity"][image] = similarity.all_metrics(volumes["real"], volumes[image],
                                                                 mask)
    axial = int(np.argwhere(mask)[:, 2].mean())
    result["thumbnail_png"] = thumbnail([volumes[image][:, :, axial] for image in
                                         ("ce", "synthetic", "real") if image in volumes])
    native_scale = tissues.template_to_native_scale(outputs["ce_xfm"])
    result["template_to_native_scale"] = native_scale
    mask_keys = ["ce_mask"] + (["ref_mask"] if has_real else [])
    network_mask = tissues.to_segmentation_grid(mask, is_mask=True)  # one mask for all three
    for image, image_key in IMAGE_OUTPUTS.items():
        if image not in volumes:
            continue
        sources = [outputs[image_key]] + [outputs[k] for k in mask_keys]
        sources_sha = {k: fingerprint[k] for k in [image_key] + mask_keys}
        uris = [f"bids::{Path(p).relative_to(output_dir).as_posix()}" for p in sources]
        labels, seconds = _segmentation(job, output_dir, image, volumes[image], network_mask,
                                        uris, sources_sha, seed, provenance)
        template_volumes = tissues.volumes_cm3(labels)
        result["volumes_template_cm3"][image] = template_volumes
        result["volumes_native_cm3"][image] = {k: v * native_scale
                                               for k, v in template_volumes.items()}
        result["segmentation_seconds"][image] = seconds
    atomic.write_json(cache_path(job, output_dir), result)
    return {**result, "reused": False}
