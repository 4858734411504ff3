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

from gado_bids.metrics import tissues
from gado_bids.training.cache import cached_pairs, load_pair
from gado_bids.training.contrast import CORE, pair_contrast


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cache_dir", type=Path)
    parser.add_argument("--split", type=Path, help="a gadosynth-train split.json")
    parser.add_argument("--core", type=float, default=CORE)
    args = parser.parse_args(argv)
    validation = set(json.loads(args.split.read_text())["validation"]) if args.split else set()
    priors = dict(zip(tissues.TISSUES, tissues.template_priors()))
    print("subject  class        split  ce - real (median in core)          WM - GM real    ce")
    weaker = []
    for path in cached_pairs(args.cache_dir):
        pair = load_pair(path)
        contrast = pair_contrast(pair, priors, args.core)
        shifts = "  ".join(f"{name} {shift:+.3f}" for name, shift in contrast.shifts.items())
        split = "" if not args.split else ("val" if pair.subject in validation else "train")
        if not contrast.gadolinium_only:
            weaker.append(pair.subject)
        print(f"sub-{pair.subject}  {pair.reference_class:11s}  {split:5s}  {shifts}"
              f"      {contrast.reference_gap:.3f}  {contrast.ce_gap:.3f}")
    print(f"real grey/white gap not above the ce scan's: {len(weaker)} pairs ({', '.join(weaker)})")


if __name__ == "__main__":
    main()
