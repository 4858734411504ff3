"""Crash-safe resume with real runs killed mid-participant (SIGKILL, then SIGTERM), and side by
side writers on one output folder."""
import json
import os
import signal
import subprocess
import sys
import time

from conftest import REPO, run_cli
from gado_bids.discovery.selection import open_layout, select_scans
from gado_bids import hashing
from gado_bids.outputs import derivatives
from gado_bids.outputs.spec import keys as output_keys, predict as planned_outputs


def _start(log, *args):
    """A real run in the background, its log going to a file the test can watch."""
    stream = open(log, "w")
    return subprocess.Popen([sys.executable, str(REPO / "run.py"), *map(str, args)],
                            stdout=stream, stderr=stream, text=True)


def _kill_when(process, log, condition, signum, timeout=600):
    """Send signum as soon as condition() holds; returns (exit code, log text)."""
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        if condition():
            process.send_signal(signum)
            break
        time.sleep(0.02)
    process.wait(timeout=120)
    return process.returncode, log.read_text()


def _new_file_in(folder, containing=""):
    """A condition: a file whose name contains `containing` appeared in folder under a final (not
    hidden) name."""
    def visible():
        return {p.name for p in folder.iterdir() if not p.name.startswith(".") and
                containing in p.name} if folder.is_dir() else set()
    before = visible()
    return lambda: bool(visible() - before)


def _no_incomplete_final_files(output, exempt=()):
    """Every non-hidden image/transform/figure is complete; every sidecar is valid JSON.

    exempt: files the test itself damaged (the run may have stopped before replacing them)."""
    checked = 0
    for path in output.rglob("*"):
        hidden = any(part.startswith(".") for part in path.relative_to(output).parts)
        if hidden or not path.is_file():
            continue
        if path.name.endswith((".nii.gz", ".mat", ".png")):
            assert path in exempt or derivatives.output_is_complete(path), \
                f"incomplete final file {path}"
            checked += 1
        elif path.suffix == ".json":
            json.loads(path.read_text())
    return checked


def _small_weights(path):
    """An untrained 1 mm enhancement network of width 4 (user weights, --weights): the same
    outputs and stages as the bundled network's, with inference in about a second instead of
    ~20 CPU-s; what is checked here is how runs stop and resume, not the image."""
    import torch
    from gado_bids.model.networks import build_model
    from gado_bids.model.weights import save_weights
    torch.manual_seed(0)
    save_weights(build_model("attention-unet", 4, "enhancement"), path, {
        "model": "attention-unet", "width": 4, "formulation": "enhancement", "grid": "1mm"})
    return path


def test_killed_runs_leave_only_complete_files_and_resume(demo_bids, demo_participant_run,
                                                         tmp_path):
    """The killed run preprocesses sub-02 from scratch in the main process, with the demo run's
    seed (the default) and thread count (one, as each of the demo run's worker processes has):
    its preprocessing must be the demo run's, byte for byte."""
    output, work = tmp_path / "out", tmp_path / "work"
    weights = ("--weights", _small_weights(tmp_path / "small.pt"))
    anat = output / "sub-02" / "ses-01" / "anat"
    job = select_scans(open_layout(demo_bids), participant_labels=["02"]).jobs_by_subject["02"][0]
    planned = planned_outputs(job, output)

    # SIGKILL while the synthetic images are being written, after the preprocessing outputs.
    killed = _start(tmp_path / "killed.log", demo_bids, output, "participant",
                    "--participant_label", "02", "--nthreads", "1", *weights)
    code, _ = _kill_when(killed, tmp_path / "killed.log", _new_file_in(anat, "desc-synthetic"),
                         signal.SIGKILL)
    assert code == -signal.SIGKILL
    _no_incomplete_final_files(output)
    assert not all(p.exists() for p in planned.values())  # killed before the end

    assert list(output.glob(".gadosynth-work-*"))  # SIGKILL: no chance to clean up
    resumed = run_cli(demo_bids, output, "participant", "--participant_label", "02",
                      "--nthreads", "1", "--work_dir", work, "--keep_work", *weights)
    assert resumed.returncode == 0, resumed.stderr
    assert not list(output.glob(".gadosynth-work-*"))  # the killed run's scratch was removed
    assert "sub-02: succeeded" in resumed.stderr
    assert "reused, only synthesis runs" in resumed.stderr  # ANTs' work was not lost
    assert all(derivatives.output_is_complete(p) for p in planned.values())
    assert len(list(work.glob(".gadosynth-work-*"))) == 1  # --keep_work kept it
    crop = planned["ce_crop"]
    # Same seed, same thread count, same input: preprocessing made from scratch here is
    # byte-identical to the demo run's (made in a worker process), which the resumed run reused.
    demo = planned_outputs(job, demo_participant_run[1])
    preprocessing = [key for key in planned if key not in output_keys("synthesis")]
    assert len(preprocessing) >= 8
    for key in preprocessing:
        assert derivatives.read_sidecar(planned[key])["FileSha256"] == \
            derivatives.read_sidecar(demo[key])["FileSha256"], key
    assert derivatives.read_sidecar(crop)["RandomSeed"] == 42
    stamp = crop.stat().st_mtime_ns

    skipped = run_cli(demo_bids, output, "participant", "--participant_label", "02",
                      "--work_dir", work, *weights)
    assert skipped.returncode == 0
    assert "sub-02: skipped" in skipped.stderr and "outputs already complete" in skipped.stderr
    assert crop.stat().st_mtime_ns == stamp
    assert len(list(work.glob(".gadosynth-work-*"))) == 1  # the second run cleaned its own

    # A damaged output is detected (completeness is checked, not assumed), so the scan is
    # recomputed; SIGTERM in the middle of that: a clean stop, temporary files and scratch
    # removed, exit 143 (128 + SIGTERM).
    crop.write_bytes(crop.read_bytes()[:1000])  # every other output is still complete
    log = tmp_path / "terminated.log"
    terminated = _start(log, demo_bids, output, "participant", "--participant_label", "02",
                        "--work_dir", work, *weights)
    code, stderr = _kill_when(terminated, log, lambda: ": preprocessing" in log.read_text(),
                              signal.SIGTERM)  # inside ANTs' preprocessing
    assert code == 143, stderr
    assert "terminated (SIGTERM)" in stderr and "Traceback" not in stderr
    assert not list(output.rglob(".*.partial-*")), "temporary files left after SIGTERM"
    assert len(list(work.glob(".gadosynth-work-*"))) == 1  # its scratch folder removed
    _no_incomplete_final_files(output, exempt={crop})


def test_side_by_side_runs_write_dataset_description_once(demo_bids, tmp_path):
    """Eight processes start on one fresh output folder at the same instant."""
    output = tmp_path / "out"
    start_at = time.time() + 3
    script = (
        "import sys, time, os\n"
        "from pathlib import Path\n"
        "from gado_bids.outputs import derivatives\n"
        f"time.sleep(max(0, {start_at} - time.time()))\n"
        f"derivatives.prepare_output_dataset(Path({str(demo_bids)!r}).resolve(), "
        f"Path({str(output)!r}), {{'Name': 'demo'}}, False)\n"
        f"print(os.stat(Path({str(output)!r}) / 'dataset_description.json').st_ino)\n")
    processes = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(8)]
    results = [p.communicate(timeout=120) for p in processes]
    assert all(p.returncode == 0 for p in processes), [r[1] for r in results]
    inodes = {int(r[0].strip()) for r in results}
    assert len(inodes) == 1  # one file, written once (a rewrite would be a new inode)
    description = json.loads((output / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert not [p for p in output.iterdir() if ".partial-" in p.name]
    assert os.stat(output / "dataset_description.json").st_ino in inodes


def test_a_data_file_never_has_its_final_name_without_its_sidecar(tmp_path, monkeypatch):
    """The sidecar is written before the data file is renamed into place: a stop between the two
    (here the rename fails, as if killed) leaves a sidecar without data, never data without the
    sidecar that pins it, and no temporary file."""
    import nibabel as nib
    import numpy as np
    from gado_bids import atomic
    path = tmp_path / "anat" / "sub-01_desc-test_T1w.nii.gz"
    volume = np.arange(24, dtype=np.float32).reshape(2, 3, 4)

    def write(temporary):
        nib.save(nib.Nifti1Image(volume, np.eye(4)), str(temporary))
        assert not path.exists() and not derivatives.sidecar_path(path).exists()

    real_replace = os.replace

    def killed_before_the_data_rename(source, target):
        if str(target) == str(path):
            raise KeyboardInterrupt("stopped before the data file was renamed")
        real_replace(source, target)

    monkeypatch.setattr(atomic.os, "replace", killed_before_the_data_rename)
    try:
        derivatives.write_with_sidecar(path, write, ["bids:raw:x"], {"RandomSeed": 1})
    except KeyboardInterrupt:
        pass
    assert not path.exists() and derivatives.sidecar_path(path).exists()
    assert not derivatives.output_is_complete(path)
    assert [p.name for p in path.parent.iterdir()] == ["sub-01_desc-test_T1w.json"]

    monkeypatch.setattr(atomic.os, "replace", real_replace)  # the next run writes both
    derivatives.write_with_sidecar(path, lambda t: nib.save(nib.Nifti1Image(volume, np.eye(4)),
                                                            str(t)), ["bids:raw:x"],
                                   {"RandomSeed": 1})
    assert derivatives.output_is_complete(path)
    sidecar = derivatives.read_sidecar(path)
    assert sidecar["FileSha256"] == hashing.sha256_of(path) and sidecar["RandomSeed"] == 1
    assert np.array_equal(nib.load(str(path)).get_fdata(), volume)
