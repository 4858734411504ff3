"""The similarity metrics, pinned by hand-computed cases and scikit-image as reference."""
import numpy as np
import pytest
from scipy import ndimage
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from gado_bids.metrics.evaluation import clip_and_blur_baseline
from gado_bids.metrics.similarity import mae_percent, psnr, ssim, ssim_map


@pytest.fixture
def volumes():
    rng = np.random.default_rng(0)
    from scipy import ndimage
    x = ndimage.gaussian_filter(rng.random((40, 44, 36)), 2)
    x = (x - x.min()) / (x.max() - x.min())
    y = np.clip(x + rng.normal(0, 0.05, x.shape), 0, 1)
    mask = np.zeros(x.shape, bool)
    mask[8:32, 10:34, 6:30] = True
    return x, y, mask


def test_hand_computed_cases():
    mask = np.ones((8, 8, 8), bool)
    zeros, tenth = np.zeros((8, 8, 8)), np.full((8, 8, 8), 0.1)
    assert mae_percent(zeros, tenth, mask) == pytest.approx(10.0)
    assert psnr(zeros, tenth, mask) == pytest.approx(20.0)  # 10 log10(1 / 0.01)
    assert psnr(tenth, tenth, mask) == float("inf")
    assert ssim(tenth, tenth, mask) == pytest.approx(1.0)
    # constant images: SSIM = (2*0*0.1 + C1)/(0 + 0.01 + C1) with zero variances
    c1 = 0.01 ** 2
    assert ssim(zeros, tenth, mask) == pytest.approx(c1 / (0.01 + c1))


def test_voxels_outside_the_mask_never_count():
    x = np.zeros((10, 10, 10))
    y = np.zeros((10, 10, 10))
    y[:5] = 1.0  # huge error, all outside the mask
    y[5:] = 0.2
    mask = np.zeros(x.shape, bool)
    mask[5:] = True
    assert mae_percent(x, y, mask) == pytest.approx(20.0)
    assert psnr(x, y, mask) == pytest.approx(10 * np.log10(1 / 0.04))


def test_psnr_and_mae_match_scikit_image(volumes):
    x, y, mask = volumes
    assert psnr(x, y, mask) == pytest.approx(
        peak_signal_noise_ratio(x[mask], y[mask], data_range=1.0), rel=1e-9)
    assert mae_percent(x, y, mask) == pytest.approx(100 * np.mean(np.abs(x - y)[mask]))


def test_ssim_map_matches_scikit_image_gaussian_ssim(volumes):
    x, y, mask = volumes
    _, reference = structural_similarity(x, y, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                         use_sample_covariance=False, full=True)
    ours = ssim_map(x, y)
    inner = (slice(6, -6),) * 3  # away from the borders, where padding conventions differ
    assert np.allclose(ours[inner], reference[inner], atol=1e-6)
    assert ssim(x, y, mask) == pytest.approx(float(reference[mask].mean()), abs=1e-5)
    assert 0.0 < ssim(x, y, mask) < 1.0


def test_metric_order_follows_image_quality(volumes):
    x, y, mask = volumes
    worse = np.clip(x + np.random.default_rng(1).normal(0, 0.15, x.shape), 0, 1)
    assert mae_percent(x, y, mask) < mae_percent(x, worse, mask)
    assert psnr(x, y, mask) > psnr(x, worse, mask)
    assert ssim(x, y, mask) > ssim(x, worse, mask)


def test_simple_baseline_clips_enhancement_and_smooths():
    volume = np.full((30, 30, 30), 0.5, np.float32)
    mask = np.ones(volume.shape, bool)
    volume[15, 15, 15] = 1.0  # one enhanced voxel
    baseline = clip_and_blur_baseline(volume, mask)
    assert baseline.max() <= 0.5 + 1e-6
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(volume, volume[:-1], mask)


@pytest.mark.parametrize("where", ["inside", "at the edge"])
def test_metrics_on_the_brain_box_are_the_whole_volume_numbers_bit_for_bit(volumes, where):
    """all_metrics works on the mask's box grown by the SSIM radius: the same numbers as the
    whole-volume definitions, exactly, for a mask inside the volume and one touching its edge
    (where the reflection at the volume's edge must be the same one)."""
    from gado_bids.metrics.similarity import SSIM_RADIUS, all_metrics, bounding_box
    x, y, mask = volumes
    if where == "at the edge":
        mask = np.zeros(x.shape, bool)
        mask[0:20, 30:44, 2:12] = True
    box = bounding_box(mask, SSIM_RADIUS)
    assert np.prod([s.stop - s.start for s in box]) < x.size  # the box is a real crop
    assert all_metrics(x, y, mask) == {"MAE": mae_percent(x, y, mask), "PSNR": psnr(x, y, mask),
                                       "SSIM": ssim(x, y, mask)}


def test_several_images_against_one_reference_are_each_image_s_numbers_bit_for_bit(volumes):
    """metrics_against computes the reference's local moments once for all images: each
    image's numbers must be those of its own whole-volume MAE, PSNR and SSIM, exactly."""
    from gado_bids.metrics.similarity import metrics_against
    x, y, mask = volumes
    images = {"x": x, "blurred": ndimage.gaussian_filter(x, 1.0), "y itself": y}
    result = metrics_against(images, y, mask)
    assert list(result) == list(images)
    for name, image in images.items():
        assert result[name] == {"MAE": mae_percent(image, y, mask),
                                "PSNR": psnr(image, y, mask), "SSIM": ssim(image, y, mask)}
    assert result["y itself"]["SSIM"] == pytest.approx(1.0)
    assert result["x"]["SSIM"] < result["y itself"]["SSIM"]
