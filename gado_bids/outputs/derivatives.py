"""The output dataset: where it may live, its dataset_description.json, sidecars, completeness."""
import contextlib
import fcntl
import functools
import json
import os
import platform
from pathlib import Path

import nibabel as nib

from gado_bids import __version__, atomic
from gado_bids.errors import ExitCode, GadoError
from gado_bids.hashing import sha256_of

PIPELINE_NAME = "gadosynth"
# Not BIDS files, so validators should skip them: run records, group tables and reports.
BIDSIGNORE = "logs/\ngroup/\n*.html\n"
BIDS_VERSION = "1.9.0"


def container_info():
    """Set by our Dockerfile / Singularity.def; None outside a container."""
    kind = os.environ.get("GADOSYNTH_CONTAINER")
    if not kind:
        return None
    return {"Type": kind, "Tag": os.environ.get("GADOSYNTH_IMAGE", f"gadosynth:{__version__}")}


@functools.lru_cache(maxsize=None)
def software_versions() -> dict:
    """Versions of everything that shapes the numbers, recorded in every sidecar."""
    import importlib.metadata as metadata
    versions = {"gadosynth": __version__, "python": platform.python_version()}
    for package in ("numpy", "scipy", "nibabel", "pybids", "antspyx", "torch", "nilearn"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def check_output_location(bids_dir: Path, output_dir: Path) -> Path:
    output_dir = Path(output_dir).expanduser().resolve()
    if output_dir == bids_dir:
        raise GadoError("output_dir is the input bids_dir: outputs would overwrite raw data. "
                        "Use e.g. bids_dir/derivatives/gadosynth or a folder outside it",
                        ExitCode.USAGE)
    if bids_dir in output_dir.parents and (bids_dir / "derivatives") not in (
            [output_dir] + list(output_dir.parents)):
        raise GadoError(f"output_dir '{output_dir}' lies inside the input dataset '{bids_dir}' "
                        "but not under its derivatives/ folder: it would be read as raw data. "
                        "Use bids_dir/derivatives/gadosynth or a folder outside bids_dir",
                        ExitCode.USAGE)
    if output_dir in bids_dir.parents:
        raise GadoError(f"output_dir '{output_dir}' contains the input dataset '{bids_dir}': "
                        "choose a separate folder", ExitCode.USAGE)
    return output_dir


def ensure_writable_dir(folder: Path, what: str) -> Path:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".gadosynth-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise GadoError(f"cannot write to {what} '{folder}': {error.strerror or error}. Choose a "
                        "writable folder (in a container, mount it read-write)",
                        ExitCode.CANNOT_CREATE_OUTPUT) from error
    return folder


def make_dataset_description(bids_dir: Path, source_description: dict) -> dict:
    generated_by = {"Name": PIPELINE_NAME, "Version": __version__,
                    "Description": "Synthetic non-contrast T1w from gadolinium-enhanced T1w "
                                   "(3D U-Net; Bottani et al., SPIE Medical Imaging 2022)"}
    container = container_info()
    if container:
        generated_by["Container"] = container
    source = {"URL": bids_dir.as_uri()}
    for key in ("DatasetDOI", "Version"):
        if source_description.get(key):
            source["DOI" if key == "DatasetDOI" else "Version"] = source_description[key]
    return {
        "Name": f"gadosynth outputs for: {source_description.get('Name', bids_dir.name)}",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [generated_by],
        "SourceDatasets": [source],
        "DatasetLinks": {"raw": bids_dir.as_uri()},
    }


def prepare_output_dataset(bids_dir: Path, output_dir: Path, source_description: dict,
                           overwrite: bool) -> Path:
    """Create or reuse output_dir; refuse one written by another tool or version."""
    output_dir = check_output_location(bids_dir, output_dir)
    ensure_writable_dir(output_dir, "output_dir")
    with output_lock(output_dir):
        return _write_description_once(bids_dir, output_dir, source_description, overwrite)


@contextlib.contextmanager
def output_lock(output_dir: Path):
    """An exclusive lock on the output dataset's shared files, for runs side by side.

    Many jobs (an array of participant jobs, or several nodes) may start at once on one output
    folder: under the lock, the first writes dataset_description.json and the others read it.
    flock works across processes and, on Linux NFS v4 and Lustre/GPFS, across nodes."""
    handle = os.open(output_dir / ".gadosynth.lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        os.close(handle)


def _write_description_once(bids_dir, output_dir, source_description, overwrite) -> Path:
    description_path = output_dir / "dataset_description.json"
    if description_path.exists():
        try:
            existing = json.loads(description_path.read_text())
            producer = existing.get("GeneratedBy", [{}])[0]
        except (OSError, ValueError, AttributeError, IndexError, TypeError):
            producer = {}
        same = producer.get("Name") == PIPELINE_NAME and producer.get("Version") == __version__
        if not same and not overwrite:
            found = f"{producer.get('Name', 'unknown tool')} {producer.get('Version', '?')}"
            raise GadoError(f"output_dir '{output_dir}' already holds outputs of {found}, not of "
                            f"gadosynth {__version__}: mixing versions in one dataset is unsafe. "
                            "Use a new output folder, or --overwrite to recompute everything "
                            "with this version", ExitCode.CANNOT_CREATE_OUTPUT)
        if same:
            return output_dir  # written once, never rewritten by later runs
    atomic.write_json(description_path, make_dataset_description(bids_dir, source_description))
    atomic.write_bytes(output_dir / ".bidsignore", BIDSIGNORE.encode())
    return output_dir


def bids_uri(bids_dir: Path, path: Path) -> str:
    """'bids:raw:<relative path>' for inputs, resolvable through DatasetLinks."""
    return f"bids:raw:{Path(path).resolve().relative_to(bids_dir).as_posix()}"


def sidecar_path(data_path: Path) -> Path:
    name = data_path.name
    for extension in (".nii.gz", ".nii", ".mat", ".h5", ".html", ".png"):
        if name.endswith(extension):
            return data_path.with_name(name[: -len(extension)] + ".json")
    raise ValueError(f"no sidecar convention for {name}")


def read_sidecar(data_path: Path) -> dict:
    return json.loads(sidecar_path(Path(data_path)).read_text())


def write_with_sidecar(data_path: Path, write, sources: list, provenance: dict,
                       **fields) -> Path:
    """write(temporary path) fills the data file; its JSON sidecar names the sources and pins it
    by SHA-256.

    The sidecar is written first, from the data still under its hidden temporary name, and the
    data is moved into place last: a data file under its final name always has its sidecar, so
    a run killed in between leaves at most a sidecar without data, which reads as incomplete."""
    data_path = Path(data_path)
    with atomic.atomic_path(data_path) as temporary:
        write(temporary)
        content = {**fields, "Sources": sources, "FileSha256": sha256_of(temporary), **provenance}
        atomic.write_json(sidecar_path(data_path), content)
    return data_path


def output_is_complete(data_path: Path) -> bool:
    """True when the file exists, matches the SHA-256 its sidecar recorded, and (for NIfTI) loads."""
    data_path = Path(data_path)
    try:
        sidecar = read_sidecar(data_path)
        if sidecar.get("FileSha256") != sha256_of(data_path):
            return False
        if data_path.name.endswith((".nii", ".nii.gz")):
            nib.load(str(data_path)).get_fdata(dtype="float32")
    except Exception:  # any unreadable piece means: not complete, recompute it
        return False
    return True
