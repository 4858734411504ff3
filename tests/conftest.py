"""Shared fixtures: the simulated demo dataset (always) and the real shared data (when present)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# Two pytest-xdist workers share two cores, so a library's threads often wait for a core the other
# worker holds; OpenMP threads that spin while they wait (libgomp's default) burn that core.
# Measured (10 training steps of test_loop's U-Net on a 64x64x32 crop, 2 torch threads, the other
# core busy): 13.0 CPU-s and 10.0 s wall spinning, 6.2 and 6.3 passive (idle machine: 6.4 and
# 6.2 CPU-s). Results do not depend on it. Set before torch loads; inherited by every command
# the tests start.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from gado_bids import runtime  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("GADOSYNTH_SHARED_DATA", REPO.parent / "shared" / "data"))


# Tests that run the network or ANTs in the test process itself get the memory setting every
# gadosynth process has (runtime.configure_process; measured there).
runtime.keep_freed_memory()

# Tests that share an expensive session fixture run on the same pytest-xdist worker, so that
# the fixture is built once per suite, not once per worker.
FIXTURE_GROUPS = {"demo_participant_run": "demo-run", "gado_session": "real-preprocessing"}


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist turns the groups into node ids
def pytest_collection_modifyitems(items):
    for item in items:
        for fixture, group in FIXTURE_GROUPS.items():
            if fixture in item.fixturenames:  # the closure: demo_group_run needs demo-run
                item.add_marker(pytest.mark.xdist_group(group))
                break


def run_cli(*args, cwd=None, env=None):
    """Run run.py as a user would, in a fresh process; returns the CompletedProcess."""
    return subprocess.run([sys.executable, str(REPO / "run.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=1200, env=env)


@pytest.fixture(scope="session")
def demo_bids(tmp_path_factory, worker_id):
    """Simulated once per suite (~20 s) and shared by the pytest-xdist workers: every test
    reads it only (those that change a dataset take copy_of_demo)."""
    from filelock import FileLock
    from gado_bids.demo.simulate import write_demo_dataset
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if worker_id != "master" else base  # the workers' common folder
    target = shared / "demo-shared" / "bids"
    with FileLock(str(shared / "demo-shared.lock")):
        if not (target / "participants.tsv").is_file():  # written last
            write_demo_dataset(target, n_subjects=3, seed=0)
    return target


@pytest.fixture(scope="session")
def demo_participant_run(demo_bids, tmp_path_factory):
    """The participant level run once over the whole demo dataset, every participant's
    preprocessing in a worker process of its own (one thread each); synthesis in the main
    process with two threads, as the SLURM test's tasks have."""
    output = tmp_path_factory.mktemp("demo-out") / "gadosynth"
    result = run_cli(demo_bids, output, "participant", "--nthreads", "2", "--n_procs", "3")
    return result, output


@pytest.fixture
def copy_of_demo(demo_bids, tmp_path):
    """A private, writable copy of the demo dataset for tests that break it."""
    target = tmp_path / "bids"
    shutil.copytree(demo_bids, target)
    return target


def _shared(name):
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"shared data not found at {path}: these tests need ../shared/data/{name} "
                    "beside the repository (or GADOSYNTH_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def gado_pairs():
    return _shared("gado-pairs")


@pytest.fixture(scope="session")
def wholehead_pair():
    return _shared("wholehead-pair")


@pytest.fixture(scope="session")
def demo_cache(demo_bids, demo_participant_run, tmp_path_factory):
    """Two demo training pairs (one to train on, one to validate), cached once from the demo
    participant run's outputs (as gadosynth-train does with --derivatives; its preprocessing of
    a pair without them is checked in tests/test_preprocessing_real.py)."""
    from gado_bids.discovery.selection import open_layout, select_scans
    from gado_bids.training.cache import build_cache
    work = tmp_path_factory.mktemp("train")
    selection = select_scans(open_layout(demo_bids), participant_labels=["01", "02"])
    jobs = [j for s in sorted(selection.jobs_by_subject) for j in selection.jobs_by_subject[s]]
    paths = build_cache(jobs, work / "cache", derivatives_dir=demo_participant_run[1])
    assert [json.loads(p.with_suffix(".json").read_text())["source"] for p in paths] == \
        [str(demo_participant_run[1])] * 2, "the demo pairs were preprocessed again"
    return {"bids": demo_bids, "work": work, "paths": paths}


@pytest.fixture(scope="session")
def demo_group_run(demo_participant_run, demo_bids, tmp_path_factory):
    """The group level run once on the demo participant-level outputs, with a temporary folder
    of its own (TMPDIR) so that a test can see what it leaves there; one worker process per
    session (one thread each), so that no session waits for another's."""
    _, output = demo_participant_run
    temporary = tmp_path_factory.mktemp("group-tmpdir")
    result = run_cli(demo_bids, output, "group", "--nthreads", "3", "--n_procs", "3",
                     env={**os.environ, "TMPDIR": str(temporary)})
    result.temporary_folder = temporary
    return result, output
