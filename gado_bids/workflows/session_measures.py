"""Group-level measures of one session: the evaluation against the real scan, tissue volumes.

Computed from the participant-level outputs, plus the raw non-contrast scan for the native-grid
view (brought onto the ce scan's grid through the rigid transform the participant level saved,
then N4-corrected like the ce scan), and cached: the segmentations are written beside the
session's images as BIDS dseg files, the numbers in group/sessions/. A re-run reuses both when
the SHA-256 of every input, as recorded in the participant-level sidecars, is unchanged - and
recomputes only what changed.

Two grids (metrics.evaluation): the ce scan's native grid (the synthetic native output against
the real scan on that grid: what a user segments) and the 1 mm cropped template grid (the
participant level's normalised images, as the paper evaluated). The evaluation mask is the
intersection of the ce and non-contrast brain masks: both images hold brain there.
"""
import json
import logging
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from gado_bids import __version__, atomic
from gado_bids.discovery.nifti_checks import load_3d_image
from gado_bids.hashing import sha256_of
from gado_bids.metrics import evaluation, resolution, similarity, tissues
from gado_bids.outputs import derivatives, spec
from gado_bids.outputs.group_figures import thumbnail
from gado_bids.preprocessing import grids
from gado_bids.preprocessing.pipeline import crop_to_native, native_to_crop, reference_on_ce_grid

LOG = logging.getLogger("gadosynth")
INPUT_KEYS = ("ce_crop", "ce_mask", "synthetic_crop", "ce_xfm", "ref_crop", "ref_mask", "ce_n4",
              "ce_native_mask", "synthetic_native", "ref_xfm")
# The three images of a session, as named in the tables, and the output each one is.
IMAGE_OUTPUTS = {"real": "ref_crop", "ce": "ce_crop", "synthetic": "synthetic_crop"}


def segmentation_paths(job, output_dir: Path) -> dict:
    """image name (real, ce, synthetic) -> its GM/WM/CSF labels file."""
    return {key[len("dseg_"):]: path
            for key, path in spec.predict(job, output_dir, ("group",)).items()}


def input_fingerprint(job, output_dir: Path) -> dict:
    """The FileSha256 the participant level recorded for each input (checked by spec.complete)."""
    outputs = spec.predict(job, output_dir)
    fingerprint = {key: derivatives.read_sidecar(outputs[key])["FileSha256"]
                   for key in INPUT_KEYS if key in outputs}
    for tissue, path in (job.truth_tissue_maps or {}).items():
        fingerprint[f"truth_{tissue}"] = sha256_of(path)
    return fingerprint


def _settings() -> dict:
    return {"gadosynth": __version__, **tissues.segmentation_settings(),
            "SegmentationGrid": tissues.GRID,
            "SegmentationVoxel_mm3": round(tissues.VOXEL_VOLUME_MM3, 4),
            "SegmentationAgreement": "Dice of each tissue's hard labels with the real image's",
            "Repeatability": {"ShiftVoxels": tissues.REPEAT_SHIFT_VOXELS,
                              "NoiseFraction": tissues.REPEAT_NOISE_FRACTION},
            "SSIMSigma": similarity.SSIM_SIGMA, "DataRange": similarity.DATA_RANGE,
            "EvaluationScale": evaluation.SCALE,
            "ReferenceClass": {"SharpnessRatio": resolution.THICK_SLICE_SHARPNESS_RATIO,
                               "Anisotropy": resolution.THICK_SLICE_ANISOTROPY}}


def cached_measures(job, output_dir: Path):
    """The cached numbers when they still describe the current inputs, else None."""
    path = spec.session_measures(job, output_dir)
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


def _segmentation(job, output_dir, image_name, volume, mask, sources, sources_sha,
                  seed, provenance):
    """Labels of one image: reused from its dseg file when made from the same inputs."""
    path = segmentation_paths(job, output_dir)[image_name]
    if derivatives.output_is_complete(path):
        sidecar = derivatives.read_sidecar(path)
        if sidecar.get("SourcesSha256") == sources_sha and \
                all(sidecar.get(k) == v for k, v in tissues.segmentation_settings().items()):
            return np.asarray(nib.load(str(path)).dataobj, np.uint8), 0.0
    LOG.info("  %s: segmenting the %s image", job.key, image_name)
    started = time.perf_counter()
    labels = tissues.segment(volume, mask, seed)
    seconds = round(time.perf_counter() - started, 1)
    derivatives.write_with_sidecar(
        path, lambda temporary: nib.save(nib.Nifti1Image(labels,
                                                         grids.cropped_template_affine()),
                                         str(temporary)),
        sources, provenance, SourcesSha256=sources_sha,
        Description=f"GM/WM/CSF segmentation of the {image_name} image (ANTs Atropos, template "
                    "priors) inside the union of the session's ce and non-contrast brain masks "
                    f"less its outer {tissues.MASK_EROSION_VOXELS} voxel layers, on the "
                    f"{tissues.GRID}",
        **tissues.segmentation_settings(), Labels={str(v): k for k, v in tissues.LABELS.items()},
        SegmentationSeconds=seconds)
    return labels, seconds


def slice_thickness(path) -> float:
    """SliceThickness (mm) from the scan's JSON sidecar beside it, or None."""
    sidecar = Path(str(path).split(".nii")[0] + ".json")
    try:
        value = json.loads(sidecar.read_text()).get("SliceThickness")
    except (OSError, ValueError):
        return None
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def native_evaluation(job, outputs) -> dict:
    """The evaluation on the ce scan's native grid (see the module text)."""
    ce_image = nib.load(str(outputs["ce_n4"]))
    ce = np.asarray(ce_image.dataobj, np.float32)
    ce_mask = _load(outputs["ce_native_mask"]) > 0
    reference_image = load_3d_image(job.reference_path)
    reference = reference_on_ce_grid(reference_image, ce_image, outputs["ref_xfm"], ce_mask)
    reference_mask = crop_to_native(_load(outputs["ref_mask"]), ce_image, [str(outputs["ce_xfm"])],
                                    label=True) > 0.5
    floor = resolution.acquisition_blur(reference_image.affine, ce_image.affine,
                                        slice_thickness(job.reference_path))
    return evaluation.compare(ce, _load(outputs["synthetic_native"]), reference,
                              ce_mask & reference_mask, ce_image.header.get_zooms()[:3], floor)


def template_evaluation(job, volumes, masks) -> dict:
    """The evaluation on the 1 mm cropped template grid (the participant level's normalised
    images; the reference's acquisition voxels, taken along the world axes, as blur floor)."""
    reference_image = nib.load(str(job.reference_path))
    floor = resolution.acquisition_blur(reference_image.affine, grids.cropped_template_affine(),
                                        slice_thickness(job.reference_path))
    return evaluation.compare(volumes["ce"], volumes["synthetic"], volumes["real"],
                              masks["ce"] & masks["real"], (1.0, 1.0, 1.0), floor)


def _session_thumbnail(volumes, mask) -> str:
    axial = int(np.argwhere(mask)[:, 2].mean())
    return thumbnail([volumes[image][:, :, axial] for image in ("ce", "synthetic", "real")
                      if image in volumes], mask[:, :, axial])


def _segment_images(job, output_dir, outputs, volumes, mask, fingerprint, seed, provenance,
                    result):
    """Each image segmented (the dseg files written with their sources), its volumes in the
    template and the native grid and its labels' agreement with the real image's; then the real
    scan's repeatability copy."""
    native_scale = tissues.template_to_native_scale(outputs["ce_xfm"])
    result["template_to_native_scale"] = native_scale
    mask_keys = ["ce_mask"] + (["ref_mask"] if "real" in volumes else [])
    labels_of = {}
    for image, image_key in IMAGE_OUTPUTS.items():
        if image not in volumes:
            continue
        sources = [outputs[image_key]] + [outputs[k] for k in mask_keys]
        sources_sha = {k: fingerprint[k] for k in [image_key] + mask_keys}
        uris = [f"bids::{Path(p).relative_to(output_dir).as_posix()}" for p in sources]
        labels, seconds = _segmentation(job, output_dir, image, volumes[image], mask,
                                        uris, sources_sha, seed, provenance)
        labels_of[image] = labels
        template_volumes = tissues.volumes_cm3(labels)
        result["volumes_template_cm3"][image] = template_volumes
        result["volumes_native_cm3"][image] = {k: v * native_scale
                                               for k, v in template_volumes.items()}
        result["segmentation_seconds"][image] = seconds
    if "real" in labels_of:
        result["dice_with_real"] = {image: tissues.dice_per_tissue(labels_of[image],
                                                                   labels_of["real"])
                                    for image in ("ce", "synthetic")}
    if job.truth_tissue_maps:
        truth = {tissue: native_to_crop(nib.load(str(path)), [str(outputs["ce_xfm"])])
                 for tissue, path in job.truth_tissue_maps.items()}
        result["volumes_template_cm3"]["truth"] = tissues.probability_volumes_cm3(truth, mask)
        result["volumes_native_cm3"]["truth"] = {
            k: v * native_scale for k, v in result["volumes_template_cm3"]["truth"].items()}
    if "real" in volumes:
        LOG.info("  %s: segmenting the real image's repeatability copy", job.key)
        started = time.perf_counter()
        repeat = tissues.segment(tissues.repeatability_copy(volumes["real"], mask, seed), mask,
                                 seed)
        result["volumes_template_cm3"]["real_repeat"] = tissues.volumes_cm3(repeat)
        result["segmentation_seconds"]["real_repeat"] = round(time.perf_counter() - started, 1)


def measure_session(job, output_dir: Path, seed: int, provenance: dict) -> dict:
    """Evaluation and tissue volumes of one session (from cache when still valid)."""
    cached = cached_measures(job, output_dir)
    if cached is not None:
        return {**cached, "reused": True}
    outputs = spec.predict(job, output_dir)
    fingerprint = input_fingerprint(job, output_dir)
    has_real = "ref_crop" in outputs
    volumes = {"ce": _load(outputs["ce_crop"]), "synthetic": _load(outputs["synthetic_crop"])}
    masks = {"ce": _load(outputs["ce_mask"]) > 0}
    mask = masks["ce"]
    if has_real:
        volumes["real"] = _load(outputs["ref_crop"])
        masks["real"] = _load(outputs["ref_mask"]) > 0
        mask = mask | masks["real"]
    result = {"inputs": fingerprint, "settings": _settings(), "mask_voxels": int(mask.sum()),
              "similarity": {}, "evaluation": {}, "volumes_template_cm3": {},
              "volumes_native_cm3": {}, "segmentation_seconds": {}}
    started = time.perf_counter()
    if has_real:
        LOG.info("  %s: evaluation on the native and the template grid", job.key)
        result["evaluation"]["native"] = native_evaluation(job, outputs)
        result["evaluation"]["template"] = template_evaluation(job, volumes, masks)
        result["reference_class"] = result["evaluation"]["native"]["reference_class"]
        result["similarity"] = {image: result["evaluation"]["native"]["plain"][image]
                                for image in ("ce", "synthetic")}
    result["evaluation_seconds"] = round(time.perf_counter() - started, 1)
    result["thumbnail_png"] = _session_thumbnail(volumes, mask)
    _segment_images(job, output_dir, outputs, volumes, mask, fingerprint, seed, provenance,
                    result)
    atomic.write_json(spec.session_measures(job, output_dir), result)
    return {**result, "reused": False}
