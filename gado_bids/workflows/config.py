"""One run's settings, typed: built once by the command line (cli.main.run_config) from the
parsed arguments, so the workflows never see argparse. No defaults here: the parser's are the
only ones (its --help shows them)."""
from dataclasses import dataclass
from pathlib import Path
from typing import Optional


@dataclass(frozen=True)
class RunConfig:
    bids_dir: Path
    output_dir: Path
    analysis_level: str  # participant | group
    participant_label: Optional[list]  # None: every participant
    session_label: Optional[list]
    ce_label: str
    bids_filter_file: Optional[Path]
    skip_bids_validator: bool
    model: str
    weights: Optional[Path]  # None: the bundled weights of `model`
    device: str
    nthreads: Optional[int]  # None: what the machine has
    n_procs: int
    seed: int
    work_dir: Optional[Path]  # None: a hidden folder in output_dir
    keep_work: bool
    overwrite: bool
