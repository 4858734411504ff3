"""Which part of an enhancement-formulation network compresses the white matter's top end: its
intensity curve f or its removed-enhancement map E.

    python benchmarks/top_end_sources.py CACHE_DIR WEIGHTS [--subjects 004 012 ...]
        [--quiet-below LEVEL] [--nthreads N]

CACHE_DIR is a gadosynth-train cache; WEIGHTS a weights file or "bundled". Per subject (default:
the bundled weights' 3D validation subjects) the top end (P99.5/P95 - 1, %, metrics.evaluation)
of the real pre-contrast scan, the ce scan, f(ce) and f(ce) - E, over the whole brain (the union
mask, where the real scan is not zero) and over its quiet part, where E < LEVEL (default 0.03,
the bundled recipe's free level): there the map removes nothing, so a top end that f(ce) loses
against the ce scan and the real one is the curve's doing.
"""
import argparse
from pathlib import Path

import numpy as np

from gado_bids import runtime
from gado_bids.metrics.evaluation import top_end_percent
from gado_bids.model import blood_pool
from gado_bids.model.weights import bundled_manifest, load_bundled, load_weights
from gado_bids.training.cache import load_pair
from volume_sources import decomposed  # beside this script


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cache_dir", type=Path)
    parser.add_argument("weights")
    parser.add_argument("--subjects", nargs="+")
    parser.add_argument("--quiet-below", type=float, default=0.03, metavar="LEVEL")
    parser.add_argument("--nthreads", type=int, default=2)
    args = parser.parse_args(argv)
    runtime.limit_threads(args.nthreads)
    classes = bundled_manifest()["attention-unet"]["validation_reference_class"]
    subjects = args.subjects or [s for s, c in classes.items() if c == "3D"]
    model, meta = (load_bundled("attention-unet") if args.weights == "bundled"
                   else load_weights(Path(args.weights)))[:2]
    print(f"top end (P99.5/P95 - 1, %); quiet: where E < {args.quiet_below:g}")
    print(f"{'subject':<9}{'region':<16}{'real':>7}{'ce':>7}{'f(ce)':>7}{'f - E':>7}")
    for subject in subjects:
        pair = load_pair(args.cache_dir / f"sub-{subject}_ses-01_ce-gadolinium.npz")
        mapped, enhancement = decomposed(model, pair.ce, pair.mask, blood_pool.level(meta))
        synthetic = np.clip(mapped - enhancement, 0, 1)
        brain = pair.mask & (pair.target > 0)
        quiet = brain & (enhancement < args.quiet_below)
        for region, mask in (("brain", brain), (f"quiet ({100 * quiet.sum() / brain.sum():.0f}%)",
                                                quiet)):
            cells = "".join(f"{top_end_percent(image, mask):>7.1f}"
                            for image in (pair.target, pair.ce, mapped, synthetic))
            print(f"sub-{subject:<5}{region:<16}{cells}")


if __name__ == "__main__":
    main()
