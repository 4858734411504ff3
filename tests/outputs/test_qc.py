"""outputs.qc and the figure encoder it uses: a PNG per call, one row per scan, figures closed."""
import io

import numpy as np

from gado_bids import figures
from gado_bids.outputs.qc import registration_figure


def _ball(shape, radius, centre):
    grid = np.indices(shape)
    return sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius ** 2


def test_registration_figure_is_a_png_with_a_row_per_scan_and_closes_its_figure():
    shape = (30, 34, 28)
    template = _ball(shape, 10, (15, 17, 14))
    shifted = _ball(shape, 10, (17, 17, 14))  # a mis-registered mask still draws
    rows = [("ce", template * 0.6, template), ("non-contrast", shifted * 0.5, shifted)]
    plt = figures.pyplot()
    before = len(plt.get_fignums())
    png = registration_figure(rows, template, "sub-01 registration")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(plt.get_fignums()) == before
    image = plt.imread(io.BytesIO(png))
    one_row = plt.imread(io.BytesIO(registration_figure(rows[:1], template, "one")))
    assert image.shape[1] == one_row.shape[1] and image.shape[0] > 1.6 * one_row.shape[0]


def test_base64_text_round_trips_and_image_png_keeps_the_array_size():
    import base64
    png = figures.image_png_bytes(np.linspace(0, 1, 12 * 20).reshape(12, 20), cmap="gray")
    assert base64.b64decode(figures.base64_text(png)) == png
    assert figures.pyplot().imread(io.BytesIO(png)).shape[:2] == (12, 20)
