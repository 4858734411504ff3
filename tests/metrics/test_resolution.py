"""Sharpness, relative blur and reference classes (gado_bids.metrics.resolution)."""
import numpy as np
import nibabel as nib
import pytest
from scipy import ndimage

from gado_bids.metrics import resolution


@pytest.fixture(scope="module")
def texture():
    """A brain-like texture: smoothed noise (structure at 1-3 voxels) in a box mask."""
    rng = np.random.default_rng(3)
    volume = ndimage.gaussian_filter(rng.random((72, 80, 64)).astype(np.float32), 1.0)
    mask = np.zeros(volume.shape, bool)
    mask[8:64, 8:72, 8:56] = True
    return volume, mask


def test_sharpness_of_hand_cases():
    mask = np.ones((40, 40, 40), bool)
    ramp = np.broadcast_to(np.arange(40, dtype=np.float32)[:, None, None], (40, 40, 40))
    # a linear ramp along axis 0: 1-voxel differences are 1, 4-voxel ones 4
    assert resolution.sharpness(ramp + np.indices((40, 40, 40))[1] * 0.5, mask)[0] == \
        pytest.approx(0.25)
    noise = np.random.default_rng(0).normal(size=(40, 40, 40))
    assert resolution.sharpness(noise, mask) == pytest.approx((1, 1, 1), abs=0.03)


def test_sharpness_is_one_for_identical_images_and_free_of_scale(texture):
    volume, mask = texture
    own = resolution.sharpness(volume, mask)
    assert resolution.sharpness_ratio(own, own) == (1.0, 1.0, 1.0)
    rescaled = resolution.sharpness(volume * 37.5 + 400.0, mask)
    assert rescaled == pytest.approx(own, rel=1e-4)


def test_blurred_copy_is_less_sharp_along_the_blurred_axis_only(texture):
    volume, mask = texture
    ratio = resolution.sharpness_ratio(
        resolution.sharpness(resolution.blur(volume, (0.0, 0.0, 1.5)), mask),
        resolution.sharpness(volume, mask))
    assert ratio[2] < 0.8
    assert ratio[0] == pytest.approx(1.0, abs=0.05) and ratio[1] == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("sigma", [(0.0, 0.0, 2.0), (0.5, 1.2, 0.0), (1.5, 0.3, 2.5)])
def test_known_anisotropic_gaussian_is_recovered_within_0_3_voxels(texture, sigma):
    volume, mask = texture
    reference = resolution.blur(volume, sigma) * 3.0 + 7.0  # another scale: must not matter
    estimate = resolution.estimate_relative_blur(volume, reference, mask)
    assert np.abs(estimate - np.array(sigma)).max() <= 0.3, estimate


def test_blur_floor_is_a_lower_bound(texture):
    volume, mask = texture
    estimate = resolution.estimate_relative_blur(volume, volume, mask, floor=(0.0, 0.0, 1.0))
    assert list(estimate) == [0.0, 0.0, 1.0]


def test_acquisition_blur_from_voxel_size_and_slice_thickness():
    one_mm = np.eye(4)
    thick = np.diag([1.0, 1.0, 5.0, 1.0])
    assert resolution.acquisition_blur(one_mm, one_mm) == pytest.approx([0, 0, 0])
    expected = np.sqrt(5.0 ** 2 - 1.0) / resolution.FWHM_PER_SIGMA
    assert resolution.acquisition_blur(thick, one_mm) == pytest.approx([0, 0, expected])
    # a 1 mm grid resampled from 5.5 mm slices the sidecar's SliceThickness names
    assert resolution.acquisition_blur(one_mm, one_mm, slice_thickness_mm=5.5)[2] == \
        pytest.approx(np.sqrt(5.5 ** 2 - 1.0) / resolution.FWHM_PER_SIGMA)
    # slices along another world axis than the grid's: the blur follows the slices
    sagittal = np.diag([5.0, 1.0, 1.0, 1.0])
    assert np.argmax(resolution.acquisition_blur(sagittal, one_mm)) == 0


def test_reference_class_thresholds():
    assert resolution.reference_class([0.5, 0.4, 0.5], [0.40, 0.41, 0.39]) == "3D"
    assert resolution.reference_class([0.5, 0.4, 2.0], [0.40, 0.41, 0.39]) == "thick-slice"
    assert resolution.reference_class([0.5, 0.4, 0.0], [0.40, 0.41, 0.28]) == "thick-slice"


@pytest.mark.shared_data
@pytest.mark.parametrize("subject, expected", [
    ("002", "3D"), ("010", "3D"), ("012", "3D"), ("019", "3D"), ("022", "3D"),
    ("009", "thick-slice"), ("016", "thick-slice"), ("023", "thick-slice"),
    ("034", "thick-slice")])
def test_reference_class_of_named_gado_pairs_subjects(gado_pairs, subject, expected):
    """The raw pairs are co-registered on one 1 mm grid: classed straight from the files."""
    anat = gado_pairs / f"sub-{subject}" / "ses-01" / "anat"
    ce = np.asarray(nib.load(anat / f"sub-{subject}_ses-01_ce-gadolinium_T1w.nii.gz").dataobj,
                    np.float32)
    reference = np.asarray(nib.load(anat / f"sub-{subject}_ses-01_T1w.nii.gz").dataobj,
                           np.float32)
    mask = (ce > 0) & (reference > 0)
    blur = resolution.estimate_relative_blur(ce, reference, mask)
    assert resolution.reference_class(blur, resolution.sharpness(reference, mask)) == expected
