"""What training minimises (gado_bids.training.losses): blur is not rewarded, a flattened
texture costs, cutting the input's noise costs when compared at scale, the quantile curve loss
keeps contrast, enhanced voxels are left out of the curve's samples, the sparsity term has a
free level."""
import pytest
import torch


def test_blur_matched_loss_does_not_reward_blur():
    """A thick-slice target is the sharp image blurred: the blur-matched loss scores the sharp
    output (the input's detail) as right and a blurred output as worse; the plain loss would
    reward the blur."""
    from gado_bids.training.config import TrainConfig
    from gado_bids.training.losses import gaussian_blur, training_loss
    torch.manual_seed(0)
    sharp = torch.rand(1, 1, 24, 24, 24)
    sigma = (0.0, 0.0, 1.5)
    target = gaussian_blur(sharp[0], sigma)[None]
    blurred_output = gaussian_blur(sharp[0], (1.0, 1.0, 1.5))[None]
    mask = torch.zeros_like(sharp)
    mask[..., 5:19, 5:19, 5:19] = 1  # away from the zero padding
    matched, plain = TrainConfig(), TrainConfig(blur_matched=False)
    loss = lambda config, output: training_loss(config, output, target, mask, [sigma], [1.0])
    assert loss(matched, sharp).item() < 1e-10
    assert loss(matched, blurred_output) > 100 * loss(matched, sharp) + 1e-6
    assert loss(plain, target * 0 + blurred_output) < loss(plain, sharp)  # what 0.1 learnt
    # sample weights: a 3D sample weighs more
    two = torch.cat([sharp, sharp * 0.5])
    targets = torch.cat([sharp, sharp])
    masks = torch.ones_like(two)
    light = training_loss(plain, two, targets, masks, [sigma, sigma], [1.0, 1.0])
    heavy = training_loss(plain, two, targets, masks, [sigma, sigma], [1.0, 3.0])
    assert heavy > light


def test_histogram_term_makes_a_flattened_texture_cost():
    """Where the target's texture cannot be predicted (here: noise independent of the input),
    the voxel-wise error is lowest for the flattened mean image; with the histogram term an
    image with the target's own spread of intensities scores better."""
    from gado_bids.training.config import TrainConfig
    from gado_bids.training.losses import distribution_error, training_loss
    generator = torch.Generator().manual_seed(0)
    tissue = torch.where(torch.rand(1, 1, 20, 20, 20, generator=generator) < 0.5, 0.4, 0.7)
    target = tissue + 0.05 * torch.randn(tissue.shape, generator=generator)
    textured = tissue + 0.05 * torch.randn(tissue.shape, generator=generator)
    flattened = tissue
    mask = torch.ones_like(tissue)
    no_blur = [(0.0, 0.0, 0.0)]
    voxel_only = TrainConfig(blur_matched=False)
    with_histogram = TrainConfig(blur_matched=False, distribution_weight=2.0)
    loss = lambda config, output: training_loss(config, output, target, mask, no_blur, [1.0])
    assert loss(voxel_only, flattened) < 0.6 * loss(voxel_only, textured)
    assert loss(with_histogram, textured) < 0.8 * loss(with_histogram, flattened)
    assert distribution_error(target.flatten(), target.flatten()) == 0


def test_comparison_blur_makes_cutting_the_inputs_noise_cost_and_still_sees_enhancement():
    """A map E >= 0 can take out only the bright half of the input's noise. Voxel by voxel that
    scores better than keeping the input's texture (the target's own noise is unpredictable);
    compared after a Gaussian average (sigma 0.7 voxel) it scores worse, since it lowers the mean, while a
    4-voxel blob of enhancement left in the image keeps about half its cost."""
    import numpy as np
    from gado_bids.training.config import TrainConfig
    from gado_bids.training.losses import masked_blur, training_loss
    from gado_bids.training.validation import masked_average
    generator = torch.Generator().manual_seed(0)
    shape = (1, 1, 28, 28, 28)
    tissue = torch.full(shape, 0.5)
    target = tissue + 0.05 * torch.randn(shape, generator=generator)
    input_noise = 0.05 * torch.randn(shape, generator=generator)
    kept = tissue + input_noise
    cut = kept - input_noise.clamp_min(0)  # what E >= 0 can do to the noise
    blob = torch.zeros(shape)
    blob[..., 12:16, 12:16, 12:16] = 0.3
    mask = torch.zeros(shape)
    mask[..., 4:24, 4:24, 4:24] = 1
    no_blur = [(0.0, 0.0, 0.0)]
    voxel, averaged = TrainConfig(blur_matched=False), TrainConfig(blur_matched=False,
                                                                  comparison_blur=0.7)
    loss = lambda config, output: training_loss(config, output, target, mask, no_blur, [1.0])
    assert loss(voxel, cut) < 0.85 * loss(voxel, kept)
    assert loss(averaged, kept) < 0.8 * loss(averaged, cut)
    # the blob's cost (its excess over the kept image's) survives the average mostly; the
    # noise's cost does not
    blob_cost = lambda config: loss(config, kept + blob) - loss(config, kept)
    assert blob_cost(averaged) > 0.4 * blob_cost(voxel)
    assert loss(averaged, kept) < 0.15 * loss(voxel, kept)
    # the average stays inside the mask: a constant brain next to a bright outside stays constant
    outside_bright = torch.where(mask > 0, 0.5, 1.0)[0]
    inside = mask[0] > 0
    assert torch.allclose(masked_blur(outside_bright, inside, (1.0,) * 3)[inside],
                          torch.tensor(0.5), atol=1e-5)
    # the validation's whole-volume version computes the same average
    volume = kept[0, 0].numpy()
    same = masked_blur(kept[0], inside, (1.0,) * 3)[0].numpy()
    whole = masked_average(volume, inside[0].numpy(), 1.0)
    assert np.allclose(whole[inside[0].numpy()], same[inside[0].numpy()], atol=1e-3)


def test_the_quantile_curve_loss_keeps_contrast_that_regression_flattens():
    """Why the intensity curve learns from sorted values: mapping a noisy input onto its target
    voxel by voxel (MSE) shrinks the target's spread (regression to the mean: grey/white
    contrast averaged away); the quantile loss gives the output the target's spread."""
    import numpy as np
    from gado_bids.model.networks import IntensityCurve, intensity_descriptor
    from gado_bids.training.losses import curve_loss
    rng = np.random.default_rng(0)
    tissue = rng.choice([0.35, 0.5], 20_000)  # grey and white matter
    target = torch.from_numpy((tissue + rng.normal(0, 0.02, tissue.size)).astype(np.float32))
    ce = torch.from_numpy((tissue + rng.normal(0, 0.06, tissue.size)).astype(np.float32))
    descriptor = intensity_descriptor(ce[None])[0]

    class Holder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.intensity_curve = IntensityCurve()

    def fitted(loss_name):
        torch.manual_seed(0)
        model = Holder()
        optimiser = torch.optim.Adam(model.parameters(), lr=0.05)
        samples = {"a": (ce, target, descriptor, descriptor)}
        for _ in range(150):
            if loss_name == "quantile":
                loss = curve_loss(model, ["a"], samples, set(), "cpu")
            else:
                output = model.intensity_curve(ce[None, None], descriptor[None])[0, 0]
                loss = ((output - target) ** 2).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        with torch.no_grad():
            return model.intensity_curve(ce[None, None], descriptor[None])[0, 0]
    spread = lambda v: float(torch.quantile(v, 0.9) - torch.quantile(v, 0.1))  # noqa: E731
    assert spread(fitted("mse")) < 0.85 * spread(target)
    assert abs(spread(fitted("quantile")) - spread(target)) < 0.05 * spread(target)


def _pair_with_bright_enhancement():
    """A pair whose ce scan is its target plus enhancement at 0.9 in 5% of the brain."""
    import numpy as np
    from gado_bids.training.cache import TrainingPair
    rng = np.random.default_rng(0)
    shape = (24, 24, 24)
    target = np.where(rng.random(shape) < 0.5, 0.35, 0.5) + rng.normal(0, 0.03, shape)
    target = np.clip(target, 0.05, 1).astype(np.float32)
    ce = np.where(rng.random(shape) < 0.05, 0.9, target).astype(np.float32)
    return TrainingPair("p", "001", ce, target, np.ones(shape, bool))


def test_curve_samples_leave_out_enhanced_voxels_and_keep_the_white_matter_top():
    """A pair whose ce scan is its target plus bright enhancement in 5% of the brain: matched
    over all voxels, the ce's top (the enhancement) is paired with the target's top white
    matter, so the identity curve looks wrong from the 95th percentile up; over the unenhanced
    voxels, sampled at the same places in both scans, the identity is right (within 0.02) up
    to the 99th (what is left is enhancement on the target's brightest voxels, under 1% of the
    samples)."""
    from gado_bids.training.losses import curve_samples, whole_scan_descriptors
    pair = _pair_with_bright_enhancement()
    descriptors = whole_scan_descriptors([pair])
    gaps = {}
    for voxels in ("all", "unenhanced"):
        ce_samples, target_samples, *_ = curve_samples([pair], 0, descriptors, voxels)["p"]
        gap = (torch.sort(ce_samples)[0] - torch.sort(target_samples)[0]).abs()
        gaps[voxels] = gap[:int(0.99 * gap.numel())].max().item()
        enhanced_share = (ce_samples > 0.8).float().mean().item()
        assert (enhanced_share < 0.01) == (voxels == "unenhanced"), (voxels, enhanced_share)
    assert gaps["unenhanced"] < 0.02 and gaps["all"] > 0.3, gaps


def test_after_map_samples_remove_the_map_so_the_identity_curve_is_right():
    """The same pair: with the map E that removes its enhancement, "after_map" samples of the ce
    scan less E match the target's distribution with the identity curve, and curve_loss sees
    that (its error far below "all"'s)."""
    import numpy as np
    from gado_bids.training.losses import curve_loss, curve_samples, whole_scan_descriptors
    from gado_bids.model.networks import build_model
    pair = _pair_with_bright_enhancement()
    ce, target = pair.ce, pair.target
    descriptors = whole_scan_descriptors([pair])
    removed = {"p": (ce - target).astype(np.float32)}
    model = build_model("attention-unet", 4, "enhancement")  # its curve starts as the identity
    errors = {}
    for voxels in ("all", "after_map"):
        samples = curve_samples([pair], 0, descriptors, voxels, removed)
        errors[voxels] = curve_loss(model, ["p"], samples, set(), "cpu").item()
    ce_samples, _, _, _, removed_samples = samples["p"]
    assert (ce_samples > 0.8).float().mean().item() > 0.03  # the ce's enhancement is sampled
    assert errors["after_map"] < 0.01 * errors["all"], errors


def test_the_sparsity_term_charges_the_map_only_above_its_free_level():
    """A broad map below enhancement_free_level (gadolinium's tissue-wide part) costs nothing; a
    vessel above it costs what it exceeds the level by, and without a level every bit costs."""
    from gado_bids.training.config import TrainConfig
    from gado_bids.training.losses import training_loss
    image = torch.full((1, 1, 8, 8, 8), 0.4)
    masks = torch.ones_like(image)

    def loss(level, enhancement):
        config = TrainConfig(enhancement_l1=1.0, enhancement_free_level=level)
        return training_loss(config, image, image, masks, [(0, 0, 0)], [1.0],
                             enhancement).item()
    broad = torch.full_like(image, 0.02)
    vessel = torch.zeros_like(image)
    vessel[0, 0, 4, 4, :] = 0.5
    assert loss(0.03, broad) == 0
    assert loss(0.0, broad) == pytest.approx(0.02)
    assert loss(0.03, vessel) == pytest.approx(8 * 0.47 / 512)


def test_the_tissue_term_sees_a_grey_matter_offset_that_the_voxel_error_hides():
    """A grey matter 0.01 too bright under noise of SD 0.05: the voxel error barely changes (the
    offset is a twenty-fifth of the noise's variance), the tissue term is the offset squared;
    a core with too few voxels in the brain counts nothing."""
    from gado_bids.training.config import TrainConfig
    from gado_bids.training.losses import tissue_error, training_loss
    torch.manual_seed(0)
    shape = (1, 1, 16, 16, 16)
    grey = torch.zeros(shape, dtype=torch.bool)
    grey[..., :8] = True
    target = torch.where(grey, 0.40, 0.48) + 0.05 * torch.randn(shape)
    right = torch.where(grey, 0.40, 0.48) + 0.05 * torch.randn(shape)
    too_bright = right + 0.01 * grey
    masks = torch.ones(shape)
    cores = torch.cat([grey, ~grey], dim=1).float()  # (1 sample, GM and WM cores)
    inside = masks[0] > 0

    def loss(output, weight):
        return training_loss(TrainConfig(tissue_weight=weight), output, target, masks,
                             [(0, 0, 0)], [1.0], cores=cores).item()
    offset_error = tissue_error(too_bright[0], target[0], inside, cores[0]) - \
        tissue_error(right[0], target[0], inside, cores[0])
    assert offset_error.item() == pytest.approx(0.01 ** 2, rel=0.5)
    assert loss(too_bright, 0) - loss(right, 0) < 0.03 * loss(right, 0)
    assert loss(too_bright, 10) - loss(too_bright, 0) == pytest.approx(
        10 * tissue_error(too_bright[0], target[0], inside, cores[0]).item(), rel=1e-4)
    small = torch.zeros_like(cores[0])
    small[0, 0, 0, :10] = 1
    assert tissue_error(too_bright[0], target[0], inside, small).item() == 0



def test_the_contrast_form_ignores_a_global_offset_and_sees_a_grey_white_one():
    """form "contrast": a whole crop 0.02 too dark costs nothing (the curve's job), a grey matter
    0.01 too bright over a white matter 0.005 too dark costs the 0.015 gap squared."""
    from gado_bids.training.losses import tissue_error
    shape = (1, 16, 16, 16)
    grey = torch.zeros(shape, dtype=torch.bool)
    grey[..., :8] = True
    target = torch.where(grey, 0.40, 0.48)
    cores = torch.cat([grey, ~grey]).float()
    inside = torch.ones(shape, dtype=torch.bool)
    darker = target - 0.02
    contrast = target + torch.where(grey, 0.01, -0.005)
    assert tissue_error(darker, target, inside, cores, form="contrast").item() == \
        pytest.approx(0, abs=1e-10)
    assert tissue_error(darker, target, inside, cores).item() == pytest.approx(2 * 0.02 ** 2,
                                                                             rel=1e-4)
    assert tissue_error(contrast, target, inside, cores, form="contrast").item() == \
        pytest.approx(0.015 ** 2, rel=1e-3)


def test_the_contrast_form_with_a_csf_core_also_sees_the_csf_white_gap():
    """cores (CSF, GM, WM): CSF 0.02 too bright against white matter adds 0.02 squared to the
    grey/white term; a global offset still costs nothing."""
    from gado_bids.training.losses import tissue_error
    shape = (1, 18, 16, 16)
    csf, grey, white = (torch.zeros(shape, dtype=torch.bool) for _ in range(3))
    csf[:, :6], grey[:, 6:12], white[:, 12:] = True, True, True
    target = torch.where(csf, 0.25, torch.where(grey, 0.40, 0.48))
    cores = torch.cat([csf, grey, white]).float()
    inside = torch.ones(shape, dtype=torch.bool)
    bright_csf = target + 0.02 * csf + 0.01 * grey
    assert tissue_error(target - 0.03, target, inside, cores, form="contrast").item() == \
        pytest.approx(0, abs=1e-10)
    assert tissue_error(bright_csf, target, inside, cores, form="contrast").item() == \
        pytest.approx(0.02 ** 2 + 0.01 ** 2, rel=1e-3)
    assert tissue_error(bright_csf, target, inside, cores[1:], form="contrast").item() == \
        pytest.approx(0.01 ** 2, rel=1e-3)


def test_tissue_outputs_carry_the_tissue_term_to_the_curve_alone():
    """tissue_trains_curve: the voxel error sees the curve detached, the tissue term the
    attached image, so only the tissue term's gradient reaches the curve."""
    from gado_bids.training.config import TrainConfig
    from gado_bids.training.losses import training_loss
    shape = (1, 1, 16, 16, 16)
    grey = torch.zeros(shape, dtype=torch.bool)
    grey[..., :8] = True
    target = torch.where(grey, 0.40, 0.48)
    ce = torch.where(grey, 0.43, 0.47)
    cores = torch.cat([grey, ~grey], dim=1).float()
    config = TrainConfig(tissue_weight=3, tissue_loss_form="contrast", blur_matched=False)
    contrast = torch.ones((), requires_grad=True)  # a one-parameter "curve"
    mapped = 0.45 + contrast * (ce - 0.45)

    def loss(tissue_outputs):
        return training_loss(config, mapped.detach(), target, torch.ones(shape), [(0, 0, 0)],
                             [1.0], cores=cores, tissue_outputs=tissue_outputs)
    assert not loss(None).requires_grad
    loss(mapped).backward()
    # the ce gap (0.04) is below the target's (0.08): the term asks the curve for more contrast
    assert contrast.grad.item() < 0
