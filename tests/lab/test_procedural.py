import numpy as np
import torch

from ganprior_core.lab import procedural


def test_same_seed_same_image_and_different_seeds_differ():
    first, again = procedural.facade_image(123), procedural.facade_image(123)
    assert torch.equal(first, again)
    assert not torch.equal(first, procedural.facade_image(124))


def test_image_convention():
    image = procedural.facade_image(7)
    assert image.shape == (3, 64, 64) and image.dtype == torch.float32
    assert image.min() >= 0 and image.max() <= 1


def test_batch_is_the_stacked_single_images():
    seeds = [5, 0, 999_999]
    batch = procedural.facade_batch(seeds)
    assert batch.shape == (3, 3, 64, 64)
    for image, seed in zip(batch, seeds):
        assert torch.equal(image, procedural.facade_image(seed))


def test_evaluation_seeds_never_meet_training_seeds():
    train = procedural.train_seed_range()
    first, second = procedural.evaluation_seeds(100), procedural.evaluation_seeds(100, offset=100)
    assert len(set(first)) == 100 and not set(first) & set(second)
    assert all(seed not in train for seed in first + second)
    assert min(first) >= train.stop


def test_scenes_vary_in_layout_not_only_colour():
    # A prior learns the grid only if grids differ: the dark window pixels must move around.
    images = procedural.facade_batch(range(32)).numpy()
    dark = images.mean(axis=1) < 0.3
    assert len({mask.tobytes() for mask in dark}) == 32
    assert np.ptp(images.mean(axis=(1, 2, 3))) > 0.1
