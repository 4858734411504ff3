"""Whole-volume validation of a network during and after training: the per-epoch loss that
picks best.pt, and the evaluation module's full comparison at the end."""
import numpy as np
import torch

from gado_bids.metrics import evaluation, resolution
from gado_bids.metrics.similarity import all_metrics
from gado_bids.model.synthesis import run_network
from gado_bids.preprocessing import grids


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


def masked_average(volume, mask, sigma_voxels) -> np.ndarray:
    """training.losses.masked_blur on a whole volume; sigma_voxels one for all axes or one per
    axis (a thick-slice target's measured blur)."""
    sigma = tuple(float(s) for s in np.broadcast_to(np.asarray(sigma_voxels, float), (3,)))
    if not any(s > 0 for s in sigma):
        return volume
    inside = mask.astype(np.float32)
    return resolution.blur(volume * inside, sigma) / np.maximum(resolution.blur(inside, sigma),
                                                                1e-3)


def evaluate(model, pairs, device, baselines: bool = True, loss: str = "l1",
             distribution_weight: float = 0.0, comparison_blur: float = 0.0) -> list:
    """Per validation pair: the loss and the synthetic image's metrics on the network scale (the
    per-epoch check that picks best.pt: blur-matched like the training loss, with its histogram
    term and its comparison_blur); with baselines, also the evaluation module's full
    comparison (metrics.evaluation: ce, clip, clip-and-blur and synthetic, plain and
    resolution-matched, sharpness, reference class) on the network's grid (1 mm crop or
    128^3), a secondary view of the group level's native-grid one."""
    rows = []
    for pair in pairs:
        voxel_mm = (1.0, 1.0, 1.0) if pair.ce.shape == grids.CROP_SHAPE else np.abs(
            np.diag(grids.network_affine())[:3])
        synthetic = predict_volume(model, pair.ce, device, pair.mask)
        matched = resolution.blur(synthetic, pair.target_blur)
        blurred, target = matched[pair.mask], pair.target[pair.mask]
        error = (masked_average(matched, pair.mask, comparison_blur)
                 - masked_average(pair.target, pair.mask, comparison_blur))[pair.mask]
        value = float(np.mean(np.abs(error) if loss == "l1" else error ** 2))
        if distribution_weight > 0:  # training's histogram term, on the whole volume
            value += distribution_weight * float(np.mean((np.sort(blurred) - np.sort(target)) ** 2))
        row = {"name": pair.name, "subject": pair.subject,
               "reference_class": pair.reference_class, "loss": value,
               "synthetic": all_metrics(synthetic, pair.target, pair.mask)}
        if baselines:
            row["evaluation"] = evaluation.compare(pair.ce, synthetic, pair.target, pair.mask,
                                                   voxel_mm)
        rows.append(row)
    return rows


def table_lines(rows) -> list:
    """The final validation table's lines, as (subject or None for a mean, n, reference class,
    {image: (plain PSNR, matched PSNR)}, synthetic sharpness on the weakest axis): each subject,
    then the mean per reference class, then over all (never one mean over both classes alone).
    Training prints them, the bundler writes them as the model card's Markdown."""
    def line(subject, reference_class, chosen):
        psnr = {image: tuple(float(np.mean([r["evaluation"][view][image]["PSNR"] for r in chosen]))
                             for view in ("plain", "matched")) for image in evaluation.COMPARED}
        sharpness = float(np.mean([min(r["evaluation"]["sharpness_ratio"]["synthetic"])
                                   for r in chosen]))
        return subject, len(chosen), reference_class, psnr, sharpness
    lines = [line(r["subject"], r["evaluation"]["reference_class"], [r]) for r in rows]
    for reference_class in sorted({r["evaluation"]["reference_class"] for r in rows}):
        lines.append(line(None, reference_class, [r for r in rows if r["evaluation"][
            "reference_class"] == reference_class]))
    return lines + [line(None, "all", rows)]

