"""Whether the training pairs agree on the contrast change gadolinium makes: per cached pair,
the median of ce - real inside the template's tissue cores and each scan's grey/white gap.

    python benchmarks/pair_contrast.py CACHE_DIR [--split WORK_DIR/split.json] [--core 0.8]

Both images as the cache holds them (1 mm cropped template grid, each on its x / (2 P90) scale);
tissue cores are the MNI template's CSF / GM / WM probabilities above --core inside the pair's
brain mask (the pairs are linearly registered to the template: a core is mostly its tissue).
Printed per pair: reference class, training or validation (with --split), ce - real medians per
tissue, and median WM - median GM of the real and the ce scan. A pair whose real scan has the
weaker grey/white gap pulls a network the other way from one whose real scan has the stronger:
averaged, the synthetic image keeps the ce scan's contrast.
"""
import argparse
import json
from pathlib import Path

import numpy as np

from gado_bids.metrics import tissues
from gado_bids.training.cache import cached_pairs, load_pair


def _median_in(image, region):
    return float(np.median(image[region]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cache_dir", type=Path)
    parser.add_argument("--split", type=Path, help="a gadosynth-train split.json")
    parser.add_argument("--core", type=float, default=0.8)
    args = parser.parse_args(argv)
    validation = set(json.loads(args.split.read_text())["validation"]) if args.split else set()
    priors = dict(zip(tissues.TISSUES, tissues.template_priors()))
    print("subject  class        split  ce - real (median in core)          WM - GM real    ce")
    weaker = []
    for path in cached_pairs(args.cache_dir):
        pair = load_pair(path)
        cores = {name: pair.mask & (prior > args.core) for name, prior in priors.items()}
        shifts = "  ".join(f"{name} {_median_in(pair.ce - pair.target, core):+.3f}"
                           for name, core in cores.items())
        gaps = [_median_in(image, cores["WM"]) - _median_in(image, cores["GM"])
                for image in (pair.target, pair.ce)]
        split = "" if not args.split else ("val" if pair.subject in validation else "train")
        if gaps[0] <= gaps[1]:
            weaker.append(pair.subject)
        print(f"sub-{pair.subject}  {pair.reference_class:11s}  {split:5s}  {shifts}"
              f"      {gaps[0]:.3f}  {gaps[1]:.3f}")
    print(f"real grey/white gap not above the ce scan's: {len(weaker)} pairs ({', '.join(weaker)})")


if __name__ == "__main__":
    main()
