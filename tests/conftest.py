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

# Tests that share the real-data preprocessing (a module fixture) run on the same pytest-xdist
# worker, so that it is built once per suite. The demo runs are shared across workers instead
# (_built_once): a worker that needs one while another builds it waits for it, and the build
# itself (several processes) has both cores; the tests that read them then go to either worker.
FIXTURE_GROUPS = {"gado_session": "real-preprocessing"}


def pytest_xdist_auto_num_workers(config):
    """One pytest-xdist worker more than cores (--maxprocesses caps it): the suite is CPU-bound,
    but a worker often waits (for a shared demo run another worker builds, a subprocess's
    single-threaded stretch, a kill's polling), and with one worker per core that core idles.
    Only with memory for it: three workers on 2 cores peaked at 16.2 GB in use (machine total),
    so the extra worker needs 6 GB per worker; otherwise one per core."""
    cores = os.cpu_count() or 1
    memory_gb = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 1e9
    return cores + 1 if memory_gb >= 6 * (cores + 1) else cores


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist turns the groups into node ids
def pytest_collection_modifyitems(items):
    for item in items:
        for fixture, group in FIXTURE_GROUPS.items():
            if fixture in item.fixturenames:  # the closure: fixtures that need it too
                item.add_marker(pytest.mark.xdist_group(group))
                break


def run_cli(*args, cwd=None, env=None):
    """Run run.py as a user would, in a fresh process; returns the CompletedProcess."""
    return subprocess.run([sys.executable, str(REPO / "run.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=1200, env=env)


def _workers_folder(tmp_path_factory, worker_id) -> Path:
    """The folder all pytest-xdist workers of this suite share (each has its own below it)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if worker_id != "master" else base


def _built_once(tmp_path_factory, worker_id, name, build) -> tuple:
    """(folder, record): build(folder) -> a JSON-able record, run once per suite under a file
    lock; every worker gets both. Whatever reads the folder afterwards must leave it as it is."""
    from filelock import FileLock
    from gado_bids import atomic
    shared = _workers_folder(tmp_path_factory, worker_id)
    folder = shared / name
    record = folder / "built.json"  # written last
    with FileLock(str(shared / f"{name}.lock")):
        if not record.is_file():
            shutil.rmtree(folder, ignore_errors=True)  # what a failed build left
            folder.mkdir()
            atomic.write_json(record, build(folder))
    return folder, json.loads(record.read_text())


def _completed(record) -> subprocess.CompletedProcess:
    return subprocess.CompletedProcess(record["args"], record["returncode"], record["stdout"],
                                       record["stderr"])


def _record(result) -> dict:
    return {"args": [str(a) for a in result.args], "returncode": result.returncode,
            "stdout": result.stdout, "stderr": result.stderr}


@pytest.fixture(scope="session")
def demo_bids(tmp_path_factory, worker_id):
    """Simulated once per suite (~20 s) and shared by the pytest-xdist workers: every test
    reads it only (those that change a dataset take copy_of_demo)."""
    from gado_bids.demo.simulate import write_demo_dataset

    def simulate(folder):
        write_demo_dataset(folder / "bids", n_subjects=3, seed=0)
        return {}
    folder, _ = _built_once(tmp_path_factory, worker_id, "demo-shared", simulate)
    return folder / "bids"


@pytest.fixture(scope="session")
def demo_participant_run(demo_bids, tmp_path_factory, worker_id):
    """The participant level run once over the whole demo dataset (once per suite, shared by the
    workers; read only), every participant's preprocessing in a worker process of its own (one
    thread each); synthesis in the main process with two threads, as the SLURM test's tasks
    have."""
    def run(folder):
        return _record(run_cli(demo_bids, folder / "gadosynth", "participant", "--nthreads", "2",
                               "--n_procs", "3"))
    folder, record = _built_once(tmp_path_factory, worker_id, "demo-participant-run", run)
    return _completed(record), folder / "gadosynth"


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
def demo_group_run(demo_participant_run, demo_bids, tmp_path_factory, worker_id):
    """The group level run once (per suite, shared by the workers; read only) on a copy of the
    demo participant-level outputs (the participant tests read the original while it runs), with
    a temporary folder of its own (TMPDIR) so that a test can see what it leaves there; one
    worker process per session (one thread each), so that no session waits for another's."""
    def run(folder):
        output, temporary = folder / "gadosynth", folder / "tmpdir"
        shutil.copytree(demo_participant_run[1], output)
        temporary.mkdir()
        return _record(run_cli(demo_bids, output, "group", "--nthreads", "3", "--n_procs", "3",
                               env={**os.environ, "TMPDIR": str(temporary)}))
    folder, record = _built_once(tmp_path_factory, worker_id, "demo-group-run", run)
    result = _completed(record)
    result.temporary_folder = folder / "tmpdir"
    return result, folder / "gadosynth"
