"""The 1 mm training cache: built from a participant-level run's outputs when they match the
inputs, with each target's measured blur and reference class; old 128^3 entries are refused."""
import json

import nibabel as nib
import numpy as np
import pytest

from gado_bids.discovery.selection import open_layout, select_scans
from gado_bids.metrics.resolution import CLASSES
from gado_bids.preprocessing import grids
from gado_bids.training import cache
from gado_bids.outputs.spec import predict as planned_outputs


def test_pairs_are_cached_from_matching_participant_outputs(demo_participant_run, demo_bids,
                                                            tmp_path):
    _, output = demo_participant_run
    job = select_scans(open_layout(demo_bids)).jobs_by_subject["01"][0]
    path = cache.cache_pair(job, tmp_path / "cache", derivatives_dir=output)
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["source"] == str(output)
    assert meta["reference_class"] in CLASSES and len(meta["target_blur_voxels"]) == 3
    assert all(sigma >= 0 for sigma in meta["target_blur_voxels"])
    pair = cache.load_pair(path)
    planned = planned_outputs(job, output)
    crop = nib.load(str(planned["ce_crop"])).get_fdata(dtype=np.float32)
    assert pair.ce.shape == grids.CROP_SHAPE
    assert np.abs(pair.ce - crop).max() <= 0.5 / cache.QUANTISATION + 1e-6
    mask = (nib.load(str(planned["ce_mask"])).get_fdata() > 0) | (
        nib.load(str(planned["ref_mask"])).get_fdata() > 0)
    assert np.array_equal(pair.mask, mask)
    assert pair.target_blur == tuple(meta["target_blur_voxels"])

    other_bytes = dict(cache._fingerprint(job), ce_sha256="0" * 64)  # the raw scan changed
    assert cache._crops_from_derivatives(job, output, other_bytes) is None
    assert cache._crops_from_derivatives(job, tmp_path / "nothing-here",
                                         cache._fingerprint(job)) is None

    meta["fingerprint"]["cache_format"] = 1  # an entry written by gadosynth 0.1 (128^3)
    path.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="older gadosynth"):
        cache.load_pair(path)
