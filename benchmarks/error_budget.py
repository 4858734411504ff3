"""Where the synthetic image's error lies on real pairs, and how much simple oracles would gain.

    python benchmarks/error_budget.py CACHE_DIR [--model attention-unet | --weights FILE]
        [--validation_subjects 003 009 ...] [--nthreads N]

CACHE_DIR is a gadosynth-train cache (`gadosynth-train BIDS WORK --cache_only` fills WORK/cache).
Evaluated on the weights' own grid (1 mm cropped template grid for the enhancement formulation,
128^3 for the direct one) in the union brain mask, like the training validation. Per
validation subject (default: those in the weights' manifest entry) it prints PSNR of the ce scan,
the clip-and-blur baseline and the synthetic image, then:
- interior: the synthetic PSNR without the 2-voxel band at the mask's edge, and edge %: the share
  of the squared error in that band (partial volume and residual pre/post misregistration);
- top 1 %: the share of the squared error in the worst 1% of voxels (mostly the tumour);
- linear oracle: PSNR after the best per-subject a * synthetic + b fitted on the target itself, and
  its slope a: what a perfectly predicted global contrast would add;
- blur oracle: PSNR after the best per-subject Gaussian blur (sigma 0-2.5 voxels per axis) fitted
  on the target: what knowing each target's slice blur would add.
The oracles see the target, so they are not reachable by any model; they show how much of the
remaining error is global contrast or blur, and how much is local. The last lines compare the
mean PSNR gain over the ce scan on training and on validation subjects: equal gains mean the
network does not fit its training subjects better than unseen ones (under-fitting or noise).
"""
import argparse
import itertools
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from gado_bids.metrics.similarity import psnr
from gado_bids.model.weights import bundled_manifest, load_bundled, load_weights
from gado_bids.training.cache import cached_pairs, load_pair
from gado_bids.metrics.evaluation import clip_and_blur_baseline
from gado_bids.training.data import on_network_grid
from gado_bids.training.validation import network_grid_baseline, predict_volume

SIGMAS = (0.0, 0.7, 1.5, 2.5)
COLUMNS = ("subject", "ce", "baseline", "synthetic", "interior", "edge %", "top 1 %",
           "linear oracle", "slope", "blur oracle")


def linear_oracle(synthetic, target, mask):
    design = np.stack([synthetic[mask], np.ones(int(mask.sum()))], 1)
    (slope, offset), *_ = np.linalg.lstsq(design, target[mask], rcond=None)
    return psnr(np.where(mask, slope * synthetic + offset, 0), target, mask), float(slope)


def blur_oracle(synthetic, target, mask):
    return max(psnr(ndimage.gaussian_filter(synthetic, sigma), target, mask)
               for sigma in itertools.product(SIGMAS, repeat=3))


def budget_row(model, pair) -> dict:
    mask, target = pair.mask, pair.target
    synthetic = predict_volume(model, pair.ce, "cpu", mask)
    baseline = network_grid_baseline(pair.ce, mask) if model.formulation == "direct" else \
        clip_and_blur_baseline(pair.ce, mask)
    squared = (synthetic - target) ** 2
    edge = mask & ~ndimage.binary_erosion(mask, iterations=2)
    worst = np.sort(squared[mask])[-max(1, int(0.01 * mask.sum())):]
    oracle, slope = linear_oracle(synthetic, target, mask)
    return {"subject": pair.subject, "ce": psnr(pair.ce, target, mask),
            "baseline": psnr(baseline, target, mask), "synthetic": psnr(synthetic, target, mask),
            "interior": psnr(synthetic, target, mask & ~edge),
            "edge %": 100 * float(squared[edge].sum() / squared[mask].sum()),
            "top 1 %": 100 * float(worst.sum() / squared[mask].sum()),
            "linear oracle": oracle, "slope": slope,
            "blur oracle": blur_oracle(synthetic, target, mask)}


def print_table(rows):
    print("| " + " | ".join(COLUMNS) + " |\n|---|" + "---:|" * (len(COLUMNS) - 1))
    mean = {key: float(np.mean([row[key] for row in rows])) for key in COLUMNS[1:]}
    for row in rows + [dict(mean, subject="**mean**")]:
        print("| " + " | ".join([str(row["subject"])] +
                                [f"{row[key]:.2f}" for key in COLUMNS[1:]]) + " |")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cache_dir", type=Path)
    parser.add_argument("--model", default="attention-unet")
    parser.add_argument("--weights", type=Path, help="a gadosynth-train best.pt instead")
    parser.add_argument("--validation_subjects", nargs="+")
    parser.add_argument("--nthreads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.nthreads)
    if args.weights and not args.validation_subjects:
        parser.error("--weights needs --validation_subjects")
    model = (load_weights(args.weights) if args.weights else load_bundled(args.model))[0]
    validation = set(args.validation_subjects or
                     bundled_manifest()[args.model]["validation_subjects"])
    pairs = [load_pair(path) for path in cached_pairs(args.cache_dir)]
    if model.formulation == "direct":
        pairs = [on_network_grid(pair) for pair in pairs]
    if not any(pair.subject in validation for pair in pairs):
        parser.error(f"no validation subject {sorted(validation)} in {args.cache_dir}")
    rows = [budget_row(model, pair) for pair in pairs if pair.subject in validation]
    print_table(rows)
    gains = {"validation": [row["synthetic"] - row["ce"] for row in rows], "training": [
        psnr(predict_volume(model, pair.ce, "cpu", pair.mask), pair.target, pair.mask) -
        psnr(pair.ce, pair.target, pair.mask) for pair in pairs if pair.subject not in validation]}
    print()
    for label in ("training", "validation"):
        if gains[label]:
            print(f"mean PSNR gain over the ce scan, {label} subjects (n = {len(gains[label])}): "
                  f"{np.mean(gains[label]):+.2f} dB")


if __name__ == "__main__":
    main()
