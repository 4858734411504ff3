"""`gadosynth-train bids_dir work_dir`: train (or fine-tune) a synthesis network on paired scans.

Pairs are every session's ce-<label> T1w (input) and non-contrast T1w (target), preprocessed
exactly as at inference and cached under work_dir/cache. Interrupt at any time: re-running the
same command resumes from the last epoch's checkpoint.
"""
import argparse
from dataclasses import fields
import logging
import shlex
import sys
from pathlib import Path

from gado_bids.cli.parser import BidsAppArgumentParser, _bids_label, _device, _positive_int
from gado_bids.errors import GadoError
from gado_bids.training.config import TrainConfig

DEFAULTS = TrainConfig()


def _fraction(value: str) -> float:
    """A share between 0 and 1, checked while parsing: a usage error before torch loads."""
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not 0 <= number <= 1:
        raise argparse.ArgumentTypeError(f"'{value}' is not a fraction between 0 and 1")
    return number


def _data_arguments(parser):
    group = parser.add_argument_group("pairs")
    group.add_argument("bids_dir", type=Path, help="BIDS dataset with ce- and non-ce T1w pairs")
    group.add_argument("work_dir", type=Path,
                       help="cache, checkpoints, logs and the trained weights (best.pt)")
    group.add_argument("--participant_label", nargs="+", type=_bids_label("sub-"),
                       metavar="LABEL", help="train on these participants only")
    group.add_argument("--ce_label", default="gadolinium", type=_bids_label("ce-"))
    group.add_argument("--pairs_from_cache", action="store_true",
                       help="train on the pairs already cached in work_dir/cache without "
                            "reading bids_dir (e.g. on a GPU machine without ANTs)")
    group.add_argument("--derivatives", type=Path, metavar="OUTPUT_DIR",
                       help="a gadosynth participant-level output folder: its preprocessing "
                            "outputs are reused for the pairs where they are complete and were "
                            "made from the same input bytes (the rest are preprocessed)")
    group.add_argument("--cache_only", action="store_true",
                       help="preprocess and cache the pairs, then stop")


def _model_arguments(parser):
    group = parser.add_argument_group("network")
    group.add_argument("--model", choices=["attention-unet", "res-unet"],
                       default=DEFAULTS.model, help="default: %(default)s")
    group.add_argument("--formulation", choices=["enhancement", "direct"],
                       default=DEFAULTS.formulation,
                       help="enhancement (default): 1 mm grid, image = intensity curve of the "
                            "input minus a non-negative enhancement map; direct: gadosynth "
                            "0.1's and the paper's 128^3 grid, image predicted directly")
    group.add_argument("--width", type=_positive_int, default=DEFAULTS.width,
                       help="channels of the first level (doubles per level; default 16)")
    group.add_argument("--init", default=DEFAULTS.init,
                       help="scratch, bundled (fine-tune the bundled weights) or a weights file")


def _loss_arguments(parser):
    group = parser.add_argument_group("loss")
    group.add_argument("--loss", choices=["mse", "l1"], default=DEFAULTS.loss,
                       help="mse (default: learns much faster on skull-stripped BraTS-style "
                            "pairs; see the model card) or l1 as in the paper")
    group.add_argument("--no_blur_matching", dest="blur_matched", action="store_false",
                       help="compare the output with thick-slice targets as it is, instead of "
                            "blurred by the target's measured blur (gadosynth 0.1's loss)")
    group.add_argument("--weight_3d", type=float, default=DEFAULTS.weight_3d,
                       help="loss weight of pairs whose target is a sharp 3D scan "
                            "(default: %(default)s)")
    group.add_argument("--distribution_loss", dest="distribution_weight", type=float,
                       default=DEFAULTS.distribution_weight,
                       help="weight of the intensity-histogram term of each crop (sorted "
                            "values of the blur-matched output against the target's): a "
                            "shaved white-matter top costs here. Default: %(default)s")
    group.add_argument("--comparison_blur", type=float, default=DEFAULTS.comparison_blur,
                       help="sigma (voxels) of a Gaussian average, inside the brain, of both the "
                            "output and the target before the voxel error: the input's noise "
                            "cancels, so the enhancement map gains nothing by cutting the "
                            "white matter's bright texture (training/losses.py). "
                            "Default: %(default)s (voxel by voxel)")


def _curve_arguments(parser):
    """How the intensity curve of the enhancement formulation learns, and from which pairs."""
    group = parser.add_argument_group("intensity curve")
    group.add_argument("--curve_loss", choices=["quantile", "mse"],
                       default=DEFAULTS.curve_loss,
                       help="how the intensity curve learns (enhancement formulation): "
                            "quantile (default) gives each scan its target's intensity "
                            "distribution; mse regresses it voxel by voxel, which flattens "
                            "grey/white contrast")
    group.add_argument("--curve_voxels", choices=["all", "unenhanced", "after_map"],
                       default=DEFAULTS.curve_voxels,
                       help="voxels whose intensity distributions the quantile curve loss "
                            "matches: all (default, the bundled weights' recipe) or "
                            "unenhanced (the same voxels of both scans, without those much "
                            "brighter after contrast: keeps the white-matter top, but the "
                            "one-sided cut biases the curve bright; see the model card) or "
                            "after_map (each scan's own voxels, the ce scan's less the map of "
                            "the --init weights)")
    group.add_argument("--curve_pairs", choices=["all", "gadolinium-only", "3D"],
                       default=DEFAULTS.curve_pairs,
                       help="training pairs whose contrast the quantile curve learns: all "
                            "(default, the bundled weights' recipe), gadolinium-only (those "
                            "whose reference has the larger grey/white gap, as a pre-contrast "
                            "scan of the ce scan's sequence has; the others differ by sequence "
                            "too) or 3D (those whose reference is a sharp 3D scan, among the "
                            "pairs crops come from: thick-slice references brighten thin CSF "
                            "by partial volume). Sharp targets keep their identity term either "
                            "way")
    group.add_argument("--training_pairs", choices=["all", "gadolinium-only"],
                       default=DEFAULTS.training_pairs,
                       help="real pairs training crops come from: all (default) or "
                            "gadolinium-only (as --curve_pairs; the curve then learns from "
                            "them too)")
    group.add_argument("--freeze_curve", action="store_true",
                       help="keep the intensity curve of the --init (or --borrow_from) weights "
                            "and train the enhancement map alone")
    group.add_argument("--borrow_from", default=DEFAULTS.borrow_from, metavar="WEIGHTS",
                       help="with --init scratch: start from layers of these enhancement "
                            "weights (a file, or a bundled model's name such as "
                            "attention-unet); which ones: --borrow")
    group.add_argument("--borrow", choices=["curve", "shared"], default=DEFAULTS.borrow,
                       help="curve (default): their intensity curve and its top floor (with "
                            "--freeze_curve only the map learns); shared: every layer both "
                            "networks have, by name and shape (a res-unet's residual modules "
                            "start as the identity)")
    group.add_argument("--curve_top_floor", type=float, default=DEFAULTS.curve_top_floor,
                       metavar="MULTIPLE",
                       help="from the white-matter anchor (the brain's 90th percentile) up to "
                            "MULTIPLE times it, no slope of the curve may fall below the slope "
                            "just under the anchor, so white matter's bright end keeps the "
                            "input's spread (2: the whole bright end; with --init weights too: "
                            "it floors their curve). Default: %(default)s, no floor")


def _map_arguments(parser):
    """What the enhancement map is charged for, and the tissue term beside it."""
    group = parser.add_argument_group("enhancement map")
    group.add_argument("--enhancement_l1", type=float, default=DEFAULTS.enhancement_l1,
                       help="weight of the enhancement map's mean in the loss (sparsity; "
                            "enhancement formulation). Default: %(default)s")
    group.add_argument("--enhancement_free_level", type=float,
                       default=DEFAULTS.enhancement_free_level,
                       help="the sparsity term charges the enhancement map only above this "
                            "level (a broad, tissue-wide part below it costs nothing). "
                            "Default: %(default)s")
    group.add_argument("--enhancement_gradient_floor", type=float,
                       default=DEFAULTS.enhancement_gradient_floor,
                       help="added to the enhancement map's gradient (not its value) where "
                            "the softplus's own dies near zero, so that a map pushed to zero "
                            "in the tissue can learn a broad low part there. Default: "
                            "%(default)s")
    group.add_argument("--tissue_loss", dest="tissue_weight", type=float,
                       default=DEFAULTS.tissue_weight,
                       help="weight of the squared difference between output and target means "
                            "inside each crop's template GM and WM cores (enhancement "
                            "formulation): the grey/white offset, too small for the voxel "
                            "error to teach. Default: %(default)s")
    group.add_argument("--tissue_loss_form", choices=["means", "contrast"],
                       default=DEFAULTS.tissue_loss_form,
                       help="what --tissue_loss compares: each core's mean (means, default) "
                            "or each core's mean less the last core's (contrast)")
    group.add_argument("--tissue_cores", choices=["GM,WM", "CSF,GM,WM"],
                       default=DEFAULTS.tissue_cores,
                       help="the template cores --tissue_loss reads; with CSF,GM,WM the "
                            "contrast form also compares CSF - WM. Default: %(default)s")
    group.add_argument("--tissue_trains_curve", action="store_true",
                       help="let the tissue term train the intensity curve too (the quantile "
                            "loss otherwise owns it): a tissue-wide contrast is a whole-scan "
                            "change, which the sparse map does not make")


def _schedule_arguments(parser):
    group = parser.add_argument_group("training schedule")
    group.add_argument("--epochs", type=_positive_int, default=DEFAULTS.epochs,
                       help="default: %(default)s")
    group.add_argument("--batch_size", type=_positive_int, default=DEFAULTS.batch_size,
                       help="default: %(default)s")
    group.add_argument("--crop_size", type=int, choices=[32, 48, 64, 80, 96, 112, 128],
                       default=DEFAULTS.crop_size,
                       help="training crop edge in voxels; 128 = whole volume (GPU). "
                            "Default: %(default)s")
    group.add_argument("--learning_rate", type=float, default=DEFAULTS.learning_rate,
                       help="Adam; default %(default)s")
    group.add_argument("--augmentation", type=float, default=DEFAULTS.augmentation,
                       help="augmentation strength, 0 disables (default: %(default)s)")
    group.add_argument("--simulated_enhancement", dest="simulated_fraction", type=_fraction,
                       default=DEFAULTS.simulated_fraction, metavar="FRACTION",
                       help="share of training inputs replaced by the real non-contrast scan "
                            "plus simulated enhancement (dura, sinus, veins, choroid plexus, "
                            "ring lesion); validation stays on real pairs. Default: 0")
    group.add_argument("--simulated_on_ce", type=_fraction, default=DEFAULTS.simulated_on_ce,
                       metavar="FRACTION",
                       help="share of the simulated inputs that add the enhancement to the real "
                            "ce scan instead of the non-contrast scan (the target stays the "
                            "non-contrast scan), so that removal is also learnt on images that "
                            "look post-contrast. Default: 0")
    group.add_argument("--simulated_loss_mask", choices=["brain", "brain+enhancement"],
                       default=DEFAULTS.simulated_loss_mask,
                       help="where a simulated sample's loss is computed: the pair's brain mask "
                            "(default) or also the voxels the simulation enhanced outside it "
                            "(the dura shell at the brain's edge)")
    group.add_argument("--simulated_rim", type=_fraction, default=DEFAULTS.simulated_rim,
                       metavar="FRACTION",
                       help="share of the simulated inputs that also get a rim of enhancing "
                            "dura, 1-4 voxels wide, around the pair's own brain mask (as a "
                            "looser skull strip than BraTS' keeps it), scored against the "
                            "background there. Default: 0")
    group.add_argument("--max_minutes", type=float, default=DEFAULTS.max_minutes,
                       help="train fewer epochs than --epochs if needed to end within this "
                            "many minutes (timed on the first validated epoch after the "
                            "first); 0: no limit")
    group.add_argument("--seed", type=int, default=DEFAULTS.seed, help="default: %(default)s")


def _validation_arguments(parser):
    group = parser.add_argument_group("validation")
    group.add_argument("--n_validation", type=_positive_int, default=DEFAULTS.n_validation,
                       help="subjects held out for validation (default: %(default)s)")
    group.add_argument("--n_validation_3d", type=int, default=DEFAULTS.n_validation_3d,
                       help="of the --n_validation subjects, how many have a sharp 3D reference "
                            "(reference class measured when caching). Default: 0 (no split "
                            "by class)")
    group.add_argument("--validation_subjects", nargs="+", type=_bids_label("sub-"),
                       default=DEFAULTS.validation_subjects,
                       metavar="LABEL", help="hold out exactly these subjects instead")
    group.add_argument("--validate_every", type=_positive_int,
                       default=DEFAULTS.validate_every,
                       help="validate every N epochs (default: %(default)s)")


def build_parser():
    parser = BidsAppArgumentParser(prog="gadosynth-train", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    for add_arguments in (_data_arguments, _model_arguments, _loss_arguments,
                          _curve_arguments, _map_arguments,
                          _schedule_arguments, _validation_arguments):
        add_arguments(parser)
    parser.add_argument("--device", type=_device, default="auto")
    parser.add_argument("--nthreads", type=_positive_int, help="CPU threads")
    return parser


def _print_validation(summary):
    """The final table (training.validation.table_lines): every image plain and
    resolution-matched, per subject, per reference class and overall."""
    rows = [r for r in summary.get("validation", []) if "evaluation" in r]
    if not rows:
        return
    from gado_bids.metrics.evaluation import COMPARED
    from gado_bids.training.validation import table_lines
    grid = "1 mm cropped template grid" if summary["config"]["formulation"] == "enhancement" \
        else "128^3 network grid"
    print(f"\nvalidation (best epoch {summary['best_epoch']}), {grid} (a secondary view: the "
          "group level's native-grid tables are the primary ones); PSNR dB plain / "
          "resolution-matched, sharpness synthetic/ce on the weakest axis:")
    print(f"{'subject':<10}{'reference':<12}" + "".join(f"{image:>22}" for image in COMPARED) +
          f"{'sharpness':>11}")
    for subject, n, reference_class, psnr, sharpness in table_lines(rows):
        label = f"sub-{subject}" if subject else f"mean n={n}"
        cells = "".join(f"{psnr[i][0]:>13.2f} / {psnr[i][1]:<6.2f}" for i in COMPARED)
        print(f"{label:<10}{reference_class:<12}{cells}{sharpness:>11.3f}")


def _cache_dataset(args) -> list:
    from gado_bids.discovery.selection import open_layout, select_scans
    from gado_bids.discovery.validation import check_bids_dir_readable
    from gado_bids.training.cache import build_cache
    bids_dir = check_bids_dir_readable(args.bids_dir)
    selection = select_scans(open_layout(bids_dir), ce_label=args.ce_label,
                             participant_labels=args.participant_label)
    jobs = [j for s in sorted(selection.jobs_by_subject) for j in selection.jobs_by_subject[s]]
    return build_cache(jobs, args.work_dir / "cache", derivatives_dir=args.derivatives)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s [gadosynth-train] %(message)s",
                        datefmt="%H:%M:%S")
    logging.getLogger("bids").setLevel(logging.WARNING)
    from gado_bids import runtime
    runtime.configure_process(args.nthreads)
    try:
        from gado_bids.model.device import resolve_device
        from gado_bids.training.cache import cached_pairs, load_pair
        from gado_bids.training.loop import train
        runtime.apply_torch_threads(args.nthreads)
        if args.pairs_from_cache:
            paths = cached_pairs(args.work_dir / "cache")
            if not paths:
                raise ValueError(f"no cached pairs in {args.work_dir / 'cache'}: run with "
                                 f"--cache_only on a machine with the BIDS dataset first")
        else:
            paths = _cache_dataset(args)
        if args.cache_only:
            print(f"{len(paths)} pairs cached in {args.work_dir / 'cache'}")
            return 0
        device = resolve_device(args.device)
        pairs = [load_pair(p) for p in paths]
        config = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
        command = "gadosynth-train " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
        summary = train(pairs, args.work_dir, config, device, command)
    except GadoError as error:
        logging.error("%s", error)
        return int(error.exit_code)
    except ValueError as error:
        logging.error("%s", error)
        return 64
    _print_validation(summary)
    print(f"\nbest weights: {args.work_dir / 'best.pt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
