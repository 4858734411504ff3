"""outputs.spec: the one list of per-scan derivatives, their names, and what "complete" means."""
import dataclasses
import re

import nibabel as nib
import numpy as np
import pytest

from gado_bids.discovery.selection import open_layout, select_scans
from gado_bids.outputs import derivatives, spec


@pytest.fixture(scope="module")
def jobs(demo_bids):
    selection = select_scans(open_layout(demo_bids), ce_label="gadolinium")
    return [job for subject in sorted(selection.jobs_by_subject)
            for job in selection.jobs_by_subject[subject]]


def test_every_declared_output_has_one_bids_derivative_name(jobs, tmp_path):
    job = jobs[0]
    planned = spec.predict(job, tmp_path, spec.STAGES)
    assert set(planned) == {d.key for d in spec.DERIVATIVES}
    assert len(set(planned.values())) == len(planned)
    for key, path in planned.items():
        relative = path.relative_to(tmp_path).as_posix()
        folder = "figures" if key == "qc_registration" else "ses-01/anat"
        assert relative.startswith(f"sub-{job.subject}/{folder}/sub-{job.subject}_ses-01_"), key
        assert re.fullmatch(r"[A-Za-z0-9_\-]+\.(nii\.gz|mat|png)", path.name), path.name
    assert planned["synthetic_native"].name.endswith("ce-gadolinium_desc-synthetic_T1w.nii.gz")
    assert "ce-gadolinium" not in planned["ref_crop"].name  # named after the non-contrast scan
    assert "_to-cegadolinium_" in planned["ref_xfm"].name
    assert planned["dseg_real"].name == \
        f"sub-{job.subject}_ses-01_space-MNI152NLin2009aSym_dseg.nii.gz"


def test_participant_level_is_preprocessing_and_synthesis_and_a_session_without_reference(
        jobs, tmp_path):
    job = jobs[0]
    assert set(spec.predict(job, tmp_path)) == set(spec.keys("preprocessing")) | set(
        spec.keys("synthesis"))
    lone = dataclasses.replace(job, reference_path=None)
    assert not [k for k in spec.predict(lone, tmp_path) if k.startswith("ref_")]


def _write_all(job, output_dir, weights="abc"):
    for key, path in spec.predict(job, output_dir).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.name.endswith(".nii.gz"):
            write = lambda p: nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.float32),
                                                       np.eye(4)), str(p))
        else:
            write = lambda p: p.write_bytes(b"data")
        derivatives.write_with_sidecar(path, write, [], {"WeightsSha256": weights})


def test_complete_needs_every_file_whole_and_made_by_the_weights_asked_for(jobs, tmp_path):
    job = jobs[0]
    assert spec.collect(job, tmp_path) == {} and not spec.complete(job, tmp_path)
    _write_all(job, tmp_path)
    assert spec.complete(job, tmp_path)
    assert spec.complete(job, tmp_path, weights_sha256="abc")
    assert not spec.complete(job, tmp_path, weights_sha256="other")
    damaged = spec.predict(job, tmp_path)["ce_xfm"]
    damaged.write_bytes(b"changed after its sidecar was written")
    assert "ce_xfm" not in spec.collect(job, tmp_path) and not spec.complete(job, tmp_path)


def test_participant_and_group_files(jobs, tmp_path):
    assert spec.participant_page(tmp_path, "01") == tmp_path / "sub-01.html"
    assert spec.participant_status(tmp_path, "01") == \
        tmp_path / "logs" / "sub-01_participant-status.json"
    assert spec.session_measures(jobs[0], tmp_path).parent == tmp_path / "group" / "sessions"
