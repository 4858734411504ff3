"""The reference template: MNI ICBM152 2009a symmetric, 1 mm, as shipped inside the nilearn wheel.

Why this one: it is the template family Clinica's t1-linear uses (ICBM152 2009), it comes with GM
and WM probability maps that the brain mask and the group-level tissue priors need, and nilearn is
a maintained neuroimaging package that we also use for QC figures - so the template is installed
with the package, versioned by pip, and never downloaded at run time. nilearn's copy is
skull-stripped (197x233x189, RAS, uint8), which is why whole-head scans are brain-extracted before
registration. No CSF map ships with it: CSF priors are derived as brain minus GM minus WM.
"""
import functools

import nibabel as nib
import numpy as np

SPACE = "MNI152NLin2009aSym"


@functools.lru_cache(maxsize=None)
def _load(kind: str) -> nib.Nifti1Image:
    from nilearn import datasets  # imported lazily: nilearn's import costs ~1 s
    path = {"t1": datasets.MNI152_FILE_PATH, "gm": datasets.GM_MNI152_FILE_PATH,
            "wm": datasets.WM_MNI152_FILE_PATH}[kind]
    image = nib.load(path)
    return nib.Nifti1Image(np.asarray(image.dataobj, dtype=np.float32), image.affine)


def template_t1() -> nib.Nifti1Image:
    return _load("t1")


def template_tissue_probabilities():
    """(GM, WM, CSF) probability maps in [0, 1] on the template grid."""
    brain = template_brain_mask().get_fdata() > 0
    gm = _load("gm").get_fdata() / 255.0
    wm = _load("wm").get_fdata() / 255.0
    csf = np.where(brain, np.clip(1.0 - gm - wm, 0.0, 1.0), 0.0)
    affine = _load("t1").affine
    return tuple(nib.Nifti1Image(p.astype(np.float32), affine) for p in (gm, wm, csf))


@functools.lru_cache(maxsize=None)
def template_brain_mask() -> nib.Nifti1Image:
    t1 = _load("t1")
    return nib.Nifti1Image((t1.get_fdata() > 0).astype(np.uint8), t1.affine)
