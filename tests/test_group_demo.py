"""The group level on the demo dataset: tables, dictionaries, segmentation, report, partial data."""
import json
import shutil
from html.parser import HTMLParser

import nibabel as nib
import numpy as np
import pytest

from conftest import run_cli
from gado_bids.discovery.selection import open_layout, select_scans
from gado_bids.metrics import tissues
from gado_bids.outputs import derivatives
from gado_bids.outputs.group_tables import read_table
from gado_bids.preprocessing import grids
from gado_bids.outputs.naming import group_paths
from gado_bids.outputs.spec import predict as planned_outputs
from gado_bids.workflows.session_measures import segmentation_paths


def _jobs(bids_dir):
    return [j for jobs in select_scans(open_layout(bids_dir)).jobs_by_subject.values()
            for j in jobs]


class _Tables(HTMLParser):
    """Every table of a page as lists of rows of cell texts."""

    def __init__(self):
        super().__init__()
        self.tables, self._cell = [], None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append(self._cell.strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def _report_tables(path):
    parser = _Tables()
    parser.feed(path.read_text())
    return parser.tables


def test_group_level_writes_every_table_with_its_dictionary(demo_group_run):
    result, output = demo_group_run
    assert result.returncode == 0, result.stderr
    assert "group summary: 3 measured" in result.stderr
    paths = group_paths(output)
    for key in ("sessions", "similarity", "volumes", "statistics", "evaluation",
                "evaluation_summary"):
        rows = read_table(paths[key])
        dictionary = json.loads(paths[key].with_suffix(".json").read_text())
        header = paths[key].read_text().splitlines()[0].split("\t")
        assert header == list(dictionary), key  # every column described, in order
        assert all("Description" in spec for spec in dictionary.values())
        assert rows, key
    similarity = read_table(paths["similarity"])
    assert [r["participant_id"] for r in similarity] == ["sub-01", "sub-02", "sub-03"]
    for row in similarity:
        assert 0 < float(row["MAE_ce"]) < 30 and 10 < float(row["PSNR_synthetic"]) < 50
        assert 0 < float(row["SSIM_synthetic"]) <= 1
        assert row["weights_role"] == "unseen"  # demo subjects were never used for training
    volumes = read_table(paths["volumes"])
    assert len(volumes) == 9 and {r["tissue"] for r in volumes} == {"CSF", "GM", "WM"}
    for row in volumes:
        for image in ("ce", "synthetic"):
            assert float(row[f"abs_diff_{image}_cm3"]) == pytest.approx(
                abs(float(row["real_cm3"]) - float(row[f"{image}_cm3"])), abs=0.011)
    statistics = read_table(paths["statistics"])
    volume_tests = [r for r in statistics if r["table"] == "volume_error" and r["subset"] == "all"]
    assert [r["measure"] for r in volume_tests] == ["CSF", "GM", "WM"]
    # beside the overall rows, the same tests per reference class (the demo's are all one class)
    classes = {r["reference_class"] for r in similarity}
    for reference_class in classes:
        per_class = [r for r in statistics if r["table"] == "volume_error" and
                     r["subset"] == f"reference:{reference_class}"]
        assert [r["measure"] for r in per_class] == ["CSF", "GM", "WM"]
        if classes == {reference_class}:  # one class: the same sessions, the same numbers
            assert [r["p"] for r in per_class] == [r["p"] for r in volume_tests]
    for row in volume_tests:
        assert row["n"] == "3" and row["note"] == ""
        assert float(row["p_bonferroni"]) == pytest.approx(min(1.0, 3 * float(row["p"])),
                                                           abs=2e-6)


def test_evaluation_tables_cover_both_grids_every_image_and_each_reference_class(demo_group_run):
    """Per session: native and template grids, the reference and the four compared images; the
    summary gives every 'all' row beside its per-class rows, and its means are the rows'."""
    _, output = demo_group_run
    paths = group_paths(output)
    rows = read_table(paths["evaluation"])
    assert len(rows) == 3 * 2 * 5
    assert {(r["grid"], r["image"]) for r in rows} == {
        (g, i) for g in ("native", "template")
        for i in ("reference", "ce", "clip", "clip-and-blur", "synthetic")}
    for row in rows:
        assert row["reference_class"] in ("3D", "thick-slice")
        if row["image"] == "ce":
            assert [row[f"sharpness_ratio_{a}"] for a in "ijk"] == ["1.0000"] * 3
        if row["image"] != "reference":
            assert float(row["PSNR_matched"]) > 10 and 0 < float(row["SSIM_matched"]) <= 1
    summary = read_table(paths["evaluation_summary"])
    subsets = {r["subset"] for r in summary}
    classes = {f"reference:{r['reference_class']}" for r in rows}
    assert subsets == {"all"} | classes
    native_ce = [float(r["PSNR"]) for r in rows if r["grid"] == "native" and r["image"] == "ce"]
    entry = [r for r in summary if r["subset"] == "all" and r["grid"] == "native" and
             r["image"] == "ce"][0]
    assert float(entry["PSNR_mean"]) == pytest.approx(np.mean(native_ce), abs=1e-3)
    similarity = read_table(paths["similarity"])
    assert [r["PSNR_ce"] for r in similarity] == [
        r["PSNR"] for r in rows if r["grid"] == "native" and r["image"] == "ce"]


def test_segmentations_agree_with_the_template_tissues(demo_group_run, demo_bids):
    """Stated range: the real scan's GM and WM within 20% of the template's own (arg-max of its
    priors, same mask and grid) and Dice >= 0.8 with them; the three labels fill the mask."""
    _, output = demo_group_run
    priors = np.stack(tissues.template_priors())
    template_labels = np.where(priors.sum(0) >= 0.5, priors.argmax(0) + 1, 0)
    for job in _jobs(demo_bids):
        labels = np.asarray(nib.load(str(segmentation_paths(job, output)["real"])).dataobj)
        assert labels.shape == grids.CROP_SHAPE and set(np.unique(labels)) == {0, 1, 2, 3}
        inside = (template_labels > 0) & (labels > 0)  # the mask the labels were made in
        for name in ("GM", "WM"):
            index = tissues.LABELS[name]
            ours, theirs = (labels == index) & inside, (template_labels == index) & inside
            dice = 2 * (ours & theirs).sum() / (ours.sum() + theirs.sum())
            assert dice >= 0.8, (job.key, name, dice)
            assert ours.sum() == pytest.approx(theirs.sum(), rel=0.2), (job.key, name)
        sidecar = json.loads(derivatives.sidecar_path(
            segmentation_paths(job, output)["real"]).read_text())
        assert sidecar["Atropos"] == tissues.ATROPOS_SETTINGS and "FileSha256" in sidecar
        assert sidecar["MaskErosionVoxels"] == tissues.MASK_EROSION_VOXELS


def test_segmentation_agreement_is_the_dice_of_the_written_labels(demo_group_run, demo_bids):
    """The volumes table's Dice of each image's labels with the real scan's is what the dseg files
    on disk give; the statistics test it per tissue and the report prints those rows."""
    _, output = demo_group_run
    paths = group_paths(output)
    rows = read_table(paths["volumes"])
    for job in _jobs(demo_bids):
        files = segmentation_paths(job, output)
        real = np.asarray(nib.load(str(files["real"])).dataobj)
        for image in ("ce", "synthetic"):
            labels = np.asarray(nib.load(str(files[image])).dataobj)
            for row in (r for r in rows if r["participant_id"] == f"sub-{job.subject}"):
                index = tissues.LABELS[row["tissue"]]
                ours, theirs = labels == index, real == index
                dice = 2 * (ours & theirs).sum() / (ours.sum() + theirs.sum())
                assert float(row[f"dice_{image}"]) == pytest.approx(dice, abs=6e-5)
                assert 0.3 < dice <= 1.0, (job.key, image, row["tissue"])
    agreement = [r for r in read_table(paths["statistics"])
                 if r["table"] == "segmentation_agreement" and r["subset"] == "all"]
    assert [r["measure"] for r in agreement] == ["CSF", "GM", "WM"]
    table = next(t for t in _report_tables(paths["report"])
                 if t[0][:3] == ["tissue", "Dice(ce, real)", "Dice(synthetic, real)"])
    for line, stat in zip(table[1:], agreement):
        synthetic = [float(r["dice_synthetic"]) for r in rows if r["tissue"] == stat["measure"]]
        assert line[0] == stat["measure"] and line[4] == stat["p_bonferroni"]
        assert line[2] == f"{stat['synthetic_mean']} ± {stat['synthetic_sd']}"
        assert float(stat["synthetic_mean"]) == pytest.approx(np.mean(synthetic), abs=1e-4)


def test_volumes_are_reported_against_the_simulation_truth(demo_group_run, demo_bids):
    """The demo records its anatomy (the template's tissue maps moved with the head): every
    session's truth is in the volumes table, summed from the maps brought onto the template
    grid the right way round (the GM map correlates with the template's own: measured 0.92 on
    sub-01, 0.005 with the transform inverted), the real scan's labels find it within 10% per
    tissue (measured on sub-01: +4 / +5 / +5%), and the report's truth table is the table's
    numbers."""
    from gado_bids.preprocessing.pipeline import native_to_crop
    _, output = demo_group_run
    rows = read_table(group_paths(output)["volumes"])
    assert len(rows) == 9 and all(r["truth_cm3"] != "n/a" for r in rows)
    for job in _jobs(demo_bids):
        outputs = planned_outputs(job, output)
        mask = (np.asarray(nib.load(str(outputs["ce_mask"])).dataobj) > 0) | \
            (np.asarray(nib.load(str(outputs["ref_mask"])).dataobj) > 0)
        truth = {t: native_to_crop(nib.load(str(path)), [str(outputs["ce_xfm"])])
                 for t, path in job.truth_tissue_maps.items()}
        inner = tissues.segmentation_mask(mask)
        gm_prior = tissues.template_priors()[tissues.TISSUES.index("GM")]
        assert np.corrcoef(truth["GM"][inner], gm_prior[inner])[0, 1] > 0.85, job.key
        expected = tissues.probability_volumes_cm3(truth, mask)
        for row in (r for r in rows if r["participant_id"] == f"sub-{job.subject}"):
            true_cm3, real = float(row["truth_cm3"]), float(row["real_cm3"])
            print(f"sub-{job.subject} {row['tissue']}: truth {true_cm3:.1f}, real {real:.1f}, "
                  f"ce {row['ce_cm3']}, synthetic {row['synthetic_cm3']} cm3")
            assert true_cm3 == pytest.approx(expected[row["tissue"]], abs=0.01)
            assert real == pytest.approx(true_cm3, rel=0.10)
    report = group_paths(output)["report"].read_text()
    assert "against the simulation's ground truth (n = 3" in report
    table = next(t for t in _report_tables(group_paths(output)["report"])
                 if t[0][:2] == ["tissue", "V_truth"])
    for line in table[1:]:
        chosen = [r for r in rows if r["tissue"] == line[0]]
        for cell, image in zip(line[2:], ("real", "ce", "synthetic")):
            errors = [abs(float(r[f"{image}_cm3"]) - float(r["truth_cm3"])) for r in chosen]
            assert cell == f"{np.mean(errors):.2f} ± {np.std(errors, ddof=1):.2f}"


def test_group_level_leaves_nothing_in_the_temporary_folder(demo_group_run):
    """Twelve Atropos runs (antspyx writes priors and posteriors to tempfile names and never
    deletes them): the folder the run was given as TMPDIR is empty afterwards."""
    result, _ = demo_group_run
    assert result.returncode == 0, result.stderr
    left = sorted(p.name for p in result.temporary_folder.rglob("*"))
    assert left == [], left[:10]


def test_each_session_stage_is_logged_from_the_worker_processes(demo_group_run, demo_bids):
    """Three worker processes measure the sessions (--n_procs 3): each stage of each session shows
    in the run's log, so minutes of segmentation are not silent."""
    result, _ = demo_group_run
    for job in _jobs(demo_bids):
        for stage in ("evaluation on the native and the template grid",
                      "segmenting the real image", "segmenting the ce image",
                      "segmenting the synthetic image",
                      "segmenting the real image's repeatability copy"):
            assert f"{job.key}: {stage}\n" in result.stderr, (job.key, stage)  # whole line
    assert "[gadosynth worker" in result.stderr


def test_native_volumes_follow_the_affine_determinant(demo_group_run, demo_bids):
    """|det| of the saved transform = native brain mask volume / template brain mask volume."""
    _, output = demo_group_run
    for job in _jobs(demo_bids):
        outputs = planned_outputs(job, output)
        native_mask = nib.load(str(outputs["ce_native_mask"]))
        native_cm3 = np.asarray(native_mask.dataobj).astype(bool).sum() * abs(
            np.linalg.det(native_mask.affine[:3, :3])) / 1000
        template_cm3 = np.asarray(nib.load(str(outputs["ce_mask"])).dataobj).astype(bool).sum() \
            / 1000
        scale = tissues.template_to_native_scale(outputs["ce_xfm"])
        assert native_cm3 / template_cm3 == pytest.approx(scale, rel=0.03)
    rows = read_table(group_paths(output)["volumes"])
    for row in rows:
        ratio = float(row["real_native_cm3"]) / float(row["real_cm3"])
        assert 0.7 < ratio < 1.4  # demo heads are the template, rescaled by < 15 %


def test_report_renders_and_every_row_matches_the_tables(demo_group_run):
    _, output = demo_group_run
    paths = group_paths(output)
    page = paths["report"].read_text()
    assert page.startswith("<!DOCTYPE html>") and "http" not in page.split("<body>")[1]
    tables = _report_tables(paths["report"])
    statistics = read_table(paths["statistics"])
    table1, table1_matched, table2, sessions = tables[0], tables[1], tables[2], tables[-1]
    similarity_stats = {r["measure"]: r for r in statistics
                        if r["subset"] == "all" and r["table"] == "similarity"}
    for row, image in zip(table1[1:], ("ce", "synthetic")):
        for cell, metric in zip(row[1:], ("MAE", "PSNR", "SSIM")):
            stat = similarity_stats[metric]
            assert cell == f"{stat[f'{image}_mean']} ± {stat[f'{image}_sd']}"
    volume_stats = {r["measure"]: r for r in statistics
                    if r["subset"] == "all" and r["table"] == "volume_error"}
    matched_stats = {r["measure"]: r for r in statistics
                     if r["subset"] == "all" and r["table"] == "similarity_matched"}
    for row, image in zip(table1_matched[1:3], ("ce", "synthetic")):
        for cell, metric in zip(row[1:], ("MAE", "PSNR", "SSIM")):
            stat = matched_stats[metric]
            assert cell == f"{stat[f'{image}_mean']} ± {stat[f'{image}_sd']}"
    volumes = read_table(paths["volumes"])
    for row in table2[1:]:
        stat = volume_stats[row[0]]
        assert row[1] == f"{stat['ce_mean']} ± {stat['ce_sd']}"
        assert row[2] == f"{stat['synthetic_mean']} ± {stat['synthetic_sd']}"
        repeat = [float(r["repeatability_cm3"]) for r in volumes if r["tissue"] == row[0]]
        assert row[3] == f"{np.mean(repeat):.2f} ± {np.std(repeat, ddof=1):.2f}"
        assert row[5] == stat["p_bonferroni"]
    similarity = read_table(paths["similarity"])
    assert len(sessions) - 1 == len(similarity)
    for row, expected in zip(sessions[1:], similarity):
        assert row[:3] == [expected["participant_id"], expected["ce_scan"],
                           expected["weights_role"]]
        assert row[3] == expected["reference_class"]
        assert row[5:11] == [expected[f"{m}_{i}"] for i in ("ce", "synthetic")
                             for m in ("MAE", "PSNR", "SSIM")]
    assert page.count('<a href="sub-0') == 3 and page.count("data:image/png;base64,") == 5


def test_group_rerun_reuses_every_measure(demo_group_run, demo_bids, tmp_path):
    """On a copy: the shared group outputs are read by other tests meanwhile."""
    output = tmp_path / "out"
    shutil.copytree(demo_group_run[1], output, symlinks=True)
    segmentations = [p for job in _jobs(demo_bids) for p in
                     segmentation_paths(job, output).values()]
    stamps = [p.stat().st_mtime_ns for p in segmentations]
    again = run_cli(demo_bids, output, "group")
    assert again.returncode == 0, again.stderr
    assert again.stderr.count(": reused in") == 3
    assert [p.stat().st_mtime_ns for p in segmentations] == stamps
    assert {r["reused"] for r in read_table(group_paths(output)["sessions"])} == {"true"}


def test_partial_data_is_named_and_kept_out_of_paired_statistics(demo_group_run, demo_bids,
                                                                 tmp_path):
    """sub-03 without its non-contrast scan, sub-02 failed at the participant level; then
    sub-01's outputs damaged as well."""
    _, group_output = demo_group_run
    bids = tmp_path / "bids"
    shutil.copytree(demo_bids, bids)
    output = tmp_path / "out"
    shutil.copytree(group_output, output)
    (bids / "sub-03" / "ses-01" / "anat" / "sub-03_ses-01_T1w.nii.gz").unlink()
    (bids / "sub-03" / "ses-01" / "anat" / "sub-03_ses-01_T1w.json").unlink()
    job_02 = [j for j in _jobs(bids) if j.subject == "02"][0]
    planned_outputs(job_02, output)["synthetic_crop"].unlink()
    job_02.ce_path.write_bytes(job_02.ce_path.read_bytes()[:5000])  # truncated: fails to load
    failed = run_cli(bids, output, "participant", "--participant_label", "02")
    assert failed.returncode == 1

    result = run_cli(bids, output, "group")
    assert result.returncode == 0, result.stderr
    sessions = {r["participant_id"]: r for r in read_table(group_paths(output)["sessions"])}
    assert sessions["sub-01"]["status"] == "measured"
    assert sessions["sub-02"]["status"] == "participant_level_failed"
    assert "sub-02_ses-01_ce-gadolinium_T1w" in sessions["sub-02"]["reason"]
    assert sessions["sub-03"]["status"] == "no_non_contrast"
    assert [r["participant_id"] for r in read_table(group_paths(output)["similarity"])] == \
        ["sub-01"]
    volumes = read_table(group_paths(output)["volumes"])
    sub_03 = [r for r in volumes if r["participant_id"] == "sub-03"]
    assert len(sub_03) == 3 and all(r["real_cm3"] == "n/a" and float(r["synthetic_cm3"]) > 0
                                    for r in sub_03)
    statistics = read_table(group_paths(output)["statistics"])
    assert all(r["p"] == "n/a" and "1 pair(s)" in r["note"] for r in statistics)
    page = group_paths(output)["report"].read_text()
    assert "participant_level_failed" in page and "no_non_contrast" in page
    assert "not computed: 1 pair(s)" in page

    planned_outputs([j for j in _jobs(bids) if j.subject == "01"][0],
                    output)["ce_crop"].write_bytes(b"damaged")
    result = run_cli(bids, output, "group")
    assert result.returncode == 0, result.stderr
    assert "sub-01 sub-01_ses-01_ce-gadolinium_T1w.nii.gz: participant_level_missing" in \
        result.stderr
    assert "No session has both a synthetic image and a real" in \
        group_paths(output)["report"].read_text()
