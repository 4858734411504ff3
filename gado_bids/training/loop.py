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
The losses are in training/losses.py, the validation in training/validation.py, the split and
the batches in training/data.py, the checkpointed state in training/state.py.
"""
import logging
import platform
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from gado_bids import atomic
from gado_bids.model.networks import MODELS, ResidualModule, build_model, count_parameters
from gado_bids.model.weights import load_bundled, load_weights, save_weights
from gado_bids.training.config import TrainConfig
from gado_bids.training.data import GRIDS, TrainingData, sample_batch, training_data
from gado_bids.training.losses import curve_loss, training_loss
from gado_bids.training.state import TrainingState
from gado_bids.training.validation import evaluate

LOG = logging.getLogger("gadosynth.train")
# On our pairs plain L1 sat at the identity map for hundreds of steps (its gradient is a sign, and
# the pre/post differences are mostly small); MSE moved a fixed batch +2.3 dB in 30 steps.
LOSSES = ("mse", "l1")
LOG_COLUMNS = ["epoch", "step", "train_loss", "val_loss", "val_mae", "val_psnr", "val_ssim",
               "lr", "seconds"]


def _model_output(model, inputs, descriptors=None, detach_curve=False):
    """(image, enhancement map or None, the image with the curve attached) of a batch."""
    if getattr(model, "formulation", "direct") == "enhancement":
        mapped, enhancement = model.decompose(inputs, descriptors)
        image = mapped - enhancement
        return (mapped.detach() - enhancement if detach_curve else image), enhancement, image
    image = model(inputs)
    return image, None, image


def _initial_model(config, device) -> tuple:
    """(model on device, config with the model, width and formulation of the weights it starts
    from, what it borrowed - {} or the source's SHA-256 and what was taken - for best.pt's meta
    and the summary): fine-tuning takes those from the weights file, not from the options."""
    if config.init == "scratch":
        model = build_model(config.model, config.width, config.formulation,
                            config.curve_top_floor)
        borrowed = {}
        if config.borrow_from:
            config, digest = _borrow_layers(model, config)
            borrowed = {"borrow_from_sha256": digest, "borrow": config.borrow}
        return model.to(device), config, borrowed
    if config.borrow_from:
        raise ValueError("borrow_from starts a network trained from scratch: --init weights "
                         "bring their own layers")
    if config.init == "bundled":
        model, meta, _ = load_bundled(config.model)
    else:
        model, meta, _ = load_weights(Path(config.init))
    config = replace(config, model=meta["model"], width=meta["width"],
                     formulation=meta.get("formulation", "direct"),
                     curve_top_floor=config.curve_top_floor or meta.get("curve_top_floor", 0.0))
    if config.curve_top_floor:
        if config.formulation != "enhancement":
            raise ValueError("curve_top_floor needs the enhancement formulation")
        model.intensity_curve.floor_top(config.curve_top_floor)
    return model.to(device), config, {}


def _borrow_layers(model, config):
    """Start the scratch model from config.borrow_from (a bundled model's name or a weights
    file): its intensity curve and top floor (borrow "curve": a second architecture then learns
    its map on the curve the first validated, and the two differ by their maps), or every layer
    the two networks share by name and shape (borrow "shared"; the res-unet's residual modules,
    which the attention U-Net lacks, start as the identity, and the attention gates are left
    out). Returns (the config with the floor taken over, the source's SHA-256)."""
    if config.formulation != "enhancement":
        raise ValueError("borrow_from needs the enhancement formulation")
    if config.borrow not in ("curve", "shared"):
        raise ValueError(f"borrow '{config.borrow}': choose curve or shared")
    source = Path(config.borrow_from)
    if not source.is_file() and config.borrow_from in MODELS:
        donor, meta, digest = load_bundled(config.borrow_from)
    else:
        donor, meta, digest = load_weights(source)
    if meta.get("formulation", "direct") != "enhancement":
        raise ValueError(f"borrow_from: '{config.borrow_from}' is a direct-formulation network, "
                         "without an intensity curve")
    if config.borrow == "curve":
        model.intensity_curve.load_state_dict(donor.intensity_curve.state_dict())
    else:
        own = model.state_dict()
        shared = {name: value for name, value in donor.state_dict().items()
                  if name in own and own[name].shape == value.shape}
        model.load_state_dict(shared, strict=False)
        for module in model.modules():
            if isinstance(module, ResidualModule):
                module.start_as_identity()
        LOG.info("started from %d of %d tensors of %s", len(shared), len(own),
                 config.borrow_from)
    floor = config.curve_top_floor or meta.get("curve_top_floor", 0.0)
    model.intensity_curve.floor_top(floor)
    return replace(config, curve_top_floor=floor), digest


def _train_epoch(state: TrainingState, data: TrainingData, device) -> float:
    """One random crop per training subject, in batches; the mean loss."""
    config, model = state.config, state.model
    model.train()
    losses = []
    order = torch.randperm(len(data.train_pairs), generator=state.generator).tolist()
    sharp_names = {p.name for p in data.sharp_pairs}
    for first in range(0, len(order), config.batch_size):
        batch = [data.train_pairs[i] for i in order[first:first + config.batch_size]]
        inputs, targets, masks, sigmas, weights, described, cores = sample_batch(
            batch, config, state.generator, device, data.enhancement_maps, data.sharp_pairs,
            data.descriptors, data.tissue_cores)
        quantile = data.curve_samples is not None
        with torch.autocast(device.type, dtype=torch.float16, enabled=state.scaler is not None):
            outputs, enhancement, attached = _model_output(model, inputs, described, quantile)
        loss = training_loss(config, outputs.float(), targets, masks, sigmas, weights,
                             None if enhancement is None else enhancement.float(), cores,
                             attached.float() if config.tissue_trains_curve else None)
        if quantile:
            loss = loss + curve_loss(model, [p.name for p in batch], data.curve_samples,
                                     sharp_names, device, data.curve_pairs)
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
                       loss=config.loss, distribution_weight=config.distribution_weight,
                       comparison_blur=config.comparison_blur)
    val_loss = float(np.mean([r["loss"] for r in results]))
    if val_loss < state.best:
        state.best = val_loss
        save_weights(state.model, out_dir / "best.pt", {
            "model": config.model, "width": config.width, "formulation": config.formulation,
            "grid": GRIDS[config.formulation], "epoch": epoch, "val_loss": val_loss,
            "loss": config.loss, "curve_top_floor": config.curve_top_floor, **state.borrowed})
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
               "seconds_this_run": round(time.time() - started, 1), **state.borrowed}
    if data.validation_pairs and (out_dir / "best.pt").exists():
        best_model, meta, _ = load_weights(out_dir / "best.pt", device=device)
        summary["best_epoch"] = meta["epoch"]
        summary["validation"] = evaluate(best_model, data.validation_pairs, device,
                                         loss=config.loss,
                                         distribution_weight=config.distribution_weight,
                                         comparison_blur=config.comparison_blur)
    atomic.write_json(out_dir / "summary.json", summary)
    return summary


def train(pairs, out_dir: Path, config: TrainConfig, device, command: str = "") -> dict:
    out_dir = Path(out_dir)
    (out_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    model, config, borrowed = _initial_model(config, device)
    if config.tissue_trains_curve and (config.freeze_curve or config.tissue_weight <= 0):
        raise ValueError("tissue_trains_curve needs the tissue term and a curve that learns")
    if config.freeze_curve:
        if config.formulation != "enhancement" or (config.init == "scratch" and
                                                   not config.borrow_from):
            raise ValueError("freeze_curve keeps a trained enhancement network's curve: it "
                             "needs --init or --borrow_from and the enhancement formulation")
        model.intensity_curve.requires_grad_(False)
    if config.enhancement_gradient_floor > 0:
        if config.formulation != "enhancement":
            raise ValueError("enhancement_gradient_floor needs the enhancement formulation")
        model.enhancement_gradient_floor = config.enhancement_gradient_floor
    data = training_data(pairs, config, out_dir, model, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed 128^3 shapes: pick the fastest kernels
    state = TrainingState(model, config, device, len(data.train_pairs), borrowed)
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
