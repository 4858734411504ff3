"""One ce scan, start to finish: skip if complete; else load, preprocess (or reuse an earlier
run's complete preprocessing), synthesise, write with sidecars.

Outputs are named and checked by outputs.spec (predict, collect, complete): a scan counts as
complete only when every one of them exists, loads, and matches the SHA-256 in its sidecar.
"""
import enum
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from gado_bids import atomic, hashing
from gado_bids.discovery.nifti_checks import load_3d_image
from gado_bids.discovery.selection import ScanJob
from gado_bids.outputs import derivatives, qc, spec
from gado_bids.preprocessing import grids
from gado_bids.preprocessing import intensity
from gado_bids.preprocessing.pipeline import (PreprocessedScan, PreprocessedSession,
                                              crop_to_native, preprocess_session)
from gado_bids.preprocessing.template import SPACE, template_brain_mask

LOG = logging.getLogger("gadosynth")


def _complete_keys(job, output_dir) -> set:
    """The outputs that are complete, each hashed and loaded once for both decisions of
    prepare_scan (skip the scan, reuse its preprocessing)."""
    return set(spec.collect(job, output_dir))


def _save(path, volume, affine, dtype=np.float32):
    nib.save(nib.Nifti1Image(np.asarray(volume).astype(dtype), affine), str(path))


def _copy(source, path):
    shutil.copyfile(source, path)


def input_hashes(job) -> dict:
    """SHA-256 of the raw scans a job reads, by file name: outputs made from other bytes (a scan
    exported again under the same name) are never reused."""
    paths = [job.ce_path] + ([job.reference_path] if job.reference_path else [])
    return {Path(path).name: hashing.sha256_of(path) for path in paths}


def _scan_provenance(context, scan, inputs_sha256) -> dict:
    """What every sidecar of one scan records: the run's provenance and how the scan went."""
    return {**context.provenance, "InputsSha256": inputs_sha256,
            "PreprocessingTimings_s": scan.timings,
            "PreprocessingPeakMemory_GB": scan.peak_memory_gb,
            "BrainMaskMethod": scan.mask_method,
            "TemplateMaskDice": round(scan.template_mask_dice, 4)}


class ScanOutcome(enum.Enum):
    ALREADY_COMPLETE = "outputs already complete, made by these weights"
    PROCESSED = "processed"


@dataclass
class PreparedScan:
    """A scan preprocessed (in this process or a worker), waiting for synthesis and writing.

    reused: the preprocessing outputs already in the output folder were read back instead of
    computed (see reusable_preprocessing); only the synthetic images remain to be written."""
    job: ScanJob
    ce_image: nib.Nifti1Image
    session: PreprocessedSession
    scan_work: Path
    inputs_sha256: dict
    reused: bool = False


PREPROCESSING_FIELDS = ("PreprocessingTimings_s", "PreprocessingPeakMemory_GB",
                        "BrainMaskMethod", "TemplateMaskDice", "IntensityAnchor")


def reusable_preprocessing(job, output_dir: Path, seed: int, inputs_sha256: dict,
                           complete: set = None):
    """The ce scan's preprocessing as an earlier run wrote it, or None.

    Preprocessing (ANTs) is most of a scan's time and does not depend on the network, so a
    re-run with other --weights or --model, or one killed after preprocessing, synthesises from
    the outputs already there. Only when every non-synthetic output is complete and was made
    from these input bytes, with this seed, by these software versions: then the images are the
    ones this run would compute (byte for byte with one thread; registration with more threads
    is not bit-stable).
    The images synthesis needs (the crop, the N4-corrected native scan and its mask) are read
    back; the reference is not (its outputs are already there). complete: the keys already
    found complete (_complete_keys), when the caller has checked them.
    """
    outputs = spec.predict(job, output_dir)
    keys = [key for key in outputs if key not in spec.keys("synthesis")]
    complete = _complete_keys(job, output_dir) if complete is None else complete
    if not all(key in complete for key in keys):
        return None
    sidecars = {key: derivatives.read_sidecar(outputs[key]) for key in keys}
    versions = derivatives.software_versions()
    if any(sidecar.get("RandomSeed") != seed or sidecar.get("SoftwareVersions") != versions or
           sidecar.get("InputsSha256") != inputs_sha256 for sidecar in sidecars.values()):
        return None
    recorded = sidecars["ce_crop"]
    if any(name not in recorded for name in PREPROCESSING_FIELDS):
        return None
    load = lambda key: nib.load(str(outputs[key]))  # noqa: E731
    network_input = load("ce_network").get_fdata(dtype=np.float32)
    crop = load("ce_crop").get_fdata(dtype=np.float32)
    crop_mask = np.asarray(load("ce_mask").dataobj) > 0
    ce = PreprocessedScan(
        n4_native=load("ce_n4"), native_mask=np.asarray(load("ce_native_mask").dataobj) > 0,
        mask_method=recorded["BrainMaskMethod"], crop=crop,
        crop_mask=crop_mask, network_input=network_input, anchor=recorded["IntensityAnchor"],
        transforms=[str(outputs["ce_xfm"])], template_mask_dice=recorded["TemplateMaskDice"],
        timings=recorded["PreprocessingTimings_s"],
        peak_memory_gb=recorded["PreprocessingPeakMemory_GB"])
    return PreprocessedSession(ce, None, str(outputs["ce_xfm"]), None)


def prepare_scan(job, output_dir: Path, work_dir: Path, seed: int, overwrite: bool,
                 weights_sha256: str = None):
    """ScanOutcome.ALREADY_COMPLETE when already done by these weights (and not --overwrite),
    else the PreparedScan. CPU-bound (ANTs) and free of the model, so it can run in a worker
    process."""
    outputs = spec.predict(job, output_dir)
    complete = set() if overwrite else _complete_keys(job, output_dir)
    if complete == set(outputs) and (weights_sha256 is None or spec.made_with(
            [outputs[key] for key in spec.keys("synthesis")], WeightsSha256=weights_sha256)):
        LOG.info("  %s: outputs complete, skipped", job.key)
        return ScanOutcome.ALREADY_COMPLETE
    for folder in {Path(p).parent for p in outputs.values()}:
        if folder.is_dir() and atomic.remove_abandoned_partials(folder):
            LOG.info("  %s: removed temporary files of a killed run in %s", job.key, folder)
    LOG.info("  %s: loading inputs", job.key)
    ce_image = load_3d_image(job.ce_path)  # both loaded first: a bad file fails with its reason
    reference_image = load_3d_image(job.reference_path) if job.reference_path else None
    inputs_sha256 = input_hashes(job)
    reused = None if overwrite else reusable_preprocessing(job, output_dir, seed, inputs_sha256,
                                                           complete)
    if reused is not None:
        LOG.info("  %s: preprocessing outputs already complete (same inputs, seed and "
                 "versions): reused, only synthesis runs", job.key)
        return PreparedScan(job, ce_image, reused, None, inputs_sha256, reused=True)
    if reference_image is None:
        LOG.warning("  %s: no non-contrast T1w in this session: nothing to compare with at "
                    "group level", job.key)
    scan_work = Path(tempfile.mkdtemp(prefix=f"{job.key}-", dir=work_dir))
    LOG.info("  %s: preprocessing", job.key)
    session = preprocess_session(ce_image, reference_image, scan_work, seed)
    return PreparedScan(job, ce_image, session, scan_work, inputs_sha256)


SCALE = "x / P90(brain) / 2, clipped to [0, 1]; white matter ~0.5"
NATIVE_SCALE = ("normalised value x 2 x IntensityAnchor: the ce scan's scanner scale, white "
                "matter near its 90th brain percentile")


def native_images(synthesis, ce, ce_image, synthesiser) -> tuple:
    """(synthetic, removed enhancement) on the ce scan's native grid, scanner scale.

    With an intensity curve (enhancement formulation) the synthetic image is composed on the
    native grid: f(native ce) - E, where only the enhancement map E is interpolated, so the
    native image keeps the native scan's own sharpness. Otherwise the cropped-grid image is
    interpolated back (one interpolation; it carries the crop grid's resampling blur)."""
    enhancement = np.clip(crop_to_native(intensity.denormalise(synthesis.enhancement, ce.anchor),
                                         ce_image, ce.transforms), 0, None)
    mask = np.asarray(ce.native_mask, bool)
    if synthesiser.maps_intensities:
        native = ce.n4_native.get_fdata(dtype=np.float32)
        mapped = intensity.denormalise(synthesiser.map_intensities(
            intensity.scale_with_anchor(native, ce.anchor), synthesis.descriptor), ce.anchor)
        synthetic = np.where(mask, np.clip(mapped - enhancement, 0, None), 0.0)
    else:
        synthetic = np.clip(crop_to_native(intensity.denormalise(synthesis.synthetic, ce.anchor),
                                           ce_image, ce.transforms), 0, None)
    return synthetic.astype(np.float32), np.where(mask, enhancement, 0.0).astype(np.float32)


def _write_preprocessing(prepared: PreparedScan, context, outputs, record):
    """Every output that does not depend on the network; written before synthesis, so that a
    run stopped during synthesis leaves them for the next run to reuse."""
    job, ce_image, session = prepared.job, prepared.ce_image, prepared.session
    ce = session.ce
    raw = derivatives.bids_uri(context.bids_dir, job.ce_path)
    crop_affine, network_affine = grids.cropped_template_affine(), grids.network_affine()
    scale = {"IntensityScale": SCALE, "IntensityAnchor": ce.anchor}
    record("ce_n4", lambda p: _save(p, ce.n4_native.get_fdata(), ce.n4_native.affine), [raw],
           Description="N4 bias-field corrected ce scan, native grid")
    record("ce_native_mask", lambda p: _save(p, ce.native_mask, ce_image.affine, np.uint8), [raw],
           Description="brain mask, native grid", Type="Brain")
    record("ce_xfm", lambda p: _copy(session.ce_to_template, p), [raw],
           Description="ANTs affine, native ce scan to the template (antsApplyTransforms "
                       "convention)", FromSpace="T1w", ToSpace=SPACE)
    record("ce_crop", lambda p: _save(p, ce.crop, crop_affine), [raw],
           Description="ce scan in the cropped template grid (169x208x179, 1 mm)", **scale)
    record("ce_network", lambda p: _save(p, ce.network_input, network_affine), [raw],
           Description="network input: the cropped image resampled to 128^3", **scale)
    record("ce_mask", lambda p: _save(p, ce.crop_mask, crop_affine, np.uint8), [raw],
           Description="brain mask in the cropped template grid", Type="Brain")

    figure_rows = [("ce " + job.key, ce.crop, ce.crop_mask)]
    if session.reference is not None:
        ref = session.reference
        ref_raw = derivatives.bids_uri(context.bids_dir, job.reference_path)
        ref_provenance = _scan_provenance(context, ref, prepared.inputs_sha256)
        ref_scale = {**scale, "IntensityAnchor": ref.anchor}
        record("ref_crop", lambda p: _save(p, ref.crop, crop_affine), [ref_raw, raw],
               ref_provenance, Description="non-contrast scan of the session in the cropped "
                                           "template grid, registered through the ce scan",
               **ref_scale)
        record("ref_mask", lambda p: _save(p, ref.crop_mask, crop_affine, np.uint8),
               [ref_raw, raw], ref_provenance, Description="brain mask of the non-contrast scan",
               Type="Brain")
        record("ref_xfm", lambda p: _copy(session.reference_to_ce, p), [ref_raw, raw],
               ref_provenance, Description="ANTs rigid transform, non-contrast scan to the ce scan",
               FromSpace="T1w", ToSpace=f"ce-{job.entities['ceagent']} T1w")
        figure_rows.append(("non-contrast " + job.reference_path.name.split(".nii")[0],
                            ref.crop, ref.crop_mask))
    template_mask = grids.crop_template_volume(template_brain_mask().get_fdata() > 0)
    record("qc_registration", lambda p: p.write_bytes(qc.registration_figure(
        figure_rows, template_mask, f"sub-{job.subject} registration to {SPACE}")), [raw],
        Description="QC: registration to the template and brain masks")


def _synthesise(prepared: PreparedScan, synthesiser, stage_seconds: dict) -> tuple:
    """(synthesis on the cropped grid, synthetic native image, enhancement native image)."""
    ce = prepared.session.ce
    LOG.info("  %s: synthesis (%s, %s grid, %s)", prepared.job.key,
             synthesiser.provenance["Model"], synthesiser.grid, synthesiser.precision)
    started = time.perf_counter()
    synthesis = synthesiser(ce.crop, ce.crop_mask)
    stage_seconds["inference"] = round(time.perf_counter() - started, 2)
    started = time.perf_counter()
    synthetic_native, enhancement_native = native_images(synthesis, ce, prepared.ce_image,
                                                         synthesiser)
    stage_seconds["resampling_to_native"] = round(time.perf_counter() - started, 2)
    return synthesis, synthetic_native, enhancement_native


def _write_synthesis(record, images, native_affine, synthesiser, sources, extra):
    """The synthetic image and the removed enhancement, on the cropped and the native grid."""
    synthesis, synthetic_native, enhancement_native = images
    crop_affine = grids.cropped_template_affine()
    record("synthetic_crop", lambda p: _save(p, synthesis.synthetic, crop_affine), sources,
           Description="synthetic non-contrast T1w in the cropped template grid (the grid "
                       "the paper evaluated in)", IntensityScale=SCALE, **extra)
    record("synthetic_native", lambda p: _save(p, synthetic_native, native_affine), sources,
           Description="synthetic non-contrast T1w on the ce scan's native grid" + (
               ": the network's intensity curve applied to the N4-corrected ce scan voxel by "
               "voxel, minus the removed enhancement brought to this grid (the only "
               "interpolated part)" if synthesiser.maps_intensities else
               ": the cropped-grid image interpolated back"),
           IntensityScale=NATIVE_SCALE, **extra)
    enhancement_description = (
        "enhancement the network removed (its non-negative enhancement map" + (
            ", plus grey matter's blood-pool enhancement: GreyMatterEnhancement times the "
            "template's grey-matter probability)" if synthesiser.blood_pool_term is not None
            else ")")
        if synthesiser.formulation == "enhancement" else
        "where the network darkened the ce scan: max(ce - synthetic, 0) (a direct-formulation "
        "network predicts no enhancement map of its own)")
    record("enhancement_crop", lambda p: _save(p, synthesis.enhancement, crop_affine), sources,
           Description=enhancement_description + ", cropped template grid",
           IntensityScale=SCALE, **extra)
    record("enhancement_native", lambda p: _save(p, enhancement_native, native_affine),
           sources, Description=enhancement_description + ", ce scan's native grid",
           IntensityScale=NATIVE_SCALE, **extra)


def finish_scan(prepared: PreparedScan, context) -> ScanOutcome:
    """Writing of the preprocessing outputs (unless reused), then synthesis with the run's one
    model and writing of the synthetic images, every file atomically."""
    job, session = prepared.job, prepared.session
    outputs = spec.predict(job, context.output_dir)
    ce_provenance = _scan_provenance(context, session.ce, prepared.inputs_sha256)

    def record(key, write, sources, provenance=ce_provenance, **fields):
        derivatives.write_with_sidecar(outputs[key], write, sources, provenance, **fields)

    stage_seconds = {}
    started = time.perf_counter()
    if not prepared.reused:
        _write_preprocessing(prepared, context, outputs, record)
    writing_seconds = time.perf_counter() - started
    images = _synthesise(prepared, context.synthesiser, stage_seconds)
    started = time.perf_counter()
    extra = {"PreprocessingReused": prepared.reused, "IntensityAnchor": session.ce.anchor,
             "SynthesisTimings_s": stage_seconds}
    _write_synthesis(record, images, prepared.ce_image.affine, context.synthesiser,
                     [derivatives.bids_uri(context.bids_dir, job.ce_path)], extra)
    stage_seconds["writing"] = round(writing_seconds + time.perf_counter() - started, 2)
    if prepared.scan_work is not None:
        shutil.rmtree(prepared.scan_work, ignore_errors=True)
    preprocessing = "reused" if prepared.reused else "%.0f s" % (
        sum(session.ce.timings.values()) + (sum(session.reference.timings.values())
                                            if session.reference else 0))
    LOG.info("  %s: done (preprocessing %s, inference %.1f s, writing %.1f s)", job.key,
             preprocessing, stage_seconds["inference"], stage_seconds["writing"])
    return ScanOutcome.PROCESSED
