"""Could a brain extractor take the demo's enhancing dura band off? Per demo session and
extractor: mask volume against the skull-stripped support and the simulated brain, Dice with that
brain, how many of the enhanced voxels inside the support the mask leaves out, and how much of
the brain it cuts.

    python benchmarks/demo_dura_masks.py DEMO_BIDS [--extractors deepbet robex]

DEMO_BIDS is a dataset written by `gadosynth-demo`. The simulated brain is where the true tissue
maps (template GM + WM + CSF moved with the head) sum above 0.5; the enhanced voxels are the
simulation's enhancement mask. A mask-side fix for the band would need a mask near the brain
(Dice with it above the support's) that leaves out most enhanced voxels and cuts almost no brain.
"""
import argparse
import logging
from pathlib import Path

import nibabel as nib
import numpy as np


def _session_files(bids: Path, subject: str) -> tuple:
    """(ce scan, the true tissue maps, the enhancement mask) of a demo session."""
    from gado_bids.discovery.simulation_truth import truth_tissue_maps
    tissue_maps = truth_tissue_maps(bids, subject[4:], "01")
    if tissue_maps is None:
        raise SystemExit(f"{bids}: no simulated tissue maps for {subject}; not a gadosynth-demo "
                         "dataset?")
    return (bids / subject / "ses-01" / "anat" / f"{subject}_ses-01_ce-gadolinium_T1w.nii.gz",
            list(tissue_maps.values()), tissue_maps["GM"].parent /
            f"{subject}_ses-01_ce-gadolinium_desc-enhancement_mask.nii.gz")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("demo_bids", type=Path)
    parser.add_argument("--extractors", nargs="+", default=["deepbet", "robex"],
                        choices=["deepbet", "robex"])
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from gado_bids.preprocessing.brain_mask import (dice, native_brain_mask, support_mask,
                                                    voxel_volume_cm3)
    print("| session | extractor | support cm3 | mask cm3 | simulated brain cm3 | Dice with the "
          "brain: mask / support | enhanced voxels in the support | of them outside the mask | "
          "brain outside the mask cm3 |\n|---|---|---:|---:|---:|---|---:|---:|---:|")
    for subject in sorted(p.name for p in args.demo_bids.glob("sub-*") if p.is_dir()):
        ce_path, tissue_paths, enhancement_path = _session_files(args.demo_bids, subject)
        image = nib.load(str(ce_path))
        brain = sum(np.asarray(nib.load(str(p)).dataobj, np.float32) for p in tissue_paths) > 0.5
        support = support_mask(image)
        enhanced = (np.asarray(nib.load(str(enhancement_path)).dataobj) > 0) & support
        cm3 = voxel_volume_cm3(image)
        for extractor in args.extractors:
            mask, _ = native_brain_mask(image, extractor)
            print(f"| {subject} | {extractor} | {support.sum() * cm3:.0f} | {mask.sum() * cm3:.0f}"
                  f" | {brain.sum() * cm3:.0f} | {dice(mask, brain):.3f} / "
                  f"{dice(support, brain):.3f} | {enhanced.sum():,} | "
                  f"{(enhanced & ~mask).sum():,} | {(brain & ~mask).sum() * cm3:.1f} |",
                  flush=True)


if __name__ == "__main__":
    main()
