"""What a training run sees (gado_bids.training.data and simulated_enhancement): the split by
reference class, simulated enhancement maps and inputs."""
import pytest
import torch


def test_validation_split_holds_out_both_reference_classes():
    from gado_bids.training.data import split_subjects
    subjects = [f"{n:03d}" for n in range(1, 21)]
    classes = {s: "3D" if int(s) <= 6 else "thick-slice" for s in subjects}
    train, validation = split_subjects(subjects, 8, 4, classes=classes, n_3d=4)
    assert len(validation) == 8 and sum(classes[s] == "3D" for s in validation) == 4
    assert sorted(train + validation) == subjects
    assert split_subjects(subjects, 8, 4, classes=classes, n_3d=4)[1] == validation  # seeded
    assert split_subjects(subjects, 8, 5, classes=classes, n_3d=4)[1] != validation
    with pytest.raises(ValueError, match="3D reference"):
        split_subjects(subjects, 8, 4, classes=classes, n_3d=6)  # would leave none to train


def test_simulated_enhancement_maps_and_inputs(tmp_path):
    """Maps are reproducible per seed, lie where gadolinium shows (dura outside the brain, vessels,
    plexus and a lesion rim inside), and a simulated input is the target plus the scaled map."""
    import numpy as np
    from gado_bids.preprocessing import grids
    from gado_bids.preprocessing.template import template_brain_mask
    from gado_bids.training import simulated_enhancement as simulated
    maps = simulated.load_or_make_maps(tmp_path / "maps.npz", seed=5, n_maps=2)
    assert maps.shape == (2, *grids.CROP_SHAPE) and maps.dtype == np.uint8
    assert np.array_equal(simulated.load_or_make_maps(tmp_path / "maps.npz", seed=5), maps)
    assert np.array_equal(simulated.make_maps(1, seed=5)[0], maps[0])  # the seed decides
    assert not np.array_equal(simulated.make_maps(1, seed=6)[0], maps[0])
    brain = grids.crop_template_volume(template_brain_mask().get_fdata()) > 0
    for weights in maps:
        enhanced = weights > 0.3 * 255
        assert 5_000 < enhanced.sum() < 0.05 * brain.sum() * 3
        outside, inside = (enhanced & ~brain).sum(), (enhanced & brain).sum()
        assert outside > 0.5 * enhanced.sum()  # the dura, hugging the brain
        assert inside > 3_000  # veins, choroid plexus, lesion rim
    target = torch.full((1, 8, 8, 8), 0.5)
    weights = torch.zeros(1, 8, 8, 8)
    weights[0, 2:4, 2:4, 2:4] = 1.0
    weights[0, 5, 5, 5] = 0.5
    simulated_input = simulated.simulate_ce(target, weights, 0.6)
    assert torch.allclose(simulated_input[weights == 0], target[weights == 0])
    assert torch.allclose(simulated_input[0, 2:4, 2:4, 2:4], torch.tensor(1.0))  # clipped
    assert simulated_input[0, 5, 5, 5].item() == pytest.approx(0.8)


@pytest.mark.parametrize("on_ce", [0.0, 1.0])
def test_simulated_inputs_are_built_on_the_chosen_scan(on_ce):
    """A simulated training input is its base scan (target or ce) plus enhancement where the map
    is non-zero, and nothing else; the target is left untouched."""
    import numpy as np
    from gado_bids.training.cache import TrainingPair
    from gado_bids.training.config import TrainConfig
    from gado_bids.training.data import sample_batch
    rng = np.random.default_rng(0)
    ce = rng.uniform(0.2, 0.4, (32, 32, 32)).astype(np.float32)
    target = rng.uniform(0.2, 0.4, (32, 32, 32)).astype(np.float32)
    pair = TrainingPair("x", "01", ce, target, np.ones((32, 32, 32), bool), (0.5, 0.0, 1.2))
    maps = torch.zeros(1, 32, 32, 32, dtype=torch.uint8)
    maps[0, 10:14, 10:14, 10:14] = 255
    config = TrainConfig(crop_size=32, augmentation=0.0, simulated_fraction=1.0,
                         simulated_on_ce=on_ce)
    inputs, targets, _, sigmas, _, _, _ = sample_batch(
        [pair], config, torch.Generator().manual_seed(0), torch.device("cpu"), maps)
    assert sigmas == [pair.target_blur if on_ce else (0.0, 0.0, 0.0)]  # pure removal: sharp
    flipped = not torch.allclose(targets[0, 0], torch.from_numpy(target))  # the random flip
    base = torch.from_numpy(ce if on_ce else target)
    if flipped:
        base, maps = base.flip(0), maps.flip(1)
    added = inputs[0, 0] - base
    enhanced = maps[0] > 0
    assert torch.allclose(added[~enhanced], torch.tensor(0.0), atol=1e-6)
    from gado_bids.training.simulated_enhancement import AMPLITUDE_RANGE
    low, high = AMPLITUDE_RANGE
    assert low - 1e-6 <= added[enhanced].min() and added[enhanced].max() <= high + 1e-6
    assert torch.allclose(added[enhanced], added[enhanced][0])  # one amplitude per map


@pytest.mark.parametrize("loss_mask", ["brain", "brain+enhancement"])
def test_a_simulated_sample_can_be_scored_where_it_was_enhanced_outside_the_brain(loss_mask):
    """Enhancement drawn across the brain mask's edge (the dura shell): with
    "brain+enhancement" the sample's loss mask covers it, with "brain" only the brain; a real
    sample's mask is the brain mask either way."""
    import numpy as np
    from gado_bids.training.cache import TrainingPair
    from gado_bids.training.config import TrainConfig
    from gado_bids.training.data import sample_batch
    brain = np.zeros((32, 32, 32), bool)
    brain[:, :, :20] = True
    volume = np.where(brain, 0.4, 0.0).astype(np.float32)
    pair = TrainingPair("x", "01", volume, volume, brain)
    maps = torch.zeros(1, 32, 32, 32, dtype=torch.uint8)
    maps[0, :, :, 18:23] = 255  # 2 slices inside the brain, 3 outside
    expected = torch.from_numpy(brain).float()
    if loss_mask == "brain+enhancement":
        expected[:, :, 18:23] = 1.0
    for fraction, wanted in ((1.0, expected), (0.0, torch.from_numpy(brain).float())):
        config = TrainConfig(crop_size=32, augmentation=0.0, simulated_fraction=fraction,
                             simulated_loss_mask=loss_mask)
        masks = sample_batch([pair], config, torch.Generator().manual_seed(0),
                             torch.device("cpu"), maps)[2]
        assert torch.equal(masks[0, 0], wanted)


def test_tissue_cores_are_cropped_and_flipped_with_their_sample():
    """The tissue term compares means inside the template's cores: a core crop must cover the
    same voxels as its sample's crop, through the random left-right flip too."""
    import numpy as np
    from gado_bids.training.cache import TrainingPair
    from gado_bids.training.config import TrainConfig
    from gado_bids.training.data import sample_batch
    rng = np.random.default_rng(0)
    core = rng.random((40, 40, 40)) > 0.5
    target = np.where(core, 0.5, 0.3).astype(np.float32)
    pair = TrainingPair("x", "01", target, target, np.ones(core.shape, bool))
    cores = np.stack([core, ~core])
    config = TrainConfig(crop_size=32, augmentation=0.0)
    generator = torch.Generator().manual_seed(0)
    for _ in range(6):  # both flip outcomes among them
        _, targets, _, _, _, _, crops = sample_batch([pair], config, generator,
                                                     torch.device("cpu"), tissue_cores=cores)
        assert crops.shape == (1, 2, 32, 32, 32)
        assert torch.equal(crops[0, 0] > 0, targets[0, 0] == 0.5)
        assert torch.equal(crops[0, 1] > 0, targets[0, 0] == 0.3)
    assert sample_batch([pair], config, generator, torch.device("cpu"))[6] is None


def test_removed_enhancement_is_reused_only_from_the_same_weights(tmp_path):
    """A resumed run reads the saved maps back; maps made by other --init weights are not
    reused (here the model is absent, so remaking them fails loudly)."""
    from types import SimpleNamespace
    import numpy as np
    from gado_bids.training.data import removed_enhancement
    path = tmp_path / "removed_enhancement.npz"
    np.savez_compressed(path, weights_sha256=np.array("abc"), a=np.ones(3, np.float16))
    pairs = [SimpleNamespace(name="a")]
    assert removed_enhancement(None, pairs, "cpu", path, "abc")["a"].tolist() == [1, 1, 1]
    with pytest.raises(AttributeError):
        removed_enhancement(None, pairs, "cpu", path, "other weights")


def test_a_simulated_rim_hugs_the_pairs_own_brain_and_is_scored_against_background():
    """simulated_rim: a rim 1-4 voxels wide just outside the pair's brain mask is added to the
    input, the target stays background there, and the loss mask covers it; without the option
    the batches are drawn exactly as before (the bundled recipes stay reproducible)."""
    import numpy as np
    from scipy import ndimage
    from gado_bids.training import simulated_enhancement
    from gado_bids.training.cache import TrainingPair
    from gado_bids.training.config import TrainConfig
    from gado_bids.training.data import sample_batch
    brain = np.zeros((32, 32, 32), bool)
    brain[6:26, 6:26, 6:26] = True
    volume = np.where(brain, 0.4, 0.0).astype(np.float32)
    pair = TrainingPair("x", "01", volume, volume, brain)
    maps = torch.zeros(1, 32, 32, 32, dtype=torch.uint8)  # no template enhancement at all
    config = TrainConfig(crop_size=32, augmentation=0.0, simulated_fraction=1.0,
                         simulated_rim=1.0)
    within_4 = ~brain & (ndimage.distance_transform_edt(~brain) <= np.sqrt(16.5))
    widths = set()
    generator = torch.Generator().manual_seed(0)
    for _ in range(12):
        inputs, targets, masks = sample_batch([pair], config, generator, torch.device("cpu"),
                                              maps)[:3]
        added = (inputs[0, 0] - targets[0, 0]).numpy()
        rim = added > 0
        assert rim.any() and not (rim & brain).any() and not (rim & ~within_4).any()
        assert rim[5, 15, 15]  # the rim touches the brain's face
        assert np.all(targets[0, 0].numpy()[rim] == 0)  # the target is background there
        assert torch.equal(masks[0, 0] > 0, torch.from_numpy(brain | rim))
        low, high = simulated_enhancement.AMPLITUDE_RANGE
        assert added[rim].max() <= high + 1e-6
        widths.add(int(rim[:6, 15, 15].sum()))
    assert len(widths) > 1  # the rim's width varies
    plain = TrainConfig(crop_size=32, augmentation=0.0, simulated_fraction=0.5)
    off = TrainConfig(crop_size=32, augmentation=0.0, simulated_fraction=0.5, simulated_rim=0.0)
    first, second = (sample_batch([pair] * 2, c, torch.Generator().manual_seed(3),
                                  torch.device("cpu"), maps) for c in (plain, off))
    assert torch.equal(first[0], second[0]) and torch.equal(first[2], second[2])


def test_strip_rim_is_a_ball_shell_of_the_given_width():
    from gado_bids.training.simulated_enhancement import strip_rim
    mask = torch.zeros(1, 21, 21, 21)
    mask[0, 10, 10, 10] = 1
    rim = strip_rim(mask, 2)[0]
    assert not rim[10, 10, 10] and rim[12, 10, 10] and not rim[13, 10, 10]
    assert rim[11, 11, 10] and not rim[12, 12, 10]  # a ball, not a cube
    assert int(rim.sum()) == 32  # 33 voxels within radius 2 (plus 0.5 of slack), less the centre
