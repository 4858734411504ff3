"""The documented SLURM job-array usage, on a real single-node SLURM that the test starts and
stops itself (Debian's slurm-wlm; .ci/run installs it): an array of participant jobs writing into
one output folder, then the group job; every output complete and valid."""
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from conftest import REPO
from gado_bids.discovery.selection import open_layout, select_scans
from gado_bids.outputs import derivatives
from gado_bids.outputs.group_tables import read_table
from gado_bids.outputs.naming import group_paths
from gado_bids.outputs.spec import predict as planned_outputs

SLURM_SCRIPTS = REPO / "gado_bids" / "resources" / "slurm"


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def slurm(tmp_path):
    """slurmctld + slurmd on this machine, with a private configuration and state."""
    missing = [d for d in ("slurmctld", "slurmd", "sbatch") if shutil.which(d) is None]
    if missing:
        pytest.skip(f"SLURM not installed ({', '.join(missing)} missing): "
                    "apt-get install slurm-wlm (.ci/run does)")
    if os.geteuid() != 0:
        pytest.skip("slurmd must run as root to start jobs; run this test as root (CI does)")
    root = tmp_path / "slurm"
    for sub in ("state", "spool", "log"):
        (root / sub).mkdir(parents=True)
    host = socket.gethostname()
    cpus = os.cpu_count() or 1
    config = root / "slurm.conf"
    config.write_text(f"""ClusterName=gadosynthtest
SlurmctldHost={host}
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/none
CredType=cred/none
SlurmUser=root
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
ProctrackType=proctrack/pgid
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
MpiDefault=none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
NodeName={host} CPUs={cpus} State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")
    environment = {**os.environ, "SLURM_CONF": str(config)}
    daemons = [subprocess.Popen([daemon, "-D", "-f", str(config)], env=environment,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
               for daemon in ("slurmctld", "slurmd")]
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            state = subprocess.run(["sinfo", "-h", "-o", "%t"], env=environment,
                                   capture_output=True, text=True)
            if state.stdout.strip() == "idle":
                break
            time.sleep(0.5)
        else:
            logs = "\n".join(p.read_text()[-2000:] for p in (root / "log").glob("*.log"))
            pytest.fail(f"the test SLURM did not come up: {state.stdout} {state.stderr}\n{logs}")
        yield environment
    finally:
        for daemon in daemons:
            daemon.terminate()
        for daemon in daemons:
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                daemon.kill()


def _sbatch(environment, *arguments):
    result = subprocess.run(["sbatch", "--parsable", *arguments], env=environment,
                            capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().split(";")[0]


def test_participant_array_then_group_job(slurm, demo_group_run, demo_bids, tmp_path):
    """Two array tasks, one participant each, into a copy of the demo outputs: sub-02 had its
    native-space synthetic image deleted (its task reuses the preprocessing and synthesises
    again), sub-01's outputs are complete (its task finds them and skips); then the group job.
    The tasks get the demo run's two threads, so the synthetic image is bit-identical to the demo
    run's and the group job reuses every session's measures: a SLURM task reproduces an
    interactive run exactly."""
    output = tmp_path / "out"
    shutil.copytree(demo_group_run[1], output)
    jobs = [j for s, js in select_scans(open_layout(demo_bids),
                                         participant_labels=["01", "02"]).jobs_by_subject.items()
            for j in js]
    redone = [job for job in jobs if job.subject == "02"]
    planned_outputs(redone[0], output)["synthetic_native"].unlink()
    participants = tmp_path / "participants.txt"
    participants.write_text("01\n02\n")
    logs = tmp_path / "logs"
    logs.mkdir()
    environment = {**slurm, "GADOSYNTH": f"{sys.executable} {REPO / 'run.py'}",
                   "BIDS_DIR": str(demo_bids), "OUTPUT_DIR": str(output),
                   "PARTICIPANTS": str(participants)}
    array = _sbatch(environment, "--array=1-2", "--cpus-per-task=2", "--mem=0",
                    f"--output={logs}/participant-%a.log", str(SLURM_SCRIPTS /
                                                               "participant_array.sbatch"))
    _sbatch(environment, "--wait", f"--dependency=afterany:{array}", "--cpus-per-task=2",
            "--mem=0", f"--output={logs}/group.log", str(SLURM_SCRIPTS / "group.sbatch"))

    # task N takes line N of the participants file
    skipping, synthesising = ((logs / f"participant-{task}.log").read_text() for task in (1, 2))
    assert "summary: 0 succeeded, 1 skipped, 0 failed" in skipping, skipping[-3000:]
    assert "sub-01: skipped" in skipping and "sub-02" not in skipping, skipping[-3000:]
    assert "summary: 1 succeeded, 0 skipped, 0 failed" in synthesising, synthesising[-3000:]
    assert "reused, only synthesis runs" in synthesising, synthesising[-3000:]
    assert "sub-02: succeeded" in synthesising and "sub-01" not in synthesising, \
        synthesising[-3000:]
    for job in jobs:
        for path in planned_outputs(job, output).values():
            assert derivatives.output_is_complete(path), path
    group_log = (logs / "group.log").read_text()
    assert "group summary: 3 measured" in group_log, group_log[-3000:]
    for subject in ("01", "02", "03"):
        assert f"sub-{subject}_ses-01_ce-gadolinium_T1w: reused in" in group_log, group_log[-3000:]
    similarity = read_table(group_paths(output)["similarity"])
    assert [r["participant_id"] for r in similarity] == ["sub-01", "sub-02", "sub-03"]
    assert group_paths(output)["report"].is_file()
