"""Ground-truth tissue maps are read only from the demo simulator's own derivative folder."""
import json

from gado_bids.discovery.simulation_truth import (TRUTH_PIPELINE, TRUTH_TISSUES, probseg_name,
                                                  truth_tissue_maps)


def _derivative(root, folder, generator, subject="01", session="01", tissues=TRUTH_TISSUES):
    base = root / "derivatives" / folder
    base.mkdir(parents=True)
    (base / "dataset_description.json").write_text(json.dumps(
        {"Name": "x", "BIDSVersion": "1.9.0", "DatasetType": "derivative",
         "GeneratedBy": [{"Name": generator}]}))
    anat = base / f"sub-{subject}" / (f"ses-{session}" if session else "") / "anat"
    anat.mkdir(parents=True)
    for tissue in tissues:
        (anat / probseg_name(subject, session, tissue)).write_bytes(b"")
    return anat


def test_truth_maps_come_from_the_simulator_only(tmp_path):
    _derivative(tmp_path, "fmriprep", "fMRIPrep")  # estimates, not truth: never read
    assert truth_tissue_maps(tmp_path, "01", "01") is None
    anat = _derivative(tmp_path, "simulation", TRUTH_PIPELINE)
    found = truth_tissue_maps(tmp_path, "01", "01")
    assert found == {t: anat / f"sub-01_ses-01_label-{t}_probseg.nii.gz" for t in TRUTH_TISSUES}
    assert truth_tissue_maps(tmp_path, "02", "01") is None


def test_truth_needs_all_three_tissues_and_follows_session_less_names(tmp_path):
    _derivative(tmp_path, "partial", TRUTH_PIPELINE, tissues=("GM", "WM"))
    assert truth_tissue_maps(tmp_path, "01", "01") is None
    anat = _derivative(tmp_path, "nosession", TRUTH_PIPELINE, session=None)
    assert truth_tissue_maps(tmp_path, "01", None)["GM"] == anat / "sub-01_label-GM_probseg.nii.gz"


def test_an_unreadable_description_is_skipped(tmp_path):
    _derivative(tmp_path, "simulation", TRUTH_PIPELINE)
    broken = tmp_path / "derivatives" / "aaa"
    broken.mkdir()
    (broken / "dataset_description.json").write_text("{not json")
    assert truth_tissue_maps(tmp_path, "01", "01") is not None
