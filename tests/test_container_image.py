"""The container image built and run the way users run it: read-only, offline, as uid 1000, with
no writable HOME (and, as with `docker run --read-only`, no writable /tmp either).

Builds the Dockerfile with podman on a local Debian base made by debootstrap (no registry is
reachable from CI machines), a CPU-only torch, then runs `--version` and the demo's participant
and group levels into mounted folders. Not part of the default suite (marker `container`,
several minutes): `.ci/run` runs it as its own step with `-m container`, where
GADOSYNTH_CONTAINER_TEST=required makes missing tools a failure instead of a skip.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.container

BASE_IMAGE = "localhost/gadosynth-base:bookworm"
IMAGE = "localhost/gadosynth:container-test"
VERSION = (REPO / "version").read_text().strip()
# The settings these machines need (FIELD-NOTES): crun fails on hybrid cgroups, and root cannot
# raise hard limits, so every container gets explicit ones.
CONTAINERS_CONF = """[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
[engine]
runtime = "runc"
"""
# What a library prints when it tried to write where it may not, and went on.
WRITE_FAILURES = re.compile(r"Read-only file system|Permission denied|No usable temporary "
                            r"directory|not writable|could not create", re.I)
MOUNT_CHECK = ("--read-only", "--read-only-tmpfs=false", "--net=none", "--user", "1000:1000",
               "-e", "HOME=/nonexistent/home")


def _missing_tools() -> list:
    missing = [tool for tool in ("podman", "runc", "debootstrap") if not shutil.which(tool)]
    if os.geteuid() != 0:
        missing.append("root (debootstrap and podman's storage)")
    return missing


@pytest.fixture(scope="module")
def podman_env(tmp_path_factory):
    missing = _missing_tools()
    if missing:
        message = (f"the container test needs {', '.join(missing)}: .ci/run installs podman, "
                   "runc and debootstrap from apt and runs it as root")
        if os.environ.get("GADOSYNTH_CONTAINER_TEST") == "required":
            pytest.fail(message)
        pytest.skip(message)
    conf = tmp_path_factory.mktemp("podman") / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    return {**os.environ, "CONTAINERS_CONF": str(conf)}


def _podman(env, *args, timeout=1800, check=True):
    result = subprocess.run(["podman", *args], env=env, capture_output=True, text=True,
                            timeout=timeout)
    if check:
        assert result.returncode == 0, f"podman {' '.join(args[:3])}...:\n" + \
            result.stdout[-4000:] + result.stderr[-4000:]
    return result


def _debian_mirror() -> str:
    """The Debian mirror apt already uses (CI machines reach it; others may be blocked)."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob(
        "*.sources")), *sorted(Path("/etc/apt/sources.list.d").glob("*.list"))]
    for path in sources:
        if path.is_file():
            for uri in re.findall(r"(?:^URIs:\s*|^deb\s+(?:\[[^]]*\]\s+)?)(\S+)",
                                  path.read_text(), re.M):
                if re.search(r"/debian/?$", uri):
                    return uri
    return "http://deb.debian.org/debian"


def _pip_config() -> dict:
    """pip's configuration here (files and PIP_* variables): option name -> values."""
    listing = subprocess.run([sys.executable, "-m", "pip", "config", "list"],
                             capture_output=True, text=True).stdout
    config = {}
    for line in listing.splitlines():
        key, _, value = line.partition("=")
        config.setdefault(key.split(".")[-1], set()).update(value.strip("'\"").split())
    return config


def _pip_build_options() -> tuple:
    """(podman build -v options, pip options) that give the build this machine's pip sources:
    local wheel folders and indexes mounted read-only at the same paths, and its CA bundle (PyPI
    may sit behind a TLS proxy). Without a local torch CPU wheel, PyTorch's CPU wheel index is
    added: PyPI's torch is the CUDA build (several GB), not needed for a CPU test image."""
    config = _pip_config()
    volumes, options = set(), []
    for option in ("index-url", "extra-index-url", "find-links"):
        for value in sorted(config.get(option, ())):
            local = Path(value[len("file://"):] if value.startswith("file://") else value)
            if local.is_absolute() and local.exists():
                mount = local.parent if local.name == "simple" else local
                volumes.add(f"{mount}:{mount}:ro")
            options += [f"--{option}", value]
    for cert in sorted(config.get("cert", ()))[:1]:
        volumes.add(f"{cert}:/opt/host-pip/ca.crt:ro")
        options += ["--cert", "/opt/host-pip/ca.crt"]
    if not any(list(Path(folder).glob("torch-*+cpu-*.whl"))
               for folder in config.get("find-links", ()) if Path(folder).is_dir()):
        options += ["--extra-index-url", "https://download.pytorch.org/whl/cpu"]
    return [part for volume in sorted(volumes) for part in ("-v", volume)], options


@pytest.fixture(scope="module")
def image(podman_env, tmp_path_factory):
    timings = {}
    if _podman(podman_env, "image", "exists", BASE_IMAGE, check=False).returncode != 0:
        rootfs = tmp_path_factory.mktemp("rootfs")
        started = time.time()
        subprocess.run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs),
                        _debian_mirror()], check=True, capture_output=True, timeout=900)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(["podman", "import", "-", BASE_IMAGE], stdin=tar.stdout, env=podman_env,
                       check=True, capture_output=True, timeout=600)
        assert tar.wait() == 0
        shutil.rmtree(rootfs, ignore_errors=True)
        timings["base_s"] = round(time.time() - started, 1)
    volumes, pip_options = _pip_build_options()
    started = time.time()
    _podman(podman_env, "build", "--pull=never", "--build-arg", f"BASE={BASE_IMAGE}",
            "--build-arg", "PIP_OPTIONS=" + " ".join(pip_options),
            *volumes, "-t", IMAGE, str(REPO))
    timings["build_s"] = round(time.time() - started, 1)
    size = _podman(podman_env, "image", "inspect", IMAGE, "--format", "{{.Size}}").stdout
    timings["image_mb"] = round(int(size.strip()) / 1e6)
    print(f"container image: {json.dumps(timings)}")
    return IMAGE


def _run(podman_env, image, *args, mounts=()):
    volumes = [part for source, target, mode in mounts
               for part in ("-v", f"{source}:{target}:{mode}")]
    started = time.time()
    result = _podman(podman_env, "run", "--rm", *MOUNT_CHECK, *volumes, image, *args,
                     check=False)
    return result, time.time() - started


def test_version_read_only_offline(podman_env, image):
    result, _ = _run(podman_env, image, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"gadosynth {VERSION}"


def _readable_copy_of_demo(tmp_path) -> Path:
    from gado_bids.demo.simulate import write_demo_dataset
    bids = write_demo_dataset(tmp_path / "bids", n_subjects=3, seed=0)
    for path in [bids, *bids.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)  # uid 1000 reads it
    tmp_path.chmod(0o755)
    return bids


def _tree_digest(folder: Path) -> dict:
    from gado_bids.hashing import sha256_of
    return {str(p.relative_to(folder)): sha256_of(p) for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_demo_both_levels_read_only_offline_uid_1000(podman_env, image, tmp_path):
    bids = _readable_copy_of_demo(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    os.chown(out, 1000, 1000)
    mounts = [(bids, "/bids", "ro"), (out, "/out", "rw")]
    input_digest = _tree_digest(bids)
    seconds = {}
    for level in ("participant", "group"):
        result, seconds[level] = _run(podman_env, image, "/bids", "/out", level, "--nthreads",
                                      "2", mounts=mounts)
        log = result.stdout + result.stderr
        assert result.returncode == 0, f"{level} level:\n{log[-6000:]}"
        assert not WRITE_FAILURES.findall(log), f"{level} level tried to write outside its " \
            f"mounts: {sorted(set(WRITE_FAILURES.findall(log)))}\n{log[-4000:]}"
    print(f"container demo run: participant {seconds['participant']:.0f} s, "
          f"group {seconds['group']:.0f} s")
    # Complete outputs, checked with the product's own completeness rule (SHA-256 of every file).
    from gado_bids.discovery.selection import open_layout, select_scans
    from gado_bids.outputs.spec import complete
    selection = select_scans(open_layout(bids), ce_label="gadolinium")
    jobs = [job for jobs in selection.jobs_by_subject.values() for job in jobs]
    assert len(jobs) == 3 and all(complete(job, out) for job in jobs)
    from gado_bids.outputs.group_tables import read_table
    from gado_bids.outputs.naming import group_paths
    sessions = read_table(group_paths(out)["sessions"])
    assert [row["status"] for row in sessions] == ["measured"] * 3
    assert group_paths(out)["report"].is_file()
    # No scratch left behind in the output folder, the input untouched.
    assert not list(out.glob(".gadosynth-work-*"))
    assert _tree_digest(bids) == input_digest
