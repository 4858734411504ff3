"""Full-resolution figures of input / synthetic / real pre-contrast / removed enhancement, in two
planes, from a participant-level output (the model card's figures; look at them).

    python benchmarks/synthesis_figures.py BIDS_DIR OUTPUT_DIR FIGURES_DIR --subjects 004 009 ...
        [--labels]

Per session, one PNG: rows axial and coronal through the brain's centre of mass (shifted up
20 mm axially, where cortex and white matter fill the slice), columns ce input, synthetic, real
non-contrast (all on the cropped 1 mm template grid, normalised scale 0-1), and the removed
enhancement (0-0.3). Voxels are drawn as 2x2 pixel blocks, never interpolated, so blur in the
figure is blur in the image. With --labels (after the group level), a second PNG per session:
the real, ce and synthetic images above the group level's GM / WM / CSF labels of each, in two
axial planes (20 mm above and 25 mm below the centre of mass: cortex, then temporal lobes and
posterior fossa), to see where the segmentations differ.
"""
import argparse
from pathlib import Path

import nibabel as nib
import numpy as np

from gado_bids.discovery.selection import open_layout, select_scans
from gado_bids.outputs import spec

SCALE = 2  # screen pixels per voxel


def _blocks(plane: np.ndarray, low: float, high: float) -> np.ndarray:
    grey = np.clip((plane - low) / (high - low), 0, 1)
    return np.kron(np.rot90(grey), np.ones((SCALE, SCALE)))


def _save_grid(rows, column_names, title: str, path: Path):
    """Rows of (panels already in 0-1, colour map) drawn at one screen pixel per block pixel,
    the column names above the first row and the title above them."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    height = sum(panels[0].shape[0] for panels, _ in rows)
    width = sum(panel.shape[1] for panel in rows[0][0])
    margin = 80  # pixels above the panels: the figure's title, then the columns' titles
    figure = plt.figure(figsize=(width / 100, (height + margin) / 100), dpi=100)
    y = 1.0 - 50 / (height + margin)
    for index, (panels, colours) in enumerate(rows):
        x, h = 0.0, panels[0].shape[0] / (height + margin)
        for column, (name, panel) in enumerate(zip(column_names, panels)):
            axis = figure.add_axes([x, y - h, panel.shape[1] / width, h])
            colour = colours[column] if isinstance(colours, (list, tuple)) else colours
            axis.imshow(panel, cmap=colour, vmin=0, vmax=1, interpolation="nearest")
            axis.set_axis_off()
            if index == 0:
                axis.set_title(name, fontsize=9)
            x += panel.shape[1] / width
        y -= h
    figure.suptitle(title, fontsize=10, y=0.995)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def session_figure(outputs: dict, path: Path, title: str):
    load = lambda key: nib.load(str(outputs[key])).get_fdata(dtype=np.float32)  # noqa: E731
    volumes = [("ce input", load("ce_crop"), (0, 1), "gray"),
               ("synthetic", load("synthetic_crop"), (0, 1), "gray"),
               ("real non-contrast", load("ref_crop"), (0, 1), "gray"),
               ("removed enhancement", load("enhancement_crop"), (0, 0.3), "inferno")]
    centre = np.argwhere(load("ce_mask") > 0).mean(axis=0).astype(int)
    planes = [lambda v: v[:, :, min(centre[2] + 20, v.shape[2] - 1)],  # axial
              lambda v: v[:, centre[1], :]]  # coronal
    colours = [colour for _, _, _, colour in volumes]
    rows = [([_blocks(cut(volume), *limits) for _, volume, limits, _ in volumes], colours)
            for cut in planes]
    _save_grid(rows, [name for name, _, _, _ in volumes], title, path)


LABEL_COLOURS = ("black", "#3060ff", "#a0a0a0", "white")  # background, CSF, GM, WM


def labels_figure(outputs: dict, labels: dict, path: Path, title: str):
    """Rows per plane: the three images, then their labels; columns real, ce, synthetic."""
    from matplotlib.colors import ListedColormap
    load = lambda p: np.asarray(nib.load(str(p)).dataobj, np.float32)  # noqa: E731
    images = [("real non-contrast", load(outputs["ref_crop"]), load(labels["real"])),
              ("ce input", load(outputs["ce_crop"]), load(labels["ce"])),
              ("synthetic", load(outputs["synthetic_crop"]), load(labels["synthetic"]))]
    centre = np.argwhere(load(outputs["ce_mask"]) > 0).mean(axis=0).astype(int)
    rows, slices = [], []
    for offset in (20, -25):
        k = int(np.clip(centre[2] + offset, 0, images[0][1].shape[2] - 1))
        slices.append(k)
        rows.append(([_blocks(image[:, :, k], 0, 1) for _, image, _ in images], "gray"))
        rows.append(([_blocks(label[:, :, k], 0, 3) for _, _, label in images],
                     ListedColormap(LABEL_COLOURS)))
    _save_grid(rows, [name for name, _, _ in images],
               title + f" (axial slices {slices[0]} and {slices[1]})", path)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bids_dir", type=Path)
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("figures_dir", type=Path)
    parser.add_argument("--subjects", nargs="+", required=True)
    parser.add_argument("--labels", action="store_true",
                        help="also the group level's labels of each image (run it first)")
    args = parser.parse_args()
    args.figures_dir.mkdir(parents=True, exist_ok=True)
    selection = select_scans(open_layout(args.bids_dir), participant_labels=args.subjects)
    for subject, jobs in sorted(selection.jobs_by_subject.items()):
        for job in jobs:
            path = args.figures_dir / f"sub-{subject}_synthesis.png"
            session_figure(spec.predict(job, args.output_dir), path,
                           f"sub-{subject}: ce input | synthetic | real non-contrast | removed "
                           "enhancement (1 mm, voxels as 2x2 pixel blocks)")
            print(path)
            if args.labels:
                from gado_bids.workflows.session_measures import segmentation_paths
                labels = segmentation_paths(job, args.output_dir)
                path = args.figures_dir / f"sub-{subject}_labels.png"
                labels_figure(spec.predict(job, args.output_dir), labels, path,
                              f"sub-{subject}: images and their GM / WM / CSF labels "
                              "(CSF blue, GM grey, WM white; 1 mm, 2x2 pixel blocks)")
                print(path)


if __name__ == "__main__":
    main()
