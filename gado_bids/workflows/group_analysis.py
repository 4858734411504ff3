"""Group level: the paper's two questions asked of the user's own data.

Table 1: is the synthetic image closer to the real non-contrast scan than the ce scan was
(MAE, PSNR, SSIM; plain and resolution-matched, native grid primary, against the two non-learned
baselines too)? Table 2: are GM/WM/CSF volumes measured on it closer (paired t-tests,
Bonferroni), beside the segmentation's own repeatability? Every table is given per reference
class (3D / thick-slice) next to the overall one. Built only from participant-level outputs;
per-session numbers are cached and reused (session_measures). Sessions that cannot take part are
listed with the reason, never dropped silently. Entered from workflows.group, inside the run's
scratch folder."""
import functools
import logging
import time
from pathlib import Path

from gado_bids import atomic, runtime
from gado_bids.errors import ExitCode, GadoError
from gado_bids.metrics import statistics
from gado_bids.metrics.evaluation import COMPARED
from gado_bids.metrics.tissues import TISSUES, label_table
from gado_bids.model.weights import training_role
from gado_bids.outputs import derivatives, group_tables, spec
from gado_bids.outputs.group_report import write_group_report
from gado_bids.outputs.group_tables import DECIMALS, format_value
from gado_bids.outputs.naming import group_paths
from gado_bids.workflows.session_measures import measure_session
from gado_bids.workflows.summary import recorded_status

LOG = logging.getLogger("gadosynth")
METRICS = ("MAE", "PSNR", "SSIM")


def _session_ids(job) -> dict:
    return {"participant_id": f"sub-{job.subject}",
            "session_id": f"ses-{job.session}" if job.session else "n/a",
            "ce_scan": job.ce_path.name}


def _missing_reason(job, output_dir) -> tuple:
    status = recorded_status(output_dir, job.subject)
    if status and status.get("status") == "failed":
        return "participant_level_failed", status.get("reason", "")
    return "participant_level_missing", ("participant-level outputs missing or incomplete: run "
                                         "(or re-run) the participant level for this subject")


def _weights_role(job, output_dir, dataset_name) -> str:
    sidecar = derivatives.read_sidecar(spec.predict(job, output_dir)["synthetic_crop"])
    return training_role(sidecar.get("WeightsSha256", ""), dataset_name, job.subject)


def _measure_one(job, output_dir, seed, provenance):
    started = time.time()
    try:
        return measure_session(job, output_dir, seed, provenance), time.time() - started
    except Exception as error:  # returned, not raised: the caller names the session
        LOG.error("%s: group-level measures failed", job.key, exc_info=True)
        return error, time.time() - started


def _measure_all(jobs, output_dir, args, provenance):
    """(measures or exception, seconds) per job, in order; --n_procs sessions side by side."""
    n_procs = max(1, min(args.n_procs, len(jobs)))
    if n_procs == 1:
        for job in jobs:
            yield _measure_one(job, output_dir, args.seed, provenance)
        return
    threads = runtime.worker_threads(args.nthreads, n_procs)
    LOG.info("%d worker processes measure sessions (%d thread(s) each)", n_procs, threads)
    with runtime.spawn_pool(n_procs, runtime.limit_threads, (threads,)) as pool:
        yield from pool.imap(functools.partial(_measure_one, output_dir=output_dir,
                                               seed=args.seed, provenance=provenance), jobs)


def _similarity_row(ids, role, measures) -> dict:
    row = {**ids, "weights_role": role, "reference_class": measures["reference_class"],
           "mask_voxels": measures["evaluation"]["native"]["mask_voxels"]}
    for image in ("ce", "synthetic"):
        for metric in METRICS:
            row[f"{metric}_{image}"] = measures["similarity"][image][metric]
    return row


def _evaluation_rows(ids, role, measures) -> list:
    """One row per grid and image, unrounded (_formatted rounds them for the TSV). The session's
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


def _decimals(column) -> int:
    if column.endswith("cm3"):
        return DECIMALS["cm3"]
    for prefix, key in (("MAE", "MAE"), ("PSNR", "PSNR"), ("SSIM", "SSIM"),
                        ("sharpness", "sharpness"), ("top_end", "top_end_percent"),
                        ("relative_blur", "blur")):
        if column.startswith(prefix):
            return DECIMALS[key]
    return 3


def _formatted(rows) -> list:
    """Rows of strings for the TSVs and the report; everything is computed from the unrounded
    rows."""
    return [{k: format_value(v, _decimals(k)) if not isinstance(v, str) else v
             for k, v in row.items()} for row in rows]


def _subsets(rows) -> dict:
    """all, each reference class present, each weights role present (unless all unseen)."""
    subsets = {"all": lambda r: True}
    for reference_class in sorted({r["reference_class"] for r in rows}):
        subsets[f"reference:{reference_class}"] = (
            lambda r, c=reference_class: r["reference_class"] == c)
    roles = sorted({r["weights_role"] for r in rows})
    if roles and roles != ["unseen"]:
        subsets.update({role: (lambda r, role=role: r["weights_role"] == role) for role in roles})
    return subsets


def _evaluation_summary(evaluation_rows) -> list:
    """Mean and SD per subset, grid and image, and the per-session win counts."""
    summary = []
    for subset, keep in _subsets(evaluation_rows).items():
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
                    _beats(images[image], images["ce"]) for images in by_session.values())
                entry["better_than_baselines_matched"] = None if image not in (
                    "ce", "synthetic") else sum(
                    images[image]["PSNR_matched"] > max(images["clip"]["PSNR_matched"],
                                                        images["clip-and-blur"]["PSNR_matched"])
                    for images in by_session.values())
                summary.append(entry)
    return summary


def _beats(row, ce_row) -> bool:
    return (row["MAE"] < ce_row["MAE"] and row["PSNR"] > ce_row["PSNR"] and
            row["SSIM"] > ce_row["SSIM"])


def _volume_rows(ids, role, measures) -> list:
    rows = []
    template, native = measures["volumes_template_cm3"], measures["volumes_native_cm3"]
    for tissue in TISSUES:
        row = {**ids, "weights_role": role, "tissue": tissue,
               "reference_class": measures.get("reference_class", "n/a")}
        for image in ("real", "ce", "synthetic"):
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
        rows.append(row)
    return rows


def _statistics_rows(similarity_rows, volume_rows, evaluation_rows) -> list:
    """Paired tests per subset (all, each reference class, each weights role besides 'all').

    volume_rows: only sessions with a real non-contrast scan (paired); evaluation_rows:
    unrounded, for the resolution-matched test."""
    rows = []
    native = [r for r in evaluation_rows if r["grid"] == "native"]
    for subset, keep in _subsets(similarity_rows).items():
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
        }
        for table, (baseline, synthetic) in tables.items():
            for test in statistics.paired_tests(baseline, synthetic):
                decimals = DECIMALS.get(test["measure"], DECIMALS["cm3"])
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


def analyse_group(args, selection, description, output_dir: Path) -> int:
    """Measure every selected session, then write the tables and the report; the exit code."""
    atomic.write_bytes(output_dir / "dseg.tsv", label_table().encode())
    provenance = {"SoftwareVersions": derivatives.software_versions(), "RandomSeed": args.seed,
                  "Threads": args.nthreads or 0}
    dataset_name = description.get("Name", "")
    sessions, similarity_rows, volume_rows, evaluation_rows, thumbnails = [], [], [], [], {}
    jobs = [job for subject in sorted(selection.jobs_by_subject)
            for job in selection.jobs_by_subject[subject]]
    LOG.info("group level: %d ce scan(s) selected", len(jobs))
    failures = 0
    measurable = {job.key for job in jobs if spec.complete(job, output_dir)}
    measured = _measure_all([job for job in jobs if job.key in measurable], output_dir, args,
                            provenance)
    for position, job in enumerate(jobs, 1):
        ids = _session_ids(job)
        entry = {**ids, "has_non_contrast": format_value(bool(job.reference_path)),
                 "status": "measured", "reason": "", "reused": "false"}
        sessions.append(entry)
        if job.key not in measurable:
            entry["status"], entry["reason"] = _missing_reason(job, output_dir)
            LOG.warning("[%d/%d] %s: %s (%s)", position, len(jobs), job.key, entry["status"],
                        entry["reason"])
            continue
        try:
            measures, seconds = next(measured)
            if isinstance(measures, Exception):
                raise measures
            role = _weights_role(job, output_dir, dataset_name)
        except Exception as error:  # one broken session must not hide the others
            LOG.error("[%d/%d] %s: group-level measures failed: %s", position, len(jobs),
                      job.key, error)
            entry["status"], entry["reason"] = "group_level_failed", \
                f"{type(error).__name__}: {error}"
            failures += 1
            continue
        entry["reused"] = format_value(measures["reused"])
        thumbnails[ids["ce_scan"]] = measures.get("thumbnail_png")
        volume_rows.extend(_volume_rows(ids, role, measures))
        if job.reference_path:
            similarity_rows.append(_similarity_row(ids, role, measures))
            evaluation_rows.extend(_evaluation_rows(ids, role, measures))
        else:
            entry["status"] = "no_non_contrast"
            entry["reason"] = ("no non-contrast T1w in this session: volumes of the ce and "
                               "synthetic images only, left out of paired statistics")
        LOG.info("[%d/%d] %s: %s in %.0f s", position, len(jobs), job.key,
                 "reused" if measures["reused"] else "measured", seconds)
    paired_volume_rows = [r for r in volume_rows if r["abs_diff_ce_cm3"] is not None]
    statistics_rows = _statistics_rows(similarity_rows, paired_volume_rows, evaluation_rows)
    summary_rows = _evaluation_summary(evaluation_rows)
    paths = group_paths(output_dir)
    group_tables.write_table(paths["evaluation"], group_tables.EVALUATION_COLUMNS,
                             _formatted(evaluation_rows))
    group_tables.write_table(paths["evaluation_summary"],
                             group_tables.EVALUATION_SUMMARY_COLUMNS, _formatted(summary_rows))
    group_tables.write_table(paths["sessions"], group_tables.SESSION_STATUS_COLUMNS, sessions)
    group_tables.write_table(paths["similarity"], group_tables.SIMILARITY_COLUMNS,
                             _formatted(similarity_rows))
    group_tables.write_table(paths["volumes"], group_tables.VOLUME_COLUMNS,
                             _formatted(volume_rows))
    group_tables.write_table(paths["statistics"], group_tables.STATISTICS_COLUMNS,
                             statistics_rows)
    write_group_report(paths["report"], sessions, _formatted(similarity_rows),
                       _formatted(paired_volume_rows),
                       statistics_rows, thumbnails, _formatted(summary_rows))
    _log_summary(sessions, statistics_rows, paths)
    if not similarity_rows and not volume_rows:
        raise GadoError("no session has complete participant-level outputs: nothing to "
                        "analyse (run the participant level first)", ExitCode.NO_INPUT)
    return int(ExitCode.FAILURE if failures else ExitCode.SUCCESS)


def _log_summary(sessions, statistics_rows, paths):
    counts = {}
    for session in sessions:
        counts[session["status"]] = counts.get(session["status"], 0) + 1
    LOG.info("group summary: %s", ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    for session in sessions:
        if session["status"] not in ("measured",):
            LOG.warning("  %s %s: %s - %s", session["participant_id"], session["ce_scan"],
                        session["status"], session["reason"])
    for row in statistics_rows:  # overall, and per reference class beside it
        if row["subset"] == "all" or row["subset"].startswith("reference:"):
            LOG.info("  %-21s %-18s %-5s n=%s ce %s±%s synthetic %s±%s p(Bonferroni) %s %s",
                     row["subset"], row["table"], row["measure"], row["n"], row["ce_mean"],
                     row["ce_sd"], row["synthetic_mean"], row["synthetic_sd"],
                     row["p_bonferroni"], row["note"])
    LOG.info("tables in %s; report: %s", paths["sessions"].parent, paths["report"])
