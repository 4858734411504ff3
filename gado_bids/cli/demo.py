"""`gadosynth-demo OUT_DIR`: write the simulated demo BIDS dataset."""
import argparse
import sys
from pathlib import Path

from gado_bids.demo.simulate import write_demo_dataset


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="gadosynth-demo",
        description="Write a small simulated BIDS dataset of pre- and post-gadolinium T1w scans "
                    "(made from the bundled MNI template; nothing is downloaded).")
    parser.add_argument("output_dir", type=Path, help="folder to create (must not exist or be empty)")
    parser.add_argument("--n_subjects", type=int, default=3, help="default: %(default)s")
    parser.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    args = parser.parse_args(argv)
    if args.output_dir.exists() and any(args.output_dir.iterdir()):
        print(f"gadosynth-demo: '{args.output_dir}' exists and is not empty: choose a new folder",
              file=sys.stderr)
        return 73
    if not 1 <= args.n_subjects <= 50:
        parser.error("--n_subjects must be between 1 and 50")
    write_demo_dataset(args.output_dir, n_subjects=args.n_subjects, seed=args.seed)
    print(f"demo BIDS dataset written to {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
