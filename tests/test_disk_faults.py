"""A full output disk and a read-only input, for real: a small tmpfs and a read-only bind mount
in a private mount namespace (unshare), so the test needs no privileges of its own when user
namespaces are allowed, and leaves no mount behind."""
import hashlib
import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO
from gado_bids.outputs import derivatives

SCRIPT = """
set -u
mount -t tmpfs -o size=8m tmpfs "$OUT"
mount --bind "$BIDS" "$RO" && mount -o remount,bind,ro "$RO"
touch "$RO/probe" 2>/dev/null && echo "input is writable" > "$LOG" && exit 3
"$PYTHON" "$RUN" "$RO" "$OUT/gadosynth" participant --participant_label 01 \\
    --work_dir "$WORK" --nthreads 2 > "$LOG" 2>&1
echo $? > "$CODE"
cp -a "$OUT/." "$COPY/"
"""


def _namespace_command():
    if shutil.which("unshare") is None:
        return None
    command = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-r", "-m"]
    probe = subprocess.run(command + ["sh", "-c", "mount -t tmpfs tmpfs /mnt 2>/dev/null || "
                                      "mount -t tmpfs tmpfs /tmp"], capture_output=True)
    return command if probe.returncode == 0 else None


def _snapshot(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_full_disk_gives_a_clear_error_and_no_corrupt_output(copy_of_demo, tmp_path):
    command = _namespace_command()
    if command is None:
        pytest.skip("cannot create a private mount namespace here (unshare missing or user "
                    "namespaces disabled): the full-disk test needs a tmpfs mount")
    folders = {name: tmp_path / name for name in ("out", "ro", "work", "copy")}
    for folder in folders.values():
        folder.mkdir()
    before = _snapshot(copy_of_demo)
    environment = {**os.environ, "OUT": str(folders["out"]), "RO": str(folders["ro"]),
                   "BIDS": str(copy_of_demo), "WORK": str(folders["work"]),
                   "COPY": str(folders["copy"]), "LOG": str(tmp_path / "run.log"),
                   "CODE": str(tmp_path / "code"), "PYTHON": sys.executable,
                   "RUN": str(REPO / "run.py")}
    result = subprocess.run(command + ["sh", "-c", SCRIPT], env=environment, capture_output=True,
                            text=True, timeout=900)
    log = (tmp_path / "run.log").read_text()
    assert result.returncode == 0, result.stderr + log
    code = int((tmp_path / "code").read_text())
    assert code == 73, log
    assert "no space left on the output or work file system" in log
    assert "Traceback" not in log.split("summary:")[-1]  # the last word is the message
    assert "sub-01: failed" in log
    output = folders["copy"] / "gadosynth"
    finals = [p for p in output.rglob("*") if p.is_file() and not any(
        part.startswith(".") for part in p.relative_to(output).parts)]
    assert any(p.name.endswith(".nii.gz") for p in finals)  # it got as far as writing
    for path in finals:
        if path.name.endswith((".nii.gz", ".mat", ".png")):
            assert derivatives.output_is_complete(path), f"corrupt output {path}"
    assert not list(output.rglob(".*.partial-*")), "temporary files left on the full disk"
    assert _snapshot(copy_of_demo) == before  # the (read-only mounted) input is untouched
