"""Container recipes, checked as far as a machine without a Docker engine can."""
import re
import shutil
import subprocess

import pytest

from conftest import REPO

VERSION = (REPO / "version").read_text().strip()


@pytest.fixture(scope="module")
def dockerfile():
    from dockerfile_parse import DockerfileParser
    parser = DockerfileParser(path=str(REPO / "Dockerfile"))
    return parser


def test_hadolint_passes():
    hadolint = shutil.which("hadolint") or str(REPO / ".venv" / "bin" / "hadolint")
    result = subprocess.run([hadolint, str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_base_user_entrypoint_and_labels(dockerfile):
    assert re.match(r"nvidia/cuda:[\d.]+-(cudnn-)?runtime-", dockerfile.baseimage)
    users = [i["value"] for i in dockerfile.structure if i["instruction"] == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    entrypoint = [i["value"] for i in dockerfile.structure if i["instruction"] == "ENTRYPOINT"]
    assert entrypoint == ['["python3", "/opt/gadosynth/run.py"]']
    args = {i["value"].split("=")[0]: i["value"].split("=")[1]
            for i in dockerfile.structure if i["instruction"] == "ARG"}
    assert args["VERSION"] == VERSION
    assert dockerfile.labels["org.opencontainers.image.version"] == VERSION  # ARG substituted
    env = dockerfile.envs
    assert env["GADOSYNTH_CONTAINER"] == "docker" and env["HOME"] == "/tmp"


def test_dockerfile_copies_files_that_exist(dockerfile):
    for instruction in dockerfile.structure:
        if instruction["instruction"] == "COPY":
            sources = instruction["value"].split()[:-1]
            for source in sources:
                assert (REPO / source).exists(), source


def test_singularity_recipe_sections_and_files():
    text = (REPO / "Singularity.def").read_text()
    sections = re.findall(r"^%(\w+)", text, flags=re.M)
    # spython drops misspelled sections silently: check the names ourselves.
    assert set(sections) <= {"labels", "files", "post", "environment", "runscript", "test",
                             "help", "setup", "startscript", "apprun"}
    assert {"files", "post", "environment", "runscript", "labels"} <= set(sections)
    from spython.main.parse.parsers import SingularityParser
    (recipe,) = SingularityParser(str(REPO / "Singularity.def")).recipe.values()
    assert recipe.fromHeader.startswith("nvidia/cuda:")
    assert recipe.files
    for entry in recipe.files:
        source = entry.split()[0]
        assert (REPO / source).exists(), source
    assert recipe.cmd == 'exec /opt/venv/bin/python3 /opt/gadosynth/run.py "$@"'
    assert f"Version {VERSION}" in text
    assert "GADOSYNTH_CONTAINER=singularity" in text
    # Same base image as Docker: one environment for both.
    # The Dockerfile's FROM takes its base from the BASE build argument: compare its default.
    docker_base = re.search(r"^ARG BASE=(\S+)", (REPO / "Dockerfile").read_text(),
                            re.M).group(1)
    assert recipe.fromHeader == docker_base


def test_scratch_is_redirected_to_the_work_folder(tmp_path, monkeypatch):
    """What makes --read-only and --containall work: nothing is written outside work_dir."""
    import os
    import tempfile
    from gado_bids import runtime
    for variable in ("TMPDIR", "MPLCONFIGDIR", "XDG_CACHE_HOME", "TORCHINDUCTOR_CACHE_DIR"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(tempfile, "tempdir", None)
    runtime.redirect_scratch(tmp_path)
    for variable in ("TMPDIR", "MPLCONFIGDIR", "XDG_CACHE_HOME", "TORCHINDUCTOR_CACHE_DIR"):
        assert os.environ[variable].startswith(str(tmp_path))
    assert tempfile.gettempdir().startswith(str(tmp_path))


def test_readme_starts_with_the_two_commands_and_ci_runs_the_test_one():
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, flags=re.S)
    setup, tests = blocks[0].strip(), blocks[1].strip()
    assert "gadosynth-demo demo_bids" in setup and "participant" in setup and "group" in setup
    assert "pytest" in tests
    assert tests in (REPO / ".ci" / "run").read_text()
    for option in ("--participant_label", "--session_label", "--ce_label", "--bids_filter_file",
                   "--skip_bids_validator", "--model", "--weights", "--device", "--nthreads", "--seed", "--work_dir",
                   "--keep_work", "--overwrite", "--version"):
        assert f"`{option}" in readme, option
