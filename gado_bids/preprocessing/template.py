"""The reference template: MNI ICBM152 2009a symmetric, 1 mm, as shipped inside the nilearn wheel.

Why this one: it is the template family Clinica's t1-linear uses (ICBM152 2009), it comes with GM
and WM probability maps that the brain mask and the group-level tissue priors need, and nilearn is
a maintained neuroimaging package that we also use for QC figures - so the template is installed
with the package, versioned by pip, and never downloaded at run time. nilearn's copy is
skull-stripped (197x233x189, RAS, uint8), which is why whole-head scans are brain-extracted before
registration. No CSF map ships with it: CSF priors are derived as brain minus GM minus WM.

Every gadosynth process that loads the network or segments reads these maps, so they are made
cheaply: the files are found without importing nilearn.datasets (~1 s), and the probabilities
are looked up per uint8 value instead of computed over the whole grid in float64 (~4 s of a
process's start measured on 2 cores; the values are the same, tests/preprocessing/test_template.py).
"""
import functools
import importlib.resources
from pathlib import Path

import nibabel as nib
import numpy as np

SPACE = "MNI152NLin2009aSym"
# nilearn 0.14's names for them (pinned in pyproject.toml; the test checks them against
# nilearn.datasets.MNI152_FILE_PATH and its siblings).
TEMPLATE_FILES = {"t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
                  "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
                  "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz"}
# probability of each stored uint8 value, and the CSF probability of each (GM, WM) value pair:
# brain minus GM minus WM, computed in float64 and kept as float32
_LEVELS = np.arange(256) / 255.0
PROBABILITY_OF_VALUE = _LEVELS.astype(np.float32)
CSF_OF_VALUES = np.clip(1.0 - _LEVELS[:, None] - _LEVELS[None, :], 0.0, 1.0).astype(np.float32)


def template_file(kind: str) -> Path:
    return Path(str(importlib.resources.files("nilearn"))) / "datasets" / "data" / \
        TEMPLATE_FILES[kind]


@functools.lru_cache(maxsize=None)
def _stored(kind: str) -> nib.Nifti1Image:
    """The file's uint8 values (its scaling is the identity), read once per process."""
    image = nib.load(str(template_file(kind)))
    values = np.asarray(image.dataobj)
    values.setflags(write=False)
    return nib.Nifti1Image(values, image.affine)


@functools.lru_cache(maxsize=None)
def template_t1() -> nib.Nifti1Image:
    stored = _stored("t1")
    return nib.Nifti1Image(np.asarray(stored.dataobj, dtype=np.float32), stored.affine)


def template_tissue_probabilities():
    """(GM, WM, CSF) probability maps in [0, 1] on the template grid, float32."""
    brain = np.asarray(template_brain_mask().dataobj) > 0
    gm, wm = (np.asarray(_stored(kind).dataobj) for kind in ("gm", "wm"))
    csf = np.where(brain, CSF_OF_VALUES[gm, wm], np.float32(0.0))
    affine = _stored("t1").affine
    return tuple(nib.Nifti1Image(p, affine) for p in
                 (PROBABILITY_OF_VALUE[gm], PROBABILITY_OF_VALUE[wm], csf))


@functools.lru_cache(maxsize=None)
def template_brain_mask() -> nib.Nifti1Image:
    t1 = _stored("t1")
    return nib.Nifti1Image((np.asarray(t1.dataobj) > 0).astype(np.uint8), t1.affine)
