"""The tissue instrument (gado_bids.metrics.tissues): its grid, and its repeatability copy."""
import numpy as np
import pytest

from gado_bids.metrics import tissues
from gado_bids.preprocessing import grids


def test_segmentation_grid_is_the_1mm_cropped_template_grid():
    assert tissues.VOXEL_VOLUME_MM3 == pytest.approx(1.0)
    assert all(p.shape == grids.CROP_SHAPE for p in tissues.template_priors())
    with pytest.raises(ValueError, match="cropped grid"):
        tissues.segment(np.zeros(grids.NETWORK_SHAPE), np.ones(grids.NETWORK_SHAPE, bool))


def test_repeatability_copy_is_a_half_voxel_shift_with_one_percent_noise():
    """A linear ramp of slope 1 per voxel on every axis, shifted by +0.5 voxel on each axis, reads
    1.5 lower inside; the residual is the noise, with SD 1% of the 90th brain percentile."""
    shape = (40, 40, 40)
    index = np.indices(shape).sum(axis=0).astype(np.float32) + 100.0
    mask = np.zeros(shape, bool)
    mask[8:32, 8:32, 8:32] = True
    copy = tissues.repeatability_copy(index, mask, seed=3)
    residual = (copy - (index - 3 * tissues.REPEAT_SHIFT_VOXELS))[mask]
    assert abs(residual.mean()) < 0.05
    expected_sd = tissues.REPEAT_NOISE_FRACTION * np.percentile(index[mask], 90)
    assert residual.std() == pytest.approx(expected_sd, rel=0.05)
    assert np.array_equal(copy, tissues.repeatability_copy(index, mask, seed=3))  # seeded


def test_volumes_count_hard_labels():
    labels = np.zeros((10, 10, 10), np.uint8)
    labels[:2] = tissues.LABELS["CSF"]
    labels[2:5] = tissues.LABELS["GM"]
    labels[5:9] = tissues.LABELS["WM"]
    assert tissues.volumes_cm3(labels) == {"CSF": 0.2, "GM": 0.3, "WM": 0.4}


def test_dice_sees_disagreement_that_equal_volumes_hide():
    """Reference: CSF in slabs 0-1, GM 2-4, WM 5-8. The other labelling swaps slab 1 (CSF -> GM)
    and slab 2 (GM -> CSF): every volume is the same, CSF overlaps in 1 of 2 slabs, GM in 2 of 3."""
    reference = np.zeros((10, 4, 4), np.uint8)
    reference[:2], reference[2:5], reference[5:9] = (tissues.LABELS[t] for t in ("CSF", "GM", "WM"))
    swapped = reference.copy()
    swapped[1], swapped[2] = tissues.LABELS["GM"], tissues.LABELS["CSF"]
    assert tissues.volumes_cm3(swapped) == tissues.volumes_cm3(reference)
    dice = tissues.dice_per_tissue(swapped, reference)
    assert dice == {"CSF": pytest.approx(0.5), "GM": pytest.approx(2 / 3), "WM": 1.0}
    assert tissues.dice_per_tissue(reference, reference) == {"CSF": 1.0, "GM": 1.0, "WM": 1.0}
    no_csf = np.where(reference == tissues.LABELS["CSF"], 0, reference).astype(np.uint8)
    assert tissues.dice_per_tissue(no_csf, no_csf)["CSF"] is None  # nothing to agree on
    with pytest.raises(ValueError, match="shape"):
        tissues.dice_per_tissue(reference, reference[:5])


def test_segmentation_mask_leaves_out_the_outer_layers():
    """A 20^3 cube loses MASK_EROSION_VOXELS layers on every face (6-connected erosion)."""
    mask = np.zeros((30, 30, 30), bool)
    mask[5:25, 5:25, 5:25] = True
    inner = tissues.segmentation_mask(mask)
    k = tissues.MASK_EROSION_VOXELS
    assert k == 2
    expected = np.zeros_like(mask)
    expected[5 + k:25 - k, 5 + k:25 - k, 5 + k:25 - k] = True
    assert np.array_equal(inner, expected)
    assert tissues.segmentation_settings() == {"Atropos": tissues.ATROPOS_SETTINGS,
                                                "MaskErosionVoxels": k}


def test_probability_volumes_sum_over_the_labelled_voxels_only():
    """Truth maps are summed where segment() labels (the mask less its outer layers): a map of
    0.5 everywhere over a 20^3 cube gives half the 16^3 inner cube, in cm3."""
    mask = np.zeros((30, 30, 30), bool)
    mask[5:25, 5:25, 5:25] = True
    half = np.full(mask.shape, 0.5, np.float32)
    volumes = tissues.probability_volumes_cm3({"CSF": 0 * half, "GM": half, "WM": 2 * half}, mask)
    inner = (20 - 2 * tissues.MASK_EROSION_VOXELS) ** 3
    assert volumes == {"CSF": 0.0, "GM": pytest.approx(0.5 * inner / 1000),
                       "WM": pytest.approx(inner / 1000)}


def test_labels_are_those_of_antspyx_atropos_with_the_same_settings(tmp_path, monkeypatch):
    """segment() asks the Atropos program for labels only (no posterior images); the labels
    must be those antspyx's own atropos() gives with the same settings and seed. The template
    with 5% noise, so that an option lost on the way shows: with it, an MRF weight of 0.3
    instead of 0.2, or another seed, changes the labels (checked when this test was written).
    Atropos seeds itself from the clock unless told otherwise, so the two calls agreeing voxel for
    voxel also shows that the same image, segmented twice, is labelled the same (with the clock's
    seed the two runs differ)."""
    import tempfile
    import ants
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # antspyx's files, not ours: kept here
    from gado_bids.preprocessing.template import template_t1
    image = grids.crop_template_volume(template_t1().get_fdata(dtype=np.float32))
    image = image / np.percentile(image[image > 0], 90)
    image = image + np.random.default_rng(0).normal(0, 0.05, image.shape).astype(np.float32)
    mask = np.zeros(grids.CROP_SHAPE, bool)
    centre = [n // 2 for n in grids.CROP_SHAPE]
    mask[tuple(slice(c - 30, c + 30) for c in centre)] = True
    ours = tissues.segment(image, mask)
    inner = tissues.segmentation_mask(mask)
    as_ants = lambda volume: ants.from_numpy(np.ascontiguousarray(volume, np.float32))
    theirs = ants.atropos(a=as_ants(image), x=as_ants(inner),
                          i=[as_ants(p) for p in tissues.template_priors()],
                          **tissues.ATROPOS_SETTINGS)["segmentation"].numpy()
    assert set(np.unique(ours[inner])) == {1, 2, 3}
    assert np.array_equal(ours[inner], theirs[inner].astype(np.uint8))
    assert not ours[~inner].any()
