"""What one training run sees: the subject split by reference class, the pairs on the network's
grid, the curve loss's samples, the simulated enhancement maps, and the random batches of crops
drawn from them (all from the run's seed)."""
import logging
import random
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from gado_bids import atomic
from gado_bids.hashing import sha256_of
from gado_bids.model.weights import bundled_weights_path
from gado_bids.preprocessing import grids
from gado_bids.metrics import tissues
from gado_bids.training import simulated_enhancement
from gado_bids.training.augment import augment, random_crop_origin
from gado_bids.training.contrast import CORE, pair_contrast
from gado_bids.training.losses import curve_samples, whole_scan_descriptors

LOG = logging.getLogger("gadosynth.train")
GRIDS = {"enhancement": "1mm", "direct": "128"}


def split_subjects(subjects, n_validation, seed, fixed=None, classes=None, n_3d=0):
    """(training, validation) subject lists. classes: subject -> reference class; with n_3d,
    n_3d of the validation subjects are drawn from the 3D ones and the rest from the others (a
    validation set with one 3D reference cannot see whether the images keep their detail)."""
    subjects = sorted(set(subjects))
    if fixed:
        unknown = sorted(set(fixed) - set(subjects))
        if unknown:
            raise ValueError(f"validation subjects not in the data: {unknown}")
        validation = sorted(fixed)
    else:
        if not 0 < n_validation < len(subjects):
            raise ValueError(f"cannot hold out {n_validation} of {len(subjects)} subjects")
        rng = random.Random(seed)
        if n_3d:
            sharp = [s for s in subjects if (classes or {}).get(s) == "3D"]
            other = [s for s in subjects if s not in sharp]
            if not n_3d <= min(n_validation, len(sharp) - 1) or n_validation - n_3d > len(other):
                raise ValueError(f"cannot hold out {n_3d} of {len(sharp)} subjects with a 3D "
                                 f"reference among {n_validation}")
            validation = sorted(rng.sample(sharp, n_3d) + rng.sample(other, n_validation - n_3d))
        else:
            validation = sorted(rng.sample(subjects, n_validation))
    return [s for s in subjects if s not in validation], validation


def _to_tensor(volume, device):
    return torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[None].to(device)


def _rim(mask, config, generator):
    """Map weights of a dura rim around the crop's brain mask (simulated_rim of the simulated
    samples; simulated_enhancement.strip_rim), or None. No random draw when simulated_rim is 0,
    so the recipes without it draw the same batches as before."""
    if not (config.simulated_rim > 0 and
            torch.rand((), generator=generator) < config.simulated_rim):
        return None
    low, high = simulated_enhancement.RIM_WIDTH_VOXELS
    width = int(torch.randint(low, high + 1, (), generator=generator))
    low, high = simulated_enhancement.RIM_WEIGHT_RANGE
    level = low + (high - low) * torch.rand((), generator=generator).item()
    rim = simulated_enhancement.strip_rim(mask, width)
    texture = 0.8 + 0.4 * torch.rand(rim.shape, generator=generator)  # dura is not uniform
    return (level * texture.to(rim.device) * rim).clamp(max=1.0)


def _simulated_input(ce, target, mask, box, config, generator, device, enhancement_maps):
    """(input, the map weights added, built on the ce scan?, the rim's weights or None) of one
    simulated sample: a random map at a random amplitude on the target (pure removal) or on the
    ce scan (simulated_on_ce), with a dura rim around the brain for simulated_rim of them."""
    index = torch.randint(len(enhancement_maps), (), generator=generator).item()
    low, high = simulated_enhancement.AMPLITUDE_RANGE
    amplitude = low + (high - low) * torch.rand((), generator=generator).item()
    added = simulated_enhancement.weights_on(enhancement_maps, index, box, device)
    on_ce = config.simulated_on_ce > 0 and (
        torch.rand((), generator=generator) < config.simulated_on_ce)
    rim = _rim(mask, config, generator)
    if rim is not None:
        added = torch.maximum(added, rim)
    return (simulated_enhancement.simulate_ce(ce if on_ce else target, added, amplitude), added,
            on_ce, rim)


def sample_batch(pairs, config, generator, device, enhancement_maps=None, sharp_pairs=(),
                 descriptors=None, tissue_cores=None):
    """(inputs, targets, masks, per-sample target blur, per-sample weights, intensity
    descriptors of the whole scans the inputs were cropped from or None, the crops of
    tissue_cores - (K, D, H, W) masks on the pairs' grid, moved with each crop - or None).
    A simulated sample
    replaces its pair by a random sharp (3D) training pair and adds enhancement to that pair's
    target (pure removal: the target is the untouched sharp scan, blur zero) or, with
    simulated_on_ce, to its real ce scan (the target keeps its own blur). With
    simulated_loss_mask "brain+enhancement" a simulated sample's loss also covers the voxels the
    simulation enhanced outside the pair's brain mask: the dura shell hugging the brain lies
    mostly just outside a skull-stripped scan's mask, so with the brain mask alone enhancement
    left inside a looser mask (a clinical skull strip, the demo's) is never taught away; with
    simulated_rim a share of them also get a dura rim drawn around the pair's own mask, scored
    there against the background (_rim)."""
    size = config.crop_size
    inputs, targets, masks, sigmas, weights, described, cores = [], [], [], [], [], [], []
    for pair in pairs:
        simulated = config.simulated_fraction > 0 and (
            torch.rand((), generator=generator) < config.simulated_fraction)
        if simulated and sharp_pairs:
            pair = sharp_pairs[torch.randint(len(sharp_pairs), (), generator=generator).item()]
        origin = random_crop_origin(torch.from_numpy(pair.mask), size, generator).tolist()
        box = tuple(slice(o, o + size) for o in origin)
        target = _to_tensor(pair.target[box], device)
        ce = _to_tensor(pair.ce[box], device)
        mask = _to_tensor(pair.mask[box], device)
        on_ce, rim = False, None
        if simulated:
            ce, added, on_ce, rim = _simulated_input(ce, target, mask, box, config, generator,
                                                     device, enhancement_maps)
        pure_removal = simulated and not on_ce
        sigmas.append((0.0, 0.0, 0.0) if pure_removal else tuple(pair.target_blur))
        if descriptors is not None:
            described.append(descriptors[pair.name][1 if pure_removal else 0])
        weights.append(config.weight_3d if pair.reference_class == "3D" else 1.0)
        if simulated and config.simulated_loss_mask == "brain+enhancement":
            mask = torch.maximum(mask, (added > 0).to(mask.dtype))
        if simulated and rim is not None:
            mask = torch.maximum(mask, (rim > 0).to(mask.dtype))
        companions = [] if tissue_cores is None else [_to_tensor(core[box], device)
                                                      for core in tissue_cores]
        ce, target, mask, *companions = augment(ce, target, mask, generator,
                                                config.augmentation, *companions)
        inputs.append(ce), targets.append(target), masks.append(mask)
        if companions:
            cores.append(torch.cat(companions))
    return (torch.stack(inputs), torch.stack(targets), torch.stack(masks), sigmas, weights,
            torch.stack(described).to(device) if described else None,
            torch.stack(cores) if cores else None)


def on_network_grid(pair):
    """A cached 1 mm pair resampled to the paper's 128^3 grid (the direct formulation's)."""
    voxel_mm = np.abs(np.diag(grids.network_affine())[:3])
    return replace(pair, ce=grids.crop_to_network(pair.ce), target=grids.crop_to_network(
        pair.target), mask=grids.crop_to_network(pair.mask.astype(np.float32), order=0) > 0.5,
        target_blur=tuple(float(s) for s in np.asarray(pair.target_blur) / voxel_mm))


@dataclass
class TrainingData:
    """What one run trains and validates on, fixed by the config's seed."""
    train_subjects: list
    validation_subjects: list
    classes: dict  # subject -> reference class
    train_pairs: list
    validation_pairs: list
    sharp_pairs: list  # training pairs with a 3D target (bases of simulated pairs)
    descriptors: dict = None  # whole-scan intensity descriptors (enhancement formulation)
    curve_samples: dict = None  # the quantile curve loss's samples
    curve_pairs: set = None  # names of the pairs whose distribution the curve learns; None: all
    enhancement_maps: torch.Tensor = None  # simulated enhancement
    tissue_cores: np.ndarray = None  # config.tissue_cores on the pairs' grid (tissue term)


def _require_quantile_curve(config, what: str):
    """Choosing the pairs a curve learns from means something only for the quantile curve."""
    if config.formulation != "enhancement" or config.curve_loss != "quantile":
        raise ValueError(f"{what} need the enhancement formulation's quantile curve")


def _gadolinium_only_pairs(config, train_pairs) -> tuple:
    """(names of the training pairs whose reference differs from the ce scan by gadolinium
    alone, subject -> [reference gap, ce gap]): the curve learns its contrast from those."""
    _require_quantile_curve(config, "gadolinium-only pairs")
    priors = dict(zip(tissues.TISSUES, tissues.template_priors()))
    contrasts = {p.name: pair_contrast(p, priors) for p in train_pairs}
    chosen = {name for name, contrast in contrasts.items() if contrast.gadolinium_only}
    if not chosen:
        raise ValueError("no training pair has a reference with the larger grey/white gap")
    LOG.info("%d of %d training pairs have a reference with the larger grey/white gap%s%s",
             len(chosen), len(train_pairs),
             "" if config.freeze_curve else "; the curve learns from them",
             "; only they are trained on" if config.training_pairs != "all" else "")
    gaps = {p.subject: [round(contrasts[p.name].reference_gap, 4),
                        round(contrasts[p.name].ce_gap, 4)] for p in train_pairs}
    return chosen, gaps


def removed_enhancement(model, pairs, device, path: Path, weights_sha256: str) -> dict:
    """name -> the map E that model (the weights file with weights_sha256) makes of each pair's
    ce scan (1 mm grid), saved at path and read back on a resumed run when made by the same
    weights (the curve_voxels "after_map" samples)."""
    from gado_bids.model.synthesis import run_network
    path = Path(path)
    if path.exists():
        with np.load(path) as saved:
            if str(saved.get("weights_sha256", "")) == weights_sha256 and all(
                    p.name in saved for p in pairs):
                return {p.name: saved[p.name].astype(np.float32) for p in pairs}
    maps = {}
    for pair in pairs:
        _, enhancement = run_network(model, grids.pad_crop(pair.ce), device)
        maps[pair.name] = np.where(pair.mask, grids.unpad_crop(enhancement), 0).astype(np.float32)
        LOG.info("removed enhancement of %s under the initial weights: mean %.4f", pair.name,
                 float(maps[pair.name][pair.mask].mean()))
    with atomic.atomic_path(path) as temporary:
        with open(temporary, "wb") as stream:
            np.savez_compressed(stream, weights_sha256=np.array(weights_sha256),
                                **{n: m.astype(np.float16) for n, m in maps.items()})
    return maps


def training_data(pairs, config, out_dir: Path, initial_model=None, device="cpu") -> TrainingData:
    if GRIDS[config.formulation] == "128":
        pairs = [on_network_grid(p) for p in pairs]
    classes = {p.subject: p.reference_class for p in pairs}
    train_subjects, validation_subjects = split_subjects(
        [p.subject for p in pairs], config.n_validation, config.seed, config.validation_subjects,
        classes, config.n_validation_3d)
    train_pairs = [p for p in pairs if p.subject in train_subjects]
    record = {"seed": config.seed, "train": train_subjects, "validation": validation_subjects,
              "reference_class": classes,
              "target_blur_voxels": {p.subject: list(p.target_blur) for p in pairs}}
    chosen = None
    if "gadolinium-only" in (config.curve_pairs, config.training_pairs):
        chosen, record["grey_white_gap"] = _gadolinium_only_pairs(config, train_pairs)
        if config.training_pairs == "gadolinium-only":
            train_pairs = [p for p in train_pairs if p.name in chosen]
            record["training_pairs"] = sorted(p.subject for p in train_pairs)
    if config.curve_pairs == "3D":  # among the pairs crops come from
        _require_quantile_curve(config, "3D curve pairs")
        chosen = {p.name for p in train_pairs if p.reference_class == "3D"}
        if not chosen:
            raise ValueError("no training pair has a sharp 3D reference for the curve to learn")
    if chosen is not None:
        record["curve_pairs"] = sorted(p.subject for p in train_pairs if p.name in chosen)
    data = TrainingData(train_subjects, validation_subjects, classes, train_pairs,
                        [p for p in pairs if p.subject in validation_subjects],
                        [p for p in train_pairs if p.reference_class == "3D"],
                        curve_pairs=chosen)
    if config.formulation == "enhancement":
        data.descriptors = whole_scan_descriptors(train_pairs)
        if config.curve_loss == "quantile" and not config.freeze_curve:
            removed = None
            if config.curve_voxels == "after_map":
                if initial_model is None or config.init == "scratch":
                    raise ValueError('curve_voxels "after_map" needs --init weights whose map '
                                     "it removes")
                init = (bundled_weights_path(config.model) if config.init == "bundled"
                        else Path(config.init))
                removed = removed_enhancement(initial_model, train_pairs, device,
                                              out_dir / "removed_enhancement.npz",
                                              sha256_of(init))
            data.curve_samples = curve_samples(train_pairs, config.seed, data.descriptors,
                                               config.curve_voxels, removed)
    if config.tissue_weight > 0:
        if GRIDS[config.formulation] != "1mm" or config.formulation != "enhancement":
            raise ValueError("the tissue term needs the enhancement formulation's 1 mm grid")
        priors = dict(zip(tissues.TISSUES, tissues.template_priors()))
        data.tissue_cores = np.stack([priors[name] > CORE  # as contrast.tissue_cores
                                      for name in config.tissue_cores.split(",")])
    atomic.write_json(out_dir / "split.json", record)
    LOG.info("%d training / %d validation subjects; validation: %s", len(train_subjects),
             len(validation_subjects), ", ".join(validation_subjects))
    if config.simulated_fraction > 0:
        data.enhancement_maps = torch.from_numpy(simulated_enhancement.load_or_make_maps(
            out_dir / "enhancement_maps.npz", seed=config.seed))
        LOG.info("%.0f%% of training inputs get simulated enhancement (%d maps)",
                 100 * config.simulated_fraction, len(data.enhancement_maps))
    return data
