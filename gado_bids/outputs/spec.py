"""Every derivative gadosynth writes per ce scan, declared once: its entities, suffix, extension,
the stage that makes it and what it is (after sMRIPrep's io_spec). Workflows ask predict() for
paths and complete() / collect() for what is done; nobody else builds these names.

A file counts as complete only when it exists, loads, and matches the SHA-256 in its sidecar
(derivatives.output_is_complete), never from its mere existence; a stage is complete when every
one of its files is, and each sidecar records the provenance asked for (same weights, seed,
inputs...), so a re-run with other settings recomputes instead of keeping stale files.
"""
from dataclasses import dataclass, replace
from pathlib import Path

from bids.layout import parse_file_entities

from gado_bids.outputs import derivatives, naming
from gado_bids.preprocessing.template import SPACE

NIFTI = ".nii.gz"
STAGES = ("preprocessing", "synthesis", "group")


@dataclass(frozen=True)
class Derivative:
    key: str
    source: str  # whose entities name it: "ce" or "reference" (the session's non-contrast T1w)
    suffix: str
    extension: str
    derived: tuple  # (entity, value) pairs added to the source's entities
    stage: str
    description: str
    folder: str = "anat"  # "figures": the subject's figures folder

    def path(self, job, output_dir: Path) -> Path:
        source = job.entities if self.source == "ce" else reference_entities(job)
        derived = dict(self.derived)
        if self.folder == "figures":
            return (Path(output_dir) / f"sub-{job.subject}" / "figures" /
                    naming.derivative_name(source, self.suffix, self.extension, **derived))
        return naming.derivative_path(output_dir, source, self.suffix, self.extension, **derived)


def _template(desc=None, res=None):
    return tuple((k, v) for k, v in (("space", SPACE), ("res", res), ("desc", desc)) if v)


DERIVATIVES = (
    Derivative("ce_n4", "ce", "T1w", NIFTI, (("desc", "n4"),), "preprocessing",
               "the ce scan after N4 bias correction, native grid"),
    Derivative("ce_native_mask", "ce", "mask", NIFTI, (("desc", "brain"),), "preprocessing",
               "brain mask of the ce scan, native grid"),
    Derivative("ce_xfm", "ce", "xfm", ".mat",
               (("mode", "image"), ("from", "T1w"), ("to", SPACE)), "preprocessing",
               "affine from the ce scan to the template (ANTs)"),
    Derivative("ce_crop", "ce", "T1w", NIFTI, _template("preproc"), "preprocessing",
               "the ce scan on the cropped 1 mm template grid, normalised"),
    Derivative("ce_network", "ce", "T1w", NIFTI, _template("preproc", "128"), "preprocessing",
               "the ce scan on the paper's 128^3 network grid"),
    Derivative("ce_mask", "ce", "mask", NIFTI, _template("brain"), "preprocessing",
               "brain mask on the cropped template grid"),
    Derivative("synthetic_crop", "ce", "T1w", NIFTI, _template("synthetic"), "synthesis",
               "synthetic non-contrast T1w, cropped template grid"),
    Derivative("synthetic_native", "ce", "T1w", NIFTI, (("desc", "synthetic"),), "synthesis",
               "synthetic non-contrast T1w on the ce scan's own grid"),
    Derivative("enhancement_crop", "ce", "T1w", NIFTI, _template("enhancement"), "synthesis",
               "removed enhancement, cropped template grid"),
    Derivative("enhancement_native", "ce", "T1w", NIFTI, (("desc", "enhancement"),),
               "synthesis", "removed enhancement on the ce scan's own grid"),
    Derivative("qc_registration", "ce", "T1w", ".png", (("desc", "registration"),),
               "preprocessing", "registration QC figure", folder="figures"),
    Derivative("ref_crop", "reference", "T1w", NIFTI, _template("preproc"), "preprocessing",
               "the non-contrast T1w on the cropped template grid, normalised"),
    Derivative("ref_mask", "reference", "mask", NIFTI, _template("brain"), "preprocessing",
               "its brain mask on the cropped template grid"),
    Derivative("ref_xfm", "reference", "xfm", ".mat",
               (("mode", "image"), ("from", "T1w"), ("to", "ce{ceagent}")), "preprocessing",
               "affine from the non-contrast T1w to the ce scan"),
    Derivative("dseg_ce", "ce", "dseg", NIFTI, _template(), "group",
               "GM/WM/CSF labels of the ce scan (1 mm template grid)"),
    Derivative("dseg_synthetic", "ce", "dseg", NIFTI, _template("synthetic"), "group",
               "GM/WM/CSF labels of the synthetic image"),
    Derivative("dseg_real", "reference", "dseg", NIFTI, _template(), "group",
               "GM/WM/CSF labels of the non-contrast T1w"),
)
PARTICIPANT_LEVEL = ("preprocessing", "synthesis")


def reference_entities(job) -> dict:
    return dict(parse_file_entities(str(job.reference_path))) if job.reference_path else {}


def _declared(job, stages):
    for derivative in DERIVATIVES:
        if derivative.stage in stages and (derivative.source == "ce" or job.reference_path):
            yield derivative


def _resolved(derivative, job):
    """ref_xfm's 'to' names the ce scan's contrast agent: filled in per job."""
    derived = tuple((k, v.format(**job.entities) if "{" in v else v)
                    for k, v in derivative.derived)
    return derivative if derived == derivative.derived else replace(derivative, derived=derived)


def predict(job, output_dir: Path, stages=PARTICIPANT_LEVEL) -> dict:
    """key -> path of every output of these stages for this job (ref_* only with a reference)."""
    return {d.key: _resolved(d, job).path(job, output_dir) for d in _declared(job, stages)}


def keys(stage: str) -> tuple:
    return tuple(d.key for d in DERIVATIVES if d.stage == stage)


def collect(job, output_dir: Path, stages=PARTICIPANT_LEVEL) -> dict:
    """key -> path of the outputs that are complete (each hashed once)."""
    return {key: path for key, path in predict(job, output_dir, stages).items()
            if derivatives.output_is_complete(path)}


def made_with(paths, **expected) -> bool:
    """Whether every file's sidecar records these provenance values (e.g. WeightsSha256)."""
    return all(derivatives.read_sidecar(path).get(name) == value
               for path in paths for name, value in expected.items())


def complete(job, output_dir: Path, weights_sha256: str = None) -> bool:
    """Every participant-level output complete; with weights_sha256, the synthetic images also
    made by those weights (a re-run with another --model or --weights recomputes them)."""
    planned = predict(job, output_dir)
    synthetic = [planned[key] for key in keys("synthesis")]
    return len(collect(job, output_dir)) == len(planned) and (
        weights_sha256 is None or made_with(synthetic, WeightsSha256=weights_sha256))


def participant_page(output_dir: Path, subject: str) -> Path:
    return Path(output_dir) / f"sub-{subject}.html"


def participant_status(output_dir: Path, label: str) -> Path:
    return Path(output_dir) / "logs" / f"sub-{label}_participant-status.json"


def session_measures(job, output_dir: Path) -> Path:
    """The group level's per-session cache (reused while its inputs are unchanged)."""
    return Path(output_dir) / "group" / "sessions" / naming.derivative_name(
        job.entities, "measures", ".json", space=SPACE)
