"""The group report's pictures: per-session image strips (full resolution, with a zoomed
cortical patch, where blur and contrast show without a viewer) and the distribution plots (box
plots, Bland-Altman), each a PNG as base64 text to inline in the offline page."""
import numpy as np

from gado_bids import figures
from gado_bids.metrics.tissues import TISSUES

METRICS = (("MAE", "MAE (%)"), ("PSNR", "PSNR (dB)"), ("SSIM", "SSIM"))

PATCH = 40  # voxels (mm) of the zoomed cortical patch
ZOOM = 3


def _cortical_patch(mask_slice) -> tuple:
    """(x0, y0) of a PATCH-square on the lateral cortex: the brain's left edge at mid height."""
    points = np.argwhere(mask_slice)
    if points.size == 0:
        return 0, 0
    y_centre = int(points[:, 1].mean())
    row = np.nonzero(mask_slice[:, y_centre])[0]
    x_edge = int(row.min()) if row.size else int(points[:, 0].min())
    x0 = int(np.clip(x_edge - PATCH // 4, 0, mask_slice.shape[0] - PATCH))
    y0 = int(np.clip(y_centre - PATCH // 2, 0, mask_slice.shape[1] - PATCH))
    return x0, y0


def thumbnail(slices, mask_slice) -> str:
    """Axial slices side by side (ce | synthetic | real) at full resolution, a box on each where
    the cortical patch below them, zoomed x3, was taken: blur and contrast show without a viewer."""
    x0, y0 = _cortical_patch(np.asarray(mask_slice, bool))
    full, zoomed = [], []
    for image in slices:
        image = np.clip(np.asarray(image, np.float32), 0, 1)
        patch = image[x0:x0 + PATCH, y0:y0 + PATCH]
        zoomed.append(np.rot90(np.kron(patch, np.ones((ZOOM, ZOOM), np.float32))))
        boxed = image.copy()
        boxed[x0:x0 + PATCH, [y0, y0 + PATCH - 1]] = 1.0
        boxed[[x0, x0 + PATCH - 1], y0:y0 + PATCH] = 1.0
        full.append(np.rot90(boxed))
    top = np.concatenate(full, axis=1)
    bottom = np.concatenate(zoomed, axis=1)
    canvas = np.zeros((top.shape[0] + bottom.shape[0], max(top.shape[1], bottom.shape[1])),
                      np.float32)
    canvas[:top.shape[0], :top.shape[1]] = top
    canvas[top.shape[0]:, :bottom.shape[1]] = bottom
    return figures.base64_text(figures.image_png_bytes(canvas, cmap="gray", vmin=0, vmax=1))


def box_plots(similarity_rows, volume_rows) -> str:
    plt = figures.pyplot()
    figure, axes = plt.subplots(1, 6, figsize=(18, 3.4))
    for axis, (metric, label) in zip(axes[:3], METRICS):
        data = [[float(r[f"{metric}_{image}"]) for r in similarity_rows]
                for image in ("ce", "synthetic")]
        axis.boxplot(data)
        axis.set_xticks([1, 2], ["ce", "synthetic"])
        axis.set_title(label)
    for axis, tissue in zip(axes[3:], TISSUES):
        rows = [r for r in volume_rows if r["tissue"] == tissue]
        data = [[float(r[f"abs_diff_{image}_cm3"]) for r in rows] for image in ("ce", "synthetic")]
        axis.boxplot(data)
        axis.set_xticks([1, 2], ["ce", "synthetic"])
        axis.set_title(f"|ΔV| {tissue} (cm³)")
    figure.tight_layout()
    return figures.base64_text(figures.png_bytes(figure, dpi=72))


def bland_altman(volume_rows) -> str:
    """Per tissue: difference to the real volume against the pair's mean, with 95% limits."""
    plt = figures.pyplot()
    figure, axes = plt.subplots(1, 3, figsize=(15, 4))
    for axis, tissue in zip(axes, TISSUES):
        rows = [r for r in volume_rows if r["tissue"] == tissue]
        real = np.array([float(r["real_cm3"]) for r in rows])
        for image, colour in (("ce", "tab:red"), ("synthetic", "tab:blue")):
            other = np.array([float(r[f"{image}_cm3"]) for r in rows])
            difference, mean = other - real, (other + real) / 2
            axis.scatter(mean, difference, s=14, color=colour, label=image)
            bias = difference.mean()
            spread = 1.96 * difference.std(ddof=1) if len(difference) > 1 else 0.0
            for level, style in ((bias, "-"), (bias - spread, ":"), (bias + spread, ":")):
                axis.axhline(level, color=colour, linestyle=style, linewidth=0.8)
        axis.axhline(0, color="black", linewidth=0.5)
        axis.set_title(f"{tissue}: V − V_real vs mean (cm³)")
        axis.set_xlabel("mean of the two volumes (cm³)")
        axis.legend(fontsize=8)
    figure.tight_layout()
    return figures.base64_text(figures.png_bytes(figure, dpi=72))
