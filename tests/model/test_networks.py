"""The networks and their weights files: shapes, parameter counts, the enhancement
formulation's start, padding to the network multiple, SHA-256-checked loading (CPU, small)."""
import pytest
import torch

from conftest import REPO
from gado_bids.errors import GadoError
from gado_bids.model.networks import build_model, count_parameters
from gado_bids.model.weights import load_weights, save_weights


@pytest.mark.parametrize("name, parameters", [("attention-unet", 5_376_249),
                                              ("res-unet", 10_060_205)])
def test_forward_shape_and_parameter_count(name, parameters):
    torch.manual_seed(0)
    model = build_model(name, 16).eval()
    assert count_parameters(model) == parameters
    with torch.no_grad():
        x = torch.rand(2, 1, 32, 48, 32)
        y = model(x)
    assert y.shape == x.shape
    # freshly initialised: the zero head makes it the identity (global residual)
    assert torch.equal(y, x)
    with pytest.raises(ValueError, match="divisible by 16"):
        model(torch.rand(1, 1, 30, 32, 32))


def test_channel_norm_does_not_depend_on_crop_size_or_batch():
    """Why ChannelNorm: a crop or another batch member never changes a voxel's normalisation."""
    from gado_bids.model.networks import ChannelNorm
    torch.manual_seed(0)
    features = torch.randn(2, 8, 32, 32, 32) * 3 + 1
    norm = ChannelNorm(8)
    crop = (..., slice(8, 24), slice(8, 24), slice(8, 24))
    assert torch.allclose(norm(features)[crop], norm(features[crop]), atol=1e-6)
    assert torch.allclose(norm(features)[:1], norm(features[:1]), atol=1e-6)
    instance = torch.nn.InstanceNorm3d(8)  # what we avoid: its statistics follow the crop
    assert not torch.allclose(instance(features)[crop], instance(features[crop]), atol=1e-3)


def test_channel_norm_is_a_layer_norm_over_the_channels_of_each_voxel():
    """The definition, against the same normalisation in float64, with an offset large enough
    that a one-pass E[x^2] - E[x]^2 variance loses digits (shown: it misses by > 1e-3)."""
    from gado_bids.model.networks import ChannelNorm
    torch.manual_seed(1)
    features = torch.randn(1, 16, 12, 10, 8) * 0.5 + 40
    norm = ChannelNorm(16)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
        exact = features.double()
        exact = (exact - exact.mean(1, keepdim=True)) * torch.rsqrt(
            exact.var(1, keepdim=True, unbiased=False) + norm.eps)
        expected = exact * norm.weight.double() + norm.bias.double()
        assert float((norm(features).double() - expected).abs().max()) < 1e-4
        mean = features.mean(1, keepdim=True)
        one_pass = (features - mean) * torch.rsqrt(
            (features * features).mean(1, keepdim=True) - mean ** 2 + norm.eps)
        one_pass = one_pass * norm.weight + norm.bias
        assert float((one_pass.double() - expected).abs().max()) > 1e-3


def test_enhancement_formulation_starts_near_identity_and_only_removes():
    """The default formulation: image = f(x) - E with f a monotone curve (f(0) = 0, started as
    the identity) and E >= 0 whatever the weights, so the network can darken but not add."""
    from gado_bids.model.networks import IntensityCurve, intensity_descriptor
    torch.manual_seed(0)
    model = build_model("attention-unet", 8, "enhancement").eval()
    curve = 16 + (16 * 16 + 16) + (16 * 16 + 16)  # base slopes, quantiles -> 16 -> slopes
    assert count_parameters(model) == count_parameters(build_model("attention-unet", 8)) - 28 + curve
    x = torch.rand(1, 1, 32, 48, 32)
    with torch.no_grad():
        mapped, enhancement = model.decompose(x)
        assert torch.allclose(mapped, x, atol=1e-6)  # the curve starts as the identity
        assert 0 < enhancement.max() < 0.01  # near-identity image at the start
        torch.nn.init.normal_(model.head.weight, std=1.0)  # any head: E stays >= 0
        mapped, enhancement = model.decompose(x)
        assert enhancement.min() >= 0 and enhancement.max() > 0.05
        assert torch.allclose(model(x), mapped - enhancement)
    curve = IntensityCurve(8)
    values = torch.linspace(0, 1, 101)[None, None]
    descriptor = intensity_descriptor(values)
    assert torch.allclose(curve(values, descriptor), values, atol=1e-6)  # any scan: identity
    with torch.no_grad():
        curve.raw_slopes.copy_(torch.randn(8) * 3)
        torch.nn.init.normal_(curve.adapt[2].weight)
    mapped = curve(values, descriptor)[0, 0]
    assert mapped[0] == 0 and torch.all(mapped[1:] >= mapped[:-1])  # monotone, zero stays zero
    assert torch.allclose(curve(values.flip(-1), descriptor)[0, 0].flip(-1), mapped)  # voxelwise
    darker = intensity_descriptor(values ** 2)  # another scan's quantiles: another curve
    assert not torch.allclose(curve(values, darker), curve(values, descriptor))
    crop = values[..., 20:60]
    assert torch.allclose(curve(crop, descriptor), mapped[20:60][None, None])  # pointwise
    with pytest.raises(ValueError, match="enhancement formulation"):
        build_model("attention-unet", 4).decompose(x)



def test_a_floored_curve_keeps_the_bright_end_s_slope(tmp_path):
    """top_floor: from the normalisation's anchor (0.5, white matter) up to the given multiple
    of it no slope falls below the slope just under it, however the curve was fitted; elsewhere
    the curve is untouched, and the floor travels with the weights file."""
    from gado_bids.model.networks import IntensityCurve, intensity_descriptor
    values = torch.linspace(0, 1, 161)[None, None]
    descriptor = intensity_descriptor(values)
    free, whole, partial = (IntensityCurve(16, top_floor=f) for f in (0.0, 2.0, 1.25))
    with torch.no_grad():
        for curve in (free, whole, partial):  # fitted flat above the anchor, as trained ones were
            curve.raw_slopes.copy_(torch.cat([torch.full((8,), 0.5), torch.full((8,), -3.0)]))
    free_slopes = free.slopes(descriptor)[0]
    whole_slopes, partial_slopes = whole.slopes(descriptor)[0], partial.slopes(descriptor)[0]
    assert torch.all(free_slopes[8:] < 0.1 * free_slopes[7])
    assert torch.equal(whole_slopes[:8], free_slopes[:8])
    assert torch.allclose(whole_slopes[8:], free_slopes[7].expand(8))
    # 1.25 times the anchor is 0.625: knots 8 and 9 floored, the ones above as fitted
    assert torch.allclose(partial_slopes[8:10], free_slopes[7].expand(2))
    assert torch.equal(partial_slopes[10:], free_slopes[10:])
    mapped = whole(values, descriptor)[0, 0]
    at_anchor = int(values.shape[-1] // 2)
    assert torch.allclose(mapped[:at_anchor + 1], free(values, descriptor)[0, 0][:at_anchor + 1])
    spread = mapped[-1] - mapped[at_anchor]  # the bright end keeps the slope under the anchor
    assert torch.isclose(spread, 0.5 * free_slopes[7], atol=1e-5)
    for curve in (free, whole):  # the bright end's gradient reaches the slope under the anchor
        curve(values, descriptor).sum().backward()
    assert whole.raw_slopes.grad[7] > 2 * free.raw_slopes.grad[7]
    assert whole.raw_slopes.grad[9] == 0 and free.raw_slopes.grad[9] > 0
    with torch.no_grad():
        for curve in (free, whole):  # a slope above the floor stays as it is
            curve.raw_slopes[12] = 3.0
    assert whole.slopes(descriptor)[0, 12] == free.slopes(descriptor)[0, 12] > free_slopes[7]
    model = build_model("attention-unet", 4, "enhancement", curve_top_floor=1.25)
    path = tmp_path / "floored.pt"
    save_weights(model, path, {"model": "attention-unet", "width": 4,
                               "formulation": "enhancement", "curve_top_floor": 1.25})
    assert load_weights(path)[0].intensity_curve.top_floor == 1.25
    with pytest.raises(ValueError, match="enhancement formulation"):
        build_model("attention-unet", 4, "direct", curve_top_floor=2.0)
    with pytest.raises(ValueError, match="from 1 to 2"):
        IntensityCurve(16, top_floor=0.5)


def test_the_gradient_floor_changes_the_map_s_gradient_not_its_value():
    """Where E is near zero its softplus gradient is ~0.002; the floor lets the loss reach the
    head there again, while the map, the image and no-grad inference stay bit-identical."""
    from gado_bids.model.networks import enhancement_from_head
    head = torch.tensor([-0.31, 0.0, 0.5], requires_grad=True)  # E ~ 1e-4, 0.035, 0.5
    plain = enhancement_from_head(head)
    plain.sum().backward()
    plain_gradient = head.grad.clone()
    head.grad = None
    floored = enhancement_from_head(head, 0.1)
    floored.sum().backward()
    assert torch.equal(floored, plain)
    assert plain_gradient[0] < 0.005 and head.grad[0] > 0.1  # revived where E is near zero
    assert torch.allclose(head.grad - plain_gradient, torch.full((3,), 0.1))
    with torch.no_grad():
        assert torch.equal(enhancement_from_head(head, 0.1), plain)
    torch.manual_seed(0)
    model = build_model("attention-unet", 4, "enhancement")
    x = torch.rand(1, 1, 32, 32, 32)
    before = model(x)
    model.enhancement_gradient_floor = 0.1
    assert torch.equal(model(x), before)

def test_the_cropped_grid_pads_to_the_network_multiple_and_back():
    import numpy as np
    from gado_bids.preprocessing import grids
    assert grids.PADDED_SHAPE == (176, 208, 192)
    volume = np.random.default_rng(0).random(grids.CROP_SHAPE).astype(np.float32)
    padded = grids.pad_crop(volume)
    assert padded.shape == grids.PADDED_SHAPE and padded[169:].max() == 0
    assert np.array_equal(grids.unpad_crop(padded), volume)
    with pytest.raises(ValueError, match="cropped grid"):
        grids.pad_crop(volume[:-1])


def test_weights_round_trip_and_tampering_is_refused(tmp_path):
    model = build_model("res-unet", 4)
    path = tmp_path / "w.pt"
    digest = save_weights(model, path, {"model": "res-unet", "width": 4})
    loaded, meta, checked = load_weights(path, digest)
    assert checked == digest and meta["width"] == 4 and not loaded.training
    for key, value in model.state_dict().items():
        assert torch.allclose(value, loaded.state_dict()[key], atol=1e-3)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(GadoError, match="damaged or was replaced"):
        load_weights(path, digest)


def test_bundled_weights_load_with_their_checksum():
    from gado_bids.model.weights import bundled_manifest, load_bundled
    manifest = bundled_manifest()
    if not manifest:
        pytest.fail("no bundled weights: gado_bids/weights/manifest.json is missing")
    for name, entry in manifest.items():
        model, meta, digest = load_bundled(name)
        assert digest == entry["sha256"] and meta["model"] == name
        assert (REPO / "gado_bids" / "weights" / entry["file"]).stat().st_size < 25 * 2 ** 20
