"""The CUDA path on a real GPU: reduced precision within tolerance of fp32 on CPU, repeatable
output, GPU memory back to the model's own after every scan.

These need an NVIDIA GPU and skip, saying so, without one (CI has none; they were run on an H100,
see the #6 note). The device-independent logic (device resolution, fallback messages) is covered
on CPU by test_participant_demo and test_bad_input.
"""
import numpy as np
import pytest
import torch

from gado_bids.model.synthesis import REDUCED_PRECISION_TOLERANCE, Synthesiser
from gado_bids.preprocessing import grids, intensity
from gado_bids.preprocessing.template import template_t1

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="no CUDA GPU on this machine: the CUDA path is not run")


@pytest.fixture(scope="module")
def brain_volume():
    """The template brain in the cropped grid, on the normalised scale (WM near 0.5)."""
    t1 = grids.crop_template_volume(template_t1().get_fdata().astype(np.float32))
    brain = t1 > 0
    scaled, _ = intensity.normalise(t1, brain)
    return scaled.astype(np.float32), brain


@pytest.mark.parametrize("model_name", ["attention-unet", "res-unet"])
def test_cuda_output_matches_cpu_fp32_within_tolerance(brain_volume, model_name):
    volume, mask = brain_volume
    on_cpu = Synthesiser(model_name, torch.device("cpu"))(volume, mask).synthetic
    on_gpu_synthesiser = Synthesiser(model_name, torch.device("cuda"))
    on_gpu = on_gpu_synthesiser(volume, mask).synthetic
    difference = np.abs(on_gpu - on_cpu)[mask]
    print(f"{model_name}: {on_gpu_synthesiser.precision}, max |gpu - cpu| "
          f"{difference.max():.5f}, mean {difference.mean():.6f}")
    assert difference.max() <= REDUCED_PRECISION_TOLERANCE
    assert difference.mean() < REDUCED_PRECISION_TOLERANCE / 10
    assert np.abs(on_gpu - volume)[mask].mean() > 0.001  # the network did something


def test_cuda_is_repeatable_and_memory_stays_bounded(brain_volume):
    volume, mask = brain_volume
    synthesiser = Synthesiser("res-unet", torch.device("cuda"))
    first = synthesiser(volume, mask).synthetic
    after_first = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    for _ in range(4):
        again = synthesiser(volume, mask).synthetic
        assert np.abs(again - first).max() <= 1e-3
        assert torch.cuda.memory_allocated() <= after_first  # nothing kept between scans
    peak_gb = torch.cuda.max_memory_allocated() / 1e9
    print(f"peak GPU memory during a scan {peak_gb:.2f} GB, held between scans "
          f"{after_first / 1e6:.0f} MB")
    assert after_first < 200e6  # the fp32 weights (~40 MB) and little else
