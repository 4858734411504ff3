"""Brain extraction of whole-head scans: deepbet by default, ROBEX when deepbet's mask is
implausible or it fails; the method used is what the sidecars record. On real scans: deepbet
keeps an existing skull strip, and finds a brain-sized mask on the whole-head clinical scan."""
import nibabel as nib
import numpy as np
import pytest

from gado_bids.preprocessing import brain_mask


@pytest.fixture
def head():
    """A synthetic 'whole head' (noisy background, so not taken for skull-stripped)."""
    rng = np.random.default_rng(0)
    data = rng.uniform(1, 20, (60, 60, 60)).astype(np.float32)
    data[10:50, 10:50, 10:50] += 200
    return nib.Nifti1Image(data, np.diag([3.0, 3.0, 3.0, 1.0]))  # 27 mm3 voxels


def test_implausible_or_failed_deepbet_falls_back_to_robex(head, monkeypatch):
    robex = np.zeros(head.shape, bool)
    robex[15:45, 15:45, 15:45] = True  # 27,000 voxels x 27 mm3 = 729 cm3
    monkeypatch.setattr(brain_mask, "robex_mask", lambda image, seed=0: robex)
    tiny = np.zeros(head.shape, bool)
    tiny[30, 30, 30] = True
    monkeypatch.setitem(brain_mask.EXTRACTORS, "deepbet", lambda image, seed: tiny)
    mask, method = brain_mask.native_brain_mask(head)
    assert method == "robex (deepbet implausible)" and np.array_equal(mask, robex)

    def broken(image, seed):
        raise RuntimeError("no brain found")
    monkeypatch.setitem(brain_mask.EXTRACTORS, "deepbet", broken)
    assert brain_mask.native_brain_mask(head)[1] == "robex (deepbet implausible)"
    plausible = np.zeros(head.shape, bool)
    plausible[12:48, 12:48, 12:48] = True  # 1260 cm3
    monkeypatch.setitem(brain_mask.EXTRACTORS, "deepbet", lambda image, seed: plausible)
    mask, method = brain_mask.native_brain_mask(head)
    assert method == "deepbet" and np.array_equal(mask, plausible)


@pytest.mark.shared_data
def test_deepbet_keeps_an_existing_strip_and_finds_the_whole_head_brain(gado_pairs,
                                                                         wholehead_pair):
    stripped = nib.load(str(gado_pairs / "sub-002" / "ses-01" / "anat" /
                            "sub-002_ses-01_T1w.nii.gz"))
    assert brain_mask.dice(brain_mask.deepbet_mask(stripped),
                           brain_mask.support_mask(stripped)) > 0.95
    whole = nib.load(str(wholehead_pair / "sub-01" / "ses-01" / "anat" /
                         "sub-01_ses-01_ce-gadolinium_T1w.nii.gz"))
    mask, method = brain_mask.native_brain_mask(whole)
    assert method == "deepbet"
    assert 1000 < mask.sum() * brain_mask.voxel_volume_cm3(whole) < 1900
