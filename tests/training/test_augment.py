"""training.augment: crops inside the brain, geometry shared by the three volumes, intensity
changes on the input only."""
import torch

from gado_bids.training.augment import augment, random_crop_origin


def _volumes():
    generator = torch.Generator().manual_seed(0)
    mask = torch.zeros(1, 32, 32, 32)
    mask[:, 8:24, 8:24, 8:24] = 1
    mask[:, 4:8, 12:20, 10:14] = 1  # not symmetric: a flip or a turn shows
    target = mask * (0.3 + 0.4 * torch.rand(mask.shape, generator=generator))
    return target.clone(), target, mask


def test_crops_are_centred_on_brain_and_stay_in_the_volume():
    mask = torch.zeros(40, 40, 40, dtype=torch.bool)
    mask[30:35, 2:6, 20:22] = True
    generator = torch.Generator().manual_seed(1)
    for _ in range(50):
        origin = random_crop_origin(mask, 16, generator)
        assert ((origin >= 0) & (origin <= 24)).all()
        crop = mask[origin[0]:origin[0] + 16, origin[1]:origin[1] + 16, origin[2]:origin[2] + 16]
        assert crop.any()


def test_strength_zero_only_flips_and_keeps_input_equal_to_target():
    ce, target, mask = _volumes()
    for seed in range(6):
        out_ce, out_target, out_mask = augment(ce, target, mask, torch.Generator().manual_seed(
            seed), strength=0.0)
        assert torch.equal(out_ce, out_target)
        assert torch.equal(out_mask, mask) or torch.equal(out_mask, mask.flip(-3))


def test_intensity_changes_touch_the_input_only_and_geometry_all_three():
    ce, target, mask = _volumes()
    changed_intensity = moved = 0
    for seed in range(10):
        out_ce, out_target, out_mask = augment(ce, target, mask,
                                               torch.Generator().manual_seed(seed))
        assert out_ce.min() >= 0 and out_ce.max() <= 1
        assert set(out_mask.unique().tolist()) <= {0.0, 1.0}
        # the target is only resampled, never re-scaled: its values stay within the original's
        assert out_target.max() <= target.max() + 1e-5
        changed_intensity += not torch.allclose(out_ce, out_target, atol=1e-3)
        flipped = torch.equal(out_mask, mask.flip(-3))
        moved += not (torch.equal(out_mask, mask) or flipped)
        # the same geometry: the target's brain and the resampled mask coincide
        brain = out_target > 0.15
        dice = 2 * (brain & (out_mask > 0)).sum() / (brain.sum() + (out_mask > 0).sum())
        assert dice > 0.95, dice
    assert changed_intensity >= 8 and moved >= 3
