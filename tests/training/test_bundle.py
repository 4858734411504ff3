"""A finished training run bundled: the weights copied and pinned by their SHA-256 (and loadable
under that pin), the manifest holding the command, split, reference classes and time, and the
model card's table from the run's validation."""
import json

import pytest

from gado_bids import hashing
from gado_bids.model.networks import build_model
from gado_bids.model.weights import load_weights, save_weights
from gado_bids.training import bundle


def _evaluation(reference_class, psnr):
    images = ("ce", "clip", "clip-and-blur", "synthetic")
    return {"reference_class": reference_class,
            "plain": {i: {"PSNR": psnr + k} for k, i in enumerate(images)},
            "matched": {i: {"PSNR": psnr + k + 0.5} for k, i in enumerate(images)},
            "sharpness_ratio": {"synthetic": [1.0, 0.9, 0.95]}}


@pytest.fixture
def run(tmp_path):
    dataset = tmp_path / "pairs"
    dataset.mkdir()
    (dataset / "dataset_description.json").write_text(json.dumps({"Name": "paired scans"}))
    work = tmp_path / "work"
    work.mkdir()
    model = build_model("attention-unet", 4, "enhancement")
    save_weights(model, work / "best.pt", {"model": "attention-unet", "width": 4,
                                           "formulation": "enhancement", "grid": "1mm"})
    summary = {"command": f"gadosynth-train {dataset} {work} --seed 3", "device": "cpu",
               "config": {"model": "attention-unet", "width": 4, "seed": 3,
                          "formulation": "enhancement", "curve_top_floor": 1.25},
               "borrow_from_sha256": "ab" * 32, "borrow": "shared",
               "hardware": "x86_64", "torch": "2", "steps": 12, "best_epoch": 2,
               "train_subjects": ["01", "02"], "validation_subjects": ["03", "04"],
               "validation": [{"subject": "03", "evaluation": _evaluation("3D", 20.0)},
                              {"subject": "04", "evaluation": _evaluation("thick-slice", 22.0)}]}
    (work / "summary.json").write_text(json.dumps(summary))
    (work / "split.json").write_text(json.dumps(
        {"reference_class": {"01": "3D", "02": "3D", "03": "3D", "04": "thick-slice"},
         "training_pairs": ["02"]}))
    (work / "training_log.tsv").write_text("epoch\tseconds\n1\t10.5\n2\t11.25\n")
    return work


def test_bundle_pins_the_copied_weights_in_the_manifest(run, tmp_path, monkeypatch):
    bundled = tmp_path / "weights"
    monkeypatch.setattr(bundle, "BUNDLED_DIR", bundled)
    monkeypatch.setattr(bundle, "MANIFEST", bundled / "manifest.json")
    entry = bundle.bundle(run)
    copied = bundled / "attention-unet.pt"
    assert entry["sha256"] == hashing.sha256_of(copied) == hashing.sha256_of(run / "best.pt")
    manifest = json.loads((bundled / "manifest.json").read_text())["attention-unet"]
    assert manifest == entry
    assert manifest["training_seconds"] == 21.8 and manifest["training_dataset"] == "paired scans"
    assert manifest["validation_reference_class"] == {"03": "3D", "04": "thick-slice"}
    assert (manifest["grid"], manifest["seed"], manifest["best_epoch"]) == ("1mm", 3, 2)
    assert (manifest["curve_top_floor"], manifest["borrow_from_sha256"], manifest["borrow"],
            manifest["training_pairs"]) == (1.25, "ab" * 32, "shared", ["02"])
    model, meta, digest = load_weights(copied, expected_sha256=manifest["sha256"])
    assert digest == manifest["sha256"] and meta["formulation"] == "enhancement"


def test_model_card_table_gives_each_subject_and_each_class(run):
    table = bundle.markdown_table(json.loads((run / "summary.json").read_text()))
    lines = table.strip().splitlines()
    assert lines[2].startswith("| sub-03 | 3D | 20.00 / 20.50 | 21.00 / 21.50")
    assert lines[2].endswith("| 0.900 |")  # the weakest axis
    assert "| **mean** (n=1) | thick-slice | 22.00 / 22.50" in table
    assert lines[-1].startswith("| **mean** (n=2) | all | 21.00 / 21.50")


def test_bundle_records_a_fitted_blood_pool_level_only_for_the_weights_it_was_fitted_on(
        run, tmp_path, monkeypatch):
    bundled = tmp_path / "weights"
    monkeypatch.setattr(bundle, "BUNDLED_DIR", bundled)
    monkeypatch.setattr(bundle, "MANIFEST", bundled / "manifest.json")
    record = {"grey_matter_enhancement": 0.0125, "weights_sha256": hashing.sha256_of(
        run / "best.pt"), "pairs": [{"subject": "02", "own_level": 0.0125}]}
    (run / "blood_pool.json").write_text(json.dumps(record))
    entry = bundle.bundle(run)
    assert (entry["grey_matter_enhancement"], entry["grey_matter_enhancement_pairs"]) == (
        0.0125, ["02"])
    (run / "blood_pool.json").write_text(json.dumps({**record, "weights_sha256": "00" * 32}))
    before = (bundled / "attention-unet.pt").read_bytes(), (bundled / "manifest.json").read_text()
    with pytest.raises(ValueError, match="fitted on other weights"):
        bundle.bundle(run)
    assert before == ((bundled / "attention-unet.pt").read_bytes(),
                      (bundled / "manifest.json").read_text())  # nothing half-bundled
