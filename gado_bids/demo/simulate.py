"""Simulate pre- and post-gadolinium T1w scans from the MNI template.

Each subject gets the template's brain moved by a random rigid transform, written on an oblique
1.5 mm grid (like a clinical scan), with a smooth bias field and Rician noise, skull-stripped
like the BraTS-style scans the bundled weights are trained on. The post-contrast
scan adds what gadolinium lights up: dura, the superior sagittal sinus and cortical veins, the
choroid plexus, and the rim of a ring-enhancing lesion (whose necrotic core is dark in both
scans). The enhancement mask is written as ground truth under derivatives/simulation so tests can
check that synthesis removes enhancement where, and only where, it was added; beside it the
anatomy's true tissue maps (the template's GM / WM / CSF probabilities moved with the brain, BIDS
probseg files), which the group level reads as the volumes' ground truth.
"""
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from gado_bids import atomic
from gado_bids.discovery.simulation_truth import TRUTH_PIPELINE, TRUTH_TISSUES, probseg_name
from gado_bids.preprocessing.template import template_t1, template_tissue_probabilities

VOXEL_MM = 1.5
GRID_SHAPE = (128, 152, 124)
WHITE_MATTER_LEVEL = 1000.0


def _rotation(angles_deg):
    ax, ay, az = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _bias_field(shape, rng, strength=0.2):
    grid = [np.linspace(-1, 1, n, dtype=np.float32) for n in shape]
    x, y, z = np.meshgrid(*grid, indexing="ij")
    field = np.zeros(shape, np.float32)
    for basis in (x, y, z, x * y, y * z, x * z, x ** 2, y ** 2, z ** 2):
        field += rng.uniform(-1, 1) * basis
    field *= strength / max(np.abs(field).max(), 1e-6)
    return np.exp(field)


def _rician(image, sigma, rng):
    real = image + rng.normal(0, sigma, image.shape)
    imaginary = rng.normal(0, sigma, image.shape)
    return np.sqrt(real ** 2 + imaginary ** 2).astype(np.float32)


def simulate_subject(rng):
    """Native-grid (pre, post, enhancement mask, affine, {tissue: probability}) for one
    simulated session."""
    t1 = template_t1()
    gm, wm, csf = (p.get_fdata().astype(np.float32) for p in template_tissue_probabilities())
    template = t1.get_fdata().astype(np.float32)
    brain = template > 0
    from gado_bids.training.simulated_enhancement import enhancement_map  # torch: import late
    enhancement, core = enhancement_map(brain, wm, csf, rng)
    wm_level = np.median(template[wm > 0.9])
    pre = template / wm_level * WHITE_MATTER_LEVEL
    pre[core] *= 0.45  # necrotic core: dark before and after contrast
    post = pre + enhancement * 1.4 * WHITE_MATTER_LEVEL

    # Head pose in the scanner (rigid) and an oblique acquisition grid.
    pose = np.eye(4)
    pose[:3, :3] = _rotation(rng.uniform(-12, 12, 3))
    pose[:3, 3] = rng.uniform(-10, 10, 3)
    grid_rotation = _rotation(rng.uniform(-10, 10, 3))
    native_affine = np.eye(4)
    native_affine[:3, :3] = grid_rotation * VOXEL_MM
    native_affine[:3, 3] = -native_affine[:3, :3] @ (np.array(GRID_SHAPE) / 2) + np.array(
        [0, -18, 8])
    # native voxel -> world -> template world (undo pose) -> template voxel
    to_template = np.linalg.inv(t1.affine) @ np.linalg.inv(pose) @ native_affine
    coordinates = np.indices(GRID_SHAPE, dtype=np.float32).reshape(3, -1)
    coordinates = to_template[:3, :3] @ coordinates + to_template[:3, 3:4]

    def resample(volume, order=1):
        return ndimage.map_coordinates(volume, coordinates, order=order, mode="constant",
                                       cval=0.0).reshape(GRID_SHAPE).astype(np.float32)

    pre_native, post_native = resample(pre), resample(post)
    truth = resample(enhancement, order=0) > 0.3
    tissue_truth = {name: np.clip(resample(volume), 0, 1)
                    for name, volume in zip(TRUTH_TISSUES, (csf, gm, wm))}
    field = _bias_field(GRID_SHAPE, rng)
    sigma = 0.02 * WHITE_MATTER_LEVEL
    # Skull-stripped like the BraTS-style data we train on: noise inside the head only.
    head = ndimage.binary_dilation(resample((pre > 0) | (enhancement > 0), order=0) > 0.5,
                                   iterations=1)
    pre_native = np.where(head, _rician(pre_native * field, sigma, rng), 0.0)
    # The post scan comes out on another scanner scale, as it does in real warehouses.
    post_native = np.where(head, _rician(post_native * field * 1.3, sigma * 1.3, rng), 0.0)
    return pre_native, post_native, truth, native_affine, tissue_truth


def _save_int16(volume, affine, path):
    image = nib.Nifti1Image(np.clip(np.round(volume), 0, 32767).astype(np.int16), affine)
    image.header.set_xyzt_units("mm")
    atomic.save_nifti(image, path)


def write_demo_dataset(output_dir: Path, n_subjects: int = 3, seed: int = 0) -> Path:
    output_dir = Path(output_dir)
    rng = np.random.default_rng(seed)
    atomic.write_json(output_dir / "dataset_description.json", {
        "Name": "gadosynth demo: simulated pre/post-gadolinium T1w",
        "BIDSVersion": "1.9.0", "DatasetType": "raw",
        "License": "CC0", "GeneratedBy": [{"Name": "gadosynth-demo", "Description":
                                           f"simulated from MNI ICBM152 2009a, seed {seed}"}]})
    atomic.write_bytes(output_dir / "README", (
        "Simulated pre- and post-gadolinium T1w scans made by gadosynth-demo from the MNI ICBM152\n"
        "2009a template: random head pose, oblique 1.5 mm grid, bias field, Rician noise, and\n"
        "enhancement of dura, sinuses, cortical veins, choroid plexus and a ring lesion.\n"
        "Ground truth enhancement masks and tissue maps: derivatives/simulation/.\n").encode())
    truth_root = output_dir / "derivatives" / "simulation"
    atomic.write_json(truth_root / "dataset_description.json", {
        "Name": "gadosynth demo: simulated enhancement masks and tissue maps",
        "BIDSVersion": "1.9.0", "DatasetType": "derivative",
        "GeneratedBy": [{"Name": TRUTH_PIPELINE}]})
    rows = ["participant_id\tsimulation_seed"]
    for index in range(1, n_subjects + 1):
        subject = f"sub-{index:02d}"
        pre, post, truth, affine, tissue_truth = simulate_subject(rng)
        anat = output_dir / subject / "ses-01" / "anat"
        _save_int16(pre, affine, anat / f"{subject}_ses-01_T1w.nii.gz")
        _save_int16(post, affine, anat / f"{subject}_ses-01_ce-gadolinium_T1w.nii.gz")
        for name, fields in (("T1w", {}), ("ce-gadolinium_T1w", {
                "ContrastBolusIngredient": "GADOLINIUM"})):
            atomic.write_json(anat / f"{subject}_ses-01_{name}.json",
                              {"Modality": "MR", "SimulatedFrom": "MNI152NLin2009aSym", **fields})
        truth_path = (truth_root / subject / "ses-01" / "anat" /
                      f"{subject}_ses-01_ce-gadolinium_desc-enhancement_mask.nii.gz")
        atomic.save_nifti(nib.Nifti1Image(truth.astype(np.uint8), affine), truth_path)
        for name, probability in tissue_truth.items():
            atomic.save_nifti(nib.Nifti1Image(probability.astype(np.float32), affine),
                              truth_path.parent / probseg_name(subject[4:], "01", name))
        rows.append(f"{subject}\t{seed}")
    atomic.write_bytes(output_dir / "participants.tsv", ("\n".join(rows) + "\n").encode())
    return output_dir
