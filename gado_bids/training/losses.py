"""What training minimises: the blur-matched crop error with its optional histogram and
sparsity terms, and the intensity curve's quantile loss on whole-scan samples (why each is
shaped as it is: training/loop.py's docstring and each function's)."""
import math

import numpy as np
import torch
from torch.nn import functional

from gado_bids.metrics import resolution


def gaussian_blur(volumes: torch.Tensor, sigma_voxels) -> torch.Tensor:
    """Separable Gaussian of one (C, D, H, W) tensor, sigma per axis (0 leaves the axis), zero
    padding (outside the brain is zero); differentiable, for the blur-matched loss."""
    for axis, sigma in enumerate(sigma_voxels):
        if sigma <= 0.05:
            continue
        radius = max(1, int(math.ceil(3 * sigma)))
        offsets = torch.arange(-radius, radius + 1, dtype=volumes.dtype, device=volumes.device)
        kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
        shape = [1, 1, 1, 1, 1]
        shape[axis + 2] = kernel.numel()
        padding = [0, 0, 0]
        padding[axis] = radius
        volumes = functional.conv3d(volumes[:, None], (kernel / kernel.sum()).view(shape),
                                    padding=padding)[:, 0]
    return volumes


def distribution_error(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the sorted values (the squared 2-Wasserstein distance of the
    two intensity histograms). Voxel-wise error alone is lowest for an image whose white-matter
    top is shaved off where the target's texture cannot be predicted (the 0.2 weights: top end
    2-3% against 5-6% for their targets); a histogram term makes that cost."""
    return ((torch.sort(output)[0] - torch.sort(target)[0]) ** 2).mean()


def masked_blur(volumes: torch.Tensor, mask: torch.Tensor, sigma_voxels) -> torch.Tensor:
    """Gaussian average over the mask's voxels only, blur(v m) / blur(m): what lies outside the
    brain (zero, or a neighbour's tissue) does not leak into the edge."""
    mask = mask.to(volumes.dtype)
    return gaussian_blur(volumes * mask, sigma_voxels) / \
        gaussian_blur(mask, sigma_voxels).clamp_min(1e-3)


def compared_at_scale(output, target, mask, sigma_voxels):
    """(output, target) as the voxel error compares them: with comparison_blur, both averaged
    over about a voxel first. Why (a hypothesis for the 0.2/0.3 weights' darkened white matter
    and compressed top end, shown on a toy image in tests/training/test_losses.py; trained
    weights, model card's stage 8, did not bear it out at sigma 0.7): the target's noise cannot be predicted from the input, so the voxel-wise
    error is lowest with the input's own noise taken out, and a map E >= 0 can only take out
    its bright half, which lowers the white matter's mean. Averaged, the noise cancels, so
    cutting it gains nothing and the mean it takes away still costs; a blob of enhancement
    keeps about half its cost at sigma 0.7, a one-voxel vessel about an eighth (weigh that
    against enhancement_l1)."""
    if sigma_voxels <= 0:
        return output, target
    sigma = (sigma_voxels,) * 3
    return masked_blur(output, mask, sigma), masked_blur(target, mask, sigma)


def tissue_error(output, target, inside, cores, minimum_voxels: int = 200,
                 form: str = "means"):
    """Sum over the cores (the template's GM and WM) of the squared difference between the
    output's and the target's means inside each core's brain part (cores with at least
    minimum_voxels there). Why: relative to white matter the ce scan's grey matter is ~0.01 of
    the scale brighter than the target's; voxel by voxel that gain is far below the target's
    noise and the map never learnt it (model card, stages 11-13), while a mean over thousands
    of voxels leaves no noise to hide it. Measured (stage 14, GM and WM at weight 10): the map
    shrank instead of learning a broad GM part. One reading: the WM core's output is already
    below its target and E >= 0 can only lower it further, so that half of the term lowers E.
    form "contrast" compares each core's mean less the last core's (GM - WM; with a CSF core
    first, CSF - WM as well) instead: a global offset, which the curve owns, costs nothing, and
    a WM deficit pulls E up in GM. Measured (stages 15 and 16): it moves the GM/WM boundary
    toward the real scan's, past it at weight 10."""
    means = []
    for core in cores:
        region = inside & (core > 0)
        means.append((output[region].mean(), target[region].mean())
                     if region.sum() >= minimum_voxels else None)
    if form == "contrast":
        reference = means[-1]
        terms = [((out - reference[0]) - (tgt - reference[1])) ** 2
                 for out, tgt in (m for m in means[:-1] if m is not None)]
        return torch.stack(terms).sum() if terms and reference is not None else output.sum() * 0
    terms = [(out - tgt) ** 2 for out, tgt in (m for m in means if m is not None)]
    return torch.stack(terms).sum() if terms else output.sum() * 0


def training_loss(config, outputs, targets, masks, sigmas, weights, enhancement=None,
                  cores=None, tissue_outputs=None):
    """Weighted mean over samples of the masked error of each (blur-matched) output, plus
    distribution_weight times the error of its intensity histogram, plus the enhancement map's
    mean inside the brain (of its part above enhancement_free_level) times enhancement_l1.
    Why a free level: gadolinium also brightens grey matter and the CSF spaces' vessels broadly
    by about 0.01-0.03 of the scale (benchmarks/pair_contrast.py); a map charged for every bit
    of its mean leaves that tissue-wide part in (model card, "where the remaining volume error
    sits"), while above the level vessels and rims stay sparse. cores: per sample the tissue
    cores of its crop, for tissue_weight times tissue_error. tissue_outputs: the same images
    with the intensity curve's gradient kept (tissue_trains_curve), for the tissue term alone:
    a tissue-wide contrast is what a whole-scan curve can change and a sparse map cannot."""
    per_sample = []
    for index, (output, target, mask, sigma) in enumerate(zip(outputs, targets, masks, sigmas)):
        tissue_output = None if tissue_outputs is None else tissue_outputs[index]
        if config.blur_matched:
            output = gaussian_blur(output, sigma)
            if tissue_output is not None:
                tissue_output = gaussian_blur(tissue_output, sigma)
        if tissue_output is None:
            tissue_output = output
        inside = mask > 0
        if not inside.any():
            inside = torch.ones_like(mask, dtype=torch.bool)
        compared, compared_target = compared_at_scale(output, target, inside,
                                                      config.comparison_blur)
        error = (compared - compared_target)[inside]
        term = error.abs().mean() if config.loss == "l1" else (error ** 2).mean()
        if config.distribution_weight > 0:
            term = term + config.distribution_weight * distribution_error(output[inside],
                                                                          target[inside])
        if config.tissue_weight > 0 and cores is not None:
            term = term + config.tissue_weight * tissue_error(
                tissue_output, target, inside, cores[index], form=config.tissue_loss_form)
        per_sample.append(term)
    weights = torch.as_tensor(weights, dtype=outputs.dtype, device=outputs.device)
    loss = (torch.stack(per_sample) * weights).sum() / weights.sum()
    if enhancement is not None and config.enhancement_l1 > 0:
        charged = (enhancement[masks > 0] - config.enhancement_free_level).clamp_min(0)
        loss = loss + config.enhancement_l1 * charged.mean()
    return loss


def whole_scan_descriptors(pairs) -> dict:
    """name -> (descriptor of the ce scan, of the target): what a crop's intensity curve sees."""
    from gado_bids.model.networks import intensity_descriptor
    return {pair.name: tuple(intensity_descriptor(torch.from_numpy(volume)[None])[0]
                             for volume in (pair.ce, pair.target)) for pair in pairs}


CURVE_SAMPLES = 40_000  # brain voxels per scan for the quantile loss
# A voxel whose rank among the brain's intensities is this much higher in the ce scan than in
# its target is taken as enhanced (vessels, dura, lesion rims rank near the top only after
# contrast); see curve_samples.
ENHANCED_RANK_GAP = 0.15
ENHANCED_PASSES = 4  # enhancement on voxels already bright ranks high only once the rest is out


def _ranks(values: np.ndarray) -> np.ndarray:
    ranks = np.empty(values.size, np.float32)
    ranks[np.argsort(values, kind="stable")] = np.linspace(0, 1, values.size, dtype=np.float32)
    return ranks


def curve_samples(pairs, seed: int, descriptors: dict, voxels: str = "all",
                  removed_maps: dict = None) -> dict:
    """name -> (ce voxels blurred like the target, target voxels, descriptor of the ce scan,
    descriptor of the target[, with "after_map" the removed enhancement at the ce voxels]):
    fixed random brain samples for the quantile loss of the intensity curve. descriptors: the
    pairs' whole_scan_descriptors, computed once for both uses.

    voxels "all" (the bundled weights' recipe): each image's own brain voxels, so the ce scan's
    brightest few percent - enhancement, which the map E removes anyway - are paired with the
    target's brightest white matter. "unenhanced": the same voxels in both images, leaving out
    those that rank ENHANCED_RANK_GAP higher in the ce scan than in the target. Measured (model
    card, "Experiments"): the bundled weights' saturated top end comes from E, not from this
    pairing; "unenhanced" kept the top end, but the one-sided cut leaves voxels that are
    relatively darker in the ce scan, so the curve learnt to brighten and E turned into a broad
    correction; tissue volumes got worse. "after_map": each image's own brain voxels, the ce
    scan's less removed_maps (name -> the map E of the weights training starts from), so the
    curve learns the distribution of f(ce) - E rather than of f(ce): enhancement no longer
    takes the target's top ranks and pushes the tissues' ranks down (with "all", the curve
    learnt from the gadolinium-only pairs darkened white matter as much as grey matter: stages
    10 and 18)."""
    rng = np.random.default_rng(seed)
    samples = {}
    for pair in pairs:
        blurred = resolution.blur(pair.ce, pair.target_blur)
        removed = None
        if voxels == "after_map":
            inside = pair.mask & (blurred > 0)
            index = rng.choice(int(inside.sum()), CURVE_SAMPLES)
            removed = resolution.blur(removed_maps[pair.name], pair.target_blur)[inside][index]
            chosen = [blurred[inside][index],
                      rng.choice(pair.target[pair.mask & (pair.target > 0)], CURVE_SAMPLES)]
        elif voxels == "unenhanced":
            inside = pair.mask & (blurred > 0) & (pair.target > 0)
            ce_values, target_values = blurred[inside], pair.target[inside]
            kept = np.arange(ce_values.size)
            for _ in range(ENHANCED_PASSES):  # ranks again without the voxels left out so far
                kept = kept[_ranks(ce_values[kept]) - _ranks(target_values[kept])
                            < ENHANCED_RANK_GAP]
            index = rng.choice(kept, CURVE_SAMPLES)
            chosen = [ce_values[index], target_values[index]]
        else:
            chosen = [rng.choice(volume[pair.mask & (volume > 0)], CURVE_SAMPLES)
                      for volume in (blurred, pair.target)]
        extra = () if removed is None else (torch.from_numpy(removed.astype(np.float32)),)
        samples[pair.name] = (*(torch.from_numpy(c.astype(np.float32)) for c in chosen),
                              *descriptors[pair.name], *extra)
    return samples


def curve_loss(model, names, samples, sharp_names, device, matched_names=None) -> torch.Tensor:
    """The distribution error of f(ce) less the removed enhancement sampled with it (zero
    unless curve_voxels "after_map") against the target per scan (of matched_names only, when
    given), and the squared error of f(target) against itself for sharp targets (a scan that
    already looks pre-contrast keeps its curve); zero when the batch holds neither."""
    terms = []
    curve = model.intensity_curve
    for name in names:
        ce, target, ce_descriptor, target_descriptor, *removed = (v.to(device)
                                                                  for v in samples[name])
        if matched_names is None or name in matched_names:
            mapped = curve(ce[None, None], ce_descriptor[None])[0, 0]
            terms.append(distribution_error(mapped - sum(removed), target))
        if name in sharp_names:
            kept = curve(target[None, None], target_descriptor[None])[0, 0]
            terms.append(((kept - target) ** 2).mean())
    return torch.stack(terms).mean() if terms else torch.zeros((), device=device)
