from dataclasses import replace

import pytest
import torch

from ganprior_core.lab.dip import DIPConfig, HourglassNet, dip_inpaint, dip_restore
from ganprior_core.method.degradations import HALF_GREY_LEVEL, Downsample, Gray
from ganprior_core.optimize import Progress

pytestmark = pytest.mark.usefixtures("one_thread")


FAST = DIPConfig(steps=25, channels=16, preview_every=10)


def _problem(height=16, width=16):
    rows = torch.linspace(0, 1, height)[:, None].expand(height, width)
    cols = torch.linspace(0, 1, width)[None, :].expand(height, width)
    image = torch.stack([rows, cols, 0.5 * (rows + cols)])
    hole = torch.zeros(height, width)
    hole[4:10, 5:11] = 1
    return image, hole


def test_fits_known_pixels_and_keeps_them_in_the_composite():
    image, hole = _problem()
    result = dip_inpaint(image, hole, FAST, seed=0)
    assert len(result.loss_history) == FAST.steps
    assert result.loss_history[-1] < 0.3 * result.loss_history[0]
    assert result.output.shape == (3, 16, 16)
    assert result.output.min() >= 0 and result.output.max() <= 1
    known = hole == 0
    assert torch.equal(result.composite[:, known], image[:, known])
    assert torch.equal(result.composite[:, ~known], result.output[:, ~known])


def test_same_seed_same_result_other_seed_differs_and_global_rng_untouched():
    image, hole = _problem()
    config = replace(FAST, steps=4)
    rng_before = torch.random.get_rng_state()
    first = dip_inpaint(image, hole, config, seed=3)
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    second = dip_inpaint(image, hole, config, seed=3)
    other = dip_inpaint(image, hole, config, seed=4)
    assert torch.equal(first.output, second.output)
    assert first.loss_history == second.loss_history
    assert not torch.equal(first.output, other.output)


def test_progress_every_step_with_previews_and_cancel():
    image, hole = _problem()
    seen: list[Progress] = []
    dip_inpaint(image, hole, replace(FAST, steps=10, preview_every=4), seed=0, callback=seen.append)
    assert [p.step for p in seen] == list(range(1, 11))
    assert [p.step for p in seen if p.preview is not None] == [4, 8, 10]
    assert all(p.preview.shape == (3, 16, 16) for p in seen if p.preview is not None)

    class Stop(Exception):
        pass

    def stop_at_three(progress):
        if progress.step == 3:
            raise Stop

    with pytest.raises(Stop):
        dip_inpaint(image, hole, replace(FAST, steps=50), seed=0, callback=stop_at_three)


def test_odd_sizes_reconstruction_and_bf16():
    image, _ = _problem(15, 13)
    result = dip_inpaint(image, None, replace(FAST, steps=3, precision="bf16"), seed=0)
    assert result.output.shape == (3, 15, 13)
    assert torch.equal(result.composite, image)  # nothing is a hole: every pixel is the input's


def test_size_scaling_and_network_shape():
    config = DIPConfig()
    assert config.channels_for(512, 512) == 128  # Ulyanov et al.'s own setting
    assert config.channels_for(64, 64) == 32
    assert config.levels_for(64, 64) == 5
    assert config.levels_for(16, 16) == 3  # the deepest map stays at least 2x2
    net = HourglassNet(32, 8, 4, levels=3, upsample="bilinear")
    assert net(torch.rand(1, 32, 16, 16)).shape == (1, 3, 16, 16)
    with pytest.raises(ValueError, match="upsample"):
        dip_inpaint(*_problem(), replace(FAST, upsample="cubic"))


def test_restore_fits_through_the_operator_and_its_gradient_reaches_the_network(monkeypatch):
    image, _ = _problem()
    degradation = Downsample(2, "area")
    observation = degradation.observe(image[None])[0]
    gradients = []
    step = torch.optim.Adam.step

    def record(self, *args, **kwargs):
        gradients.append(sum(float(p.grad.abs().sum()) for group in self.param_groups
                             for p in group["params"] if p.grad is not None))
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", record)
    result = dip_restore(observation, degradation, FAST, seed=0)
    assert len(gradients) == FAST.steps and min(gradients) > 0
    assert result.output.shape == result.composite.shape == (3, 16, 16)
    assert result.loss_history[-1] < 0.3 * result.loss_history[0]
    # The loss is the observation's: the first step's is the seeded untrained network's image,
    # downsampled, against the low-resolution input.
    first = dip_restore(observation, degradation, replace(FAST, steps=1, input_noise_std=0), seed=0)
    torch.manual_seed(0)
    untrained = HourglassNet(FAST.input_channels, 16, FAST.skip_channels, FAST.levels_for(16, 16),
                             FAST.upsample)
    net_input = torch.rand(1, FAST.input_channels, 16, 16,
                           generator=torch.Generator().manual_seed(0)) * FAST.input_scale
    with torch.no_grad():
        expected = ((degradation.observe(untrained(net_input)) - observation[None]) ** 2).mean()
    assert first.loss_history[0] == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.parametrize("size", [(16, 16), (12, 20)])
def test_restore_area_sr_result_downsamples_to_the_observation(size):
    generator = torch.Generator().manual_seed(sum(size))
    observation = torch.rand(3, size[0] // 2, size[1] // 2, generator=generator)
    degradation = Downsample(2, "area")
    result = dip_restore(observation, degradation, replace(FAST, steps=3), seed=1)
    assert result.composite.shape == (3, *size)
    assert torch.allclose(degradation.observe(result.composite[None])[0], observation, atol=1e-6)
    assert not torch.equal(result.composite, result.output)  # the projection did change it


def test_restore_colorization_keeps_the_luma_and_takes_the_networks_chroma():
    image, _ = _problem()
    gray = Gray()
    observation = gray.observe(image[None])[0]
    result = dip_restore(observation, gray, replace(FAST, steps=3), seed=2)
    assert result.composite.shape == (3, 16, 16)
    assert (gray.observe(result.composite[None])[0] - observation).abs().max() <= HALF_GREY_LEVEL
    chroma = result.composite - gray.observe(result.composite[None])[0]
    assert chroma.abs().max() > 0  # not the gray image: the network's colour is kept


def test_restore_refuses_an_observation_of_the_wrong_shape():
    with pytest.raises(ValueError, match="observation must be"):
        dip_restore(torch.rand(3, 8, 8), Gray(), FAST)
    with pytest.raises(ValueError, match="degradation must be a Degradation"):
        dip_restore(torch.rand(3, 8, 8), "area", FAST)
