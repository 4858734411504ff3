"""Which training pairs teach the curve (gado_bids.training.contrast and the curve loss's
matched pairs): a reference with the smaller grey/white gap differs by more than gadolinium."""
import numpy as np
import pytest
import torch


def _toy_pair(reference_levels, ce_levels, seed=0):
    """A pair on a 3-tissue toy grid: (pair, priors), each tissue one slab with noise."""
    from gado_bids.training.cache import TrainingPair
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), 8)[:, None, None] * np.ones((24, 10, 10), int)
    priors = {name: (labels == index).astype(np.float32)
              for index, name in enumerate(("CSF", "GM", "WM"))}

    def image(levels):
        return (np.choose(labels, levels) + rng.normal(0, 0.01, labels.shape)).astype(np.float32)
    pair = TrainingPair("p", "01", image(ce_levels), image(reference_levels),
                        np.ones(labels.shape, bool))
    return pair, priors


def test_a_reference_with_the_larger_grey_white_gap_is_a_gadolinium_only_pair():
    from gado_bids.training.contrast import pair_contrast
    # gadolinium brightens grey matter (twice white matter's blood) more: the ce gap narrows
    pair, priors = _toy_pair((0.15, 0.35, 0.5), (0.2, 0.42, 0.52))
    contrast = pair_contrast(pair, priors)
    assert contrast.gadolinium_only
    assert contrast.reference_gap == pytest.approx(0.15, abs=0.01)
    assert contrast.ce_gap == pytest.approx(0.10, abs=0.01)
    assert contrast.shifts["GM"] == pytest.approx(0.07, abs=0.01)
    assert contrast.shifts["CSF"] == pytest.approx(0.05, abs=0.01)
    # a reference of another sequence, darker in white matter than the ce scan: the ce gap wider
    pair, priors = _toy_pair((0.2, 0.42, 0.5), (0.15, 0.3, 0.5))
    assert not pair_contrast(pair, priors).gadolinium_only


def test_the_curve_learns_the_contrast_of_the_matched_pairs_only():
    """Two pairs with the same ce scan and references of opposite contrast change: learnt from
    both, the curve keeps a gap between theirs; from the gadolinium-only one, it takes that
    one's gap."""
    from gado_bids.model.networks import IntensityCurve, intensity_descriptor
    from gado_bids.training.losses import curve_loss
    rng = np.random.default_rng(0)
    grey = rng.random(20_000) < 0.5

    def scan(grey_level, white_level, noise):
        values = np.where(grey, grey_level, white_level) + rng.normal(0, noise, grey.size)
        return torch.from_numpy(values.astype(np.float32))
    ce = scan(0.42, 0.52, 0.01)
    descriptor = intensity_descriptor(ce[None])[0]
    samples = {"gadolinium": (ce, scan(0.3, 0.5, 0.01), descriptor, descriptor),
               "sequence": (ce, scan(0.46, 0.5, 0.01), descriptor, descriptor)}

    class Holder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.intensity_curve = IntensityCurve()

    def fitted_gap(matched):
        torch.manual_seed(0)
        model = Holder()
        optimiser = torch.optim.Adam(model.parameters(), lr=0.05)
        for _ in range(200):
            loss = curve_loss(model, list(samples), samples, set(), "cpu", matched)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        with torch.no_grad():
            output = model.intensity_curve(ce[None, None], descriptor[None])[0, 0]
        return float(output[~grey].median() - output[grey].median())
    assert fitted_gap({"gadolinium"}) == pytest.approx(0.2, abs=0.02)
    assert fitted_gap(None) < 0.16  # averaged with the other pair's 0.04
    model = Holder()
    assert curve_loss(model, ["sequence"], samples, set(), "cpu", {"gadolinium"}).item() == 0


def test_a_run_records_and_keeps_the_gadolinium_only_pairs(tmp_path, monkeypatch):
    """training_data: with curve_pairs the curve learns from the gadolinium-only pairs (or the 3D
    ones) and the crops still come from all; with training_pairs only those are trained on;
    split.json records both gaps per training subject and the pairs chosen."""
    import json
    from dataclasses import replace
    from gado_bids.metrics import tissues
    from gado_bids.training.config import TrainConfig
    from gado_bids.training.data import training_data
    pairs = []
    for subject, levels in (("01", (0.2, 0.42, 0.52)), ("02", (0.15, 0.3, 0.5)),
                            ("03", (0.2, 0.42, 0.52)), ("04", (0.2, 0.42, 0.52))):
        pair, priors = _toy_pair((0.15, 0.35, 0.5) if subject != "02" else (0.2, 0.42, 0.5),
                                 levels, seed=int(subject))
        pairs.append(replace(pair, name=f"sub-{subject}", subject=subject))
    monkeypatch.setattr(tissues, "template_priors", lambda: tuple(priors.values()))
    config = TrainConfig(validation_subjects=["04"], curve_pairs="gadolinium-only")
    data = training_data(pairs, config, tmp_path)
    assert [p.subject for p in data.train_pairs] == ["01", "02", "03"]
    assert data.curve_pairs == {"sub-01", "sub-03"}
    record = json.loads((tmp_path / "split.json").read_text())
    assert record["curve_pairs"] == ["01", "03"] and "training_pairs" not in record
    reference_gap, ce_gap = record["grey_white_gap"]["02"]
    assert reference_gap < ce_gap
    data = training_data(pairs, replace(config, curve_pairs="all",
                                        training_pairs="gadolinium-only"), tmp_path)
    assert [p.subject for p in data.train_pairs] == ["01", "03"]
    assert sorted(data.curve_samples) == ["sub-01", "sub-03"]
    assert json.loads((tmp_path / "split.json").read_text())["training_pairs"] == ["01", "03"]
    with pytest.raises(ValueError, match="quantile curve"):
        training_data(pairs, replace(config, curve_loss="mse"), tmp_path)
    sharp = [replace(p, reference_class="3D" if p.subject in ("02", "03") else "thick-slice")
             for p in pairs]
    data = training_data(sharp, replace(config, curve_pairs="3D"), tmp_path)
    assert [p.subject for p in data.train_pairs] == ["01", "02", "03"]  # crops from all
    assert data.curve_pairs == {"sub-02", "sub-03"}
    assert json.loads((tmp_path / "split.json").read_text())["curve_pairs"] == ["02", "03"]
    data = training_data(sharp, replace(config, curve_pairs="3D",
                                        training_pairs="gadolinium-only"), tmp_path)
    assert [p.subject for p in data.train_pairs] == ["01", "03"]  # 3D among those trained on
    assert data.curve_pairs == {"sub-03"}
    with pytest.raises(ValueError, match="sharp 3D reference"):
        training_data([replace(p, reference_class="thick-slice") for p in pairs],
                      replace(config, curve_pairs="3D"), tmp_path)
