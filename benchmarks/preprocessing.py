"""Wall time and peak memory per preprocessing stage, per scan.

    python benchmarks/preprocessing.py [--subjects 005 033] [--nthreads 2]

Runs each scan in a fresh process (so peak memory is that scan's alone) on
../shared/data/gado-pairs and ../shared/data/wholehead-pair, and prints a table.
"""
import argparse
import multiprocessing
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("GADOSYNTH_SHARED_DATA", REPO.parent / "shared" / "data"))
STAGES = ("masking", "n4", "registration", "resampling", "normalisation")


def _one(args):
    ce_path, ref_path, nthreads, queue = args
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(nthreads)
    import tempfile
    sys.path.insert(0, str(REPO))
    from gado_bids.discovery.nifti_checks import load_3d_image
    from gado_bids.preprocessing.pipeline import preprocess_session
    started = time.time()
    with tempfile.TemporaryDirectory() as work:
        session = preprocess_session(load_3d_image(ce_path),
                                     load_3d_image(ref_path) if ref_path else None, Path(work), 0)
    rows = [("ce", session.ce)] + ([("non-ce", session.reference)] if session.reference else [])
    queue.put({"total_s": round(time.time() - started, 1),
               "scans": [{"scan": kind, "mask": scan.mask_method, "timings": scan.timings,
                          "peak_gb": scan.peak_memory_gb} for kind, scan in rows]})


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subjects", nargs="+", default=["005", "033"])
    parser.add_argument("--nthreads", type=int, default=2)
    args = parser.parse_args()
    cases = []
    for subject in args.subjects:
        anat = DATA / "gado-pairs" / f"sub-{subject}" / "ses-01" / "anat"
        cases.append((f"gado-pairs sub-{subject}", anat / f"sub-{subject}_ses-01_ce-gadolinium_T1w.nii.gz",
                      anat / f"sub-{subject}_ses-01_T1w.nii.gz"))
    anat = DATA / "wholehead-pair" / "sub-01" / "ses-01" / "anat"
    cases.append(("wholehead-pair sub-01", anat / "sub-01_ses-01_ce-gadolinium_T1w.nii.gz",
                  anat / "sub-01_ses-01_T1w.nii.gz"))
    header = f"{'case':<24}{'scan':<8}{'mask':<9}" + "".join(f"{s:>22}" for s in STAGES)
    print(f"preprocessing per stage: wall s / peak RSS GB ({args.nthreads} threads)")
    print(header)
    context = multiprocessing.get_context("spawn")
    for name, ce, ref in cases:
        if not ce.exists():
            print(f"{name:<24}missing ({ce})")
            continue
        queue = context.Queue()
        process = context.Process(target=_one, args=((ce, ref, args.nthreads, queue),))
        process.start()
        result = queue.get()
        process.join()
        for scan in result["scans"]:
            cells = "".join(f"{scan['timings'].get(s, 0):>12.1f} / {scan['peak_gb'].get(s, 0):>5.2f}"
                            for s in STAGES)
            print(f"{name:<24}{scan['scan']:<8}{scan['mask']:<9}{cells}")
        print(f"{'':<24}total {result['total_s']} s for the session")


if __name__ == "__main__":
    main()
