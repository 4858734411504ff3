"""ANTs steps through antspyx: N4, affine to the template, rigid within a session, resampling.

Registration repeats exactly from run to run. It is seeded (runtime.seed_ants) because antspyx
samples 20% of voxels at random for the affine metric, and it runs on one ITK thread: Mattes mutual
information sums its histogram over threads in an order that changes between runs, so with 2
threads and a fixed seed the same session moved by 0.03-0.5 mm between runs, and its 1 mm tissue
volumes by up to 20 cm3 (sub-007's grey matter, two identical gado-pairs runs). ITK fixes its thread
count when it loads, so each registration runs in a child process started with one thread (on 2
cores a scan to the template takes 9-11 s instead of 5-7, a non-contrast scan to its ce scan
40-51 s instead of 26-29; N4 and resampling keep every thread, and repeat exactly for a given
--nthreads). Each registration writes its transforms
to its own fresh folder: antspyx collects them by globbing the output prefix, and would pick up a
stale transform from an earlier call.
"""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

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
    out = Path(tempfile.mkdtemp(prefix="reg-", dir=work_dir))
    images = {"fixed": fixed, "moving": moving, "mask": mask}
    for name, image in images.items():
        if image is not None:
            ants.image_write(image, str(out / f"{name}.nii"))
    # the child imports this very package, installed or not
    package_root = str(Path(__file__).resolve().parents[2])
    search_path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    environment = {**os.environ, "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": "1",
                   "PYTHONPATH": search_path}
    child = subprocess.run([sys.executable, "-m", __name__, str(out), transform],
                           env=environment, capture_output=True, text=True)
    for name in images:
        (out / f"{name}.nii").unlink(missing_ok=True)
    if child.returncode != 0:
        raise RuntimeError(f"{transform} registration failed: {child.stderr.strip()[-2000:]}")
    return child.stdout.strip().splitlines()[-1]


def _register_here(folder: Path, transform: str) -> str:
    """The child's side of register: read the images it was given, register, name the .mat."""
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
    print(_register_here(Path(sys.argv[1]), sys.argv[2]))
