"""The group report's pictures: where the zoomed patch is taken, and what the strip holds."""
import base64
import io

import numpy as np
from PIL import Image

from gado_bids.outputs import group_figures


def test_cortical_patch_sits_on_the_brain_edge():
    mask = np.zeros((100, 120), bool)
    mask[20:80, 10:110] = True
    x0, y0 = group_figures._cortical_patch(mask)
    assert x0 == 20 - group_figures.PATCH // 4 and y0 == 59 - group_figures.PATCH // 2


def test_thumbnail_shows_three_slices_above_their_zoomed_patches():
    mask = np.zeros((100, 120), bool)
    mask[20:80, 10:110] = True
    slices = [np.full((100, 120), level, np.float32) for level in (0.2, 0.5, 0.8)]
    picture = Image.open(io.BytesIO(base64.b64decode(group_figures.thumbnail(slices, mask))))
    zoomed = group_figures.PATCH * group_figures.ZOOM
    # rot90 turns each 100 x 120 slice into 120 rows x 100 columns, side by side
    assert picture.size == (max(3 * 100, 3 * zoomed), 120 + zoomed)
    grey = np.asarray(picture.convert("L"), np.float32) / 255
    for index, level in enumerate((0.2, 0.5, 0.8)):  # each zoomed panel is its own slice
        panel = grey[120:, index * zoomed:(index + 1) * zoomed]
        assert abs(float(np.median(panel)) - level) < 0.02


def test_distribution_plots_are_png_images():
    similarity = [{f"{m}_{image}": str(v + i) for m, _ in group_figures.METRICS
                   for image, v in (("ce", 1.0), ("synthetic", 2.0))} for i in range(3)]
    volumes = [{"tissue": tissue, "real_cm3": str(500 + i), "ce_cm3": str(510 + i),
                "synthetic_cm3": str(505 + i), "abs_diff_ce_cm3": "10",
                "abs_diff_synthetic_cm3": "5"}
               for tissue in group_figures.TISSUES for i in range(3)]
    for picture in (group_figures.box_plots(similarity, volumes),
                    group_figures.bland_altman(volumes)):
        assert base64.b64decode(picture).startswith(b"\x89PNG")
