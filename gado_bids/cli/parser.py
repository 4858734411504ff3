"""The BIDS App command line: `gadosynth bids_dir output_dir {participant,group} [options]`.

Kept separate from main() so that tests and the Boutiques descriptor check can inspect it.
"""
import argparse
import re
import sys
from pathlib import Path

from gado_bids import __version__
from gado_bids.errors import ExitCode

DESCRIPTION = """\
gadosynth turns gadolinium contrast-enhanced T1-weighted brain MRI (BIDS `ce-gadolinium` T1w) into
synthetic non-contrast T1w images with a 3D U-Net (Bottani et al., SPIE Medical Imaging 2022), so
that tools built for non-contrast scans (SPM, FSL, ANTs, FreeSurfer) can use them.

  participant  preprocess every selected ce- scan and translate it into a synthetic
               non-contrast T1w (template and native grids), with a QC page per participant
  group        compare each synthetic image with the session's real non-contrast scan:
               similarity (plain and resolution-matched, against two non-learned baselines),
               sharpness, GM/WM/CSF volumes with paired tests, per reference class, in
               group/*.tsv and group_report.html
"""

EPILOG = """\
exit codes: 0 success, 1 failure (some participants failed), 16 invalid BIDS input,
18 nothing selected, 64 usage error, 66 no input, 73 cannot create output.
Docs and output layout: README.md of the gadosynth repository."""

LABEL_PATTERN = re.compile(r"^[A-Za-z0-9]+$")


class BidsAppArgumentParser(argparse.ArgumentParser):
    """argparse exits with 2 on bad usage; the BIDS Apps execution spec asks for 64."""

    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(int(ExitCode.USAGE), f"{self.prog}: error: {message}\n"
                  f"Run '{self.prog} --help' for the list of options.\n")


def _bids_label(prefix: str):
    def parse(value: str) -> str:
        label = value[len(prefix):] if value.startswith(prefix) else value
        if not LABEL_PATTERN.match(label):
            raise argparse.ArgumentTypeError(
                f"'{value}' is not a BIDS label: use letters and digits only, "
                f"with or without the '{prefix}' prefix (e.g. {prefix}01 or 01)")
        return label
    return parse


def _device(value: str) -> str:
    if value in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", value):
        return value
    raise argparse.ArgumentTypeError(
        f"'{value}' is not a device: use auto, cpu, cuda or cuda:N (N = GPU index)")


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"'{value}' must be a whole number >= 1")
    return number


def _seed(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = -1
    if not 0 <= number < 2**32:
        raise argparse.ArgumentTypeError(f"'{value}' must be a whole number in [0, 2^32)")
    return number


def _selection_arguments(parser):
    selection = parser.add_argument_group("selecting the data")
    selection.add_argument("--participant_label", "--participant-label", nargs="+",
                           type=_bids_label("sub-"), metavar="LABEL",
                           help="participants to process (with or without 'sub-'); "
                                "default: every participant with a ce- T1w scan")
    selection.add_argument("--session_label", "--session-label", nargs="+",
                           type=_bids_label("ses-"), metavar="LABEL",
                           help="sessions to process (with or without 'ses-'); default: all")
    selection.add_argument("--ce_label", "--ce-label", default="gadolinium",
                           type=_bids_label("ce-"), metavar="LABEL",
                           help="value of the BIDS 'ce' entity of the contrast-enhanced T1w scans "
                                "(default: %(default)s)")
    selection.add_argument("--bids_filter_file", "--bids-filter-file", type=Path, metavar="FILE",
                           help="JSON file of extra pybids filters, keyed by query: "
                                '{"ce_t1w": {"acquisition": "mprage"}, "t1w": {...}}')
    selection.add_argument("--skip_bids_validator", "--skip-bids-validator", action="store_true",
                           help="do not validate the input dataset with the BIDS validator")


def _model_arguments(parser):
    model = parser.add_argument_group("synthesis model")
    model.add_argument("--model", choices=["attention-unet", "res-unet"], default="attention-unet",
                       help="bundled network to use (default: %(default)s, the better of the two "
                            "on validation MAE and PSNR; see gado_bids/weights/MODEL_CARD.md)")
    model.add_argument("--weights", type=Path, metavar="FILE",
                       help="weights file from gadosynth-train (best.pt) instead of the bundled "
                            "weights; its network type is read from the file")


def _computation_arguments(parser):
    compute = parser.add_argument_group("computation")
    compute.add_argument("--device", type=_device, default="auto",
                         help="auto (CUDA if present, else CPU), cpu, cuda or cuda:N "
                              "(default: %(default)s)")
    compute.add_argument("--nthreads", "--n_cpus", type=_positive_int, metavar="N",
                         help="CPU threads for ANTs and torch (default: all available cores)")
    compute.add_argument("--n_procs", "--n-procs", type=_positive_int, default=1, metavar="N",
                         help="participants preprocessed side by side in worker processes, "
                              "sharing --nthreads; synthesis stays in the main process "
                              "(default: 1)")
    compute.add_argument("--seed", type=_seed, default=42,
                         help="random seed, recorded in every sidecar (default: %(default)s)")


def _file_arguments(parser):
    files = parser.add_argument_group("files")
    files.add_argument("--work_dir", "--work-dir", type=Path, metavar="DIR",
                       help="scratch folder for intermediate files "
                            "(default: a temporary folder inside output_dir, removed at the end)")
    files.add_argument("--keep_work", "--keep-work", action="store_true",
                       help="keep intermediate files in the work folder")
    files.add_argument("--overwrite", action="store_true",
                       help="recompute outputs that are already complete, and accept an output "
                            "folder written by another gadosynth version (default: keep and skip)")


def build_parser(prog: str = "gadosynth") -> argparse.ArgumentParser:
    parser = BidsAppArgumentParser(
        prog=prog, description=DESCRIPTION, epilog=EPILOG,
        usage="%(prog)s bids_dir output_dir {participant,group} [options]",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bids_dir", type=Path,
                        help="the root of the input BIDS dataset (read only; never written)")
    parser.add_argument("output_dir", type=Path,
                        help="where the BIDS Derivatives dataset is written (created if missing); "
                             "must not lie inside bids_dir except under bids_dir/derivatives/")
    parser.add_argument("analysis_level", choices=["participant", "group"],
                        help="participant: process each selected participant's ce- scans; "
                             "group: summarise all participants")
    for add_arguments in (_selection_arguments, _model_arguments, _computation_arguments,
                          _file_arguments):
        add_arguments(parser)
    parser.add_argument("-v", "--version", action="version",
                        version=f"gadosynth {__version__}")
    return parser
