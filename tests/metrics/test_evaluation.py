"""The evaluation of one session (gado_bids.metrics.evaluation): scale, baselines, matched metrics."""
import numpy as np
import pytest
from scipy import ndimage

from gado_bids.metrics import evaluation, resolution


@pytest.fixture(scope="module")
def session():
    """A textured 'brain', a ce scan with bright enhancing spots, and a reference blurred through
    the slices like a thick-slice scan (on another intensity scale)."""
    rng = np.random.default_rng(7)
    texture = ndimage.gaussian_filter(rng.random((64, 72, 60)).astype(np.float32), 0.8)
    brain = 0.3 + 0.7 * (texture - texture.min()) / (texture.max() - texture.min())
    mask = np.zeros(brain.shape, bool)
    mask[6:58, 6:66, 6:54] = True
    enhancement = np.zeros(brain.shape, np.float32)
    spots = rng.integers(10, 50, size=(40, 3))
    enhancement[tuple(spots.T)] = 3.0
    enhancement = ndimage.gaussian_filter(enhancement, 0.8) * 8
    ce = brain + enhancement
    reference = resolution.blur(brain, (0.0, 0.0, 1.8)) * 250.0
    return {"brain": brain, "ce": ce, "reference": reference, "mask": mask}


def test_scale_puts_the_90th_percentile_at_one_half():
    volume = np.arange(1, 1001, dtype=np.float32).reshape(10, 10, 10)
    mask = np.ones(volume.shape, bool)
    scaled = evaluation.to_scale(volume * 3.0, mask)
    assert np.percentile(scaled[mask], 90) == pytest.approx(0.5)
    assert scaled.max() > 0.5  # not clipped: enhancement counts in full


def test_clip_baseline_and_top_end_by_hand():
    volume = np.arange(1, 1001, dtype=np.float32).reshape(10, 10, 10)
    mask = np.ones(volume.shape, bool)
    clipped = evaluation.clip_baseline(volume, mask)
    assert clipped.max() == pytest.approx(np.percentile(volume, 97))
    assert clipped.min() == 1.0
    assert evaluation.top_end_percent(volume, mask) == pytest.approx(
        100 * (np.percentile(volume, 99.5) / np.percentile(volume, 95) - 1))
    flat = np.full((10, 10, 10), 5.0, np.float32)
    assert evaluation.top_end_percent(flat, mask) == 0.0  # a saturated top end shows as 0


def test_identical_image_is_perfect_and_the_ce_scan_is_not(session):
    result = evaluation.compare(session["ce"], session["reference"], session["reference"],
                                session["mask"])
    assert result["plain"]["synthetic"]["MAE"] == pytest.approx(0.0, abs=1e-5)
    assert result["plain"]["synthetic"]["SSIM"] == pytest.approx(1.0, abs=1e-5)
    assert result["plain"]["ce"]["PSNR"] < 40
    assert result["top_end_percent"]["synthetic"] == pytest.approx(
        result["top_end_percent"]["reference"])


def test_resolution_match_removes_the_advantage_of_blurring(session):
    """An image made blurry in-plane scores as if it had the reference's resolution only when
    it really does: matched metrics reward the sharp, enhancement-free image most."""
    mask = session["mask"]
    sharp_clean = session["brain"]
    blurry_clean = resolution.blur(session["brain"], (1.5, 1.5, 1.8))
    sharp = evaluation.compare(session["ce"], sharp_clean, session["reference"], mask)
    blurry = evaluation.compare(session["ce"], blurry_clean, session["reference"], mask)
    blur = np.array(sharp["relative_blur_voxels"])
    assert abs(blur[2] - 1.8) <= 0.3
    # in-plane the ce scan's enhancing spots (sharp detail the reference lacks) survive the 97th
    # percentile clip in part, and read as a little extra blur of the reference
    assert blur[:2].max() <= 0.5
    assert sharp["reference_class"] == "thick-slice"
    # the trap: plain PSNR against a thick-slice reference rewards blurring everything ...
    assert blurry["plain"]["synthetic"]["PSNR"] > sharp["plain"]["synthetic"]["PSNR"]
    # ... the resolution-matched one does not (measured: 33.3 vs 30.0 dB)
    assert sharp["matched"]["synthetic"]["PSNR"] > blurry["matched"]["synthetic"]["PSNR"] + 2
    assert min(sharp["sharpness_ratio"]["synthetic"]) > 0.9
    assert max(blurry["sharpness_ratio"]["synthetic"]) < 0.8


def test_baselines_are_in_every_comparison_and_remove_enhancement(session):
    result = evaluation.compare(session["ce"], session["brain"], session["reference"],
                                session["mask"])
    assert set(result["plain"]) == set(result["matched"]) == set(evaluation.COMPARED)
    for image in ("clip", "clip-and-blur"):
        assert result["matched"][image]["PSNR"] > result["matched"]["ce"]["PSNR"]
    assert min(result["sharpness_ratio"]["clip-and-blur"]) < 0.9  # the 1 mm Gaussian blurs
    assert result["top_end_percent"]["ce"] > result["top_end_percent"]["clip"]


def test_blur_floor_from_the_acquisition_is_respected(session):
    result = evaluation.compare(session["ce"], session["brain"], session["reference"],
                                session["mask"], blur_floor=(0.8, 0.0, 0.0))
    assert result["relative_blur_voxels"][0] >= 0.8
    assert result["blur_floor_voxels"] == [0.8, 0.0, 0.0]


def test_matched_metrics_equal_a_whole_volume_blur_bit_for_bit(session):
    """The matched images are blurred on the brain's box only; every number is the one a blur of
    the whole volume gives."""
    from gado_bids.metrics.similarity import mae_percent, psnr, ssim
    mask = np.zeros(session["mask"].shape, bool)
    mask[20:40, 0:30, 25:50] = True  # touching one edge of the volume, far from the others
    images = {"ce": evaluation.to_scale(session["ce"], mask),
              "synthetic": evaluation.to_scale(session["brain"], mask)}
    reference = evaluation.to_scale(session["reference"], mask)
    blur = np.array([0.4, 0.0, 1.8])
    matched = evaluation._matched_metrics(images, reference, mask, blur)
    for name, image in images.items():
        whole = resolution.blur(image, blur)
        assert matched[name] == {"MAE": mae_percent(whole, reference, mask),
                                 "PSNR": psnr(whole, reference, mask),
                                 "SSIM": ssim(whole, reference, mask)}, name
