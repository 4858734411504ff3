"""Where an enhancement-formulation network's tissue-volume error comes from: its intensity
curve f or its removed-enhancement map E.

    python benchmarks/volume_sources.py CACHE_DIR WEIGHTS [WEIGHTS ...]
        [--subjects 004 021 ...] [--curve] [--map-alone] [--tissue-medians] [--by-depth]
        [--map-spared-within MM] [--map-above LEVEL] [--blood-pool LEVEL ...] [--nthreads N]

CACHE_DIR is a gadosynth-train cache; WEIGHTS are weights files or "bundled". Per subject (default:
the bundled weights' 3D validation subjects) every image is segmented with the group level's
instrument (metrics.tissues, 1 mm cropped grid, the pair's union brain mask): the real
pre-contrast scan, the ce scan, f(ce) - E (the synthetic image), with --curve f(ce) alone, and
with --map-alone ce - E (the map taken from the ce scan itself, on its own x / (2 P90) scale:
what removing the enhancement does without the curve's contrast change).
Printed: the volumes' differences to the real scan's (cm3), the synthetic image's top end
(P99.5/P95 - 1, a saturated white matter shows), the share of the brain where E > 0.02 and E's
mean. A curve that alone matches the ce scan's errors but an f - E that does not says the map,
not the curve, moves the tissue boundaries. --tissue-medians prints, inside each tissue of the
real scan's labels, the medians of the real scan, the ce scan, f(ce) and E and the median of
f(ce) - real: a broad excess left in f(ce) where E stays at zero is contrast the map does not
remove (a sparse map cannot), a deficit is one only the curve can fill. --by-depth splits each
image's volume differences by depth below the labelled region's surface (DEPTH_BANDS_MM): an
excess near the surface is the map's edge rim, one deep is sulci and ventricles.
--map-spared-within MM segments f(ce) - E once more with E set to zero within MM of the brain
mask's edge (the counterfactual for the rim the map removes there). --map-above LEVEL does so
with E kept only where it exceeds LEVEL (the counterfactual for the map's low, tissue-wide
part: is it what shaves the white matter's top end?), printing that image's top end too.
--blood-pool LEVEL ... segments f(ce) - E less LEVEL times the template's grey-matter probability
(model/blood_pool.py), for each LEVEL: how the volumes answer a broad grey-matter darkening. The
weights' own fitted level, when they carry one, is always part of E here, as in the product.
"""
import argparse
from pathlib import Path

import numpy as np
import torch

from gado_bids import runtime
from gado_bids.metrics import tissues
from gado_bids.metrics.evaluation import top_end_percent
from gado_bids.model import blood_pool
from gado_bids.model.weights import bundled_manifest, load_bundled, load_weights
from gado_bids.preprocessing import grids
from gado_bids.training.cache import load_pair

E_VISIBLE = 0.02  # the normalised scale, where white matter sits near 0.5
DEPTH_BANDS_MM = (0, 2, 4, 8, 1000)  # below the surface of the labelled (eroded) mask


def _depth_below_surface(mask):
    """mm from each labelled voxel to the nearest voxel outside the labelled region (1 mm grid)."""
    from scipy import ndimage
    return ndimage.distance_transform_edt(tissues.segmentation_mask(mask))


def _differences_by_depth(labels, reference_labels, depth):
    """Per depth band, CSF/GM/WM volume of labels less that of reference_labels (cm3)."""
    cells = []
    for low, high in zip(DEPTH_BANDS_MM[:-1], DEPTH_BANDS_MM[1:]):
        band = (depth > low) & (depth <= high)
        volumes, reference = (tissues.volumes_cm3(np.where(band, image_labels, 0))
                              for image_labels in (labels, reference_labels))
        differences = "/".join(f"{volumes[t] - reference[t]:+.1f}" for t in tissues.TISSUES)
        cells.append(f"{low}-{high if high < 1000 else ''}mm {differences}")
    return "  ".join(cells)


def decomposed(model, volume, mask, level=0.0):
    """(f(ce), E) on the 1 mm grid, zero outside mask (top_end_sources.py uses it too); E with
    the weights' grey-matter blood-pool term when level (their meta's) is given."""
    with torch.no_grad():
        mapped, enhancement = model.decompose(torch.from_numpy(grids.pad_crop(volume))[None, None])
    mapped, enhancement = (grids.unpad_crop(v[0, 0].numpy()) for v in (mapped, enhancement))
    enhancement = enhancement + level * blood_pool.grey_matter_prior()
    return np.where(mask, mapped, 0.0), np.where(mask, enhancement, 0.0)


def _differences(volumes, reference):
    return "  ".join(f"{t} {volumes[t] - reference[t]:+7.1f}" for t in tissues.TISSUES)


def _tissue_medians(labels, real, ce, mapped, enhancement):
    cells = []
    for name, index in tissues.LABELS.items():
        inside = labels == index
        cells.append(f"{name} real {np.median(real[inside]):.3f} ce {np.median(ce[inside]):.3f} "
                     f"f {np.median(mapped[inside]):.3f} E {np.median(enhancement[inside]):.4f} "
                     f"f-real {np.median(mapped[inside] - real[inside]):+.4f}")
    return " | ".join(cells)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cache_dir", type=Path)
    parser.add_argument("weights", nargs="+")
    parser.add_argument("--subjects", nargs="+")
    parser.add_argument("--curve", action="store_true", help="also segment f(ce) alone")
    parser.add_argument("--map-alone", action="store_true", help="also segment ce - E")
    parser.add_argument("--tissue-medians", action="store_true",
                        help="also print medians inside the real scan's tissue labels")
    parser.add_argument("--by-depth", action="store_true",
                        help="also split the differences by depth below the brain's surface")
    parser.add_argument("--map-spared-within", type=float, metavar="MM",
                        help="also segment f(ce) - E with E zero within MM of the mask's edge")
    parser.add_argument("--map-above", type=float, metavar="LEVEL",
                        help="also segment f(ce) - E with E kept only where above LEVEL")
    parser.add_argument("--blood-pool", type=float, nargs="+", metavar="LEVEL",
                        help="also segment f(ce) - E - LEVEL * P_GM (template grey matter), "
                             "on top of the weights' own level")
    parser.add_argument("--nthreads", type=int, default=2)
    args = parser.parse_args(argv)
    runtime.limit_threads(args.nthreads)
    entry = bundled_manifest()["attention-unet"]
    subjects = args.subjects or [s for s, c in entry["validation_reference_class"].items()
                                 if c == "3D"]
    models = {name: (load_bundled("attention-unet") if name == "bundled" else
                     load_weights(Path(name)))[:2] for name in args.weights}
    print(f"volume differences to the real pre-contrast scan (cm3), {tissues.GRID}")
    for subject in subjects:
        pair = load_pair(args.cache_dir / f"sub-{subject}_ses-01_ce-gadolinium.npz")
        volumes = lambda image: tissues.volumes_cm3(tissues.segment(image, pair.mask))
        real_labels = tissues.segment(pair.target, pair.mask)
        real = tissues.volumes_cm3(real_labels)
        ce_labels = tissues.segment(pair.ce, pair.mask)
        print(f"sub-{subject} ce{'':27s}{_differences(tissues.volumes_cm3(ce_labels), real)}")
        depth = _depth_below_surface(pair.mask) if args.by_depth else None
        if args.by_depth:
            print(f"sub-{subject} ce by depth{'':19s}"
                  f"{_differences_by_depth(ce_labels, real_labels, depth)}")
        for name, (model, meta) in models.items():
            mapped, enhancement = decomposed(model, pair.ce, pair.mask, blood_pool.level(meta))
            synthetic = np.clip(mapped - enhancement, 0, 1)
            inside = enhancement[pair.mask]
            label = Path(name).parent.name or name
            synthetic_labels = tissues.segment(synthetic, pair.mask)
            print(f"sub-{subject} {label[:10]:10s} f - E{'':13s}"
                  f"{_differences(tissues.volumes_cm3(synthetic_labels), real)}"
                  f"   top end {top_end_percent(synthetic, pair.mask & (synthetic > 0)):.1f}%"
                  f"  E>{E_VISIBLE} {100 * (inside > E_VISIBLE).mean():.1f}%"
                  f"  mean E {inside.mean():.4f}")
            if args.by_depth:
                print(f"sub-{subject} {label[:10]:10s} by depth{'':10s}"
                      f"{_differences_by_depth(synthetic_labels, real_labels, depth)}")
            if args.map_spared_within is not None:
                from scipy import ndimage
                near_edge = ndimage.distance_transform_edt(pair.mask) <= args.map_spared_within
                spared = np.clip(mapped - np.where(near_edge, 0, enhancement), 0, 1)
                print(f"sub-{subject} {label[:10]:10s} E spared {args.map_spared_within:g} mm"
                      f"{'':6s}{_differences(volumes(spared), real)}")
            if args.map_above is not None:
                kept = np.clip(mapped - np.where(enhancement > args.map_above, enhancement, 0),
                               0, 1)
                kept_label = f"E above {args.map_above:g}"
                print(f"sub-{subject} {label[:10]:10s} {kept_label:18s}"
                      f"{_differences(volumes(kept), real)}"
                      f"   top end {top_end_percent(kept, pair.mask & (kept > 0)):.1f}%")
            for level in args.blood_pool or ():
                prior = np.where(pair.mask, blood_pool.grey_matter_prior(), 0.0)
                label_b = f"f - E - {level:g} P_GM"
                print(f"sub-{subject} {label[:10]:10s} {label_b:18s}"
                      f"{_differences(volumes(np.clip(synthetic - level * prior, 0, 1)), real)}")
            if args.curve:
                print(f"sub-{subject} {label[:10]:10s} f alone{'':11s}"
                      f"{_differences(volumes(np.clip(mapped, 0, 1)), real)}")
            if args.tissue_medians:
                print(f"sub-{subject} {label[:10]:10s} medians  "
                      f"{_tissue_medians(real_labels, pair.target, pair.ce, mapped, enhancement)}")
            if args.map_alone:
                print(f"sub-{subject} {label[:10]:10s} ce - E{'':12s}"
                      f"{_differences(volumes(np.clip(pair.ce - enhancement, 0, None)), real)}")


if __name__ == "__main__":
    main()
