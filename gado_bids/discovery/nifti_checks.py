"""Read an input NIfTI defensively: a corrupt, truncated or non-3D image fails its participant with
a message that names the file and the problem, never with a bare traceback."""
import gzip
from pathlib import Path

import nibabel as nib
import numpy as np

from gado_bids.errors import InputImageError


def _check_gzip_stream(path: Path):
    """Read the compressed stream to its end: gzip checks its CRC and length there.

    nibabel stops reading once it has the voxels, so a file cut inside the gzip trailer (or with
    a corrupted CRC) would otherwise load; found by the property-based tests."""
    with gzip.open(path, "rb") as stream:
        while stream.read(1 << 24):
            pass


def load_3d_image(path: Path) -> nib.Nifti1Image:
    """The image as a float32 3D NIfTI with its data fully read (so truncation shows up here)."""
    path = Path(path)
    try:
        if path.name.endswith(".gz"):
            _check_gzip_stream(path)
        image = nib.load(str(path))
        data = np.asanyarray(image.dataobj)
        affine = image.affine
        zooms = image.header.get_zooms()[:3]
    except Exception as error:  # noqa: BLE001 - untrusted bytes: any failure means unreadable
        # (seen: OSError, EOFError, zlib/gzip errors, ImageFileError, HeaderDataError from a bad
        # vox_offset, ValueError/TypeError from impossible dims, MemoryError from huge dims)
        raise InputImageError(f"{path.name}: cannot read the image ({type(error).__name__}: "
                              f"{error}); the file is corrupt or truncated - re-export it") from error
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputImageError(f"{path.name}: a {data.ndim}D image of shape {data.shape}; a 3D "
                              "structural T1w volume is needed (split 4D series first)")
    if min(data.shape) < 8:
        raise InputImageError(f"{path.name}: shape {data.shape} is too small for a brain volume "
                              "(a 2D slice or localiser?)")
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-6:
        raise InputImageError(f"{path.name}: its affine (voxel-to-world matrix) is degenerate; "
                              "fix the header's qform/sform")
    if not all(np.isfinite(z) and z > 0 for z in zooms):
        raise InputImageError(f"{path.name}: voxel sizes {zooms} are not positive")
    data = np.asarray(data, dtype=np.float32)
    if not np.all(np.isfinite(data)):
        raise InputImageError(f"{path.name}: the image holds NaN or infinite values")
    if float(data.max()) <= float(data.min()):
        raise InputImageError(f"{path.name}: the image is constant ({float(data.min())})")
    return nib.Nifti1Image(data, affine)
