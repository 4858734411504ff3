"""Scans per hour on one node against the number of worker processes (--n_procs).

    python benchmarks/throughput.py [--workers 1 2] [--subjects 6] [--nthreads N] [--device auto]

Runs the real participant level (`run.py ... participant --n_procs W --nthreads N`) on a demo
dataset of --subjects simulated sessions, once per worker count, each time into a fresh output
folder, and prints wall time and scans per hour (each scan = one ce scan plus its non-contrast
scan: preprocessing of both, synthesis, writing). A last row re-runs the first output folder
with the other bundled network (`--model res-unet`): the preprocessing outputs are reused and
only synthesis runs, what switching networks costs on a processed warehouse. Peak memory is the
sum over the process tree, sampled every 0.5 s.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _tree_rss_gb(pid: int) -> float:
    """Resident memory of a process and all its descendants (Linux /proc)."""
    children = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        stack.extend(children.get(current, []))
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024 ** 2


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--subjects", type=int, default=4)
    parser.add_argument("--nthreads", type=int, default=os.cpu_count())
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from gado_bids.demo.simulate import write_demo_dataset
    with tempfile.TemporaryDirectory() as scratch:
        bids = write_demo_dataset(Path(scratch) / "bids", n_subjects=args.subjects, seed=1)
        print(f"participant level, {args.subjects} demo sessions, {args.nthreads} threads in all, "
              f"device {args.device}")
        print(f"{'workers':>8}{'wall s':>10}{'s/scan':>10}{'scans/hour':>12}{'peak GB':>10}"
              f"{'exit':>6}")
        runs = [(str(w), Path(scratch) / f"out-{w}", w, []) for w in args.workers]
        runs.append(("reuse", runs[0][1], args.workers[0], ["--model", "res-unet"]))
        for label, output, workers, extra in runs:
            started = time.time()
            process = subprocess.Popen(
                [sys.executable, str(REPO / "run.py"), str(bids), str(output), "participant",
                 "--n_procs", str(workers), "--nthreads", str(args.nthreads), "--device",
                 args.device, *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            peak = 0.0
            while process.poll() is None:
                peak = max(peak, _tree_rss_gb(process.pid))
                time.sleep(0.5)
            wall = time.time() - started
            print(f"{label:>8}{wall:>10.0f}{wall / args.subjects:>10.1f}"
                  f"{3600 * args.subjects / wall:>12.0f}{peak:>10.2f}{process.returncode:>6}")


if __name__ == "__main__":
    main()
