"""Participant level: select scans, then process each participant in isolation.

One participant failing (corrupt file, failed registration, ...) is logged with its reason and
never stops the others; the run ends with a summary and exit code 1 if anything failed.
"""
import errno
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from gado_bids import runtime
from gado_bids.errors import ExitCode, GadoError
from gado_bids.outputs import derivatives
from gado_bids.workflows.config import RunConfig
from gado_bids.workflows.inputs import open_input
from gado_bids.workflows.scratch import work_area
from gado_bids.workflows.summary import RunSummary, record_status

LOG = logging.getLogger("gadosynth")


@dataclass
class RunContext:
    bids_dir: Path
    output_dir: Path
    work_dir: Path
    seed: int
    nthreads: int
    overwrite: bool
    synthesiser: object = None

    @property
    def provenance(self) -> dict:
        """Recorded in every sidecar: versions, seed, threads, and the model's weights SHA-256."""
        model = {**self.synthesiser.provenance, "Precision": self.synthesiser.precision} \
            if self.synthesiser else {}
        return {"SoftwareVersions": derivatives.software_versions(), "RandomSeed": self.seed,
                "Threads": self.nthreads, **model}


def _record_failure(output_dir, summary, subject, failure, started):
    LOG.error("sub-%s failed: %s", subject, failure)
    result = summary.add(subject, "failed", str(failure), time.time() - started)
    try:
        record_status(output_dir, result)
    except OSError as error:  # e.g. the disk is full: the log and summary still say it
        LOG.warning("sub-%s: status not recorded: %s", subject, error)


def run_participant_level(args: RunConfig) -> int:
    bids_dir, description, selection = open_input(args)
    output_dir = derivatives.prepare_output_dataset(bids_dir, args.output_dir, description,
                                                    args.overwrite)
    n_scans = sum(len(jobs) for jobs in selection.jobs_by_subject.values())
    LOG.info("%d participant(s), %d ce-%s scan(s) selected; output: %s",
             len(selection.jobs_by_subject), n_scans, args.ce_label, output_dir)
    summary = RunSummary()
    for subject in selection.subjects_without_ce:
        summary.add(subject, "skipped", f"no ce-{args.ce_label} T1w scan")
    with work_area(output_dir, args.work_dir, args.keep_work) as work_dir:
        # Before torch loads: its compiler caches look for a temporary folder at import time,
        # and in a read-only container only the output and work folders are writable.
        runtime.redirect_scratch(work_dir)
        runtime.apply_torch_threads(args.nthreads)
        from gado_bids.model.device import resolve_device
        from gado_bids.model.synthesis import Synthesiser
        device = resolve_device(args.device)
        synthesiser = Synthesiser(args.model, device, args.weights, args.seed)
        LOG.info("model %s (weights %s, SHA-256 %s...) on %s", synthesiser.provenance["Model"],
                 synthesiser.provenance["Weights"], synthesiser.provenance["WeightsSha256"][:12],
                 device)
        for subject, message in sorted(selection.invalid_participants.items()):
            _record_failure(output_dir, summary, subject, message, time.time())
        subjects_jobs = [(subject, selection.jobs_by_subject[subject])
                         for subject in sorted(selection.jobs_by_subject)
                         if subject not in selection.invalid_participants]
        n_procs = max(1, min(args.n_procs, len(subjects_jobs)))
        threads = runtime.worker_threads(args.nthreads, n_procs)
        context = RunContext(bids_dir, output_dir, work_dir, args.seed,
                             threads if n_procs > 1 else (args.nthreads or 0), args.overwrite,
                             synthesiser)
        from gado_bids.outputs.report import write_participant_page
        from gado_bids.workflows.parallel import prepared_participants
        from gado_bids.workflows.scan import finish_scan
        if n_procs > 1:
            LOG.info("%d worker processes preprocess participants (%d thread(s) each); synthesis "
                     "and writing in the main process", n_procs, threads)
        for subject, jobs, prepared, error, prepare_seconds in prepared_participants(
                subjects_jobs, n_procs, threads, output_dir, work_dir, args.seed,
                args.overwrite, synthesiser.provenance["WeightsSha256"]):
            started = time.time() - prepare_seconds
            try:
                if error is not None:
                    raise error
                statuses = [p if p == "complete" else finish_scan(p, context) for p in prepared]
            except OSError as failure:
                if failure.errno not in (errno.ENOSPC, errno.EDQUOT):
                    _record_failure(output_dir, summary, subject, failure, started)
                    continue
                message = (f"no space left on the output or work file system "
                           f"({failure.filename or output_dir}): free some space, or choose "
                           "another --work_dir / output folder, then re-run: complete outputs "
                           "are kept, nothing half-written was left under a final name")
                _record_failure(output_dir, summary, subject, message, started)
                summary.log()
                raise GadoError(message, ExitCode.CANNOT_CREATE_OUTPUT) from failure
            except GadoError as failure:
                _record_failure(output_dir, summary, subject, failure, started)
                continue
            except Exception as failure:  # isolate any bug or library failure to this participant
                LOG.error("sub-%s failed with an unexpected error", subject,
                          exc_info=(type(failure), failure, failure.__traceback__))
                _record_failure(output_dir, summary, subject,
                                f"{type(failure).__name__}: {failure}", started)
                continue
            try:
                write_participant_page(subject, jobs, output_dir)
            except Exception as failure:  # a QC page must never fail the images it describes
                LOG.warning("sub-%s: QC page not written: %s", subject, failure)
            status = "skipped" if all(s == "complete" for s in statuses) else "succeeded"
            reason = "outputs already complete (use --overwrite to recompute)" \
                if status == "skipped" else ""
            record_status(output_dir, summary.add(subject, status, reason, time.time() - started))
    summary.log()
    return summary.exit_code
