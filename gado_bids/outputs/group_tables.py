"""The group-level tables: TSV files, each with a JSON data dictionary (BIDS tabular sidecars).

Numbers are written with fixed decimals, and the HTML report prints these same strings, so every
row of the report can be checked against the TSV it came from.
"""
import math
from pathlib import Path

from gado_bids import atomic
from gado_bids.metrics.tissues import MASK_EROSION_VOXELS

SESSION_COLUMNS = {
    "participant_id": "BIDS participant label", "session_id": "BIDS session label or n/a",
    "ce_scan": "file name of the contrast-enhanced T1w scan",
}
WEIGHTS_ROLE = {"weights_role": "whether the bundled weights saw this subject: 'training', "
                                "'validation' (held out while training) or 'unseen'. Training "
                                "subjects give optimistic numbers"}

REFERENCE_CLASS = {"reference_class": "'3D' or 'thick-slice': how the session's real "
                                      "non-contrast scan was acquired, from its per-axis "
                                      "sharpness and its blur relative to the ce scan "
                                      "(gado_bids.metrics.resolution)"}

SIMILARITY_COLUMNS = {
    **SESSION_COLUMNS, **WEIGHTS_ROLE, **REFERENCE_CLASS,
    "mask_voxels": {"Description": "voxels of the evaluation mask on the ce scan's native grid "
                                   "(intersection of the ce and non-contrast brain masks); "
                                   "every metric is averaged over them only", "Units": "voxels"},
    **{f"{metric}_{image}": {
        "Description": f"{label} between the real non-contrast scan and the {name} image on "
                       "the ce scan's native grid, both N4-corrected, each on its own scale "
                       "x / (2 P90(brain)), not clipped (gado_bids.metrics.evaluation); the "
                       "plain metric (desc-evaluation_metrics.tsv has the resolution-matched "
                       f"ones, both grids and the baselines). {definition}",
        **({"Units": units} if units else {})}
       for image, name in (("ce", "contrast-enhanced (baseline)"), ("synthetic", "synthetic"))
       for metric, label, definition, units in (
           ("MAE", "mean absolute error", "100 x mean |x - y| / R, R = 1", "%"),
           ("PSNR", "peak signal-to-noise ratio", "10 log10(R^2 / mean (x - y)^2), R = 1", "dB"),
           ("SSIM", "structural similarity", "Wang et al. 2004 local SSIM map, 3D Gaussian "
                    "window sigma 1.5 voxels truncated at 3.5 sigma, C1 = (0.01 R)^2, "
                    "C2 = (0.03 R)^2, averaged over the mask's voxels", ""))},
}

VOLUME_COLUMNS = {
    **SESSION_COLUMNS, **WEIGHTS_ROLE, **REFERENCE_CLASS,
    "tissue": "CSF, GM or WM (ANTs Atropos with MNI152NLin2009aSym priors, in the union mask "
              f"less its outer {MASK_EROSION_VOXELS} voxel layers)",
    **{f"{image}_cm3": {"Description": f"{image} image's tissue volume in template space "
                                      "(segmented on the 1 mm cropped template grid)",
                        "Units": "cm3"}
       for image in ("real", "ce", "synthetic")},
    "truth_cm3": {"Description": "the anatomy's true tissue volume where the input is a "
                                 "simulation that records it (the demo: derivatives/simulation "
                                 "probseg maps, brought onto the template grid, summed over the "
                                 "same voxels as the segmentations); n/a otherwise",
                  "Units": "cm3"},
    "real_repeat_cm3": {"Description": "the real image's volume segmented again after a "
                                       "half-voxel shift on every axis with 1% noise (the "
                                       "instrument's repeatability)", "Units": "cm3"},
    "repeatability_cm3": {"Description": "|V_real - V_real_repeat|: differences below it are "
                                         "within the segmentation's own noise", "Units": "cm3"},
    **{f"{image}_native_cm3": {"Description": f"{image} image's tissue volume rescaled to the "
                                             "subject's native space by |det| of the ce scan's "
                                             "affine to the template", "Units": "cm3"}
       for image in ("real", "ce", "synthetic", "truth")},
    "abs_diff_ce_cm3": {"Description": "|V_real - V_ce|, template space", "Units": "cm3"},
    "abs_diff_synthetic_cm3": {"Description": "|V_real - V_synthetic|, template space",
                               "Units": "cm3"},
    **{f"dice_{image}": f"Dice overlap of the {image} image's labels of this tissue with the "
                        "real image's (2|A and B| / (|A| + |B|), same voxels, template space): "
                        "agreement voxel by voxel, which equal volumes do not imply; n/a "
                        "without a real non-contrast scan"
       for image in ("ce", "synthetic")},
}

SUBSET = {"subset": "sessions summarised: all; reference:3D / reference:thick-slice (by the "
                    "class of the session's real non-contrast scan); or only those whose "
                    "subjects the bundled weights used for training / held out for validation "
                    "/ never saw"}

EVALUATION_COLUMNS = {
    **SESSION_COLUMNS, **WEIGHTS_ROLE, **REFERENCE_CLASS,
    "grid": "native (the ce scan's grid, primary) or template (1 mm cropped template grid)",
    "image": "reference (the real non-contrast scan: sharpness and top end only), ce, clip (ce "
             "clipped at its 97th brain percentile), clip-and-blur (the same, 1 mm Gaussian) or "
             "synthetic",
    "mask_voxels": {"Description": "voxels of the evaluation mask (intersection of the two "
                                   "brain masks)", "Units": "voxels"},
    **{metric: {"Description": f"plain {metric} against the reference (metrics.similarity, "
                               "each image on its own scale x / (2 P90(brain)))",
                **({"Units": unit} if unit else {})}
       for metric, unit in (("MAE", "%"), ("PSNR", "dB"), ("SSIM", ""))},
    **{f"{metric}_matched": {"Description": f"resolution-matched {metric}: the image blurred by "
                                            "the reference's relative blur (relative_blur_*) "
                                            "before the comparison",
                             **({"Units": unit} if unit else {})}
       for metric, unit in (("MAE", "%"), ("PSNR", "dB"), ("SSIM", ""))},
    **{f"sharpness_{axis}": f"sharpness along voxel axis {axis} (RMS of 1-voxel over RMS of "
                            "4-voxel differences in the eroded mask; scale- and contrast-free)"
       for axis in "ijk"},
    **{f"sharpness_ratio_{axis}": f"sharpness_{axis} of the image over the ce scan's: 1.0 = as "
                                  "sharp as the input" for axis in "ijk"},
    "top_end_percent": {"Description": "P99.5 / P95 - 1 of the image in the mask: small when "
                                       "the white matter saturates", "Units": "%"},
    **{f"relative_blur_{axis}": {"Description": f"Gaussian sigma along axis {axis} that gives "
                                                "the ce scan the reference's sharpness (the "
                                                "resolution match)", "Units": "voxels"}
       for axis in "ijk"},
}

SUMMARY_METRICS = ("MAE", "PSNR", "SSIM", "MAE_matched", "PSNR_matched", "SSIM_matched",
                   "sharpness_ratio_i", "sharpness_ratio_j", "sharpness_ratio_k",
                   "top_end_percent")
EVALUATION_SUMMARY_COLUMNS = {
    **SUBSET, "grid": EVALUATION_COLUMNS["grid"], "image": EVALUATION_COLUMNS["image"],
    "n": "sessions",
    **{f"{name}_{stat}": f"{'mean' if stat == 'mean' else 'sample SD (ddof 1)'} of {name} "
                         "over the subset's sessions (desc-evaluation_metrics.tsv), from the "
                         "unrounded values"
       for name in SUMMARY_METRICS for stat in ("mean", "sd")},
    "better_than_ce": "sessions on which this image beats the ce scan on plain MAE, PSNR and "
                      "SSIM together",
    "better_than_baselines_matched": "sessions on which this image's matched PSNR is above "
                                     "both baselines' (ce and synthetic only)",
}

STATISTICS_COLUMNS = {
    **SUBSET,
    "table": "similarity (paper's Table 1, native grid, plain), similarity_matched (the same, "
             "resolution-matched), volume_error (paper's Table 2) or segmentation_agreement "
             "(Dice of each tissue's labels with the real image's; higher is better)",
    "measure": "MAE, PSNR, SSIM, or a tissue (CSF, GM, WM) for |V_real - V| or its Dice",
    "n": "sessions (pairs) in the test",
    "ce_mean": "mean over sessions, ce image vs real", "ce_sd": "sample SD (ddof 1)",
    "synthetic_mean": "mean over sessions, synthetic vs real", "synthetic_sd": "sample SD (ddof 1)",
    "t": "paired t statistic (scipy.stats.ttest_rel, ce minus synthetic)",
    "p": "two-sided p value, uncorrected",
    "p_bonferroni": "p x the number of measures in the table (3), capped at 1",
    "note": "why a test was not computed, when it was not",
}

SESSION_STATUS_COLUMNS = {
    **SESSION_COLUMNS,
    "has_non_contrast": "whether the session has a real non-contrast T1w to compare with",
    "status": "measured | no_non_contrast (volumes only, left out of paired statistics) | "
              "participant_level_failed | participant_level_missing | group_level_failed",
    "reason": "why the session is not fully measured, when it is not",
    "reused": "true when the numbers came from a previous group run (inputs unchanged)",
}

DECIMALS = {"MAE": 3, "PSNR": 3, "SSIM": 4, "cm3": 2, "p": 6, "t": 4, "scale": 5,
            "sharpness": 4, "top_end_percent": 2, "blur": 3, "dice": 4}


def format_value(value, decimals: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.{decimals}f}"
    return str(value)


def write_table(path: Path, columns: dict, rows: list) -> Path:
    """rows: dicts of already formatted strings, keyed by the columns."""
    lines = ["\t".join(columns)] + ["\t".join(row[c] for c in columns) for row in rows]
    atomic.write_bytes(path, ("\n".join(lines) + "\n").encode())
    dictionary = {name: spec if isinstance(spec, dict) else {"Description": spec}
                  for name, spec in columns.items()}
    atomic.write_json(path.with_suffix(".json"), dictionary)
    return path


def read_table(path: Path) -> list:
    header, *lines = Path(path).read_text().splitlines()
    names = header.split("\t")
    return [dict(zip(names, line.split("\t"))) for line in lines]
