"""Per-scan stage timings of the participant level on each device, and how far CUDA's output is
from CPU's.

    python benchmarks/device_timings.py BIDS_DIR WORK_DIR [--devices cpu cuda] [--n_procs N]
        [--nthreads N] [--participant_label ...]

Runs the real participant level once per device into WORK_DIR/out-<device>, then reads the
timings every synthetic image's sidecar records (PreprocessingTimings_s: masking, N4,
registration, resampling, normalisation of the ce scan; SynthesisTimings_s: inference,
resampling to native; the rest of the wall time is writing and the non-contrast scan) and prints
one table row per scan and device, plus the largest voxel difference between devices.
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from gado_bids.preprocessing.template import SPACE

REPO = Path(__file__).resolve().parent.parent
SYNTHETIC = f"*_space-{SPACE}_desc-synthetic_T1w.json"


def _run(bids_dir, output, device, args):
    command = [sys.executable, str(REPO / "run.py"), str(bids_dir), str(output), "participant",
               "--device", device, "--n_procs", str(args.n_procs), "--skip_bids_validator"]
    if args.nthreads:
        command += ["--nthreads", str(args.nthreads)]
    if args.participant_label:
        command += ["--participant_label", *args.participant_label]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        print(result.stderr[-3000:], file=sys.stderr)
    return time.perf_counter() - started, result.returncode


def _rows(output: Path):
    for sidecar in sorted(output.rglob(SYNTHETIC)):
        meta = json.loads(sidecar.read_text())
        pre, synthesis = meta["PreprocessingTimings_s"], meta["SynthesisTimings_s"]
        yield sidecar.name.split("_space-")[0], meta, sum(pre.values()), synthesis


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bids_dir", type=Path)
    parser.add_argument("work_dir", type=Path)
    parser.add_argument("--devices", nargs="+", default=["cpu", "cuda"])
    parser.add_argument("--n_procs", type=int, default=1)
    parser.add_argument("--nthreads", type=int)
    parser.add_argument("--participant_label", nargs="+")
    args = parser.parse_args()

    walls = {}
    for device in args.devices:
        walls[device] = _run(args.bids_dir, args.work_dir / f"out-{device}", device, args)
    print("\n| device | scan | precision | preprocessing ce (s) | inference (s) | "
          "to native (s) |\n|---|---|---|---:|---:|---:|")
    for device in args.devices:
        for name, meta, preprocessing, synthesis in _rows(args.work_dir / f"out-{device}"):
            print(f"| {meta['Device']} | {name} | {meta['Precision']} | {preprocessing:.1f} | "
                  f"{synthesis['inference']:.2f} | {synthesis['resampling_to_native']:.2f} |")
    print("\n| device | exit | wall (s), all scans with their non-contrast scans |\n|---|---:|---:|")
    for device, (wall, code) in walls.items():
        print(f"| {device} | {code} | {wall:.0f} |")
    if len(args.devices) == 2:
        first, second = (args.work_dir / f"out-{d}" for d in args.devices)
        print(f"\n| scan | max abs {args.devices[1]} - {args.devices[0]} | mean in brain |"
              f"\n|---|---:|---:|")
        for image in sorted(first.rglob(SYNTHETIC.replace(".json", ".nii.gz"))):
            other = second / image.relative_to(first)
            if not other.exists():
                continue
            a, b = nib.load(image).get_fdata(), nib.load(other).get_fdata()
            brain = (a > 0) | (b > 0)
            difference = np.abs(a - b)
            print(f"| {image.name.split('_space-')[0]} | {difference.max():.4f} | "
                  f"{difference[brain].mean():.5f} |")
    return 0 if all(code == 0 for _, code in walls.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
