"""Process settings: freed large blocks are kept for reuse, so a feature map the size of the 1 mm
network's is not page-faulted in again every time it is allocated."""
import os
import subprocess
import sys

import pytest

# The shape of a 1 mm network layer: per iteration, feature maps of 134 MB (above glibc's 32 MB
# mmap ceiling) are allocated and freed; prints the page faults of the last iterations.
LAYER_FAULTS = """
import resource, sys
import torch
from gado_bids import runtime
if sys.argv[1] == "keep":
    assert runtime.keep_freed_memory()
torch.set_num_threads(1)
x = torch.ones(1, 16, 128, 128, 128)
for _ in range(5):
    y = ((x - x.mean(dim=1, keepdim=True)) * 2 + 1).relu()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    y = ((x - x.mean(dim=1, keepdim=True)) * 2 + 1).relu()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    result = subprocess.run([sys.executable, "-c", LAYER_FAULTS, mode],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return int(result.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_freed_feature_maps_are_reused_without_page_faults():
    pages_per_map = 16 * 128 ** 3 * 4 // 4096
    default = _faults("default")
    assert default > 3 * pages_per_map  # glibc maps and unmaps each one
    assert _faults("keep") < default / 4


def test_configure_process_sets_the_threads(monkeypatch):
    from gado_bids import runtime
    for variable in runtime.THREAD_VARIABLES:
        monkeypatch.setenv(variable, "1")  # restored after the test, whatever it was
    runtime.configure_process(2)
    assert all(os.environ[v] == "2" for v in runtime.THREAD_VARIABLES)
