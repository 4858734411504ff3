"""Bad input gets a clear error with the BIDS Apps exit code, and nothing is lost or written."""
import gzip
import json
import shutil

import nibabel as nib
import numpy as np
import pytest

from conftest import run_cli
from gado_bids.errors import ExitCode


def _files(folder):
    return sorted(p.relative_to(folder) for p in folder.rglob("*"))


def test_missing_bids_dir_exits_66(tmp_path):
    result = run_cli(tmp_path / "nowhere", tmp_path / "out", "participant")
    assert result.returncode == ExitCode.NO_INPUT
    assert "does not exist" in result.stderr
    assert not (tmp_path / "out").exists()


def test_bids_dir_that_is_a_file_exits_66(tmp_path):
    (tmp_path / "file").write_text("x")
    result = run_cli(tmp_path / "file", tmp_path / "out", "participant")
    assert result.returncode == ExitCode.NO_INPUT and "is a file" in result.stderr


def test_folder_that_is_not_bids_exits_16(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "scan.nii.gz").write_bytes(b"")
    result = run_cli(tmp_path / "data", tmp_path / "out", "participant")
    assert result.returncode == ExitCode.VALIDATION_FAILED
    assert "no dataset_description.json" in result.stderr


def test_invalid_file_names_fail_validation_unless_skipped(copy_of_demo, tmp_path):
    bad = copy_of_demo / "sub-01" / "ses-01" / "anat" / "sub-01_ses-01_T1w_copy.nii.gz"
    bad.write_bytes(b"not an image")
    result = run_cli(copy_of_demo, tmp_path / "out", "participant")
    assert result.returncode == ExitCode.VALIDATION_FAILED
    assert "sub-01/ses-01/anat/sub-01_ses-01_T1w_copy.nii.gz" in result.stderr
    assert "--skip_bids_validator" in result.stderr
    assert not (tmp_path / "out").exists()  # nothing written for an invalid dataset
    # With the validator skipped the run gets past validation (stopped here by a bad label).
    result = run_cli(copy_of_demo, tmp_path / "out", "participant", "--skip_bids_validator",
                     "--participant_label", "99")
    assert result.returncode == ExitCode.NOTHING_SELECTED
    assert "BIDS validation skipped" in result.stderr


def test_the_current_validator_names_its_issue_codes(copy_of_demo, tmp_path):
    """bids-validator-deno runs (not the file-name check): a bad entity and a missing
    dataset_description.json each give exit 16 with the validator's code; a valid dataset
    passes, its warnings summarised in the log."""
    result = run_cli(copy_of_demo, tmp_path / "out", "participant", "--participant_label", "99")
    assert result.returncode == ExitCode.NOTHING_SELECTED  # valid: got past validation
    assert "BIDS validator warnings (not fatal)" in result.stderr
    anat = copy_of_demo / "sub-01" / "ses-01" / "anat"
    bad = anat / "sub-01_ses-01_foo-bar_T1w.nii.gz"
    shutil.copyfile(anat / "sub-01_ses-01_T1w.nii.gz", bad)
    result = run_cli(copy_of_demo, tmp_path / "out", "participant")
    assert result.returncode == ExitCode.VALIDATION_FAILED
    assert "ENTITY_NOT_IN_RULE: sub-01/ses-01/anat/sub-01_ses-01_foo-bar_T1w.nii.gz" in \
        result.stderr
    bad.unlink()
    from gado_bids.discovery.validation import run_validator, sort_issues, _validator_executable
    (copy_of_demo / "dataset_description.json").unlink()
    dataset, _, _ = sort_issues(run_validator(copy_of_demo, _validator_executable()))
    assert "MISSING_DATASET_DESCRIPTION" in {issue["code"] for issue in dataset}
    result = run_cli(copy_of_demo, tmp_path / "out", "participant")
    assert result.returncode == ExitCode.VALIDATION_FAILED  # our own message comes first
    assert "no dataset_description.json" in result.stderr


def test_an_unreadable_header_fails_its_participant_only(copy_of_demo, demo_participant_run,
                                                        tmp_path):
    """The validator reads NIfTI headers: a scan whose header is garbage fails its participant
    with the validator's code; the other participants are processed (exit 1). sub-01 starts from
    the demo run's outputs less its native synthetic image, so it synthesises again: with the
    demo run's two threads, in another process, the image must come out byte for byte the same
    (CPU inference is deterministic: fp32, deterministic kernels)."""
    output = tmp_path / "out"
    shutil.copytree(demo_participant_run[1], output)
    shutil.rmtree(output / "sub-02")
    synthetic = next((output / "sub-01").rglob("*_ce-gadolinium_desc-synthetic_T1w.nii.gz"))
    demo_run_bytes = synthetic.read_bytes()
    synthetic.unlink()
    ce = copy_of_demo / "sub-02" / "ses-01" / "anat" / "sub-02_ses-01_ce-gadolinium_T1w.nii.gz"
    ce.write_bytes(b"\x1f\x8b garbage")
    result = run_cli(copy_of_demo, output, "participant", "--participant_label", "01", "02",
                     "--nthreads", "2")
    assert result.returncode == ExitCode.FAILURE, result.stderr
    assert "sub-02: failed" in result.stderr and "NIFTI_HEADER_UNREADABLE" in result.stderr
    assert "sub-01: succeeded" in result.stderr and synthetic.is_file()
    assert synthetic.read_bytes() == demo_run_bytes
    assert not (output / "sub-02").exists()


def test_bidsignore_is_honoured(copy_of_demo, tmp_path):
    (copy_of_demo / "sub-01" / "notes.txt").write_text("scanner notes")
    (copy_of_demo / ".bidsignore").write_text("*.txt\n")
    result = run_cli(copy_of_demo, tmp_path / "out", "participant", "--participant_label", "99")
    assert result.returncode == ExitCode.NOTHING_SELECTED  # got past validation


def test_unknown_participant_lists_existing_labels(demo_bids, tmp_path):
    result = run_cli(demo_bids, tmp_path / "out", "participant", "--participant_label", "sub-07")
    assert result.returncode == ExitCode.NOTHING_SELECTED
    assert "07 not found" in result.stderr and "Labels that exist: 01, 02, 03" in result.stderr


def test_unknown_session_is_an_error(demo_bids, tmp_path):
    result = run_cli(demo_bids, tmp_path / "out", "participant", "--session_label", "02")
    assert result.returncode == ExitCode.NOTHING_SELECTED
    assert "Sessions that exist: 01" in result.stderr


def test_no_ce_scans_exits_66(copy_of_demo, tmp_path):
    for path in copy_of_demo.rglob("*ce-gadolinium*"):
        if "derivatives" not in path.parts:
            path.unlink()
    result = run_cli(copy_of_demo, tmp_path / "out", "participant")
    assert result.returncode == ExitCode.NO_INPUT
    assert "no contrast-enhanced T1w scan" in result.stderr


def test_other_ce_label_with_no_scans_exits_66_and_names_present_labels(demo_bids, tmp_path):
    result = run_cli(demo_bids, tmp_path / "out", "participant", "--ce_label", "ferumoxytol")
    assert result.returncode == ExitCode.NO_INPUT
    assert "ce-ferumoxytol" in result.stderr and "gadolinium" in result.stderr


@pytest.mark.parametrize("content, code, message", [
    ('{"ce_t1w": {"run": 5}}', ExitCode.NOTHING_SELECTED, "selected no ce-gadolinium"),
    ("{not json", ExitCode.USAGE, "is not valid JSON"),
    ('{"bold": {"task": "rest"}}', ExitCode.USAGE, "unknown queries ['bold']"),
    ('["t1w"]', ExitCode.USAGE, "must be a JSON object"),
    ('{"ce_t1w": {"flavour": "x"}}', ExitCode.USAGE, "not valid pybids filters"),
])
def test_bids_filter_file_errors(demo_bids, tmp_path, content, code, message):
    filters = tmp_path / "filters.json"
    filters.write_text(content)
    result = run_cli(demo_bids, tmp_path / "out", "participant", "--bids_filter_file", filters)
    assert result.returncode == code
    assert message in result.stderr


def test_missing_filter_file_is_a_usage_error(demo_bids, tmp_path):
    result = run_cli(demo_bids, tmp_path / "out", "participant", "--bids_filter_file",
                     tmp_path / "none.json")
    assert result.returncode == ExitCode.USAGE and "cannot read --bids_filter_file" in result.stderr


def test_output_inside_bids_dir_is_refused(copy_of_demo):
    before = _files(copy_of_demo)
    for output in (copy_of_demo, copy_of_demo / "sub-01" / "out", copy_of_demo.parent):
        result = run_cli(copy_of_demo, output, "participant")
        assert result.returncode == ExitCode.USAGE, output
        assert "output_dir" in result.stderr
    assert _files(copy_of_demo) == before


def test_output_that_cannot_be_created_exits_73(demo_bids, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = run_cli(demo_bids, blocker / "out", "participant")
    assert result.returncode == ExitCode.CANNOT_CREATE_OUTPUT
    assert "cannot write to output_dir" in result.stderr


def test_output_of_another_version_is_refused_unless_overwrite(demo_bids, tmp_path):
    output = tmp_path / "out"
    output.mkdir()
    description = {"Name": "x", "BIDSVersion": "1.9.0", "DatasetType": "derivative",
                   "GeneratedBy": [{"Name": "gadosynth", "Version": "0.0.1"}]}
    (output / "dataset_description.json").write_text(json.dumps(description))
    result = run_cli(demo_bids, output, "participant", "--participant_label", "01",
                     "--device", "cuda")
    assert result.returncode == ExitCode.CANNOT_CREATE_OUTPUT
    assert "gadosynth 0.0.1" in result.stderr and "--overwrite" in result.stderr
    assert json.loads((output / "dataset_description.json").read_text()) == description
    # --overwrite gets past the version check (stopped next by the missing GPU).
    result = run_cli(demo_bids, output, "participant", "--participant_label", "01",
                     "--device", "cuda", "--overwrite")
    assert result.returncode == ExitCode.USAGE and "sees no CUDA GPU" in result.stderr


def _save(path, data, affine=np.eye(4)):
    nib.save(nib.Nifti1Image(data.astype(np.int16), affine), str(path))


def test_broken_images_fail_their_participant_only(copy_of_demo, tmp_path):
    """Truncated, 4D, 2D and garbage images each fail their own participant with a reason, one
    after the other in one run; none of them leaves an output or touches the input. (A good
    participant beside a failing one runs to the end: the unreadable-header test.)"""
    anat = lambda s: copy_of_demo / f"sub-{s}" / "ses-01" / "anat"
    for subject in ("04", "05"):  # two more participants: sub-03's scans under their names
        anat(subject).mkdir(parents=True)
        for scan in anat("03").iterdir():
            shutil.copyfile(scan, anat(subject) / scan.name.replace("sub-03", f"sub-{subject}"))
    ce = lambda s: anat(s) / f"sub-{s}_ses-01_ce-gadolinium_T1w.nii.gz"
    raw = gzip.decompress(ce("02").read_bytes())  # truncated mid-data
    ce("02").write_bytes(gzip.compress(raw[: len(raw) // 2]))
    image = nib.load(str(ce("03")))
    _save(ce("03"), np.stack([image.get_fdata()] * 2, axis=-1), image.affine)  # 4D
    _save(ce("04"), np.ones((64, 64, 1)) * np.arange(64)[:, None, None])  # a single slice
    ce("05").write_bytes(b"\x1f\x8b garbage")  # not gzip at all
    before = {p: p.read_bytes() for p in copy_of_demo.rglob("*") if p.is_file()}
    output = tmp_path / "out"
    result = run_cli(copy_of_demo, output, "participant", "--skip_bids_validator",
                     "--participant_label", "02", "03", "04", "05")
    assert result.returncode == ExitCode.FAILURE
    log = result.stderr
    assert "summary: 0 succeeded, 0 skipped, 4 failed" in log
    assert "sub-02: failed" in log and "corrupt or truncated" in log
    assert "sub-03: failed" in log and "a 4D image" in log
    assert "sub-04: failed" in log and "too small for a brain volume" in log
    assert "sub-05: failed" in log and "cannot read the image" in log
    assert "Traceback" not in log
    # Input untouched; no outputs, partial or complete, for the failed participants.
    assert {p: p.read_bytes() for p in copy_of_demo.rglob("*") if p.is_file()} == before
    assert not any((output / f"sub-{s}").exists() for s in ("02", "03", "04", "05"))
    assert not list(output.rglob(".*partial*"))
