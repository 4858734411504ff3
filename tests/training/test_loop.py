"""The training loop end to end (CPU, small): the loss goes down, a killed run resumes exactly,
training from the cache alone with simulated pairs and a time limit."""
import json
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from gado_bids.model.networks import build_model


def test_a_few_steps_lower_the_loss(demo_cache):
    """On a demo crop (ventricles with choroid plexus, dura, sinus), 25 Adam steps learn."""
    from gado_bids.training.cache import load_pair
    torch.manual_seed(0)
    model = build_model("attention-unet", 8, "enhancement")
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    pair = load_pair(demo_cache["paths"][0])
    box = (slice(32, 96), slice(32, 96), slice(48, 80))
    x = torch.from_numpy(pair.ce[box].copy())[None, None]
    y = torch.from_numpy(pair.target[box].copy())[None, None]
    losses = []
    for _ in range(25):
        loss = torch.nn.functional.mse_loss(model(x), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert min(losses[-5:]) < 0.93 * losses[0], losses


def _train(cache_root, work, epochs, wait_for_epoch=None):
    command = [sys.executable, "-m", "gado_bids.cli.train", str(cache_root["bids"]), str(work),
               "--epochs", str(epochs), "--crop_size", "32", "--width", "4", "--n_validation",
               "1", "--nthreads", "1", "--seed", "3", "--participant_label", "01", "02",
               "--validate_every", "4"]  # once, at the end: the resume is what is checked
    if wait_for_epoch is None:
        return subprocess.run(command, capture_output=True, text=True, timeout=600)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    log = work / "training_log.tsv"
    deadline = time.time() + 300
    while time.time() < deadline:
        if log.exists() and len(log.read_text().splitlines()) > wait_for_epoch:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return process


def test_training_resumes_exactly_after_a_kill(demo_cache, tmp_path):
    straight = tmp_path / "straight"
    interrupted = tmp_path / "interrupted"
    for work in (straight, interrupted):
        shutil.copytree(demo_cache["work"] / "cache", work / "cache")
    result = _train(demo_cache, straight, epochs=4)
    assert result.returncode == 0, result.stderr
    assert "validation (best epoch" in result.stdout

    _train(demo_cache, interrupted, epochs=4, wait_for_epoch=1)  # SIGKILL after epoch >= 1
    done = len((interrupted / "training_log.tsv").read_text().splitlines()) - 1
    assert 1 <= done < 4, "the kill came too late to test resuming"
    resumed = _train(demo_cache, interrupted, epochs=4)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stderr and f"epoch {done}" in resumed.stderr
    log = (interrupted / "training_log.tsv").read_text().splitlines()
    assert [row.split("\t")[0] for row in log[1:]] == ["1", "2", "3", "4"]
    a = torch.load(straight / "checkpoints" / "last.pt", weights_only=False)
    b = torch.load(interrupted / "checkpoints" / "last.pt", weights_only=False)
    assert a["step"] == b["step"]
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    split = json.loads((straight / "split.json").read_text())
    assert len(split["validation"]) == 1 and len(split["train"]) == 1


def test_training_from_the_cache_alone_with_simulated_pairs_and_a_time_limit(demo_cache, tmp_path):
    """What a GPU machine without ANTs runs: no BIDS dataset, only the cache and the maps."""
    from gado_bids.training import simulated_enhancement as simulated
    work = tmp_path / "work"
    shutil.copytree(demo_cache["work"] / "cache", work / "cache")
    simulated.load_or_make_maps(work / "enhancement_maps.npz", seed=3, n_maps=2)
    command = [sys.executable, "-m", "gado_bids.cli.train", str(tmp_path / "not-here"), str(work),
               "--pairs_from_cache", "--simulated_enhancement", "1", "--simulated_on_ce", "0.5",
               "--max_minutes", "0.001",
               "--epochs", "6", "--crop_size", "32", "--width", "4", "--n_validation", "1",
               "--nthreads", "1", "--seed", "3"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "100% of training inputs get simulated enhancement (2 maps)" in result.stderr
    assert "time limit 0.0 min: 2 epochs instead of 6" in result.stderr
    rows = (work / "training_log.tsv").read_text().splitlines()[1:]
    assert [row.split("\t")[0] for row in rows] == ["1", "2"]
    summary = json.loads((work / "summary.json").read_text())
    assert summary["config"]["epochs"] == 2 and summary["steps"] == 2
    assert summary["config"]["simulated_on_ce"] == 0.5
    assert "--pairs_from_cache" in summary["command"]
    empty = subprocess.run(command[:4] + [str(tmp_path / "empty")] + command[5:],
                           capture_output=True, text=True, timeout=600)
    assert empty.returncode == 64 and "no cached pairs" in empty.stderr
    wrong = subprocess.run(command + ["--simulated_on_ce", "1.5"], capture_output=True,
                           text=True, timeout=600)
    assert wrong.returncode == 64 and "between 0 and 1" in wrong.stderr


def _toy_pairs_and_init(tmp_path) -> list:
    """Three small synthetic pairs, and an untrained enhancement network as tmp_path/init.pt."""
    import numpy as np
    from gado_bids.model.weights import save_weights
    from gado_bids.training.cache import TrainingPair
    torch.manual_seed(0)
    save_weights(build_model("attention-unet", 4, "enhancement"), tmp_path / "init.pt", {
        "model": "attention-unet", "width": 4, "formulation": "enhancement"})
    rng = np.random.default_rng(0)
    pairs = []
    for subject in ("01", "02", "03"):
        target = rng.uniform(0.2, 0.5, (32, 32, 32)).astype(np.float32)
        ce = np.clip(target * 1.1 + 0.05 * (rng.random(target.shape) > 0.95), 0, 1)
        pairs.append(TrainingPair(f"sub-{subject}", subject, ce.astype(np.float32), target,
                                  np.ones(target.shape, bool)))
    return pairs


def test_curve_top_floor_floors_the_initial_weights_curve_and_is_saved(tmp_path):
    """--curve_top_floor on --init weights fitted without it: the run trains the floored curve,
    and its best.pt loads floored, so the product runs what was validated."""
    from gado_bids.model.weights import load_weights
    from gado_bids.training.config import TrainConfig
    from gado_bids.training.loop import train
    pairs = _toy_pairs_and_init(tmp_path)
    assert not load_weights(tmp_path / "init.pt")[0].intensity_curve.top_floor
    config = TrainConfig(init=str(tmp_path / "init.pt"), curve_top_floor=1.25, epochs=1,
                         crop_size=32, validation_subjects=["03"], freeze_curve=True)
    summary = train(pairs, tmp_path / "run", config, torch.device("cpu"))
    model, meta, _ = load_weights(tmp_path / "run" / "best.pt")
    assert meta["curve_top_floor"] == model.intensity_curve.top_floor == 1.25
    assert summary["config"]["curve_top_floor"] == 1.25
    with pytest.raises(ValueError, match="enhancement formulation"):
        train(pairs, tmp_path / "direct", TrainConfig(curve_top_floor=2.0, formulation="direct",
                                                      epochs=1, crop_size=32),
              torch.device("cpu"))


def test_a_frozen_curve_stays_as_the_initial_weights_have_it(tmp_path):
    """freeze_curve: a fine-tuning run trains the enhancement map and leaves the intensity curve
    of its --init weights untouched; without it both move."""
    from gado_bids.model.weights import load_weights
    from gado_bids.training.config import TrainConfig
    from gado_bids.training.loop import train
    pairs = _toy_pairs_and_init(tmp_path)

    def trained_state(freeze):
        config = TrainConfig(init=str(tmp_path / "init.pt"), freeze_curve=freeze, epochs=2,
                             crop_size=32, validation_subjects=["03"], learning_rate=1e-2)
        work = tmp_path / f"frozen-{freeze}"
        train(pairs, work, config, torch.device("cpu"))
        return torch.load(work / "checkpoints" / "last.pt", weights_only=False)["model"]
    initial = load_weights(tmp_path / "init.pt")[0].state_dict()
    for freeze in (True, False):
        state = trained_state(freeze)
        curve_moved = any(not torch.equal(state[k].float(), initial[k].float())
                          for k in initial if k.startswith("intensity_curve"))
        map_moved = any(not torch.equal(state[k].float(), initial[k].float())
                        for k in initial if not k.startswith("intensity_curve"))
        assert map_moved and curve_moved != freeze, (freeze, curve_moved)


def test_borrow_from_starts_a_scratch_network_of_another_architecture_from_its_layers(tmp_path):
    """--borrow_from: a res-unet trained from scratch starts from (and, frozen, keeps) the
    intensity curve of attention U-Net weights and takes their top floor (borrow "curve"), or
    from every layer the two share, its residual modules passing their input on (borrow
    "shared"); its best.pt records the source's SHA-256. --init weights with it, or a direct
    network as its source, are refused."""
    from gado_bids.model.networks import ResidualModule
    from gado_bids.model.weights import load_weights, save_weights
    from gado_bids.training.config import TrainConfig
    from gado_bids.training.loop import _initial_model, train
    pairs = _toy_pairs_and_init(tmp_path)
    donor = build_model("attention-unet", 4, "enhancement", curve_top_floor=1.25)
    with torch.no_grad():
        donor.intensity_curve.raw_slopes.copy_(torch.linspace(0.5, -1.0, 16))
        donor.head.weight.normal_()
    digest = save_weights(donor, tmp_path / "donor.pt", {
        "model": "attention-unet", "width": 4, "formulation": "enhancement",
        "curve_top_floor": 1.25})
    config = TrainConfig(model="res-unet", width=4, borrow_from=str(tmp_path / "donor.pt"),
                         freeze_curve=True, epochs=1, crop_size=32, validation_subjects=["03"])
    summary = train(pairs, tmp_path / "run", config, torch.device("cpu"))
    model, meta, _ = load_weights(tmp_path / "run" / "best.pt")
    assert meta["model"] == "res-unet" and meta["borrow_from_sha256"] == digest
    assert model.intensity_curve.top_floor == meta["curve_top_floor"] == 1.25
    donor = load_weights(tmp_path / "donor.pt")[0]
    for name, value in model.intensity_curve.state_dict().items():
        assert torch.equal(value, donor.intensity_curve.state_dict()[name]), name
    assert not torch.equal(model.head.weight, donor.head.weight)  # the curve only
    assert (summary["borrow_from_sha256"], summary["borrow"]) == (digest, "curve")

    shared, _, borrowed = _initial_model(TrainConfig(model="res-unet", width=4, borrow="shared",
                                           borrow_from=str(tmp_path / "donor.pt")),
                               torch.device("cpu"))
    assert borrowed == {"borrow_from_sha256": digest, "borrow": "shared"}
    assert torch.equal(shared.head.weight, donor.head.weight)
    assert torch.equal(shared.encoders[2][0][0].weight, donor.encoders[2][0][0].weight)
    residual = [m for m in shared.modules() if isinstance(m, ResidualModule)]
    assert residual and all(not m.body[-1].weight.any() for m in residual)
    features = torch.randn(1, 4, 8, 8, 8).abs()
    assert torch.equal(residual[0](features), features)  # non-negative input passes unchanged

    with pytest.raises(ValueError, match="bring their own"):
        train(pairs, tmp_path / "init", TrainConfig(init=str(tmp_path / "init.pt"),
                                                    borrow_from=str(tmp_path / "donor.pt"),
                                                    epochs=1, crop_size=32),
              torch.device("cpu"))
    save_weights(build_model("res-unet", 4, "direct"), tmp_path / "direct.pt",
                 {"model": "res-unet", "width": 4, "formulation": "direct"})
    with pytest.raises(ValueError, match="without an intensity curve"):
        train(pairs, tmp_path / "from-direct", TrainConfig(
            model="res-unet", width=4, borrow_from=str(tmp_path / "direct.pt"), epochs=1,
            crop_size=32), torch.device("cpu"))
