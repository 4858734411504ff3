"""The per-participant QC page: one self-contained offline HTML file (images inlined as PNG).

For each ce scan, three planes of: the preprocessed ce input, the synthetic non-contrast image,
the enhancement the network removed (desc-enhancement: where contrast was, for QC and lesion
review), the real non-contrast scan when there is one, all with the brain-mask outline; then the
registration figure.
"""
import html
from pathlib import Path

import nibabel as nib
import numpy as np

from gado_bids import __version__, atomic, figures
from gado_bids.outputs import derivatives, spec


def _scan_figure(outputs):
    plt = figures.pyplot()
    load = lambda key: nib.load(str(outputs[key])).get_fdata(dtype=np.float32)
    ce, synthetic, mask = load("ce_crop"), load("synthetic_crop"), load("ce_mask") > 0
    columns = [("ce input", ce, "gray", (0, 1)), ("synthetic", synthetic, "gray", (0, 1)),
               ("removed enhancement", load("enhancement_crop"), "inferno", (0, 0.3))]
    if "ref_crop" in outputs and outputs["ref_crop"].exists():
        columns.append(("real non-contrast", load("ref_crop"), "gray", (0, 1)))
    centre = [int(c) for c in np.argwhere(mask).mean(axis=0)]
    planes = [lambda v: np.rot90(v[centre[0]]), lambda v: np.rot90(v[:, centre[1]]),
              lambda v: np.rot90(v[:, :, centre[2]])]
    figure, axes = plt.subplots(3, len(columns), figsize=(3 * len(columns), 9), squeeze=False)
    for column, (title, volume, colours, limits) in enumerate(columns):
        for row, plane in enumerate(planes):
            axis = axes[row][column]
            axis.imshow(plane(volume), cmap=colours, vmin=limits[0], vmax=limits[1])
            axis.contour(plane(mask.astype(float)), levels=[0.5], colors="lime", linewidths=0.5)
            axis.set_axis_off()
        axes[0][column].set_title(title, fontsize=10)
    figure.tight_layout()
    encoded = figures.base64_text(figures.png_bytes(figure, dpi=70))
    return encoded


def write_participant_page(subject: str, jobs, output_dir: Path) -> Path:
    sections = []
    for job in jobs:
        outputs = spec.predict(job, output_dir)
        sidecar = derivatives.read_sidecar(outputs["synthetic_crop"])
        registration = figures.base64_text(outputs["qc_registration"].read_bytes())
        facts = {key: sidecar.get(key) for key in ("Model", "Formulation", "NetworkGrid",
                                                   "WeightsSha256", "Device",
                                                   "Precision", "BrainMaskMethod",
                                                   "TemplateMaskDice", "SynthesisTimings_s")}
        rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
                       for k, v in facts.items())
        sections.append(
            f'<section id="{html.escape(job.key)}"><h2>{html.escape(job.ce_path.name)}</h2>'
            f"<table>{rows}</table>"
            f'<img alt="input, synthetic, difference" src="data:image/png;base64,'
            f'{_scan_figure(outputs)}">'
            f'<h3>Registration to the template</h3><img alt="registration" '
            f'src="data:image/png;base64,{registration}"></section>')
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>gadosynth sub-{subject}"
            "</title><style>body{font-family:sans-serif;margin:2em}img{max-width:100%}"
            "th{text-align:left;padding-right:1em}td{overflow-wrap:anywhere}</style></head><body>"
            f"<h1>gadosynth {__version__}: sub-{html.escape(subject)}</h1>"
            "<p>Green: brain mask. Removed enhancement: the contrast the network took out of "
            "the ce scan (0 to 0.3 of the normalised scale, where white matter is 0.5; "
            "desc-enhancement in the derivatives). A faint, even ribbon over the grey matter "
            "is the weights' grey-matter blood-pool term (GreyMatterEnhancement in the "
            "sidecars), not lesion enhancement.</p>"
            + "".join(sections) + "</body></html>")
    return atomic.write_bytes(spec.participant_page(output_dir, subject), page.encode())
