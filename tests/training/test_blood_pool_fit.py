"""Fitting the grey-matter blood-pool level: the least-squares level of a known term comes back,
also against a blurred (thick-slice) target, never below zero, and is written into best.pt with
the tensors unchanged (CPU, a narrow network on the 1 mm cropped grid)."""
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from gado_bids.model import blood_pool
from gado_bids.model.networks import build_model
from gado_bids.model.synthesis import run_network
from gado_bids.model.weights import load_weights, save_weights
from gado_bids.preprocessing import grids
from gado_bids.training import blood_pool as fitting
from gado_bids.training.cache import TrainingPair
from gado_bids.training.validation import masked_average


def _model():
    torch.manual_seed(0)
    model = build_model("attention-unet", 2, "enhancement")
    with torch.no_grad():
        model.head.bias.fill_(0.02)
    return model.eval()


def _pair(model, subject, level, blur=(0.0, 0.0, 0.0), seed=0):
    """A pair whose target is the network's own image less level * P_GM (blurred by blur)."""
    rng = np.random.default_rng(seed)
    prior = blood_pool.grey_matter_prior()
    mask = prior > 0.05
    ce = np.where(mask, rng.uniform(0.3, 0.5, grids.CROP_SHAPE), 0).astype(np.float32)
    image = grids.unpad_crop(run_network(model, grids.pad_crop(ce), "cpu")[0])
    target = image - level * prior
    if any(blur):
        target = masked_average(target, mask, blur)
    target = target + rng.normal(0, 0.002, target.shape).astype(np.float32)
    return TrainingPair(name=f"sub-{subject}", subject=subject, ce=ce,
                        target=np.where(mask, target, 0).astype(np.float32), mask=mask,
                        target_blur=tuple(blur), reference_class="3D" if not any(blur)
                        else "thick-slice")


def test_the_level_of_a_known_term_comes_back_sharp_and_blurred():
    model = _model()
    pairs = [_pair(model, "001", 0.015), _pair(model, "002", 0.015, blur=(0, 0, 2.5), seed=1)]
    level, rows = fitting.fit_level(model, pairs)
    assert level == pytest.approx(0.015, abs=5e-4)
    assert [r["own_level"] for r in rows] == pytest.approx([0.015, 0.015], abs=5e-4)
    assert all(r["psnr_gain_db"] > 1 for r in rows)
    # without matching the blur the thick-slice pair's own level would be off
    sharp_view = replace(pairs[1], target_blur=(0.0, 0.0, 0.0))
    assert abs(fitting.fit_level(model, [sharp_view])[1][0]["own_level"] - 0.015) > \
        abs(rows[1]["own_level"] - 0.015)


def test_the_level_never_falls_below_zero():
    model = _model()
    level, rows = fitting.fit_level(model, [_pair(model, "001", -0.02)])
    assert level == 0.0 and rows[0]["own_level"] < 0
    with pytest.raises(ValueError, match="enhancement-formulation"):
        fitting.fit_level(build_model("attention-unet", 2, "direct"), [])


def test_fit_run_writes_the_level_into_best_pt(tmp_path, monkeypatch):
    model = _model()
    meta = {"model": "attention-unet", "width": 2, "formulation": "enhancement", "grid": "1mm",
            "epoch": 3}
    save_weights(model, tmp_path / "best.pt", meta)
    (tmp_path / "split.json").write_text(json.dumps({"train": ["001", "002"],
                                                     "training_pairs": ["001"]}))
    pairs = [_pair(model, "001", 0.01), _pair(model, "002", 0.05, seed=3)]
    monkeypatch.setattr(fitting, "fitted_pairs", lambda work_dir: [
        p for p in pairs if p.subject in json.loads((work_dir / "split.json").read_text())[
            "training_pairs"]])
    record = fitting.fit_run(tmp_path)
    assert record["grey_matter_enhancement"] == pytest.approx(0.01, abs=5e-4)  # 001 only
    loaded, loaded_meta, digest = load_weights(tmp_path / "best.pt")
    assert loaded_meta["grey_matter_enhancement"] == record["grey_matter_enhancement"]
    assert loaded_meta["epoch"] == 3 and digest == record["weights_sha256"]
    assert all(torch.equal(a.half(), b.half()) for a, b in zip(
        model.state_dict().values(), loaded.state_dict().values()))
    assert json.loads((tmp_path / "blood_pool.json").read_text())["pairs"][0]["subject"] == "001"


def test_command_line_says_what_is_missing_and_exits_64(tmp_path, caplog):
    assert fitting.main([str(tmp_path), "--nthreads", "1"]) == 64
    assert "best.pt" in caplog.text and "not found" in caplog.text


def test_only_the_runs_training_pairs_are_read_and_a_missing_one_is_named(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from gado_bids.training import cache
    (tmp_path / "cache").mkdir()
    for subject in ("001", "002", "003"):
        for suffix in (".npz", ".json"):
            (tmp_path / "cache" / f"sub-{subject}_ses-01_ce-gadolinium{suffix}").write_text("")
    read = []
    monkeypatch.setattr(cache, "load_pair", lambda path: read.append(path.name) or
                        SimpleNamespace(subject=path.name[4:7]))
    (tmp_path / "split.json").write_text(json.dumps({"train": ["001", "002", "003"],
                                                     "training_pairs": ["001", "003"]}))
    assert [p.subject for p in fitting.fitted_pairs(tmp_path)] == ["001", "003"]
    assert read == ["sub-001_ses-01_ce-gadolinium.npz", "sub-003_ses-01_ce-gadolinium.npz"]
    (tmp_path / "split.json").write_text(json.dumps({"train": ["001", "004"]}))
    with pytest.raises(ValueError, match=r"missing from .*cache.*\['004'\]"):
        fitting.fitted_pairs(tmp_path)
