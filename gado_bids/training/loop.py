"""The training loop: subject-wise split by reference class, Adam, checkpoints every epoch, exact
resume.

The loss does not teach the targets' blur (gadosynth 0.1's network learnt it, and its images
were a third less sharp than their input): with `blur_matched`, the output is blurred by the
target's own relative blur (measured per pair in the cache) before it is compared with a
thick-slice target, so keeping the input's detail costs nothing; sharp (3D) targets weigh
`weight_3d` times more; simulated pairs (enhancement added to a sharp 3D target) teach pure
removal; `enhancement_l1` keeps the removed-enhancement map sparse (enhancement formulation).

The intensity curve is not learnt by the squared error: regressed voxel by voxel onto a target
that is noisy and slightly misregistered, the best curve is the conditional mean, which flattens
grey/white contrast (seen: the first 1 mm weights trained that way gave images with almost no
grey/white contrast). With curve_loss "quantile" the curve learns to give each whole scan the
intensity distribution of its target (squared differences of sorted brain voxels, the 1D
Wasserstein distance; the ce scan is blurred by the target's measured blur first, so a
thick-slice target's narrower histogram is not copied as lost contrast), and a sharp target
mapped from itself must stay itself; the crop loss then trains only the enhancement map
(the curve's output detached).

An epoch is one random crop per training subject (batched). Everything random (split, crops,
augmentation) flows from one seed through a torch.Generator whose state is checkpointed with the
model and optimiser, so an interrupted run resumed from its last checkpoint continues exactly
where it stopped. The best model by validation loss (the blur-matched squared error on whole volumes of the
network's grid, eval mode, inside the brain mask) is kept apart from the last one.
"""
import logging
import math
import platform
import random
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional

from gado_bids.metrics import evaluation, resolution
from gado_bids.metrics.similarity import all_metrics
from gado_bids.model.networks import build_model, count_parameters
from gado_bids.model.weights import load_bundled, load_weights, save_weights
from gado_bids.outputs import atomic
from gado_bids.preprocessing import grids
from gado_bids.model.synthesis import run_network
from gado_bids.training import simulated_enhancement
from gado_bids.training.config import TrainConfig
from gado_bids.training.augment import augment, random_crop_origin

LOG = logging.getLogger("gadosynth.train")
# On our pairs plain L1 sat at the identity map for hundreds of steps (its gradient is a sign, and
# the pre/post differences are mostly small); MSE moved a fixed batch +2.3 dB in 30 steps.
LOSSES = ("mse", "l1")
LOG_COLUMNS = ["epoch", "step", "train_loss", "val_loss", "val_mae", "val_psnr", "val_ssim",
               "lr", "seconds"]


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


def training_loss(config, outputs, targets, masks, sigmas, weights, enhancement=None):
    """Weighted mean over samples of the masked error of each (blur-matched) output, plus
    distribution_weight times the error of its intensity histogram, plus the enhancement map's
    mean inside the brain times enhancement_l1."""
    per_sample = []
    for output, target, mask, sigma in zip(outputs, targets, masks, sigmas):
        if config.blur_matched:
            output = gaussian_blur(output, sigma)
        inside = mask > 0
        if not inside.any():
            inside = torch.ones_like(mask, dtype=torch.bool)
        error = (output - target)[inside]
        term = error.abs().mean() if config.loss == "l1" else (error ** 2).mean()
        if config.distribution_weight > 0:
            term = term + config.distribution_weight * distribution_error(output[inside],
                                                                          target[inside])
        per_sample.append(term)
    weights = torch.as_tensor(weights, dtype=outputs.dtype, device=outputs.device)
    loss = (torch.stack(per_sample) * weights).sum() / weights.sum()
    if enhancement is not None and config.enhancement_l1 > 0:
        loss = loss + config.enhancement_l1 * enhancement[masks > 0].mean()
    return loss


def _to_tensor(volume, device):
    return torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[None].to(device)


def _batch(pairs, config, generator, device, enhancement_maps=None, sharp_pairs=(),
           descriptors=None):
    """(inputs, targets, masks, per-sample target blur, per-sample weights, intensity
    descriptors of the whole scans the inputs were cropped from, or None). A simulated sample
    replaces its pair by a random sharp (3D) training pair and adds enhancement to that pair's
    target (pure removal: the target is the untouched sharp scan, blur zero) or, with
    simulated_on_ce, to its real ce scan (the target keeps its own blur)."""
    size = config.crop_size
    inputs, targets, masks, sigmas, weights, described = [], [], [], [], [], []
    for pair in pairs:
        simulated = config.simulated_fraction > 0 and (
            torch.rand((), generator=generator) < config.simulated_fraction)
        if simulated and sharp_pairs:
            pair = sharp_pairs[torch.randint(len(sharp_pairs), (), generator=generator).item()]
        origin = random_crop_origin(torch.from_numpy(pair.mask), size, generator).tolist()
        box = tuple(slice(o, o + size) for o in origin)
        target = _to_tensor(pair.target[box], device)
        ce = _to_tensor(pair.ce[box], device)
        on_ce = False
        if simulated:
            index = torch.randint(len(enhancement_maps), (), generator=generator).item()
            low, high = simulated_enhancement.AMPLITUDE_RANGE
            amplitude = low + (high - low) * torch.rand((), generator=generator).item()
            added = simulated_enhancement.weights_on(enhancement_maps, index, box, device)
            on_ce = config.simulated_on_ce > 0 and (
                torch.rand((), generator=generator) < config.simulated_on_ce)
            ce = simulated_enhancement.simulate_ce(ce if on_ce else target, added, amplitude)
        pure_removal = simulated and not on_ce
        sigmas.append((0.0, 0.0, 0.0) if pure_removal else tuple(pair.target_blur))
        if descriptors is not None:
            described.append(descriptors[pair.name][1 if pure_removal else 0])
        weights.append(config.weight_3d if pair.reference_class == "3D" else 1.0)
        ce, target, mask = augment(ce, target,
                                   _to_tensor(pair.mask[box], device), generator,
                                   config.augmentation)
        inputs.append(ce), targets.append(target), masks.append(mask)
    return (torch.stack(inputs), torch.stack(targets), torch.stack(masks), sigmas, weights,
            torch.stack(described).to(device) if described else None)


def whole_scan_descriptors(pairs) -> dict:
    """name -> (descriptor of the ce scan, of the target): what a crop's intensity curve sees."""
    from gado_bids.model.networks import intensity_descriptor
    return {pair.name: tuple(intensity_descriptor(torch.from_numpy(volume)[None])[0]
                             for volume in (pair.ce, pair.target)) for pair in pairs}


def on_network_grid(pair):
    """A cached 1 mm pair resampled to the paper's 128^3 grid (the direct formulation's)."""
    from dataclasses import replace
    voxel_mm = np.abs(np.diag(grids.network_affine())[:3])
    return replace(pair, ce=grids.crop_to_network(pair.ce), target=grids.crop_to_network(
        pair.target), mask=grids.crop_to_network(pair.mask.astype(np.float32), order=0) > 0.5,
        target_blur=tuple(float(s) for s in np.asarray(pair.target_blur) / voxel_mm))


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


def curve_samples(pairs, seed: int, descriptors: dict, voxels: str = "all") -> dict:
    """name -> (ce voxels blurred like the target, target voxels, descriptor of the ce scan,
    descriptor of the target): fixed random brain samples for the quantile loss of the
    intensity curve. descriptors: the pairs' whole_scan_descriptors, computed once for both uses.

    voxels "all" (the bundled weights' recipe): each image's own brain voxels. Matched that
    way, the ce scan's brightest few percent - enhancement, which the map E removes anyway -
    take the target's brightest white matter, so the curve squeezes the real white matter below
    it (the 0.2 images' top end is 2-3% against 5-6% for their targets). "unenhanced": the same
    voxels in both images, leaving out those that rank ENHANCED_RANK_GAP higher in the ce scan
    than in the target. Measured (model card, "experiments"): it keeps the top end, but the
    one-sided cut leaves voxels that are relatively darker in the ce scan, so the curve learns
    to brighten and E turns into a broad correction; tissue volumes got worse."""
    rng = np.random.default_rng(seed)
    samples = {}
    for pair in pairs:
        blurred = resolution.blur(pair.ce, pair.target_blur)
        if voxels == "unenhanced":
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
        samples[pair.name] = (*(torch.from_numpy(c.astype(np.float32)) for c in chosen),
                              *descriptors[pair.name])
    return samples


def curve_loss(model, names, samples, sharp_names, device) -> torch.Tensor:
    """Mean squared difference of sorted values: f(ce) against the target per scan, and f(target)
    against itself for sharp targets (a scan that already looks pre-contrast keeps its curve)."""
    terms = []
    curve = model.intensity_curve
    for name in names:
        ce, target, ce_descriptor, target_descriptor = (v.to(device) for v in samples[name])
        mapped = curve(ce[None, None], ce_descriptor[None])[0, 0]
        terms.append(((torch.sort(mapped)[0] - torch.sort(target)[0]) ** 2).mean())
        if name in sharp_names:
            kept = curve(target[None, None], target_descriptor[None])[0, 0]
            terms.append(((kept - target) ** 2).mean())
    return torch.stack(terms).mean()


def _model_output(model, inputs, descriptors=None, detach_curve=False):
    """(image, enhancement map or None) of a batch."""
    if getattr(model, "formulation", "direct") == "enhancement":
        mapped, enhancement = model.decompose(inputs, descriptors)
        return (mapped.detach() if detach_curve else mapped) - enhancement, enhancement
    return model(inputs), None


@torch.no_grad()
def predict_volume(model, volume: np.ndarray, device, mask=None) -> np.ndarray:
    """Whole-volume inference on the volume's own grid (the 1 mm cropped grid is padded to the
    network's multiple and back); output clipped to [0, 1], zero outside mask."""
    padded = volume.shape == grids.CROP_SHAPE
    output = run_network(model, grids.pad_crop(volume) if padded else volume, device)[0]
    output = grids.unpad_crop(output) if padded else output
    return np.where(mask, output, 0.0).astype(np.float32) if mask is not None else output


def network_grid_baseline(ce: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The simple baseline of a 128^3 pair: its 1 mm Gaussian measured in the network grid's
    voxels (about 1.3 mm each), not in voxels."""
    return evaluation.clip_and_blur_baseline(ce, mask, np.abs(np.diag(grids.network_affine())[:3]))


def evaluate(model, pairs, device, baselines: bool = True, loss: str = "l1",
             distribution_weight: float = 0.0) -> list:
    """Per validation pair: the loss and the synthetic image's metrics on the network scale (the
    per-epoch check that picks best.pt: blur-matched like the training loss, with its histogram
    term); with baselines, also the evaluation module's full
    comparison (metrics.evaluation: ce, clip, clip-and-blur and synthetic, plain and
    resolution-matched, sharpness, reference class) on this 128^3 grid, a secondary view of
    the group level's native-grid one."""
    rows = []
    for pair in pairs:
        voxel_mm = (1.0, 1.0, 1.0) if pair.ce.shape == grids.CROP_SHAPE else np.abs(
            np.diag(grids.network_affine())[:3])
        synthetic = predict_volume(model, pair.ce, device, pair.mask)
        blurred = resolution.blur(synthetic, pair.target_blur)[pair.mask]
        error = blurred - pair.target[pair.mask]
        value = float(np.mean(np.abs(error) if loss == "l1" else error ** 2))
        if distribution_weight > 0:
            value += distribution_weight * float(np.mean(
                (np.sort(blurred) - np.sort(pair.target[pair.mask])) ** 2))
        row = {"name": pair.name, "subject": pair.subject,
               "reference_class": pair.reference_class, "loss": value,
               "synthetic": all_metrics(synthetic, pair.target, pair.mask)}
        if baselines:
            row["evaluation"] = evaluation.compare(pair.ce, synthetic, pair.target, pair.mask,
                                                   voxel_mm)
        rows.append(row)
    return rows


def _initial_model(config, device):
    if config.init == "scratch":
        model = build_model(config.model, config.width, config.formulation)
    elif config.init == "bundled":
        model, meta, _ = load_bundled(config.model)
        config.width = meta["width"]
        config.formulation = meta.get("formulation", "direct")
    else:
        model, meta, _ = load_weights(Path(config.init))
        config.model, config.width = meta["model"], meta["width"]
        config.formulation = meta.get("formulation", "direct")
    return model.to(device)


def _save_checkpoint(path, model, optimiser, scaler, generator, epoch, step, best, config):
    with atomic.atomic_path(path) as temporary:
        torch.save({"model": model.state_dict(), "optimiser": optimiser.state_dict(),
                    "scaler": scaler.state_dict() if scaler else None,
                    "generator": generator.get_state(), "epoch": epoch, "step": step,
                    "best_val_loss": best, "config": asdict(config)}, temporary)


def _fit_epochs_to_time_limit(config, epoch, started, epoch_seconds, validation_seconds,
                              steps_per_epoch, total_steps):
    """Once a training epoch and a validation have been timed (not the run's first epoch, which
    pays for warm-up), cut the epoch count so the run ends within max_minutes; the
    learning-rate decay follows."""
    per_epoch = 1.05 * (epoch_seconds + validation_seconds / config.validate_every)
    left = config.max_minutes * 60 - (time.time() - started)
    fitted = max(epoch, epoch + int(left // per_epoch))
    if fitted < config.epochs:
        LOG.info("time limit %.1f min: %d epochs instead of %d (%.1f s per epoch)",
                 config.max_minutes, fitted, config.epochs, per_epoch)
        config.epochs = fitted
        total_steps[0] = steps_per_epoch * fitted


def train(pairs, out_dir: Path, config: TrainConfig, device, command: str = "") -> dict:
    out_dir = Path(out_dir)
    (out_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    if GRIDS[config.formulation] == "128":
        pairs = [on_network_grid(p) for p in pairs]
    classes = {p.subject: p.reference_class for p in pairs}
    train_subjects, validation_subjects = split_subjects(
        [p.subject for p in pairs], config.n_validation, config.seed, config.validation_subjects,
        classes, config.n_validation_3d)
    train_pairs = [p for p in pairs if p.subject in train_subjects]
    validation_pairs = [p for p in pairs if p.subject in validation_subjects]
    sharp_pairs = [p for p in train_pairs if p.reference_class == "3D"]
    descriptors = whole_scan_descriptors(train_pairs) if config.formulation == "enhancement" \
        else None
    samples = curve_samples(train_pairs, config.seed, descriptors, config.curve_voxels) \
        if descriptors is not None and config.curve_loss == "quantile" else None
    sharp_names = {p.name for p in sharp_pairs}
    atomic.write_json(out_dir / "split.json", {
        "seed": config.seed, "train": train_subjects, "validation": validation_subjects,
        "reference_class": classes,
        "target_blur_voxels": {p.subject: list(p.target_blur) for p in pairs}})
    LOG.info("%d training / %d validation subjects; validation: %s", len(train_subjects),
             len(validation_subjects), ", ".join(validation_subjects))

    enhancement_maps = None
    if config.simulated_fraction > 0:
        enhancement_maps = torch.from_numpy(simulated_enhancement.load_or_make_maps(
            out_dir / "enhancement_maps.npz", seed=config.seed))
        LOG.info("%.0f%% of training inputs get simulated enhancement (%d maps)",
                 100 * config.simulated_fraction, len(enhancement_maps))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed 128^3 shapes: pick the fastest kernels
    model = _initial_model(config, device)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if use_amp else None
    generator = torch.Generator().manual_seed(config.seed)
    steps_per_epoch = max(1, math.ceil(len(train_pairs) / config.batch_size))
    total_steps = [steps_per_epoch * config.epochs]  # a list: a time limit may shorten it
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: min(1.0, 2.0 * (1 - step / max(total_steps[0], 1))) + 0.02)
    start_epoch, step, best = 1, 0, float("inf")
    last = out_dir / "checkpoints" / "last.pt"
    if last.exists():
        state = torch.load(last, map_location=device, weights_only=False)
        if state["config"]["model"] != config.model or state["config"]["seed"] != config.seed:
            raise ValueError(f"{last} is from another model or seed: use a new work folder")
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        if scaler and state["scaler"]:
            scaler.load_state_dict(state["scaler"])
        generator.set_state(state["generator"])
        start_epoch, step, best = state["epoch"] + 1, state["step"], state["best_val_loss"]
        if config.max_minutes > 0:  # the epoch count the time limit settled on
            config.epochs = min(config.epochs, state["config"]["epochs"])
            total_steps[0] = steps_per_epoch * config.epochs
        schedule.last_epoch = step
        for group in optimiser.param_groups:
            group["lr"] = config.learning_rate * schedule.lr_lambdas[0](step)
        LOG.info("resumed from %s: epoch %d, step %d", last, state["epoch"], step)
    log_path = out_dir / "training_log.tsv"
    if not log_path.exists():
        log_path.write_text("\t".join(LOG_COLUMNS) + "\n")
    LOG.info("%s (width %d, %d parameters) on %s, %d epochs x %d steps", config.model,
             config.width, count_parameters(model), device, config.epochs, steps_per_epoch)

    started, time_fitted = time.time(), False
    for epoch in range(start_epoch, config.epochs + 1):
        if epoch > config.epochs:  # a time limit shortened the run
            break
        model.train()
        epoch_started, losses = time.time(), []
        order = torch.randperm(len(train_pairs), generator=generator).tolist()
        for first in range(0, len(order), config.batch_size):
            batch = [train_pairs[i] for i in order[first:first + config.batch_size]]
            inputs, targets, masks, sigmas, weights, described = _batch(
                batch, config, generator, device, enhancement_maps, sharp_pairs, descriptors)
            quantile = samples is not None
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                outputs, enhancement = _model_output(model, inputs, described, quantile)
            loss = training_loss(config, outputs.float(), targets, masks, sigmas, weights,
                                 None if enhancement is None else enhancement.float())
            if quantile:
                loss = loss + curve_loss(model, [p.name for p in batch], samples,
                                         sharp_names, device)
            optimiser.zero_grad(set_to_none=True)
            if scaler:
                scaler.scale(loss).backward()
                scaler.step(optimiser)
                scaler.update()
            else:
                loss.backward()
                optimiser.step()
            schedule.step()
            step += 1
            losses.append(loss.item())
        row = {"epoch": epoch, "step": step, "train_loss": np.mean(losses), "val_loss": "",
               "val_mae": "", "val_psnr": "", "val_ssim": "", "lr": optimiser.param_groups[0]["lr"],
               "seconds": round(time.time() - epoch_started, 1)}
        validated = validation_pairs and (epoch % config.validate_every == 0
                                          or epoch == config.epochs)
        validation_started = time.time()
        if validated:
            results = evaluate(model, validation_pairs, device, baselines=False,
                               loss=config.loss, distribution_weight=config.distribution_weight)
            val_loss = float(np.mean([r["loss"] for r in results]))
            row.update(val_loss=val_loss, **{f"val_{k.lower()}": np.mean(
                [r["synthetic"][k] for r in results]) for k in ("MAE", "PSNR", "SSIM")})
            if val_loss < best:
                best = val_loss
                save_weights(model, out_dir / "best.pt", {
                    "model": config.model, "width": config.width,
                    "formulation": config.formulation, "grid": GRIDS[config.formulation],
                    "epoch": epoch, "val_loss": val_loss, "loss": config.loss})
        if config.max_minutes > 0 and not time_fitted and (validated or not validation_pairs) \
                and epoch > start_epoch:
            _fit_epochs_to_time_limit(config, epoch, started, row["seconds"],
                                      time.time() - validation_started, steps_per_epoch,
                                      total_steps)
            time_fitted = True
        _save_checkpoint(last, model, optimiser, scaler, generator, epoch, step, best, config)
        with open(log_path, "a") as stream:
            stream.write("\t".join(f"{row[c]:.5g}" if isinstance(row[c], float) else str(row[c])
                                   for c in LOG_COLUMNS) + "\n")
        LOG.info("epoch %d/%d step %d: train %s %.4f%s (%.1f s)", epoch, config.epochs, step,
                 config.loss,
                 row["train_loss"], f", val {config.loss} {row['val_loss']:.5f} PSNR "
                 f"{row['val_psnr']:.2f} dB" if row["val_loss"] != "" else "", row["seconds"])
    summary = {"command": command, "config": asdict(config), "device": str(device),
               "hardware": platform.processor() or platform.machine(),
               "torch": torch.__version__, "train_subjects": train_subjects,
               "validation_subjects": validation_subjects, "steps": step,
               "seconds_this_run": round(time.time() - started, 1)}
    if validation_pairs and (out_dir / "best.pt").exists():
        best_model, meta, _ = load_weights(out_dir / "best.pt", device=device)
        results = evaluate(best_model, validation_pairs, device, loss=config.loss,
                           distribution_weight=config.distribution_weight)
        summary["best_epoch"] = meta["epoch"]
        summary["validation"] = results
    atomic.write_json(out_dir / "summary.json", summary)
    return summary
