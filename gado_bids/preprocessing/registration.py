"""ANTs steps through antspyx: N4, affine to the template, rigid within a session, resampling.

Registration repeats exactly from run to run. It is seeded (runtime.seed_ants) because antspyx
samples 20% of voxels at random for the affine metric, and it runs on one ITK thread: Mattes mutual
information sums its histogram over threads in an order that changes between runs, so with 2
threads and a fixed seed the same session moved by 0.03-0.5 mm between runs, and its 1 mm tissue
volumes by up to 20 cm3 (sub-007's grey matter, two identical gado-pairs runs). ITK fixes its thread
count when it loads, so each registration runs in a child process started with one thread, and a
session's two registrations (its ce scan to the template, its non-contrast scan to its ce scan)
run side by side when the process has two threads or more. On 2 cores, one thread takes 9-11 s
for a scan to the template (5-7 s with 2 threads) and 40-51 s for the rigid registration within
a session (26-29 s). N4 and resampling keep every thread, and repeat exactly for a given
--nthreads. Each registration writes its transforms to its own fresh folder: antspyx collects
them by globbing the output prefix, and would pick up a stale transform from an earlier call.
"""
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import ants
import nibabel as nib
import numpy as np

# antspyx's 'Affine' (rigid then affine, mattes MI) took 28-45 s per scan at 2 threads for a
# 0.10 mm mean error; 'AffineFast' 6 s for 0.24 mm. The network sees 1.3-1.6 mm voxels, so the
# faster variant's error is invisible to it; benchmarks/ compares both with Clinica's recipe.
TEMPLATE_TRANSFORM = "AffineFast"


def to_ants(image: nib.Nifti1Image) -> "ants.ANTsImage":
    converted = nib.Nifti1Image(np.asarray(image.dataobj, np.float32), image.affine)
    converted.header.set_xyzt_units("mm", "sec")  # else ITK warns about unknown units
    return ants.from_nibabel_nifti(converted)


def to_nibabel(image: "ants.ANTsImage") -> nib.Nifti1Image:
    converted = ants.to_nibabel_nifti(image)
    return nib.Nifti1Image(np.asarray(converted.dataobj, np.float32), converted.affine)


def n4(image: "ants.ANTsImage", mask: "ants.ANTsImage") -> "ants.ANTsImage":
    """N4 inside the brain mask: 5x faster than unmasked and as good (FIELD-NOTES)."""
    return ants.n4_bias_field_correction(image, mask=mask, shrink_factor=4)


def register(fixed, moving, transform: str, work_dir: Path, mask=None) -> str:
    """Path of the single .mat that maps fixed-space points into moving space (ANTs convention),
    computed on one ITK thread in a child process (module text: why)."""
    return register_side_by_side([(fixed, moving, transform, mask)], work_dir)[0].transform


class Registered(NamedTuple):
    """One child's result: its transform, and its wall time and peak memory for the stage log."""
    transform: str
    seconds: float
    peak_memory_gb: float


def register_side_by_side(jobs, work_dir: Path) -> list:
    """A Registered per (fixed, moving, transform, mask) job, each on one ITK thread in its own
    child process, as many at a time as this process has ITK threads."""
    budget = int(os.environ.get("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS") or os.cpu_count() or 1)
    folders = [_hand_over(job, work_dir) for job in jobs]
    results, running, waiting = {}, {}, list(enumerate(folders))
    try:
        while waiting or running:
            while waiting and len(running) < max(1, budget):
                index, (folder, transform) = waiting.pop(0)
                running[index] = (_start_child(folder, transform), folder, transform,
                                  time.perf_counter())
            for index, (child, folder, transform, started) in list(running.items()):
                if child.poll() is not None:
                    del running[index]
                    results[index] = _collect(child, folder, transform,
                                              time.perf_counter() - started)
            time.sleep(0.05)
    finally:  # a failed or interrupted session leaves no registration running
        for child, *_ in running.values():
            child.kill()
            child.wait()
    return [results[index] for index in range(len(jobs))]


_IMAGES = ("fixed", "moving", "mask")


def _hand_over(job, work_dir: Path) -> tuple:
    """A fresh folder holding the job's images, and its transform type."""
    fixed, moving, transform, mask = job
    folder = Path(tempfile.mkdtemp(prefix="reg-", dir=work_dir))
    for name, image in zip(_IMAGES, (fixed, moving, mask)):
        if image is not None:
            ants.image_write(image, str(folder / f"{name}.nii"))
    return folder, transform


def _start_child(folder: Path, transform: str) -> subprocess.Popen:
    # the child imports this very package, installed or not
    package_root = str(Path(__file__).resolve().parents[2])
    search_path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    environment = {**os.environ, "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": "1",
                   "PYTHONPATH": search_path}
    with open(folder / "child.out", "w") as out, open(folder / "child.err", "w") as err:
        return subprocess.Popen([sys.executable, "-m", __name__, str(folder), transform],
                                env=environment, stdout=out, stderr=err)


def _collect(child, folder: Path, transform: str, seconds: float) -> Registered:
    for name in _IMAGES:
        (folder / f"{name}.nii").unlink(missing_ok=True)
    if child.returncode != 0:  # the child's last word is its exception, not the traceback
        said = [line for line in (folder / "child.err").read_text().splitlines() if line.strip()]
        error = said[-1].strip() if said else f"exit code {child.returncode}"
        raise RuntimeError(f"{transform} registration failed: {error}")
    path, peak_gb = (folder / "child.out").read_text().splitlines()[-2:]
    return Registered(path, round(seconds, 2), float(peak_gb))


def _register_here(folder: Path, transform: str) -> str:
    """The child's side: read the images it was given, register, name the .mat."""
    read = lambda name: (ants.image_read(str(folder / f"{name}.nii"))
                         if (folder / f"{name}.nii").exists() else None)
    result = ants.registration(fixed=read("fixed"), moving=read("moving"),
                               type_of_transform=transform, outprefix=str(folder / "moving_"),
                               mask=read("mask"))
    transforms = result["fwdtransforms"]
    if len(transforms) != 1 or not transforms[0].endswith(".mat"):
        raise RuntimeError(f"expected one affine transform, got {transforms}")
    return transforms[0]


def apply(fixed, moving, transforms, interpolator="linear", invert=None):
    return ants.apply_transforms(fixed=fixed, moving=moving, transformlist=list(transforms),
                                 interpolator=interpolator,
                                 whichtoinvert=invert or [False] * len(transforms))


if __name__ == "__main__":
    registered = _register_here(Path(sys.argv[1]), sys.argv[2])
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # kB on Linux
    print(registered, f"{peak_gb:.3f}", sep="\n")
