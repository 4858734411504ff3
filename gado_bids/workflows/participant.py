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


def _load_synthesiser(args: RunConfig):
    from gado_bids.model.device import resolve_device
    from gado_bids.model.synthesis import Synthesiser
    device = resolve_device(args.device)
    synthesiser = Synthesiser(args.model, device, args.weights, args.seed)
    LOG.info("model %s (weights %s, SHA-256 %s...) on %s", synthesiser.provenance["Model"],
             synthesiser.provenance["Weights"], synthesiser.provenance["WeightsSha256"][:12],
             device)
    return synthesiser


def _out_of_space(failure: OSError, output_dir) -> GadoError:
    return GadoError(f"no space left on the output or work file system "
                     f"({failure.filename or output_dir}): free some space, or choose another "
                     "--work_dir / output folder, then re-run: complete outputs are kept, "
                     "nothing half-written was left under a final name",
                     ExitCode.CANNOT_CREATE_OUTPUT)


def _finish_participant(subject, jobs, prepared, error, context, summary, started):
    """Synthesise and write one prepared participant, then its QC page and status. A failure
    (error: its preparation's) stays this participant's, except a full disk, which stops the
    run (GadoError)."""
    from gado_bids.outputs.report import write_participant_page
    from gado_bids.workflows.scan import ScanOutcome, finish_scan
    output_dir = context.output_dir
    try:
        if error is not None:
            raise error
        outcomes = [p if p is ScanOutcome.ALREADY_COMPLETE else finish_scan(p, context)
                    for p in prepared]
    except OSError as failure:
        if failure.errno not in (errno.ENOSPC, errno.EDQUOT):
            _record_failure(output_dir, summary, subject, failure, started)
            return
        stop = _out_of_space(failure, output_dir)
        _record_failure(output_dir, summary, subject, str(stop), started)
        summary.log()
        raise stop from failure
    except GadoError as failure:
        _record_failure(output_dir, summary, subject, failure, started)
        return
    except Exception as failure:  # isolate any bug or library failure to this participant
        LOG.error("sub-%s failed with an unexpected error", subject,
                  exc_info=(type(failure), failure, failure.__traceback__))
        _record_failure(output_dir, summary, subject, f"{type(failure).__name__}: {failure}",
                        started)
        return
    try:
        write_participant_page(subject, jobs, output_dir)
    except Exception as failure:  # a QC page must never fail the images it describes
        LOG.warning("sub-%s: QC page not written: %s", subject, failure)
    skipped = all(outcome is ScanOutcome.ALREADY_COMPLETE for outcome in outcomes)
    reason = "outputs already complete (use --overwrite to recompute)" if skipped else ""
    record_status(output_dir, summary.add(subject, "skipped" if skipped else "succeeded", reason,
                                          time.time() - started))


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
        synthesiser = _load_synthesiser(args)
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
        from gado_bids.workflows.parallel import prepared_participants
        if n_procs > 1:
            LOG.info("%d worker processes preprocess participants (%d thread(s) each); synthesis "
                     "and writing in the main process", n_procs, threads)
        for subject, jobs, prepared, error, prepare_seconds in prepared_participants(
                subjects_jobs, n_procs, threads, output_dir, work_dir, args.seed,
                args.overwrite, synthesiser.provenance["WeightsSha256"]):
            _finish_participant(subject, jobs, prepared, error, context, summary,
                                time.time() - prepare_seconds)
    summary.log()
    return summary.exit_code
