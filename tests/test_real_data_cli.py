"""The command line on the real shared datasets (skipped with a message when they are absent)."""
import json

import nibabel as nib
import numpy as np
import pytest

from conftest import run_cli
from gado_bids.discovery.selection import open_layout, select_scans
from gado_bids.discovery.validation import validate_bids_dataset
from gado_bids.outputs import derivatives
from gado_bids.preprocessing import brain_mask, grids
from gado_bids.preprocessing.template import template_brain_mask
from gado_bids.outputs.spec import predict as planned_outputs

pytestmark = pytest.mark.shared_data


def test_gado_pairs_is_valid_and_every_session_is_paired(gado_pairs):
    validate_bids_dataset(gado_pairs)
    selection = select_scans(open_layout(gado_pairs))
    jobs = [j for js in selection.jobs_by_subject.values() for j in js]
    assert len(jobs) == 34 and all(j.reference_path for j in jobs)
    assert all("ce-gadolinium" not in j.reference_path.name for j in jobs)


def test_unknown_label_on_gado_pairs_lists_the_labels(gado_pairs, tmp_path):
    result = run_cli(gado_pairs, tmp_path / "out", "participant", "--participant_label", "999")
    assert result.returncode == 18 and "001, 002, 003" in result.stderr


def test_whole_head_participant_run_end_to_end(wholehead_pair, tmp_path):
    """The ce scan alone (a filter hides the non-contrast scan: brain extraction and registration
    of the pair's second scan would only repeat the first's path)."""
    output = tmp_path / "out"
    filters = tmp_path / "filters.json"
    filters.write_text('{"t1w": {"acquisition": "not-in-this-dataset"}}')
    result = run_cli(wholehead_pair, output, "participant", "--nthreads", "2",
                     "--bids_filter_file", filters, "--seed", "7")
    assert result.returncode == 0, result.stderr
    (job,) = select_scans(open_layout(wholehead_pair), filters={
        "t1w": {"acquisition": "not-in-this-dataset"}}).jobs_by_subject["01"]
    assert job.reference_path is None
    planned = planned_outputs(job, output)
    source = nib.load(str(job.ce_path))
    synthetic = nib.load(str(planned["synthetic_native"]))
    assert synthetic.shape == source.shape and np.allclose(synthetic.affine, source.affine,
                                                           atol=1e-4)
    mask = nib.load(str(planned["ce_native_mask"])).get_fdata() > 0
    volume = mask.sum() * abs(np.linalg.det(source.affine[:3, :3])) / 1000
    assert 900 < volume < 1900
    correlation = np.corrcoef(synthetic.get_fdata()[mask], source.get_fdata()[mask])[0, 1]
    # 0.62 measured: the native grid has 5.5 mm slices, so each native voxel averages a slab of
    # the 1 mm synthetic image; a misregistered image correlates far lower.
    assert correlation > 0.5
    sidecar = json.loads(derivatives.sidecar_path(planned["synthetic_native"]).read_text())
    assert sidecar["BrainMaskMethod"] == "deepbet"  # whole head: brain extraction first
    assert sidecar["RandomSeed"] == 7  # the user's seed, not the default, is recorded
    # Registered to the template, not skull-to-brain: the brain lands on the template's brain.
    template = grids.crop_template_volume(template_brain_mask().get_fdata() > 0)
    crop_mask = nib.load(str(planned["ce_mask"])).get_fdata() > 0
    assert brain_mask.dice(crop_mask, template) > 0.8
    assert sidecar["TemplateMaskDice"] > 0.8
    centre_ours, centre_template = np.argwhere(crop_mask).mean(0), np.argwhere(template).mean(0)
    assert np.linalg.norm(centre_ours - centre_template) < 10  # mm
    assert (output / "sub-01.html").exists()
