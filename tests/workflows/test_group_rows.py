"""The group tables' rows from hand-made session measures: volume errors and repeatability,
per-class subsets, win counts and the paired tests, all from unrounded values."""
import pytest

from gado_bids.metrics.evaluation import COMPARED
from gado_bids.workflows import group_rows

IMAGES = ("reference",) + COMPARED


def _measures(reference_class, psnr, real_gm, synthetic_gm, repeat_gm=None, gm_dice=None):
    """One session: PSNR per image (MAE and SSIM follow it), GM volumes in cm3, GM Dice with the
    real labels (ce, synthetic)."""
    def grid():
        plain = {image: {"MAE": 10.0 - psnr[image] / 10, "PSNR": psnr[image],
                         "SSIM": psnr[image] / 100} for image in COMPARED}
        matched = {image: {k: v + (0.5 if k == "PSNR" else 0.0) for k, v in metrics.items()}
                   for image, metrics in plain.items()}
        return {"mask_voxels": 1000, "plain": plain, "matched": matched,
                "sharpness": {image: [1.0, 1.0, 1.0] for image in IMAGES},
                "sharpness_ratio": {image: [1.0, 0.9, 0.8] for image in IMAGES},
                "relative_blur_voxels": [0.0, 0.0, 1.5],
                "top_end_percent": {image: 5.0 for image in IMAGES}}
    volumes = {"real": {"CSF": 100.0, "GM": real_gm, "WM": 500.0},
               "ce": {"CSF": 104.0, "GM": real_gm + 10.0, "WM": 495.0},
               "synthetic": {"CSF": 101.0, "GM": synthetic_gm, "WM": 499.0}}
    if repeat_gm is not None:
        volumes["real_repeat"] = {"CSF": 100.5, "GM": repeat_gm, "WM": 501.0}
    measures = {"reference_class": reference_class,
                "similarity": {image: grid()["plain"][image] for image in ("ce", "synthetic")},
                "evaluation": {"native": grid(), "template": grid()},
                "volumes_template_cm3": volumes, "volumes_native_cm3": volumes}
    if gm_dice is not None:
        measures["dice_with_real"] = {image: {"CSF": 0.7, "GM": dice, "WM": 0.9}
                                      for image, dice in zip(("ce", "synthetic"), gm_dice)}
    return measures


def _ids(n):
    return {"participant_id": f"sub-{n}", "session_id": "n/a", "ce_scan": f"sub-{n}_ce.nii.gz"}


SESSIONS = [  # (class, ce, clip, clip-and-blur, synthetic PSNR, real GM, synthetic GM, repeat,
    #            GM Dice of ce and synthetic with the real labels)
    ("3D", 20.0, 22.0, 21.0, 23.0, 600.0, 603.0, 601.25, (0.90, 0.94)),
    ("3D", 21.0, 22.0, 23.0, 22.5, 620.0, 640.0, 620.5, (0.91, 0.92)),
    ("thick-slice", 18.0, 19.0, 20.0, 21.0, 580.0, 590.0, 578.0, (0.88, 0.93)),
]


def session_rows():
    """(similarity, evaluation, volume) rows of SESSIONS, unrounded."""
    similarity, evaluation, volumes = [], [], []
    for n, (cls, ce, clip, blurred, synthetic, real_gm, synthetic_gm, repeat, gm_dice) in \
            enumerate(SESSIONS, 1):
        psnr = {"ce": ce, "clip": clip, "clip-and-blur": blurred, "synthetic": synthetic}
        measures = _measures(cls, psnr, real_gm, synthetic_gm, repeat, gm_dice)
        similarity.append(group_rows.similarity_row(_ids(n), "unseen", measures))
        evaluation += group_rows.evaluation_rows(_ids(n), "unseen", measures)
        volumes += group_rows.volume_rows(_ids(n), "unseen", measures)
    return similarity, evaluation, volumes


@pytest.fixture
def rows():
    return session_rows()


def test_volume_rows_hold_errors_and_repeatability_per_tissue(rows):
    gm = [r for r in rows[2] if r["tissue"] == "GM"]
    assert [r["abs_diff_ce_cm3"] for r in gm] == [10.0, 10.0, 10.0]
    assert [r["abs_diff_synthetic_cm3"] for r in gm] == [3.0, 20.0, 10.0]
    assert [r["repeatability_cm3"] for r in gm] == [1.25, 0.5, 2.0]
    assert {r["reference_class"] for r in gm} == {"3D", "thick-slice"}


def test_volume_rows_carry_each_image_s_agreement_with_the_real_labels(rows):
    gm = [r for r in rows[2] if r["tissue"] == "GM"]
    assert [(r["dice_ce"], r["dice_synthetic"]) for r in gm] == [s[-1] for s in SESSIONS]
    without_real = _measures("3D", {i: 20.0 for i in COMPARED}, 600.0, 600.0)
    del without_real["volumes_template_cm3"]["real"]
    row = group_rows.volume_rows(_ids(9), "unseen", without_real)[0]
    assert row["dice_ce"] is None and row["dice_synthetic"] is None


def test_evaluation_rows_cover_both_grids_and_every_image(rows):
    evaluation = rows[1]
    assert len(evaluation) == 3 * 2 * len(IMAGES)
    first = [r for r in evaluation if r["ce_scan"] == "sub-1_ce.nii.gz" and r["grid"] == "native"]
    synthetic = next(r for r in first if r["image"] == "synthetic")
    assert synthetic["PSNR"] == 23.0 and synthetic["PSNR_matched"] == 23.5
    assert (synthetic["sharpness_ratio_k"], synthetic["relative_blur_k"]) == (0.8, 1.5)
    reference = next(r for r in first if r["image"] == "reference")
    assert reference["PSNR"] is None  # the reference is not compared with itself


def test_summary_counts_wins_per_reference_class(rows):
    summary = group_rows.evaluation_summary(rows[1])
    pick = {(r["subset"], r["grid"], r["image"]): r for r in summary}
    assert {s for s, _, _ in pick} == {"all", "reference:3D", "reference:thick-slice"}
    synthetic_all = pick[("all", "native", "synthetic")]
    assert synthetic_all["n"] == 3 and synthetic_all["better_than_ce"] == 3
    # matched PSNR above both baselines: sessions 1 and 3; session 2 loses to clip-and-blur
    assert synthetic_all["better_than_baselines_matched"] == 2
    assert pick[("reference:3D", "native", "synthetic")]["better_than_baselines_matched"] == 1
    assert pick[("reference:3D", "native", "synthetic")]["PSNR_mean"] == pytest.approx(22.75)
    assert pick[("all", "native", "reference")]["better_than_ce"] is None


def test_statistics_per_subset_from_unrounded_values(rows):
    similarity, evaluation, volumes = rows
    statistics = group_rows.statistics_rows(similarity, volumes, evaluation)
    gm = {r["subset"]: r for r in statistics
          if r["table"] == "volume_error" and r["measure"] == "GM"}
    assert set(gm) == {"all", "reference:3D", "reference:thick-slice"}
    assert gm["all"]["n"] == "3" and gm["all"]["synthetic_mean"] == "11.00"
    assert gm["reference:thick-slice"]["note"].startswith("not computed: 1 pair")
    psnr = next(r for r in statistics if r["subset"] == "all" and r["table"] ==
                "similarity_matched" and r["measure"] == "PSNR")
    assert psnr["ce_mean"] == "20.167" and psnr["synthetic_mean"] == "22.667"
    agreement = {r["subset"]: r for r in statistics
                 if r["table"] == "segmentation_agreement" and r["measure"] == "GM"}
    assert set(agreement) == {"all", "reference:3D", "reference:thick-slice"}
    assert (agreement["all"]["ce_mean"], agreement["all"]["synthetic_mean"]) == \
        ("0.8967", "0.9300")  # Dice at its own decimals, not the volumes' two
    assert agreement["reference:3D"]["n"] == "2" and float(agreement["all"]["t"]) < 0
    unpaired = [dict(r, dice_synthetic=None) if r["ce_scan"] == "sub-1_ce.nii.gz" else r
                for r in volumes]  # a tissue neither the real nor the synthetic image labels
    agreement = next(r for r in group_rows.statistics_rows(similarity, unpaired, evaluation)
                     if r["table"] == "segmentation_agreement" and r["subset"] == "all")
    assert agreement["n"] == "2"  # that session is left out of the pairs, not a crash


def test_formatted_rounds_each_column_by_its_kind():
    row = {"PSNR_matched": 23.45678, "abs_diff_ce_cm3": 1.23456, "SSIM": 0.123456,
           "reference_class": "3D", "missing": None}
    formatted = group_rows.formatted([row])[0]
    assert formatted["PSNR_matched"] == "23.457" and formatted["abs_diff_ce_cm3"] == "1.23"
    assert formatted["SSIM"] == "0.1235" and formatted["reference_class"] == "3D"
    assert formatted["missing"] == "n/a"
