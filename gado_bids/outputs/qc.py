"""QC figures: enough to see a failed registration or mask at a glance."""

import numpy as np

from gado_bids import figures


def _planes(volume, centre):
    i, j, k = centre
    return [np.rot90(volume[i]), np.rot90(volume[:, j]), np.rot90(volume[:, :, k])]


def registration_figure(rows, template_mask, title) -> bytes:
    """PNG bytes. rows: [(label, crop volume, crop mask)]; template outline in red, scan mask in
    green."""
    plt = figures.pyplot()
    centre = [int(c) for c in np.round(np.argwhere(template_mask).mean(axis=0))]
    figure, axes = plt.subplots(len(rows), 3, figsize=(9, 3.2 * len(rows)), squeeze=False)
    for row, (label, volume, mask) in enumerate(rows):
        for column, (image, outline, ours) in enumerate(zip(
                _planes(volume, centre), _planes(template_mask.astype(float), centre),
                _planes(mask.astype(float), centre))):
            axis = axes[row][column]
            axis.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            axis.contour(outline, levels=[0.5], colors="red", linewidths=0.7)
            axis.contour(ours, levels=[0.5], colors="lime", linewidths=0.7)
            axis.set_axis_off()
        axes[row][0].set_title(label, loc="left", fontsize=9)
    figure.suptitle(f"{title}\nred: template brain, green: scan's brain mask", fontsize=9)
    figure.tight_layout()
    return figures.png_bytes(figure, dpi=80)
