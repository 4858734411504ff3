"""The participant and group levels on the simulated demo dataset: outputs, sidecars, options."""
import json
import os
import shutil

import nibabel as nib
import numpy as np
import pytest

from conftest import REPO, run_cli
from gado_bids.discovery.selection import open_layout, select_scans
from gado_bids.model import blood_pool
from gado_bids.model.weights import bundled_manifest
from gado_bids.outputs import derivatives
from gado_bids.preprocessing import grids
from gado_bids.outputs.spec import keys as output_keys
from gado_bids.outputs.spec import predict as planned_outputs

SPACE = "MNI152NLin2009aSym"


def _jobs(bids_dir):
    return [j for jobs in select_scans(open_layout(bids_dir)).jobs_by_subject.values()
            for j in jobs]


def test_participant_level_succeeds_on_every_demo_subject(demo_participant_run):
    result, output = demo_participant_run
    assert result.returncode == 0, result.stderr
    assert "summary: 3 succeeded, 0 skipped, 0 failed" in result.stderr
    assert "[1/3] sub-01" in result.stderr and "[3/3] sub-03" in result.stderr
    assert "3 worker processes preprocess participants (1 thread(s) each)" in result.stderr


def test_dataset_description_is_a_bids_derivative(demo_participant_run, demo_bids):
    _, output = demo_participant_run
    description = json.loads((output / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert description["GeneratedBy"][0]["Name"] == "gadosynth"
    assert description["GeneratedBy"][0]["Version"] == (REPO / "version").read_text().strip()
    assert description["SourceDatasets"][0]["URL"] == demo_bids.resolve().as_uri()
    assert description["DatasetLinks"]["raw"] == demo_bids.resolve().as_uri()


def test_every_planned_output_exists_with_a_valid_sidecar(demo_participant_run, demo_bids):
    _, output = demo_participant_run
    jobs = _jobs(demo_bids)
    assert len(jobs) == 3
    for job in jobs:
        planned = planned_outputs(job, output)
        assert len(planned) == 14  # ce: 6 files, 2 synthetic, 2 enhancement, QC figure;
        # non-contrast: 3
        for path in planned.values():
            assert derivatives.output_is_complete(path), path
            sidecar = json.loads(derivatives.sidecar_path(path).read_text())
            assert sidecar["Sources"][0].startswith("bids:raw:sub-")
            assert sidecar["RandomSeed"] == 42
            assert sidecar["SoftwareVersions"]["gadosynth"] == (REPO / "version").read_text().strip()
            assert sidecar["SoftwareVersions"]["antspyx"] == "0.6.3"
            assert len(sidecar["WeightsSha256"]) == 64  # in every sidecar, not only synthetic
        # geometry: the documented grids
        crop = nib.load(str(planned["ce_crop"]))
        assert crop.shape == grids.CROP_SHAPE and np.allclose(crop.header.get_zooms(), 1)
        assert nib.load(str(planned["ce_network"])).shape == grids.NETWORK_SHAPE
        assert nib.load(str(planned["ref_crop"])).shape == grids.CROP_SHAPE
        n4 = nib.load(str(planned["ce_n4"]))
        source = nib.load(str(job.ce_path))
        assert n4.shape == source.shape and np.allclose(n4.affine, source.affine, atol=1e-4)
        assert f"space-{SPACE}" in planned["ce_crop"].name
        synthetic = json.loads(derivatives.sidecar_path(planned["synthetic_native"]).read_text())
        assert synthetic["Model"] == "attention-unet" and synthetic["Device"] == "cpu"  # the default
        assert synthetic["Precision"] == "fp32" and len(synthetic["WeightsSha256"]) == 64
        assert set(synthetic["SynthesisTimings_s"]) == {"inference", "resampling_to_native"}
        assert synthetic["Formulation"] == "enhancement" and synthetic["NetworkGrid"] == "1mm"
        level = bundled_manifest()["attention-unet"]["grey_matter_enhancement"]
        assert synthetic["GreyMatterEnhancement"] == level > 0  # the bundled weights' own
        assert (output / f"sub-{job.subject}.html").stat().st_size > 100_000


def test_native_synthetic_overlays_the_native_ce_scan(demo_participant_run, demo_bids):
    _, output = demo_participant_run
    for job in _jobs(demo_bids):
        planned = planned_outputs(job, output)
        source = nib.load(str(job.ce_path))
        synthetic = nib.load(str(planned["synthetic_native"]))
        assert synthetic.shape == source.shape
        assert np.allclose(synthetic.affine, source.affine, atol=1e-4)
        mask = nib.load(str(planned["ce_native_mask"])).get_fdata() > 0
        correlation = np.corrcoef(synthetic.get_fdata()[mask], source.get_fdata()[mask])[0, 1]
        assert correlation > 0.8, correlation
        crop = nib.load(str(planned["synthetic_crop"]))
        assert crop.shape == grids.CROP_SHAPE
        assert 0 <= crop.get_fdata().min() and crop.get_fdata().max() <= 1


def test_native_synthetic_keeps_the_native_detail_and_the_enhancement_map_explains_it(
        demo_participant_run, demo_bids):
    """The native image is f(native ce) - E with only E interpolated: as sharp as the N4 ce scan
    on every axis (>= 0.9), and where it is darker than f(ce) the removed-enhancement map says
    by how much (the map is non-negative, on both grids)."""
    from gado_bids.metrics.resolution import sharpness, sharpness_ratio
    _, output = demo_participant_run
    for job in _jobs(demo_bids):
        planned = planned_outputs(job, output)
        load = lambda key: nib.load(str(planned[key])).get_fdata(dtype=np.float32)
        mask = load("ce_native_mask") > 0
        ce, synthetic = load("ce_n4"), load("synthetic_native")
        ratio = sharpness_ratio(sharpness(synthetic, mask), sharpness(ce, mask))
        assert min(ratio) >= 0.9, ratio
        native_map, crop_map = load("enhancement_native"), load("enhancement_crop")
        assert native_map.shape == ce.shape and crop_map.shape == grids.CROP_SHAPE
        assert native_map.min() >= 0 and crop_map.min() >= 0 and crop_map.max() > 0.05
        assert not native_map[~mask].any()
        sidecar = json.loads(derivatives.sidecar_path(planned["enhancement_native"]).read_text())
        assert "enhancement the network removed" in sidecar["Description"]
        assert "grey matter's blood-pool enhancement" in sidecar["Description"]
        # the written map holds the blood-pool term: at least b * P_GM inside the mask
        level = sidecar["GreyMatterEnhancement"]
        crop_mask = load("ce_mask") > 0
        floor = level * blood_pool.grey_matter_prior()
        assert np.all(crop_map[crop_mask] >= floor[crop_mask] - 1e-6)
        assert np.median(crop_map[crop_mask & (floor > 0.9 * level)]) < 1.5 * level


def test_no_partial_files_are_left_behind(demo_participant_run):
    _, output = demo_participant_run
    assert not [p for p in output.rglob("*") if ".partial" in p.name or ".gadosynth-work" in p.name]


def test_tampered_output_is_not_complete(demo_participant_run, demo_bids, tmp_path):
    _, output = demo_participant_run
    job = _jobs(demo_bids)[0]
    path = planned_outputs(job, output)["ce_crop"]
    copy = tmp_path / path.name
    copy.write_bytes(path.read_bytes())
    (tmp_path / derivatives.sidecar_path(path).name).write_text(
        derivatives.sidecar_path(path).read_text())
    assert derivatives.output_is_complete(copy)
    copy.write_bytes(path.read_bytes()[:-100])
    assert not derivatives.output_is_complete(copy)


def test_session_filter_and_subjects_without_ce_are_reported(copy_of_demo, tmp_path):
    for path in (copy_of_demo / "sub-03").rglob("*ce-gadolinium*"):
        path.unlink()
    result = run_cli(copy_of_demo, tmp_path / "out", "participant", "--participant_label",
                     "03", "--session_label", "01")
    # sub-03 alone was asked for and has no ce scan: nothing selected
    assert result.returncode == 18
    layout = open_layout(copy_of_demo)
    selection = select_scans(layout, participant_labels=["01", "03"])
    assert list(selection.jobs_by_subject) == ["01"] and selection.subjects_without_ce == ["03"]


def test_bids_filter_file_selects_scans(copy_of_demo):
    from gado_bids.discovery.selection import load_filter_file
    anat = copy_of_demo / "sub-01" / "ses-01" / "anat"
    for name in ("ce-gadolinium_T1w", "T1w"):
        renamed = name.replace("T1w", "run-2_T1w")
        (anat / f"sub-01_ses-01_{name}.nii.gz").rename(anat / f"sub-01_ses-01_{renamed}.nii.gz")
    filters_path = copy_of_demo.parent / "filters.json"
    filters_path.write_text('{"ce_t1w": {"run": null}}')
    selection = select_scans(open_layout(copy_of_demo), filters=load_filter_file(filters_path))
    assert sorted(selection.jobs_by_subject) == ["02", "03"]
    selection = select_scans(open_layout(copy_of_demo))
    job = selection.jobs_by_subject["01"][0]
    assert job.entities["run"] == 2 and job.reference_path.name == "sub-01_ses-01_run-2_T1w.nii.gz"


def test_group_level_without_participant_outputs_exits_66(demo_bids, tmp_path):
    result = run_cli(demo_bids, tmp_path / "empty", "group")
    assert result.returncode == 66 and "run the participant level first" in result.stderr


def test_nthreads_reaches_the_libraries(monkeypatch):
    from gado_bids import runtime
    for variable in runtime.THREAD_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    runtime.limit_threads(3)
    assert all(os.environ[v] == "3" for v in runtime.THREAD_VARIABLES)


def test_device_resolution_without_and_with_cuda():
    from gado_bids.errors import GadoError
    from gado_bids.model.device import resolve_device
    assert str(resolve_device("auto", cuda_available=False)) == "cpu"
    assert str(resolve_device("auto", cuda_available=True, cuda_count=1)) == "cuda:0"
    assert str(resolve_device("cuda:1", cuda_available=True, cuda_count=2)) == "cuda:1"
    with pytest.raises(GadoError, match="only 2 CUDA GPU"):
        resolve_device("cuda:2", cuda_available=True, cuda_count=2)
    with pytest.raises(GadoError, match="sees no CUDA GPU"):
        resolve_device("cuda", cuda_available=False)


def test_user_weights_are_used_and_recorded(demo_participant_run, demo_bids, tmp_path):
    """Outputs made by the bundled weights are not 'complete' for other weights: the synthetic
    images are made again, from the preprocessing already there (same seed and versions)."""
    from gado_bids.model.networks import build_model
    from gado_bids.model.weights import save_weights
    weights = tmp_path / "mine.pt"
    digest = save_weights(build_model("res-unet", 4), weights, {"model": "res-unet", "width": 4})
    output = tmp_path / "out"
    shutil.copytree(demo_participant_run[1], output)
    for path in output.glob("sub-0[12]"):
        shutil.rmtree(path)
    job = [j for j in _jobs(demo_bids) if j.subject == "03"][0]
    planned = planned_outputs(job, output)
    before = {key: (path.read_bytes(), path.stat().st_mtime_ns) for key, path in planned.items()}
    result = run_cli(demo_bids, output, "participant", "--participant_label", "03",
                     "--weights", weights)
    assert result.returncode == 0, result.stderr
    assert "sub-03: succeeded" in result.stderr  # not "skipped": other weights made them
    assert "reused, only synthesis runs" in result.stderr
    for key, path in planned.items():
        if key in output_keys("synthesis"):  # made again, by the user's network
            assert path.read_bytes() != before[key][0], key
            sidecar = derivatives.read_sidecar(path)
            assert sidecar["Model"] == "res-unet" and sidecar["WeightsSha256"] == digest
            assert sidecar["Weights"] == str(weights) and sidecar["PreprocessingReused"] is True
            assert derivatives.output_is_complete(path)
        else:  # preprocessing: read back, not rewritten
            assert (path.read_bytes(), path.stat().st_mtime_ns) == before[key], key
    missing = run_cli(demo_bids, tmp_path / "out2", "participant", "--weights", tmp_path / "no.pt")
    assert missing.returncode == 64 and "not found" in missing.stderr


def test_preprocessing_is_reused_only_when_complete_and_made_alike(demo_participant_run,
                                                                  demo_bids, tmp_path):
    """Other input bytes, another seed, or any damaged preprocessing output, means: preprocess
    again."""
    from gado_bids.workflows.scan import input_hashes, reusable_preprocessing
    output = tmp_path / "out"
    shutil.copytree(demo_participant_run[1] / "sub-01", output / "sub-01")
    job = [j for j in _jobs(demo_bids) if j.subject == "01"][0]
    planned = planned_outputs(job, output)
    seed = derivatives.read_sidecar(planned["ce_crop"])["RandomSeed"]
    hashes = input_hashes(job)
    assert sorted(hashes) == sorted([job.ce_path.name, job.reference_path.name])
    assert derivatives.read_sidecar(planned["ref_crop"])["InputsSha256"] == hashes
    session = reusable_preprocessing(job, output, seed, hashes)
    assert session is not None and session.reference is None
    ce = session.ce
    assert ce.network_input.tobytes() == \
        nib.load(str(planned["ce_network"])).get_fdata(dtype=np.float32).tobytes()
    assert ce.crop_mask.dtype == bool and ce.crop_mask.sum() > 1e6  # about a brain, in mm3
    assert ce.anchor == derivatives.read_sidecar(planned["ce_crop"])["IntensityAnchor"] > 0
    assert ce.transforms == [str(planned["ce_xfm"])]
    assert reusable_preprocessing(job, output, seed + 1, hashes) is None
    for name in hashes:  # either scan exported again under the same name
        assert reusable_preprocessing(job, output, seed, {**hashes, name: "0" * 64}) is None
    planned["synthetic_native"].unlink()  # synthetic images do not matter
    assert reusable_preprocessing(job, output, seed, hashes) is not None
    for key in ("ref_xfm", "qc_registration", "ce_network"):
        damaged = planned[key].read_bytes()
        planned[key].write_bytes(damaged[:-10])
        assert reusable_preprocessing(job, output, seed, hashes) is None, key
        planned[key].write_bytes(damaged)
    assert reusable_preprocessing(job, output, seed, hashes) is not None


def test_model_option_selects_the_bundled_network():
    import torch
    from gado_bids.model.synthesis import Synthesiser
    for name in ("attention-unet", "res-unet"):
        synthesiser = Synthesiser(name, torch.device("cpu"))
        assert synthesiser.provenance["Model"] == name
        assert synthesiser.provenance["Weights"] == f"bundled:{name}.pt"


# CPU inference repeats byte for byte from one process to the next: test_bad_input's
# unreadable-header test synthesises sub-01 again and compares it with the demo run's image.


def test_reduced_precision_path_is_checked_against_fp32(tmp_path):
    """The CUDA path's bf16 autocast and its fp32 check, run on the CPU (only the device differs)."""
    import torch
    from gado_bids.model.networks import build_model
    from gado_bids.model.synthesis import REDUCED_PRECISION_TOLERANCE, Synthesiser
    from gado_bids.model.weights import save_weights
    from gado_bids.preprocessing import grids
    torch.manual_seed(0)
    model = build_model("attention-unet", 4, "enhancement")
    torch.nn.init.normal_(model.head.weight, std=0.05)
    weights = tmp_path / "w.pt"
    save_weights(model, weights, {"model": "attention-unet", "width": 4,
                                  "formulation": "enhancement", "grid": "1mm"})
    synthesiser = Synthesiser("attention-unet", torch.device("cpu"), weights)
    synthesiser.reduced_precision = True  # what a CUDA device turns on
    volume = np.random.default_rng(0).random((32, 32, 32)).astype(np.float32)
    difference = synthesiser.check_reduced_precision(volume)
    assert 0 < difference
    assert synthesiser.reduced_precision == (difference <= REDUCED_PRECISION_TOLERANCE)
    crop = np.random.default_rng(1).random(grids.CROP_SHAPE).astype(np.float32)
    mask = np.zeros(grids.CROP_SHAPE, bool)
    mask[20:150, 20:190, 20:160] = True
    output = synthesiser(crop, mask)
    assert output.synthetic.shape == grids.CROP_SHAPE and output.synthetic.dtype == np.float32
    assert output.enhancement.min() >= 0 and not output.synthetic[~mask].any()
