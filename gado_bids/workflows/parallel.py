"""Participants side by side on one node (--n_procs): preprocessing in worker processes, the model
in the main process.

Preprocessing (ANTs: N4, registration, resampling) is CPU-bound and takes most of a scan's time;
synthesis needs the model, which is loaded once and - on a GPU - shared by every participant
instead of being copied into each worker. So workers only prepare participants (prepare_scan)
and the main process synthesises and writes them, in submission order. At most n_procs + 1
participants are prepared ahead of the main process, which bounds memory (~1 GB per prepared
participant). Workers are started with 'spawn': the main process may already hold a CUDA
context, which must not be forked.
"""
import collections
import logging
import signal
import time

from gado_bids import runtime
from gado_bids.workflows.scan import prepare_scan

LOG = logging.getLogger("gadosynth")


def _worker_init(nthreads, work_dir, log_level):
    runtime.configure_process(nthreads)
    runtime.redirect_scratch(work_dir)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process handles Ctrl-C
    runtime.configure_worker_logging(log_level)


def _prepare_participant(jobs, output_dir, work_dir, seed, overwrite, weights_sha256):
    started = time.time()
    prepared = [prepare_scan(job, output_dir, work_dir, seed, overwrite, weights_sha256)
                for job in jobs]
    return prepared, time.time() - started


def prepared_participants(subjects_jobs, n_procs, threads_per_process, output_dir, work_dir,
                          seed, overwrite, weights_sha256):
    """Yield (subject, jobs, prepared scans or None, error or None, seconds), in order."""
    total = len(subjects_jobs)

    def announce(position, subject, jobs, where=""):
        LOG.info("[%d/%d] sub-%s: %d scan(s)%s", position, total, subject, len(jobs), where)

    if n_procs <= 1:
        for position, (subject, jobs) in enumerate(subjects_jobs, 1):
            announce(position, subject, jobs)
            try:
                prepared, seconds = _prepare_participant(jobs, output_dir, work_dir, seed,
                                                         overwrite, weights_sha256)
            except Exception as error:  # the caller isolates it to this participant
                yield subject, jobs, None, error, 0.0
                continue
            yield subject, jobs, prepared, None, seconds
        return

    pool = runtime.spawn_pool(n_procs, _worker_init,
                              (threads_per_process, str(work_dir), LOG.getEffectiveLevel()))
    pending = collections.deque()
    queue = iter(enumerate(subjects_jobs, 1))

    def submit_next():
        for position, (subject, jobs) in queue:
            announce(position, subject, jobs, " -> worker")
            pending.append((subject, jobs, pool.apply_async(
                _prepare_participant,
                (jobs, output_dir, work_dir, seed, overwrite, weights_sha256))))
            return

    try:
        for _ in range(n_procs + 1):
            submit_next()
        while pending:
            subject, jobs, result = pending.popleft()
            try:
                prepared, seconds = result.get()
                error = None
            except Exception as failure:  # raised in the worker, re-raised here
                prepared, error, seconds = None, failure, 0.0
            submit_next()
            yield subject, jobs, prepared, error, seconds
    finally:
        pool.terminate()  # on success, error, Ctrl-C or SIGTERM alike: no orphan workers
        pool.join()
