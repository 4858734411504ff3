"""Participants prepared side by side: results come back in submission order, a failure stays
with its own participant (raised in a worker, re-raised in the main process), no worker is left
behind."""
import multiprocessing

import pytest
from bids.layout import parse_file_entities

from gado_bids.discovery.selection import ScanJob
from gado_bids.workflows.parallel import prepared_participants


def _broken_jobs(folder, subjects):
    """One ce scan per subject, each a different unreadable file: preparing it fails fast in
    load_3d_image, naming the file."""
    jobs = []
    for subject in subjects:
        path = folder / f"sub-{subject}_ce-gadolinium_T1w.nii.gz"
        path.write_bytes(f"not a NIfTI image {subject}".encode())
        entities = dict(parse_file_entities(str(path)))
        jobs.append((subject, [ScanJob(subject, None, path, entities)]))
    return jobs


@pytest.mark.parametrize("n_procs", [1, 2])
def test_each_failure_comes_back_with_its_own_participant_in_order(tmp_path, n_procs):
    subjects = ["01", "02", "03", "04", "05"]
    out, work = tmp_path / "out", tmp_path / "work"
    out.mkdir(), work.mkdir()
    results = list(prepared_participants(_broken_jobs(tmp_path, subjects), n_procs, 1, out, work,
                                         seed=0, overwrite=False, weights_sha256=None))
    assert [subject for subject, *_ in results] == subjects
    for subject, jobs, prepared, error, _ in results:
        assert prepared is None and error is not None
        assert f"sub-{subject}_ce-gadolinium_T1w.nii.gz" in str(error)
        assert jobs[0].subject == subject
    assert multiprocessing.active_children() == []  # the pool is gone
