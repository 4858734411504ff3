"""The participant QC page from written outputs: one section per ce scan with its provenance,
the input / synthetic / removed enhancement (/ real) figure and the registration figure."""
import base64
import dataclasses
import re
import struct

import nibabel as nib
import numpy as np
import pytest

from gado_bids import figures
from gado_bids.discovery.selection import open_layout, select_scans
from gado_bids.outputs import derivatives, report, spec


@pytest.fixture(scope="module")
def job(demo_bids):
    selection = select_scans(open_layout(demo_bids), ce_label="gadolinium")
    return sorted(selection.jobs_by_subject.items())[0][1][0]


def _write_outputs(job, output_dir):
    shape = (20, 24, 22)
    ball = np.linalg.norm(np.indices(shape) - np.array(shape)[:, None, None, None] / 2, axis=0)
    mask = (ball < 8).astype(np.float32)
    volumes = {"ce_crop": 0.5 * mask, "synthetic_crop": 0.45 * mask, "ce_mask": mask,
               "enhancement_crop": 0.05 * mask, "ref_crop": 0.4 * mask}
    outputs = spec.predict(job, output_dir)
    for key, volume in volumes.items():
        outputs[key].parent.mkdir(parents=True, exist_ok=True)
        derivatives.write_with_sidecar(
            outputs[key], lambda p, v=volume: nib.save(nib.Nifti1Image(v, np.eye(4)), str(p)),
            [], {"Model": "attention-unet", "WeightsSha256": "<abc>", "Device": "cpu"})
    outputs["qc_registration"].parent.mkdir(parents=True, exist_ok=True)
    outputs["qc_registration"].write_bytes(figures.image_png_bytes(np.eye(8), cmap="gray"))
    return outputs


def _png_widths(page):
    widths = []
    for encoded in re.findall(r"base64,([A-Za-z0-9+/=]+)", page):
        png = base64.b64decode(encoded)
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        widths.append(struct.unpack(">I", png[16:20])[0])
    return widths


def test_page_shows_each_scan_with_provenance_and_figures(job, tmp_path):
    outputs = _write_outputs(job, tmp_path)
    page = report.write_participant_page(job.subject, [job], tmp_path)
    assert page == spec.participant_page(tmp_path, job.subject)
    text = page.read_text()
    assert f'<section id="{job.key}">' in text and job.ce_path.name in text
    assert "<th>WeightsSha256</th><td>&lt;abc&gt;</td>" in text  # escaped
    with_reference, registration = _png_widths(text)
    assert registration == 8
    outputs["ref_crop"].unlink()  # a session without a real non-contrast scan: one column less
    lone = dataclasses.replace(job, reference_path=None)
    without_reference = _png_widths(report.write_participant_page(job.subject, [lone],
                                                                  tmp_path).read_text())[0]
    assert with_reference == pytest.approx(without_reference * 4 / 3, rel=0.02)
