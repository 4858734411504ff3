"""Validate the input dataset with the BIDS Standard's own validator before trusting its names.

We use `bids_validator.BIDSValidator` (the bids-standard Python package that pybids depends on): it
checks every file name against the BIDS schema's rules. It does not read file contents (the
deno/JS validator does that and would need a JavaScript runtime in the image); the contents of the
images we use are checked separately, per participant, by `discovery.nifti_checks`.
"""
import fnmatch
import json
import os
from pathlib import Path

from bids_validator import BIDSValidator

from gado_bids.errors import ExitCode, GadoError

# Top-level folders that the BIDS specification leaves free-form.
UNCHECKED_TOP_LEVEL = {"derivatives", "sourcedata", "code", "stimuli"}
MAX_LISTED = 10


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
    """Relative paths of the files whose names break the BIDS rules."""
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


def validate_bids_dataset(bids_dir: Path) -> None:
    """Raise a GadoError (exit 16) that lists what is wrong; return quietly on a valid dataset."""
    description = read_dataset_description(bids_dir)
    problems = [f"dataset_description.json lacks the required field '{key}'"
                for key in ("Name", "BIDSVersion") if key not in description]
    invalid = find_invalid_files(bids_dir)
    problems += [f"not a BIDS file name: {path}" for path in invalid[:MAX_LISTED]]
    if len(invalid) > MAX_LISTED:
        problems.append(f"... and {len(invalid) - MAX_LISTED} more files with non-BIDS names")
    if problems:
        listing = "\n  ".join(problems)
        raise GadoError(f"the input dataset '{bids_dir}' failed BIDS validation:\n  {listing}\n"
                        "Rename or remove these files (or list them in .bidsignore), or pass "
                        "--skip_bids_validator to go on at your own risk.",
                        ExitCode.VALIDATION_FAILED)
