"""The group level's table rows, built from the per-session measures (session_measures):
similarity, evaluation per grid and image, volumes, and the summaries and paired tests per
subset (all sessions, each reference class, each weights role). Everything is computed from the
unrounded values; formatted() rounds them only for the TSVs and the report."""
from gado_bids.metrics import statistics
from gado_bids.metrics.evaluation import COMPARED
from gado_bids.metrics.tissues import TISSUES
from gado_bids.outputs import group_tables
from gado_bids.outputs.group_tables import DECIMALS, format_value

METRICS = ("MAE", "PSNR", "SSIM")


def similarity_row(ids, role, measures) -> dict:
    row = {**ids, "weights_role": role, "reference_class": measures["reference_class"],
           "mask_voxels": measures["evaluation"]["native"]["mask_voxels"]}
    for image in ("ce", "synthetic"):
        for metric in METRICS:
            row[f"{metric}_{image}"] = measures["similarity"][image][metric]
    return row


def evaluation_rows(ids, role, measures) -> list:
    """One row per grid and image, unrounded (formatted rounds them for the TSV). The session's
    reference class is the native grid's, on both grids: a session is in one class."""
    rows = []
    for grid, result in measures["evaluation"].items():
        for image in ("reference",) + COMPARED:
            row = {**ids, "weights_role": role, "reference_class": measures["reference_class"],
                   "grid": grid, "image": image, "mask_voxels": result["mask_voxels"]}
            for metric in METRICS:
                row[metric] = result["plain"].get(image, {}).get(metric)
                row[f"{metric}_matched"] = result["matched"].get(image, {}).get(metric)
            for index, axis in enumerate("ijk"):
                row[f"sharpness_{axis}"] = result["sharpness"][image][index]
                row[f"sharpness_ratio_{axis}"] = result["sharpness_ratio"][image][index]
                row[f"relative_blur_{axis}"] = result["relative_blur_voxels"][index]
            row["top_end_percent"] = result["top_end_percent"][image]
            rows.append(row)
    return rows


def decimals(column) -> int:
    if column.endswith("cm3"):
        return DECIMALS["cm3"]
    for prefix, key in (("MAE", "MAE"), ("PSNR", "PSNR"), ("SSIM", "SSIM"),
                        ("sharpness", "sharpness"), ("top_end", "top_end_percent"),
                        ("relative_blur", "blur"), ("dice", "dice")):
        if column.startswith(prefix):
            return DECIMALS[key]
    return 3


def formatted(rows) -> list:
    """Rows of strings for the TSVs and the report; everything is computed from the unrounded
    rows."""
    return [{k: format_value(v, decimals(k)) if not isinstance(v, str) else v
             for k, v in row.items()} for row in rows]


def subsets(rows) -> dict:
    """all, each reference class present, each weights role present (unless all unseen)."""
    subsets = {"all": lambda r: True}
    for reference_class in sorted({r["reference_class"] for r in rows}):
        subsets[f"reference:{reference_class}"] = (
            lambda r, c=reference_class: r["reference_class"] == c)
    roles = sorted({r["weights_role"] for r in rows})
    if roles and roles != ["unseen"]:
        subsets.update({role: (lambda r, role=role: r["weights_role"] == role) for role in roles})
    return subsets


def evaluation_summary(evaluation_rows) -> list:
    """Mean and SD per subset, grid and image, and the per-session win counts."""
    summary = []
    for subset, keep in subsets(evaluation_rows).items():
        chosen = [r for r in evaluation_rows if keep(r)]
        for grid in ("native", "template"):
            by_session = {}
            for row in chosen:
                if row["grid"] == grid:
                    by_session.setdefault(row["ce_scan"], {})[row["image"]] = row
            if not by_session:
                continue
            for image in ("reference",) + COMPARED:
                rows = [images[image] for images in by_session.values()]
                entry = {"subset": subset, "grid": grid, "image": image, "n": len(rows)}
                for name in group_tables.SUMMARY_METRICS:
                    entry[f"{name}_mean"], entry[f"{name}_sd"] = statistics.mean_sd(
                        [r[name] for r in rows if r[name] is not None])
                entry["better_than_ce"] = None if image == "reference" else sum(
                    beats_ce(images[image], images["ce"]) for images in by_session.values())
                entry["better_than_baselines_matched"] = None if image not in (
                    "ce", "synthetic") else sum(
                    images[image]["PSNR_matched"] > max(images["clip"]["PSNR_matched"],
                                                        images["clip-and-blur"]["PSNR_matched"])
                    for images in by_session.values())
                summary.append(entry)
    return summary


def beats_ce(row, ce_row) -> bool:
    return (row["MAE"] < ce_row["MAE"] and row["PSNR"] > ce_row["PSNR"] and
            row["SSIM"] > ce_row["SSIM"])


def volume_rows(ids, role, measures) -> list:
    rows = []
    template, native = measures["volumes_template_cm3"], measures["volumes_native_cm3"]
    dice = measures.get("dice_with_real", {})
    for tissue in TISSUES:
        row = {**ids, "weights_role": role, "tissue": tissue,
               "reference_class": measures.get("reference_class", "n/a")}
        for image in ("real", "ce", "synthetic", "truth"):
            row[f"{image}_cm3"] = template.get(image, {}).get(tissue)
            row[f"{image}_native_cm3"] = native.get(image, {}).get(tissue)
        repeat = template.get("real_repeat", {}).get(tissue)
        row["real_repeat_cm3"] = repeat
        row["repeatability_cm3"] = abs(template["real"][tissue] - repeat) \
            if repeat is not None else None
        for image in ("ce", "synthetic"):
            difference = (abs(template["real"][tissue] - template[image][tissue])
                          if "real" in template else None)
            row[f"abs_diff_{image}_cm3"] = difference
            row[f"dice_{image}"] = dice.get(image, {}).get(tissue)
        rows.append(row)
    return rows


def statistics_rows(similarity_rows, volume_rows, evaluation_rows) -> list:
    """Paired tests per subset (all, each reference class, each weights role besides 'all').

    volume_rows: only sessions with a real non-contrast scan (paired); evaluation_rows:
    unrounded, for the resolution-matched test."""
    rows = []
    native = [r for r in evaluation_rows if r["grid"] == "native"]
    for subset, keep in subsets(similarity_rows).items():
        chosen = [r for r in similarity_rows if keep(r)]
        matched = {image: [r for r in native if keep(r) and r["image"] == image]
                   for image in ("ce", "synthetic")}
        tables = {
            "similarity": ({m: [float(r[f"{m}_ce"]) for r in chosen] for m in METRICS},
                           {m: [float(r[f"{m}_synthetic"]) for r in chosen] for m in METRICS}),
            "similarity_matched": tuple({m: [r[f"{m}_matched"] for r in matched[image]]
                                         for m in METRICS} for image in ("ce", "synthetic")),
            "volume_error": tuple(
                {t: [float(r[f"abs_diff_{image}_cm3"]) for r in volume_rows
                     if r["tissue"] == t and keep(r)]
                 for t in TISSUES} for image in ("ce", "synthetic")),
            "segmentation_agreement": tuple(
                {t: [float(r[f"dice_{image}"]) for r in volume_rows
                     if r["tissue"] == t and keep(r) and r.get("dice_ce") is not None
                     and r.get("dice_synthetic") is not None]  # paired: both or neither
                 for t in TISSUES} for image in ("ce", "synthetic")),
        }
        for table, (baseline, synthetic) in tables.items():
            for test in statistics.paired_tests(baseline, synthetic):
                decimals = DECIMALS["dice"] if table == "segmentation_agreement" else \
                    DECIMALS.get(test["measure"], DECIMALS["cm3"])
                if not test["n"]:
                    continue
                rows.append({
                    "subset": subset, "table": table, "measure": test["measure"],
                    "n": str(test["n"]),
                    **{f"{name}_{stat}": format_value(test[f"{key}_{stat}"], decimals)
                       for name, key in (("ce", "baseline"), ("synthetic", "synthetic"))
                       for stat in ("mean", "sd")},
                    "t": format_value(test["t"], DECIMALS["t"]),
                    "p": format_value(test["p"], DECIMALS["p"]),
                    "p_bonferroni": format_value(test["p_bonferroni"], DECIMALS["p"]),
                    "note": test["note"]})
    return rows
