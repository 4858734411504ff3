"""Validate the input dataset with the BIDS community's current validator before trusting it.

The validator is `bids-validator-deno` (PyPI: the 2.x/3.x schema validator with its own deno
runtime; no Node, no network). It checks names against the schema, reads JSON sidecars and NIfTI
headers, and honours .bidsignore. Its errors are sorted in two kinds:
- dataset-level (no or broken dataset_description.json, files outside the layout): exit 16, with
  the first issues, their files and the validator's codes;
- errors about one participant's file contents (PARTICIPANT_FILE_CODES, e.g. an unreadable NIfTI
  header): that participant fails with the validator's message and the others go on, as a
  warehouse run needs.
Warnings are summarised in the log, per code. Our own check of dataset_description.json's required
fields runs first (clearer messages). Should the validator be missing from the installation, the
file-name check of the `bids_validator` Python package (what gadosynth 0.1 used) runs instead,
with a warning; the contents of the images we use are checked per participant by
`discovery.nifti_checks` either way.
"""
import fnmatch
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from gado_bids.errors import ExitCode, GadoError

LOG = logging.getLogger("gadosynth")
# Top-level folders that the BIDS specification leaves free-form.
UNCHECKED_TOP_LEVEL = {"derivatives", "sourcedata", "code", "stimuli"}
MAX_LISTED = 10
VALIDATOR = "bids-validator-deno"
VALIDATOR_TIMEOUT_S = 600
# Errors about what is inside one file: they fail the participant the file belongs to.
PARTICIPANT_FILE_CODES = {"NIFTI_HEADER_UNREADABLE", "EMPTY_FILE", "JSON_INVALID",
                          "NIFTI_DIMENSION", "NIFTI_UNIT", "NIFTI_PIXDIM", "INVALID_GZIP"}


def check_bids_dir_readable(bids_dir: Path) -> Path:
    bids_dir = Path(bids_dir).expanduser()
    if not bids_dir.exists():
        raise GadoError(f"bids_dir '{bids_dir}' does not exist: give the path to the root of a "
                        "BIDS dataset (the folder holding dataset_description.json)",
                        ExitCode.NO_INPUT)
    if not bids_dir.is_dir():
        raise GadoError(f"bids_dir '{bids_dir}' is a file, not a folder: give the root folder of "
                        "the BIDS dataset", ExitCode.NO_INPUT)
    if not os.access(bids_dir, os.R_OK | os.X_OK):
        raise GadoError(f"bids_dir '{bids_dir}' cannot be read by this user: fix its permissions "
                        "(in a container, check the bind mount)", ExitCode.NO_INPUT)
    return bids_dir.resolve()


def read_dataset_description(bids_dir: Path) -> dict:
    path = bids_dir / "dataset_description.json"
    if not path.is_file():
        raise GadoError(f"'{bids_dir}' is not a BIDS dataset: it has no dataset_description.json. "
                        "Point bids_dir at the dataset's root folder, or convert the data to BIDS "
                        "first (e.g. with dcm2bids or HeuDiConv)", ExitCode.VALIDATION_FAILED)
    try:
        description = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise GadoError(f"{path} is not valid JSON ({error}): fix the file",
                        ExitCode.VALIDATION_FAILED) from error
    if not isinstance(description, dict):
        raise GadoError(f"{path} must hold a JSON object", ExitCode.VALIDATION_FAILED)
    return description


def _bidsignore_patterns(bids_dir: Path) -> list:
    path = bids_dir / ".bidsignore"
    if not path.is_file():
        return []
    return [line.strip() for line in path.read_text().splitlines()
            if line.strip() and not line.startswith("#")]


def _ignored(relative: str, patterns) -> bool:
    name = relative.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(relative, p.lstrip("/")) or fnmatch.fnmatch(name, p)
               or relative.startswith(p.strip("/") + "/") for p in patterns)


def find_invalid_files(bids_dir: Path) -> list:
    """Relative paths of the files whose names break the BIDS rules (the fallback check)."""
    from bids_validator import BIDSValidator
    validator = BIDSValidator()
    patterns = _bidsignore_patterns(bids_dir)
    invalid = []
    for root, dirs, files in os.walk(bids_dir):
        root_path = Path(root)
        if root_path == bids_dir:
            dirs[:] = [d for d in dirs if d not in UNCHECKED_TOP_LEVEL]
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            relative = (root_path / name).relative_to(bids_dir).as_posix()
            if _ignored(relative, patterns):
                continue
            if not validator.is_bids("/" + relative):
                invalid.append(relative)
    return invalid


def _validator_executable():
    beside = Path(sys.executable).with_name(VALIDATOR)  # the venv's or image's own
    return str(beside) if beside.is_file() else shutil.which(VALIDATOR)


def run_validator(bids_dir: Path, executable: str) -> list:
    """The validator's issues: dicts with code, severity, location (dataset-relative, '/...'),
    message. deno's cache and HOME point into a private temporary folder (or nowhere, when none
    can be made: deno needs none), so a read-only container without a writable HOME works."""
    try:
        scratch = tempfile.mkdtemp(prefix="gadosynth-validator-")
    except OSError:  # a read-only container without a temporary folder: deno needs none
        scratch = None
    place = scratch or "/nonexistent-gadosynth-scratch"
    environment = {**os.environ, "NO_COLOR": "1", "DENO_DIR": str(Path(place) / "deno"),
                   "HOME": place, "XDG_CACHE_HOME": place}
    try:
        result = subprocess.run([executable, "--format", "json", str(bids_dir)],
                                capture_output=True, text=True, cwd=scratch or "/",
                                env=environment, timeout=VALIDATOR_TIMEOUT_S)
    except subprocess.TimeoutExpired as error:
        raise GadoError(f"the BIDS validator did not finish within {VALIDATOR_TIMEOUT_S} s "
                        "on this dataset: pass --skip_bids_validator to go on without it",
                        ExitCode.VALIDATION_FAILED) from error
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError as error:
        raise GadoError(f"the BIDS validator ({executable}) failed (exit {result.returncode}): "
                        f"{(result.stderr or result.stdout).strip()[-500:]}\nPass "
                        "--skip_bids_validator to go on without it",
                        ExitCode.VALIDATION_FAILED) from error
    messages = report.get("issues", {}).get("codeMessages", {})
    return [{"code": issue.get("code", "?"), "severity": issue.get("severity", "error"),
             "location": issue.get("location") or "",
             "message": issue.get("issueMessage") or messages.get(issue.get("code"), "")}
            for issue in report.get("issues", {}).get("issues", [])]


def _participant_of(location: str):
    first = location.lstrip("/").split("/", 1)[0]
    return first[len("sub-"):] if first.startswith("sub-") and "/" in location.lstrip("/") \
        else None


def sort_issues(issues) -> tuple:
    """(dataset-level errors, {participant label: [errors]}, Counter of warning codes). A file
    with any dataset-level error (a wrong name) counts wholly as dataset-level."""
    errors = [i for i in issues if i["severity"] == "error"]
    warnings = Counter(i["code"] for i in issues if i["severity"] == "warning")
    misplaced = {i["location"] for i in errors if i["code"] not in PARTICIPANT_FILE_CODES}
    dataset, participants = [], {}
    for issue in errors:
        subject = _participant_of(issue["location"])
        if issue["code"] in PARTICIPANT_FILE_CODES and subject and \
                issue["location"] not in misplaced:
            participants.setdefault(subject, []).append(issue)
        else:
            dataset.append(issue)
    return dataset, participants, warnings


def _describe(issue) -> str:
    where = issue["location"].lstrip("/") or "the dataset"
    return f"{issue['code']}: {where}" + (f" ({issue['message']})" if issue["message"] else "")


def validate_bids_dataset(bids_dir: Path) -> dict:
    """Raise a GadoError (exit 16) that lists the dataset-level problems; return the errors that
    concern single participants' files, as {participant label: message} (empty when valid)."""
    bids_dir = Path(bids_dir)
    description = read_dataset_description(bids_dir)
    problems = [f"dataset_description.json lacks the required field '{key}'"
                for key in ("Name", "BIDSVersion") if key not in description]
    participant_errors = {}
    executable = _validator_executable()
    if executable is None:
        LOG.warning("%s is not installed: only file names are checked (bids_validator). "
                    "Reinstall gadosynth to get the full validation", VALIDATOR)
        invalid = find_invalid_files(bids_dir)
        problems += [f"not a BIDS file name: {path}" for path in invalid[:MAX_LISTED]]
        if len(invalid) > MAX_LISTED:
            problems.append(f"... and {len(invalid) - MAX_LISTED} more files with non-BIDS names")
    else:
        dataset, participants, warnings = sort_issues(run_validator(bids_dir, executable))
        if warnings:
            LOG.info("BIDS validator warnings (not fatal): %s", ", ".join(
                f"{code} x{count}" for code, count in warnings.most_common()))
        problems += [_describe(issue) for issue in dataset[:MAX_LISTED]]
        if len(dataset) > MAX_LISTED:
            problems.append(f"... and {len(dataset) - MAX_LISTED} more errors")
        for subject, found in participants.items():
            participant_errors[subject] = "BIDS validator: " + "; ".join(
                _describe(issue) for issue in found[:3])
            LOG.warning("sub-%s: %s", subject, participant_errors[subject])
    if problems:
        listing = "\n  ".join(problems)
        raise GadoError(f"the input dataset '{bids_dir}' failed BIDS validation:\n  {listing}\n"
                        "Rename or remove these files (or list them in .bidsignore), or pass "
                        "--skip_bids_validator to go on at your own risk.",
                        ExitCode.VALIDATION_FAILED)
    return participant_errors
