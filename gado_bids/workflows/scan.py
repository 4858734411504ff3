"""One ce scan, start to finish: skip if complete, else load, preprocess, write with sidecars.

Outputs are listed by planned_outputs(); a scan counts as complete only when every one of them
exists, loads, and matches the SHA-256 in its sidecar - never from a file's mere existence.
"""
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from bids.layout import parse_file_entities

from gado_bids.discovery.nifti_checks import load_3d_image
from gado_bids.outputs import atomic, derivatives, naming, qc
from gado_bids.preprocessing import grids
from gado_bids.preprocessing import intensity
from gado_bids.preprocessing.pipeline import crop_to_native, preprocess_session
from gado_bids.preprocessing.template import SPACE, template_brain_mask

LOG = logging.getLogger("gadosynth")
NIFTI = ".nii.gz"


def reference_entities(job) -> dict:
    return dict(parse_file_entities(str(job.reference_path))) if job.reference_path else {}


def planned_outputs(job, output_dir: Path) -> dict:
    ce = job.entities
    out = {
        "ce_n4": naming.derivative_path(output_dir, ce, "T1w", NIFTI, desc="n4"),
        "ce_native_mask": naming.derivative_path(output_dir, ce, "mask", NIFTI, desc="brain"),
        "ce_xfm": naming.derivative_path(output_dir, ce, "xfm", ".mat", mode="image",
                                         **{"from": "T1w", "to": SPACE}),
        "ce_crop": naming.derivative_path(output_dir, ce, "T1w", NIFTI, space=SPACE,
                                          desc="preproc"),
        "ce_network": naming.derivative_path(output_dir, ce, "T1w", NIFTI, space=SPACE,
                                             res="128", desc="preproc"),
        "ce_mask": naming.derivative_path(output_dir, ce, "mask", NIFTI, space=SPACE,
                                          desc="brain"),
        "synthetic_crop": naming.derivative_path(output_dir, ce, "T1w", NIFTI, space=SPACE,
                                                 desc="synthetic"),
        "synthetic_native": naming.derivative_path(output_dir, ce, "T1w", NIFTI,
                                                   desc="synthetic"),
        "qc_registration": (Path(output_dir) / f"sub-{job.subject}" / "figures" /
                            naming.derivative_name(ce, "T1w", ".png", desc="registration")),
    }
    if job.reference_path:
        ref = reference_entities(job)
        out.update({
            "ref_crop": naming.derivative_path(output_dir, ref, "T1w", NIFTI, space=SPACE,
                                               desc="preproc"),
            "ref_mask": naming.derivative_path(output_dir, ref, "mask", NIFTI, space=SPACE,
                                               desc="brain"),
            "ref_xfm": naming.derivative_path(output_dir, ref, "xfm", ".mat", mode="image",
                                              **{"from": "T1w", "to": f"ce{ce['ceagent']}"}),
        })
    return out


SYNTHETIC_KEYS = ("synthetic_crop", "synthetic_native")


def is_complete(job, output_dir: Path, weights_sha256: str = None) -> bool:
    """Every output complete; with weights_sha256, the synthetic images also made by them.

    So a re-run with another --model or --weights recomputes, instead of skipping images that
    some other network made."""
    outputs = planned_outputs(job, output_dir)
    if not all(derivatives.output_is_complete(p) for p in outputs.values()):
        return False
    if weights_sha256 is None:
        return True
    return all(derivatives.read_sidecar(outputs[key]).get("WeightsSha256") == weights_sha256
               for key in SYNTHETIC_KEYS)


def _save(path, volume, affine, dtype=np.float32):
    return atomic.save_nifti(nib.Nifti1Image(np.asarray(volume).astype(dtype), affine), path)


def _copy(source, path):
    with atomic.atomic_path(path) as temporary:
        shutil.copyfile(source, temporary)
    return path


def _scan_provenance(context, scan) -> dict:
    """What every sidecar of one scan records: the run's provenance and how the scan went."""
    return {**context.provenance, "PreprocessingTimings_s": scan.timings,
            "PreprocessingPeakMemory_GB": scan.peak_memory_gb,
            "BrainMaskMethod": scan.mask_method,
            "TemplateMaskDice": round(scan.template_mask_dice, 4)}


@dataclass
class PreparedScan:
    """A scan preprocessed (in this process or a worker), waiting for synthesis and writing."""
    job: object
    ce_image: nib.Nifti1Image
    reference_image: object  # nib.Nifti1Image or None
    session: object  # PreprocessedSession
    scan_work: Path


def prepare_scan(job, output_dir: Path, work_dir: Path, seed: int, overwrite: bool,
                 weights_sha256: str = None):
    """'complete' when already done by these weights (and not --overwrite), else the
    PreparedScan. CPU-bound (ANTs) and free of the model, so it can run in a worker process."""
    outputs = planned_outputs(job, output_dir)
    if not overwrite and is_complete(job, output_dir, weights_sha256):
        LOG.info("  %s: outputs complete, skipped", job.key)
        return "complete"
    for folder in {Path(p).parent for p in outputs.values()}:
        if folder.is_dir() and atomic.remove_abandoned_partials(folder):
            LOG.info("  %s: removed temporary files of a killed run in %s", job.key, folder)
    LOG.info("  %s: loading inputs", job.key)
    ce_image = load_3d_image(job.ce_path)
    reference_image = load_3d_image(job.reference_path) if job.reference_path else None
    if reference_image is None:
        LOG.warning("  %s: no non-contrast T1w in this session: nothing to compare with at "
                    "group level", job.key)
    scan_work = Path(tempfile.mkdtemp(prefix=f"{job.key}-", dir=work_dir))
    LOG.info("  %s: preprocessing", job.key)
    session = preprocess_session(ce_image, reference_image, scan_work, seed)
    return PreparedScan(job, ce_image, reference_image, session, scan_work)


def finish_scan(prepared: PreparedScan, context) -> str:
    """Synthesis (the run's one model) and writing of every output, atomically."""
    job, ce_image, session = prepared.job, prepared.ce_image, prepared.session
    outputs = planned_outputs(job, context.output_dir)
    ce = session.ce
    LOG.info("  %s: synthesis (%s, %s)", job.key, context.synthesiser.provenance["Model"],
             context.synthesiser.precision)
    stage_seconds = {}
    started = time.perf_counter()
    network_mask = grids.crop_to_network(ce.crop_mask.astype(np.float32), order=0) > 0.5
    synthetic_network = context.synthesiser(ce.network_input, network_mask)
    stage_seconds["inference"] = round(time.perf_counter() - started, 2)
    started = time.perf_counter()
    synthetic_crop = np.where(ce.crop_mask, grids.network_to_crop(synthetic_network), 0.0)
    synthetic_native = np.clip(crop_to_native(intensity.denormalise(synthetic_crop, ce.anchor),
                                              ce_image, ce.transforms), 0, None)
    stage_seconds["resampling_to_native"] = round(time.perf_counter() - started, 2)
    started = time.perf_counter()

    raw = derivatives.bids_uri(context.bids_dir, job.ce_path)
    ce_provenance = _scan_provenance(context, ce)
    crop_affine, network_affine = grids.cropped_template_affine(), grids.network_affine()
    scale = {"IntensityScale": "x / P90(brain) / 2, clipped to [0, 1]; white matter ~0.5",
             "IntensityAnchor": ce.anchor}

    def record(key, path_writer, sources, provenance=ce_provenance, **fields):
        path = path_writer(outputs[key])
        derivatives.write_sidecar(path, sources, provenance, **fields)

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
    record("synthetic_crop", lambda p: _save(p, synthetic_crop, crop_affine), [raw],
           Description="synthetic non-contrast T1w in the cropped template grid (the grid the "
                       "paper evaluated in)", **scale, SynthesisTimings_s=stage_seconds)
    record("synthetic_native", lambda p: _save(p, synthetic_native, ce_image.affine), [raw],
           Description="synthetic non-contrast T1w on the ce scan's native grid",
           IntensityScale="normalised value x 2 x IntensityAnchor: white matter near the ce "
                          "scan's 90th brain percentile", IntensityAnchor=ce.anchor,
           SynthesisTimings_s=stage_seconds)

    figure_rows = [("ce " + job.key, ce.crop, ce.crop_mask)]
    if session.reference is not None:
        ref = session.reference
        ref_raw = derivatives.bids_uri(context.bids_dir, job.reference_path)
        ref_provenance = _scan_provenance(context, ref)
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
    record("qc_registration", lambda p: qc.registration_figure(
        p, figure_rows, template_mask, f"sub-{job.subject} registration to {SPACE}"), [raw],
        Description="QC: registration to the template and brain masks")
    stage_seconds["writing"] = round(time.perf_counter() - started, 2)
    shutil.rmtree(prepared.scan_work, ignore_errors=True)
    LOG.info("  %s: done (preprocessing %.0f s, inference %.1f s, writing %.1f s)", job.key,
             sum(ce.timings.values()) + (sum(session.reference.timings.values())
                                         if session.reference else 0),
             stage_seconds["inference"], stage_seconds["writing"])
    return "processed"
