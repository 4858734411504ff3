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
where it stopped. The best model by validation loss (the blur-matched squared error on whole
volumes of the network's grid, eval mode, inside the brain mask) is kept apart from the last one.
The losses are in training/losses.py, the validation in training/validation.py.
"""
import logging
import math
import platform
import random
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from gado_bids.model.networks import build_model, count_parameters
from gado_bids.model.weights import load_bundled, load_weights, save_weights
from gado_bids import atomic
from gado_bids.preprocessing import grids
from gado_bids.training import simulated_enhancement
from gado_bids.training.config import TrainConfig
from gado_bids.training.augment import augment, random_crop_origin
from gado_bids.training.losses import (curve_loss, curve_samples, training_loss,
                                       whole_scan_descriptors)
from gado_bids.training.validation import evaluate

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


def on_network_grid(pair):
    """A cached 1 mm pair resampled to the paper's 128^3 grid (the direct formulation's)."""
    from dataclasses import replace
    voxel_mm = np.abs(np.diag(grids.network_affine())[:3])
    return replace(pair, ce=grids.crop_to_network(pair.ce), target=grids.crop_to_network(
        pair.target), mask=grids.crop_to_network(pair.mask.astype(np.float32), order=0) > 0.5,
        target_blur=tuple(float(s) for s in np.asarray(pair.target_blur) / voxel_mm))


def _model_output(model, inputs, descriptors=None, detach_curve=False):
    """(image, enhancement map or None) of a batch."""
    if getattr(model, "formulation", "direct") == "enhancement":
        mapped, enhancement = model.decompose(inputs, descriptors)
        return (mapped.detach() if detach_curve else mapped) - enhancement, enhancement
    return model(inputs), None


def _initial_model(config, device) -> tuple:
    """(model on device, config with the model, width and formulation of the weights it starts
    from): fine-tuning takes those from the weights file, not from the options."""
    if config.init == "scratch":
        return build_model(config.model, config.width, config.formulation).to(device), config
    if config.init == "bundled":
        model, meta, _ = load_bundled(config.model)
    else:
        model, meta, _ = load_weights(Path(config.init))
    config = replace(config, model=meta["model"], width=meta["width"],
                     formulation=meta.get("formulation", "direct"))
    return model.to(device), config


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
    enhancement_maps: torch.Tensor = None  # simulated enhancement


def _training_data(pairs, config, out_dir: Path) -> TrainingData:
    if GRIDS[config.formulation] == "128":
        pairs = [on_network_grid(p) for p in pairs]
    classes = {p.subject: p.reference_class for p in pairs}
    train_subjects, validation_subjects = split_subjects(
        [p.subject for p in pairs], config.n_validation, config.seed, config.validation_subjects,
        classes, config.n_validation_3d)
    train_pairs = [p for p in pairs if p.subject in train_subjects]
    data = TrainingData(train_subjects, validation_subjects, classes, train_pairs,
                        [p for p in pairs if p.subject in validation_subjects],
                        [p for p in train_pairs if p.reference_class == "3D"])
    if config.formulation == "enhancement":
        data.descriptors = whole_scan_descriptors(train_pairs)
        if config.curve_loss == "quantile":
            data.curve_samples = curve_samples(train_pairs, config.seed, data.descriptors,
                                               config.curve_voxels)
    atomic.write_json(out_dir / "split.json", {
        "seed": config.seed, "train": train_subjects, "validation": validation_subjects,
        "reference_class": classes,
        "target_blur_voxels": {p.subject: list(p.target_blur) for p in pairs}})
    LOG.info("%d training / %d validation subjects; validation: %s", len(train_subjects),
             len(validation_subjects), ", ".join(validation_subjects))
    if config.simulated_fraction > 0:
        data.enhancement_maps = torch.from_numpy(simulated_enhancement.load_or_make_maps(
            out_dir / "enhancement_maps.npz", seed=config.seed))
        LOG.info("%.0f%% of training inputs get simulated enhancement (%d maps)",
                 100 * config.simulated_fraction, len(data.enhancement_maps))
    return data


class TrainingState:
    """Model, optimiser, schedule and counters: everything a checkpoint holds. epochs may be cut
    by a time limit (the learning-rate decay follows, through total_steps)."""

    def __init__(self, model, config, device, n_train: int):
        self.model, self.config = model, config
        self.optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
        self.scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" else None
        self.generator = torch.Generator().manual_seed(config.seed)
        self.steps_per_epoch = max(1, math.ceil(n_train / config.batch_size))
        self.epochs = config.epochs
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimiser, lambda step: min(1.0, 2.0 * (1 - step / max(self.total_steps, 1)))
            + 0.02)
        self.start_epoch, self.step, self.best = 1, 0, float("inf")

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs

    def save(self, path: Path, epoch: int):
        with atomic.atomic_path(path) as temporary:
            torch.save({"model": self.model.state_dict(),
                        "optimiser": self.optimiser.state_dict(),
                        "scaler": self.scaler.state_dict() if self.scaler else None,
                        "generator": self.generator.get_state(), "epoch": epoch,
                        "step": self.step, "best_val_loss": self.best,
                        "config": {**asdict(self.config), "epochs": self.epochs}}, temporary)

    def resume(self, path: Path, device):
        state = torch.load(path, map_location=device, weights_only=False)
        if state["config"]["model"] != self.config.model or \
                state["config"]["seed"] != self.config.seed:
            raise ValueError(f"{path} is from another model or seed: use a new work folder")
        self.model.load_state_dict(state["model"])
        self.optimiser.load_state_dict(state["optimiser"])
        if self.scaler and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.generator.set_state(state["generator"])
        self.start_epoch, self.step = state["epoch"] + 1, state["step"]
        self.best = state["best_val_loss"]
        if self.config.max_minutes > 0:  # the epoch count the time limit settled on
            self.epochs = min(self.epochs, state["config"]["epochs"])
        self.schedule.last_epoch = self.step
        for group in self.optimiser.param_groups:
            group["lr"] = self.config.learning_rate * self.schedule.lr_lambdas[0](self.step)
        LOG.info("resumed from %s: epoch %d, step %d", path, state["epoch"], self.step)

    def fit_to_time_limit(self, epoch, started, epoch_seconds, validation_seconds):
        """Once a training epoch and a validation have been timed (not the run's first epoch,
        which pays for warm-up), cut the epoch count so the run ends within max_minutes."""
        config = self.config
        per_epoch = 1.05 * (epoch_seconds + validation_seconds / config.validate_every)
        left = config.max_minutes * 60 - (time.time() - started)
        fitted = max(epoch, epoch + int(left // per_epoch))
        if fitted < self.epochs:
            LOG.info("time limit %.1f min: %d epochs instead of %d (%.1f s per epoch)",
                     config.max_minutes, fitted, self.epochs, per_epoch)
            self.epochs = fitted


def _train_epoch(state: TrainingState, data: TrainingData, device) -> float:
    """One random crop per training subject, in batches; the mean loss."""
    config, model = state.config, state.model
    model.train()
    losses = []
    order = torch.randperm(len(data.train_pairs), generator=state.generator).tolist()
    sharp_names = {p.name for p in data.sharp_pairs}
    for first in range(0, len(order), config.batch_size):
        batch = [data.train_pairs[i] for i in order[first:first + config.batch_size]]
        inputs, targets, masks, sigmas, weights, described = _batch(
            batch, config, state.generator, device, data.enhancement_maps, data.sharp_pairs,
            data.descriptors)
        quantile = data.curve_samples is not None
        with torch.autocast(device.type, dtype=torch.float16, enabled=state.scaler is not None):
            outputs, enhancement = _model_output(model, inputs, described, quantile)
        loss = training_loss(config, outputs.float(), targets, masks, sigmas, weights,
                             None if enhancement is None else enhancement.float())
        if quantile:
            loss = loss + curve_loss(model, [p.name for p in batch], data.curve_samples,
                                     sharp_names, device)
        state.optimiser.zero_grad(set_to_none=True)
        if state.scaler:
            state.scaler.scale(loss).backward()
            state.scaler.step(state.optimiser)
            state.scaler.update()
        else:
            loss.backward()
            state.optimiser.step()
        state.schedule.step()
        state.step += 1
        losses.append(loss.item())
    return float(np.mean(losses))


def _validate(state: TrainingState, data: TrainingData, device, out_dir: Path,
              epoch: int) -> dict:
    """The validation columns of the epoch's log row; best.pt when the loss is the lowest."""
    config = state.config
    results = evaluate(state.model, data.validation_pairs, device, baselines=False,
                       loss=config.loss, distribution_weight=config.distribution_weight)
    val_loss = float(np.mean([r["loss"] for r in results]))
    if val_loss < state.best:
        state.best = val_loss
        save_weights(state.model, out_dir / "best.pt", {
            "model": config.model, "width": config.width, "formulation": config.formulation,
            "grid": GRIDS[config.formulation], "epoch": epoch, "val_loss": val_loss,
            "loss": config.loss})
    return {"val_loss": val_loss, **{f"val_{k.lower()}": np.mean(
        [r["synthetic"][k] for r in results]) for k in ("MAE", "PSNR", "SSIM")}}


def _log_epoch(log_path: Path, row: dict, state: TrainingState):
    with open(log_path, "a") as stream:
        stream.write("\t".join(f"{row[c]:.5g}" if isinstance(row[c], float) else str(row[c])
                               for c in LOG_COLUMNS) + "\n")
    loss = state.config.loss
    validation = f", val {loss} {row['val_loss']:.5f} PSNR {row['val_psnr']:.2f} dB" \
        if row["val_loss"] != "" else ""
    LOG.info("epoch %d/%d step %d: train %s %.4f%s (%.1f s)", row["epoch"], state.epochs,
             row["step"], loss, row["train_loss"], validation, row["seconds"])


def _summary(state, data, device, out_dir, command, started) -> dict:
    """The run's record, with the best weights' full evaluation on the validation subjects."""
    config = state.config
    summary = {"command": command, "config": {**asdict(config), "epochs": state.epochs},
               "device": str(device), "hardware": platform.processor() or platform.machine(),
               "torch": torch.__version__, "train_subjects": data.train_subjects,
               "validation_subjects": data.validation_subjects, "steps": state.step,
               "seconds_this_run": round(time.time() - started, 1)}
    if data.validation_pairs and (out_dir / "best.pt").exists():
        best_model, meta, _ = load_weights(out_dir / "best.pt", device=device)
        summary["best_epoch"] = meta["epoch"]
        summary["validation"] = evaluate(best_model, data.validation_pairs, device,
                                         loss=config.loss,
                                         distribution_weight=config.distribution_weight)
    atomic.write_json(out_dir / "summary.json", summary)
    return summary


def train(pairs, out_dir: Path, config: TrainConfig, device, command: str = "") -> dict:
    out_dir = Path(out_dir)
    (out_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    model, config = _initial_model(config, device)
    data = _training_data(pairs, config, out_dir)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed 128^3 shapes: pick the fastest kernels
    state = TrainingState(model, config, device, len(data.train_pairs))
    last = out_dir / "checkpoints" / "last.pt"
    if last.exists():
        state.resume(last, device)
    log_path = out_dir / "training_log.tsv"
    if not log_path.exists():
        log_path.write_text("\t".join(LOG_COLUMNS) + "\n")
    LOG.info("%s (width %d, %d parameters) on %s, %d epochs x %d steps", config.model,
             config.width, count_parameters(model), device, state.epochs, state.steps_per_epoch)
    started, time_fitted = time.time(), False
    epoch = state.start_epoch
    while epoch <= state.epochs:  # a time limit may lower state.epochs on the way
        epoch_started = time.time()
        row = {"epoch": epoch, "train_loss": _train_epoch(state, data, device), "val_loss": "",
               "val_mae": "", "val_psnr": "", "val_ssim": ""}
        row.update(step=state.step, lr=state.optimiser.param_groups[0]["lr"],
                   seconds=round(time.time() - epoch_started, 1))
        validated = bool(data.validation_pairs) and (epoch % config.validate_every == 0
                                                     or epoch == state.epochs)
        validation_started = time.time()
        if validated:
            row.update(_validate(state, data, device, out_dir, epoch))
        if config.max_minutes > 0 and not time_fitted and \
                (validated or not data.validation_pairs) and epoch > state.start_epoch:
            state.fit_to_time_limit(epoch, started, row["seconds"],
                                    time.time() - validation_started)
            time_fitted = True
        state.save(last, epoch)
        _log_epoch(log_path, row, state)
        epoch += 1
    return _summary(state, data, device, out_dir, command, started)
