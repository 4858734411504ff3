"""Fit a trained enhancement network's grey-matter blood-pool level (model/blood_pool.py) on its
training pairs, and write it into its weights.

    python -m gado_bids.training.blood_pool WORK_DIR [--nthreads N]

WORK_DIR is a finished gadosynth-train run (best.pt, split.json, cache/). The level b minimises the
squared error of f(ce) - E - b * P_GM against the target inside the pair's brain mask, compared as
the training loss compares them (a thick-slice target against the image blurred by that target's
measured blur), summed over the pairs crops were taken from (split.json's training_pairs, else its
training subjects), every voxel counting once (the loss's weight_3d is not applied) - a closed
form, since the term is linear in b. b is kept at or above zero:
gadolinium only brightens. best.pt is rewritten with b in its meta (its tensors unchanged; the run's
validation loss is left as it was), and blood_pool.json records b, each pair's own least-squares
level and what the term gains on it, so the spread behind the one number is on file.
"""
import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from gado_bids import atomic, runtime
from gado_bids.errors import GadoError
from gado_bids.model import blood_pool
from gado_bids.model.synthesis import run_network
from gado_bids.preprocessing import grids
from gado_bids.training.validation import masked_average

LOG = logging.getLogger("gadosynth.train")


def pair_terms(model, pair, device) -> tuple:
    """(sum P r, sum P P, sum r r) over the pair's mask, r = synthetic - target and P = P_GM, both
    as the loss compares them (the network's image without a blood-pool term)."""
    image, _ = run_network(model, grids.pad_crop(pair.ce), device)
    synthetic = grids.unpad_crop(image)
    prior = blood_pool.grey_matter_prior()
    synthetic = masked_average(synthetic, pair.mask, pair.target_blur)
    prior = masked_average(prior, pair.mask, pair.target_blur)
    residual = (synthetic - pair.target)[pair.mask].astype(np.float64)
    prior = prior[pair.mask].astype(np.float64)
    return float(prior @ residual), float(prior @ prior), float(residual @ residual)


def fit_level(model, pairs, device="cpu") -> tuple:
    """(b >= 0 pooled over pairs, per-pair rows: own level and PSNR gain at the pooled b)."""
    if getattr(model, "formulation", "direct") != "enhancement":
        raise ValueError("the blood-pool level needs an enhancement-formulation network")
    if not pairs:
        raise ValueError("no training pairs to fit the blood-pool level on")
    terms = {}
    for pair in pairs:
        terms[pair.subject] = (pair_terms(model, pair, device), int(pair.mask.sum()),
                               pair.reference_class)
        LOG.info("blood-pool terms of sub-%s done", pair.subject)
    level = max(0.0, sum(t[0][0] for t in terms.values()) / sum(t[0][1] for t in terms.values()))
    rows = []
    for subject, ((pr, pp, rr), voxels, reference_class) in terms.items():
        after = rr - 2 * level * pr + level * level * pp
        rows.append({"subject": subject, "reference_class": reference_class,
                     "own_level": round(pr / pp, 5),
                     "psnr_gain_db": round(10 * np.log10(rr / after), 3) if after > 0 else None,
                     "voxels": voxels})
    return level, rows


def fitted_pairs(work_dir: Path) -> list:
    """The run's training pairs from its cache: split.json's training_pairs, else its train."""
    from gado_bids.training.cache import cached_pairs, load_pair
    split = json.loads((work_dir / "split.json").read_text())
    subjects = set(split.get("training_pairs") or split["train"])
    # cache names start with the BIDS key (sub-<label>_...): only the chosen pairs are read
    chosen = [load_pair(p) for p in cached_pairs(work_dir / "cache")
              if p.name.split("_")[0][len("sub-"):] in subjects]
    missing = subjects - {p.subject for p in chosen}
    if missing:
        raise ValueError(f"training pairs missing from {work_dir / 'cache'}: {sorted(missing)}")
    return chosen


def fit_run(work_dir: Path, device="cpu") -> dict:
    """Fit b on the run's training pairs and write it into best.pt; the record written."""
    from gado_bids.model.weights import load_weights, save_weights
    work_dir = Path(work_dir)
    model, meta, before = load_weights(work_dir / "best.pt", device=device)
    level, rows = fit_level(model, fitted_pairs(work_dir), device)
    digest = save_weights(model, work_dir / "best.pt", {**meta, blood_pool.META_KEY: level})
    record = {blood_pool.META_KEY: level, "weights_sha256_before": before,
              "weights_sha256": digest, "pairs": rows}
    atomic.write_json(work_dir / "blood_pool.json", record)
    return record


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("work_dir", type=Path)
    parser.add_argument("--nthreads", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s [blood-pool] %(message)s",
                        datefmt="%H:%M:%S")
    runtime.configure_process(args.nthreads)
    runtime.apply_torch_threads(args.nthreads)
    try:
        record = fit_run(args.work_dir)
    except (GadoError, ValueError, FileNotFoundError) as error:
        LOG.error("%s", error)
        return 64
    print(f"grey-matter blood-pool level {record[blood_pool.META_KEY]:.5f} "
          f"({len(record['pairs'])} pairs); best.pt now {record['weights_sha256']}")
    for row in record["pairs"]:
        print(f"sub-{row['subject']} {row['reference_class']:<12} own level "
              f"{row['own_level']:+.4f}, gain at the pooled level {row['psnr_gain_db']:+.3f} dB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
