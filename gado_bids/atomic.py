"""Atomic writes: a file appears under its final name complete or not at all.

Each writer fills a hidden temporary file in the destination folder (same file system, so the
final os.replace is atomic; hidden, so BIDS tools ignore leftovers of a killed run) and renames it.
"""
import contextlib
import json
import os
import socket
import tempfile
from pathlib import Path

import nibabel as nib


def owner_tag() -> str:
    """host-pid: names the process that owns a temporary file or folder."""
    return f"{socket.gethostname()}-{os.getpid()}"


def owner_is_gone(tag_and_rest: str) -> bool:
    """True when a name starting with 'host-pid-' belongs to a dead process of this host.

    Other hosts' (a shared file system) and other users' processes are never judged gone."""
    host = socket.gethostname()
    if not tag_and_rest.startswith(f"{host}-"):
        return False
    try:
        pid = int(tag_and_rest[len(host) + 1:].split("-")[0])
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (ValueError, PermissionError):
        return False
    return False


def remove_abandoned_partials(folder: Path) -> int:
    """Delete temporary files left by killed writers (SIGKILL gives them no chance)."""
    removed = 0
    for path in Path(folder).glob(".*.partial-*"):
        if owner_is_gone(path.name.split(".partial-", 1)[1]):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(final_path: Path):
    """Yield a temporary path next to final_path; on success move it into place.

    The final file gets the usual permissions (0666 less the umask), not mkstemp's private 0600:
    outputs on shared clusters must stay readable by the group."""
    final_path = Path(final_path)
    final_path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(final_path.suffixes)  # keep .nii.gz so writers pick the right format
    handle, temporary = tempfile.mkstemp(prefix=f".{final_path.name}.partial-{owner_tag()}-",
                                         suffix=suffix, dir=final_path.parent)
    os.close(handle)
    temporary = Path(temporary)
    try:
        yield temporary
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        os.chmod(temporary, _default_mode())
        os.replace(temporary, final_path)
    finally:
        if temporary.exists():
            temporary.unlink()


def write_bytes(final_path: Path, payload: bytes) -> Path:
    with atomic_path(final_path) as temporary:
        temporary.write_bytes(payload)
    return Path(final_path)


def write_json(final_path: Path, content) -> Path:
    return write_bytes(final_path, (json.dumps(content, indent=2, sort_keys=False) + "\n").encode())


def save_nifti(image: nib.Nifti1Image, final_path: Path) -> Path:
    with atomic_path(final_path) as temporary:
        nib.save(image, str(temporary))
    return Path(final_path)
