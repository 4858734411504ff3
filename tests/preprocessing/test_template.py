"""The template maps (gado_bids.preprocessing.template) are nilearn's files, and the fast lookup
gives the probabilities that computing them over the grid in float64 gives."""
import nibabel as nib
import numpy as np

from gado_bids.preprocessing import template


def test_template_files_are_the_ones_nilearn_names():
    from nilearn import datasets
    assert template.template_file("t1") == datasets.MNI152_FILE_PATH
    assert template.template_file("gm") == datasets.GM_MNI152_FILE_PATH
    assert template.template_file("wm") == datasets.WM_MNI152_FILE_PATH


def test_probabilities_are_those_computed_in_float64_from_the_files():
    from nilearn import datasets
    read = lambda path: nib.load(path).get_fdata()  # float64, scaling applied
    brain = read(datasets.MNI152_FILE_PATH) > 0
    gm, wm = read(datasets.GM_MNI152_FILE_PATH) / 255.0, read(datasets.WM_MNI152_FILE_PATH) / 255.0
    csf = np.where(brain, np.clip(1.0 - gm - wm, 0.0, 1.0), 0.0)
    found = template.template_tissue_probabilities()
    for image, expected in zip(found, (gm, wm, csf)):
        assert image.get_data_dtype() == np.float32
        assert np.array_equal(image.get_fdata(), expected.astype(np.float32))
        assert np.array_equal(image.affine, template.template_t1().affine)
    assert 0.05 < found[2].get_fdata()[brain].mean() < 0.5  # a CSF map, not zeros
    assert np.array_equal(np.asarray(template.template_brain_mask().dataobj) > 0, brain)
    assert np.array_equal(template.template_t1().get_fdata(), read(datasets.MNI152_FILE_PATH))
