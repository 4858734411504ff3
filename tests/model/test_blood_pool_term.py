"""The grey-matter blood-pool term: removed besides the map, counted in it, zero for weights
without a level, refused for the direct formulation (CPU, a narrow network)."""
import numpy as np
import pytest
import torch

from gado_bids.errors import ExitCode, GadoError
from gado_bids.model import blood_pool
from gado_bids.model.networks import build_model
from gado_bids.model.synthesis import Synthesiser, run_network
from gado_bids.model.weights import save_weights
from gado_bids.preprocessing import grids


def test_prior_is_the_templates_grey_matter_on_the_cropped_grid():
    prior = blood_pool.grey_matter_prior()
    assert prior.shape == grids.CROP_SHAPE
    assert 0.0 <= prior.min() and prior.max() <= 1.0
    assert 800_000 < int((prior > 0.5).sum()) < 1_300_000  # the (large) template brain's GM, mm3
    assert not prior.flags.writeable
    term = blood_pool.enhancement_term(0.02)
    assert term.shape == grids.PADDED_SHAPE
    assert np.allclose(grids.unpad_crop(term), 0.02 * prior)


def _trained_looking(name="attention-unet"):
    torch.manual_seed(0)
    model = build_model(name, 2, "enhancement")
    with torch.no_grad():  # a map that is not zero everywhere
        model.head.bias.fill_(0.05)
    return model.eval()


def test_run_network_removes_the_extra_term_and_counts_it_in_the_map():
    model = _trained_looking()
    volume = np.random.default_rng(0).uniform(0.2, 0.6, (32, 32, 32)).astype(np.float32)
    extra = np.random.default_rng(1).uniform(0.0, 0.03, volume.shape).astype(np.float32)
    image, enhancement = run_network(model, volume, "cpu")
    with_term, enhancement_with = run_network(model, volume, "cpu", extra_enhancement=extra)
    assert np.allclose(enhancement_with, enhancement + extra, atol=1e-6)
    unclipped = (image > 0) & (with_term > 0)
    assert unclipped.mean() > 0.9
    assert np.allclose(with_term[unclipped], image[unclipped] - extra[unclipped], atol=1e-6)
    direct = build_model("attention-unet", 2, "direct").eval()
    with pytest.raises(ValueError, match="enhancement formulation"):
        run_network(direct, volume, "cpu", extra_enhancement=extra)


def _weights(tmp_path, model, **meta):
    path = tmp_path / "w.pt"
    save_weights(model, path, {"model": "attention-unet", "width": 2,
                               "formulation": model.formulation, "grid": meta.pop("grid", "1mm"),
                               **meta})
    return path


def test_synthesiser_applies_the_weights_level_inside_the_mask(tmp_path):
    model = _trained_looking()
    rng = np.random.default_rng(2)
    prior = blood_pool.grey_matter_prior()
    mask = prior > 0.05
    crop = np.where(mask, rng.uniform(0.25, 0.55, grids.CROP_SHAPE), 0).astype(np.float32)
    plain = Synthesiser("attention-unet", torch.device("cpu"), _weights(tmp_path, model))
    assert plain.provenance["GreyMatterEnhancement"] == 0.0
    base = plain(crop, mask)
    level = 0.015
    fitted = Synthesiser("attention-unet", torch.device("cpu"),
                         _weights(tmp_path, model, grey_matter_enhancement=level))
    assert fitted.provenance["GreyMatterEnhancement"] == level
    result = fitted(crop, mask)
    expected = np.where(mask, level * prior, 0)
    assert np.allclose(result.enhancement - base.enhancement, expected, atol=1e-5)
    inside = mask & (base.synthetic > 0.05)
    assert np.allclose(base.synthetic[inside] - result.synthetic[inside], expected[inside],
                       atol=1e-5)
    assert np.all(result.synthetic[~mask] == 0) and np.all(result.enhancement[~mask] == 0)


@pytest.mark.parametrize("formulation, grid, value, message", [
    ("direct", "128", 0.01, "needs the enhancement formulation on the 1 mm grid"),
    ("enhancement", "1mm", -0.01, "must be a number >= 0"),
    ("enhancement", "1mm", float("nan"), "must be a number >= 0"),
    ("enhancement", "1mm", "0.01", "must be a number >= 0")])
def test_a_level_the_weights_cannot_carry_is_a_usage_error(tmp_path, formulation, grid, value,
                                                          message):
    model = build_model("attention-unet", 2, formulation)
    path = _weights(tmp_path, model, grid=grid, grey_matter_enhancement=value)
    with pytest.raises(GadoError, match=message) as error:
        Synthesiser("attention-unet", torch.device("cpu"), path)
    assert error.value.exit_code == ExitCode.USAGE
