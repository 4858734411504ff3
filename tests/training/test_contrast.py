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
