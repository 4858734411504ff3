"""Property-based faults on NIfTI inputs: whatever the bytes, reading either yields a usable 3D
image or raises InputImageError with the file's name - never another exception."""
import gzip
import io
import struct

import nibabel as nib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gado_bids.discovery.nifti_checks import load_3d_image
from gado_bids.errors import InputImageError

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True,  # same cases in CI
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def _valid_bytes(shape=(12, 14, 10), dtype=np.int16) -> bytes:
    data = (np.arange(np.prod(shape)).reshape(shape) % 97).astype(dtype)
    image = nib.Nifti1Image(data, np.diag([1.2, 1.0, 1.5, 1.0]))
    return image.to_bytes()


VALID = _valid_bytes()


def _check(path):
    try:
        image = load_3d_image(path)
    except InputImageError as error:
        assert path.name in str(error)
        return None
    data = np.asarray(image.dataobj)
    assert data.ndim == 3 and min(data.shape) >= 8 and np.isfinite(data).all()
    assert data.max() > data.min() and abs(np.linalg.det(image.affine[:3, :3])) > 1e-6
    return image


@SETTINGS
@given(offset=st.integers(0, 347), values=st.binary(min_size=1, max_size=8))
def test_any_header_corruption_is_read_or_refused_cleanly(tmp_path, offset, values):
    """Overwrite bytes anywhere in the 348-byte header (dims, datatype, scaling, qform...)."""
    corrupted = bytearray(VALID)
    corrupted[offset:offset + len(values)] = values
    path = tmp_path / "sub-01_T1w.nii"
    path.write_bytes(bytes(corrupted[:len(VALID)]))
    _check(path)


@SETTINGS
@given(keep=st.floats(0.0, 0.999), compressed=st.booleans())
def test_any_truncation_is_refused(tmp_path, keep, compressed):
    payload = gzip.compress(VALID) if compressed else VALID
    path = tmp_path / ("sub-01_T1w.nii.gz" if compressed else "sub-01_T1w.nii")
    path.write_bytes(payload[:int(len(payload) * keep)])
    with pytest.raises(InputImageError, match="sub-01_T1w"):
        load_3d_image(path)


@SETTINGS
@given(dims=st.lists(st.integers(-3, 300), min_size=8, max_size=8),
       pixdims=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=8,
                        max_size=8),
       scale=st.floats(allow_nan=True, allow_infinity=True, width=32))
def test_malformed_dimensions_and_scaling_are_read_or_refused(tmp_path, dims, pixdims, scale):
    header = bytearray(VALID[:348])
    header[40:56] = struct.pack("<8h", *[max(-32768, min(32767, d)) for d in dims])
    header[76:108] = struct.pack("<8f", *pixdims)
    header[112:116] = struct.pack("<f", scale)  # scl_slope
    path = tmp_path / "sub-01_T1w.nii"
    path.write_bytes(bytes(header) + VALID[348:])
    _check(path)


@SETTINGS
@given(data=st.lists(st.sampled_from([0.0, 1.0, np.nan, np.inf, -np.inf, 1e38]), min_size=1,
                     max_size=5))
def test_non_finite_or_constant_data_is_refused(tmp_path, data):
    volume = np.zeros((10, 10, 10), np.float32)
    volume.flat[:len(data)] = data
    path = tmp_path / "sub-01_T1w.nii.gz"
    nib.save(nib.Nifti1Image(volume, np.eye(4)), str(path))
    image = _check(path)
    if image is not None:
        assert np.isfinite(volume).all() and volume.max() > volume.min()


def test_gzip_with_garbage_inside_is_refused(tmp_path):
    path = tmp_path / "sub-01_T1w.nii.gz"
    path.write_bytes(gzip.compress(b"not a nifti at all" * 50))
    with pytest.raises(InputImageError, match="cannot read"):
        load_3d_image(path)
    buffer = io.BytesIO()
    path.write_bytes(buffer.getvalue())  # an empty file
    with pytest.raises(InputImageError):
        load_3d_image(path)
