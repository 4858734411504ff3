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
from dataclasses import dataclass, field
from pathlib import Path

from gado_bids import atomic, runtime
from gado_bids.errors import ExitCode, GadoError
from gado_bids.metrics.tissues import label_table
from gado_bids.model.weights import training_role
from gado_bids.outputs import derivatives, group_tables, spec
from gado_bids.outputs.group_report import write_group_report
from gado_bids.outputs.group_tables import format_value
from gado_bids.outputs.naming import group_paths
from gado_bids.workflows import group_rows
from gado_bids.workflows.session_measures import measure_session
from gado_bids.workflows.summary import recorded_status

LOG = logging.getLogger("gadosynth")


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


def _worker_init(threads, log_level):
    runtime.configure_process(threads)
    runtime.configure_worker_logging(log_level)  # each session's stages in the log


def _measure_all(jobs, output_dir, args, provenance):
    """(measures or exception, seconds) per job, in order; --n_procs sessions side by side."""
    n_procs = max(1, min(args.n_procs, len(jobs)))
    if n_procs == 1:
        for job in jobs:
            yield _measure_one(job, output_dir, args.seed, provenance)
        return
    threads = runtime.worker_threads(args.nthreads, n_procs)
    LOG.info("%d worker processes measure sessions (%d thread(s) each)", n_procs, threads)
    with runtime.spawn_pool(n_procs, _worker_init, (threads, LOG.getEffectiveLevel())) as pool:
        yield from pool.imap(functools.partial(_measure_one, output_dir=output_dir,
                                               seed=args.seed, provenance=provenance), jobs)


@dataclass
class GroupMeasures:
    """Everything the tables and the report are made of, unrounded."""
    sessions: list = field(default_factory=list)  # one status row per selected ce scan
    similarity_rows: list = field(default_factory=list)
    evaluation_rows: list = field(default_factory=list)
    volume_rows: list = field(default_factory=list)
    thumbnails: dict = field(default_factory=dict)
    failures: int = 0

    @property
    def paired_volume_rows(self) -> list:
        """Volumes of sessions with a real non-contrast scan (the paired tests' input)."""
        return [r for r in self.volume_rows if r["abs_diff_ce_cm3"] is not None]


def _add_session(found: GroupMeasures, job, measures, role, entry):
    ids = {key: entry[key] for key in ("participant_id", "session_id", "ce_scan")}
    entry["reused"] = format_value(measures["reused"])
    found.thumbnails[ids["ce_scan"]] = measures.get("thumbnail_png")
    found.volume_rows.extend(group_rows.volume_rows(ids, role, measures))
    if job.reference_path:
        found.similarity_rows.append(group_rows.similarity_row(ids, role, measures))
        found.evaluation_rows.extend(group_rows.evaluation_rows(ids, role, measures))
    else:
        entry["status"] = "no_non_contrast"
        entry["reason"] = ("no non-contrast T1w in this session: volumes of the ce and "
                           "synthetic images only, left out of paired statistics")


def _measure_sessions(jobs, output_dir, args, provenance, dataset_name) -> GroupMeasures:
    """Every selected session measured (or its reason for not being), in order; one broken
    session does not hide the others."""
    found = GroupMeasures()
    measurable = {job.key for job in jobs if spec.complete(job, output_dir)}
    measured = _measure_all([job for job in jobs if job.key in measurable], output_dir, args,
                            provenance)
    for position, job in enumerate(jobs, 1):
        entry = {**_session_ids(job), "has_non_contrast": format_value(bool(job.reference_path)),
                 "status": "measured", "reason": "", "reused": "false"}
        found.sessions.append(entry)
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
        except Exception as error:
            LOG.error("[%d/%d] %s: group-level measures failed: %s", position, len(jobs),
                      job.key, error)
            entry["status"], entry["reason"] = "group_level_failed", \
                f"{type(error).__name__}: {error}"
            found.failures += 1
            continue
        _add_session(found, job, measures, role, entry)
        LOG.info("[%d/%d] %s: %s in %.0f s", position, len(jobs), job.key,
                 "reused" if measures["reused"] else "measured", seconds)
    return found


def _write_tables_and_report(found: GroupMeasures, output_dir: Path) -> tuple:
    """(paths, statistics rows): every group table and the report, rounded only here."""
    statistics_rows = group_rows.statistics_rows(found.similarity_rows, found.paired_volume_rows,
                                                 found.evaluation_rows)
    summary_rows = group_rows.formatted(group_rows.evaluation_summary(found.evaluation_rows))
    paths = group_paths(output_dir)
    for key, columns, rows in (
            ("evaluation", group_tables.EVALUATION_COLUMNS, found.evaluation_rows),
            ("similarity", group_tables.SIMILARITY_COLUMNS, found.similarity_rows),
            ("volumes", group_tables.VOLUME_COLUMNS, found.volume_rows)):
        group_tables.write_table(paths[key], columns, group_rows.formatted(rows))
    group_tables.write_table(paths["evaluation_summary"],
                             group_tables.EVALUATION_SUMMARY_COLUMNS, summary_rows)
    group_tables.write_table(paths["sessions"], group_tables.SESSION_STATUS_COLUMNS,
                             found.sessions)
    group_tables.write_table(paths["statistics"], group_tables.STATISTICS_COLUMNS,
                             statistics_rows)
    write_group_report(paths["report"], found.sessions,
                       group_rows.formatted(found.similarity_rows),
                       group_rows.formatted(found.paired_volume_rows), statistics_rows,
                       found.thumbnails, summary_rows)
    return paths, statistics_rows


def analyse_group(args, selection, description, output_dir: Path) -> int:
    """Measure every selected session, then write the tables and the report; the exit code."""
    atomic.write_bytes(output_dir / "dseg.tsv", label_table().encode())
    provenance = {"SoftwareVersions": derivatives.software_versions(), "RandomSeed": args.seed,
                  "Threads": args.nthreads or 0}
    jobs = [job for subject in sorted(selection.jobs_by_subject)
            for job in selection.jobs_by_subject[subject]]
    LOG.info("group level: %d ce scan(s) selected", len(jobs))
    found = _measure_sessions(jobs, output_dir, args, provenance, description.get("Name", ""))
    paths, statistics_rows = _write_tables_and_report(found, output_dir)
    _log_summary(found.sessions, statistics_rows, paths)
    if not found.similarity_rows and not found.volume_rows:
        raise GadoError("no session has complete participant-level outputs: nothing to "
                        "analyse (run the participant level first)", ExitCode.NO_INPUT)
    return int(ExitCode.FAILURE if found.failures else ExitCode.SUCCESS)


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
