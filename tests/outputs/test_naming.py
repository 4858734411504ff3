"""outputs.naming: BIDS Derivatives names keep the source's entities in BIDS order, then the
derivative ones; anything else is refused."""
import pytest

from gado_bids.outputs import naming

SOURCE = {"subject": "01", "session": "pre", "acquisition": "mprage", "ceagent": "gadolinium",
          "run": 2, "suffix": "T1w", "extension": ".nii.gz", "datatype": "anat"}


def test_source_then_derived_entities_in_bids_order():
    name = naming.derivative_name(SOURCE, "T1w", ".nii.gz", desc="synthetic",
                                  space="MNI152NLin2009aSym")
    assert name == ("sub-01_ses-pre_acq-mprage_ce-gadolinium_run-02_"
                    "space-MNI152NLin2009aSym_desc-synthetic_T1w.nii.gz")
    transform = naming.derivative_name({"subject": "01"}, "xfm", ".mat", mode="image",
                                       to="MNI152NLin2009aSym", **{"from": "T1w"})
    assert transform == "sub-01_from-T1w_to-MNI152NLin2009aSym_mode-image_xfm.mat"


def test_empty_entities_are_left_out_and_text_runs_kept():
    assert naming.derivative_name({"subject": "01", "session": "", "run": "a"}, "mask",
                                  ".nii.gz", label="brain", desc=None) == \
        "sub-01_run-a_label-brain_mask.nii.gz"


def test_an_entity_that_is_not_a_derivative_one_is_refused():
    with pytest.raises(ValueError, match="not derivative entities"):
        naming.derivative_name(SOURCE, "T1w", ".nii.gz", echo="1")


def test_folders_follow_subject_and_session(tmp_path):
    assert naming.derivative_path(tmp_path, SOURCE, "T1w", ".nii.gz", desc="x") == (
        tmp_path / "sub-01" / "ses-pre" / "anat" /
        "sub-01_ses-pre_acq-mprage_ce-gadolinium_run-02_desc-x_T1w.nii.gz")
    assert naming.subject_session_dir(tmp_path, {"subject": "02"}, "figures") == \
        tmp_path / "sub-02" / "figures"
    paths = naming.group_paths(tmp_path)
    assert paths["report"] == tmp_path / "group_report.html"
    assert {p.parent for k, p in paths.items() if k != "report"} == {tmp_path / "group"}
