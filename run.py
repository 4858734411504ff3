#!/usr/bin/env python3
"""BIDS App entrypoint: run.py bids_dir output_dir {participant,group} [options]."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gado_bids.cli.main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(prog="run.py"))
