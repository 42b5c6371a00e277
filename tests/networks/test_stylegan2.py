"""The StyleGAN2 network against the independent float64 reference (tests/stylegan2_reference.py).

Random NVIDIA-named state dicts (nothing left at zero: noise strengths, biases, w_avg all drawn)
are loaded with strict=True into small networks; every comparison is float32 network against
float64 reference, max abs error <= 1e-4.
"""
from __future__ import annotations

import json
import math

import pytest
import torch

from ganprior_core.networks.stylegan2 import StyleGAN2Config, StyleGAN2Generator
from tests import stylegan2_reference as ref

TOL = 1e-4
# (config, seed): no clamp; a clamp that clips (asserted below); NVIDIA's conv_clamp 256.
PLANS = {
    "r16": (StyleGAN2Config(16, (32, 16, 8), z_dim=24, w_dim=20, mapping_layers=3), 11),
    "r32_clip": (StyleGAN2Config(32, (16, 16, 8, 8), z_dim=16, w_dim=16, mapping_layers=2,
                                 conv_clamp=0.6), 12),
    "r16_clamp256": (StyleGAN2Config(16, (8, 12, 8), z_dim=8, w_dim=12, mapping_layers=2,
                                     conv_clamp=256.0), 13),
}
_CACHE: dict[str, tuple] = {}


def plan(name: str) -> tuple[StyleGAN2Config, StyleGAN2Generator, dict]:
    if name not in _CACHE:
        config, seed = PLANS[name]
        state = ref.random_state(config.resolution, list(config.channels), config.z_dim,
                                 config.w_dim, config.mapping_layers, seed)
        net = StyleGAN2Generator(config).eval()
        net.load_state_dict(state, strict=True)
        _CACHE[name] = (config, net, state)
    return _CACHE[name]


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.double() - b.double()).abs().max().item()


def random_ws(config: StyleGAN2Config, n: int = 2, seed: int = 0) -> torch.Tensor:
    """w+ codes: an independent random w per style slot."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, config.num_ws, config.w_dim, generator=g)


def z_batch(config: StyleGAN2Config, n: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, config.z_dim, generator=torch.Generator().manual_seed(seed))


# --- numerical agreement with the reference -----------------------------------------------------

@pytest.mark.parametrize("name", list(PLANS))
@pytest.mark.parametrize("psi,cutoff", [(1.0, None), (0.7, None), (0.7, 3)])
def test_mapping_matches_reference(name, psi, cutoff):
    config, net, state = plan(name)
    z = z_batch(config)
    with torch.no_grad():
        ws = net.mapping(z, psi, cutoff)
    expected = ref.reference_mapping(state, z.double(), psi, cutoff, config.mapping_lr_multiplier)
    assert ws.shape == (2, config.num_ws, config.w_dim)
    assert max_err(ws, expected) <= TOL
    if cutoff is not None:  # slots past the cutoff are untruncated, and do differ
        assert max_err(ws[:, cutoff:], net.mapping(z)[:, cutoff:]) == 0
        assert max_err(ws[:, :cutoff], net.mapping(z)[:, :cutoff]) > 1e-3


@pytest.mark.parametrize("name", list(PLANS))
@pytest.mark.parametrize("noise_mode", ["const", "none"])
@pytest.mark.parametrize("psi,cutoff", [(1.0, None), (0.7, 4)])
def test_forward_from_z_matches_reference(name, noise_mode, psi, cutoff):
    config, net, state = plan(name)
    z = z_batch(config)
    with torch.no_grad():
        image = net(z, truncation_psi=psi, truncation_cutoff=cutoff, noise_mode=noise_mode)
    ws = ref.reference_mapping(state, z.double(), psi, cutoff)
    expected = ref.reference_synthesis(state, ws, noise_mode, config.conv_clamp)
    assert image.shape == (2, 3, config.resolution, config.resolution)
    assert image.dtype == torch.float32
    assert max_err(image, expected) <= TOL
    assert image.std() > 0.05 and max_err(image[0], image[1]) > 0.05  # not trivially constant


@pytest.mark.parametrize("name", list(PLANS))
@pytest.mark.parametrize("noise_mode", ["const", "none"])
def test_wplus_synthesis_matches_reference(name, noise_mode):
    config, net, state = plan(name)
    ws = random_ws(config, n=3)
    with torch.no_grad():
        image = net.synthesis(ws, noise_mode)
    expected = ref.reference_synthesis(state, ws.double(), noise_mode, config.conv_clamp)
    assert max_err(image, expected) <= TOL


@pytest.mark.parametrize("name", list(PLANS))
def test_every_split_matches_reference(name):
    config, net, state = plan(name)
    ws = random_ws(config, seed=5)
    with torch.no_grad():
        full = net.synthesis(ws)
        expected_full = ref.reference_synthesis(state, ws.double(), "const", config.conv_clamp)
        for k in range(1, net.num_layers + 1):
            x, img = net.features(ws, k)
            ref_x, ref_img = ref.reference_features(state, ws.double(), k, "const",
                                                    config.conv_clamp)
            assert x.shape == (2, *net.feature_shape(k)), k
            assert img.shape == (2, *config.skip_image_shape(k)), k
            assert max_err(x, ref_x) <= TOL, k
            assert max_err(img, ref_img) <= TOL, k
            # G2 from G1's output, and from the reference's: both are the whole generator.
            assert max_err(net.synthesize(x, img, ws, k), expected_full) <= TOL, k
            assert max_err(net.synthesize(x, img, ws, k), full) <= 1e-5, k
            from_ref = net.synthesize(ref_x.float(), ref_img.float(), ws, k)
            assert max_err(from_ref, expected_full) <= TOL, k


def test_every_split_without_noise():
    config, net, state = plan("r32_clip")
    ws = random_ws(config, seed=6)
    with torch.no_grad():
        for k in range(1, net.num_layers + 1):
            x, img = net.features(ws, k, noise_mode="none")
            ref_x, ref_img = ref.reference_features(state, ws.double(), k, "none",
                                                    config.conv_clamp)
            assert max_err(x, ref_x) <= TOL and max_err(img, ref_img) <= TOL, k
            image = net.synthesize(x, img, ws, k, noise_mode="none")
            assert max_err(image, net.synthesis(ws, "none")) <= 1e-5, k


def test_small_clamp_actually_clips():
    config, net, state = plan("r32_clip")
    ws = random_ws(config, seed=7).double()
    x, _ = ref.reference_features(state, ws, 2, "const", config.conv_clamp)
    assert (x.abs() == config.conv_clamp).float().mean() > 0.01
    clipped = ref.reference_synthesis(state, ws, "const", config.conv_clamp)
    assert max_err(clipped, ref.reference_synthesis(state, ws, "const", None)) > 0.05


@pytest.mark.parametrize("attribute,broken", [("CONV_UP_PADDING", (2, 3)),
                                              ("SKIP_UP_PADDING", (1, 2)),
                                              ("CONV_UP_FLIP", False)])
def test_agreement_detects_a_wrong_upsampling(monkeypatch, attribute, broken):
    """The comparison can fail: a one-pixel shift of an up-sampling pad, or a conv0 run as
    correlation instead of convolution, puts the reference far outside the tolerance."""
    config, net, state = plan("r16")
    ws = random_ws(config, seed=8)
    with torch.no_grad():
        image = net.synthesis(ws)
    assert max_err(image, ref.reference_synthesis(state, ws.double())) <= TOL
    monkeypatch.setattr(ref, attribute, broken)
    assert max_err(image, ref.reference_synthesis(state, ws.double())) > 100 * TOL


def test_ws_slots_of_each_half():
    """G1 reads exactly split_ws_slots(k)[0], G2 exactly [1]; every slot matters to someone."""
    config, net, _ = plan("r16")
    ws = random_ws(config, seed=9)
    with torch.no_grad():
        for k in range(1, net.num_layers + 1):
            g1_slots, g2_slots = config.split_ws_slots(k)
            x, img = net.features(ws, k)
            image = net.synthesize(x, img, ws, k)
            for slot in range(config.num_ws):
                other = ws.clone()
                other[:, slot] += 1.0
                x2, img2 = net.features(other, k)
                changed = max_err(x2, x) + max_err(img2, img)
                assert (changed > 1e-4) == (slot in g1_slots), (k, slot)
                changed = max_err(net.synthesize(x, img, other, k), image)
                assert (changed > 1e-4) == (slot in g2_slots), (k, slot)


def test_random_noise_is_seeded():
    config, net, _ = plan("r16")
    ws = random_ws(config, seed=10)
    with torch.no_grad():
        a = net.synthesis(ws, "random", torch.Generator().manual_seed(3))
        b = net.synthesis(ws, "random", torch.Generator().manual_seed(3))
        c = net.synthesis(ws, "random", torch.Generator().manual_seed(4))
        const = net.synthesis(ws, "const")
    assert torch.equal(a, b)
    assert max_err(a, c) > 1e-3 and max_err(a, const) > 1e-3
    with pytest.raises(ValueError, match="noise_mode"):
        net.synthesis(ws, "fixed")


def test_synthesize_broadcasts_one_set_of_styles():
    config, net, _ = plan("r16")
    ws = random_ws(config, seed=11)
    with torch.no_grad():
        x, img = net.features(ws, 3)
        one = net.synthesize(x, img, ws[:1], 3)
        repeated = net.synthesize(x, img, ws[:1].expand(2, -1, -1), 3)
    assert torch.allclose(one, repeated)
    with pytest.raises(ValueError, match="features for split 3"):
        net.synthesize(x[:, :-1], img, ws, 3)
    with pytest.raises(ValueError, match="skip image for split 3"):
        net.synthesize(x, None, ws, 3)
    with pytest.raises(ValueError, match=r"ws must be \[N, 6, 20\]"):
        net.features(ws[:, :-1], 3)


# --- the method's needs: gradients, autocast ------------------------------------------------------

def test_gradient_reaches_features_and_styles():
    config, net, _ = plan("r32_clip")
    ws = random_ws(config, seed=12).requires_grad_(True)
    x, img = net.features(ws, 4)
    x = x.detach().requires_grad_(True)
    img = img.detach().requires_grad_(True)
    net.synthesize(x, img, ws, 4).square().mean().backward()
    for grad in (x.grad, img.grad, ws.grad):
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert net.synthesis.b32.conv0.weight.grad.abs().sum() > 0
    net.zero_grad(set_to_none=True)


def test_bf16_autocast_stays_close():
    config, net, _ = plan("r16")
    z = z_batch(config, n=3)
    with torch.no_grad():
        exact = net(z)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            approx = net(z)
            x, img = net.features(net.mapping(z), 3)
            split = net.synthesize(x, img, net.mapping(z), 3)
    assert approx.dtype == torch.float32 and torch.isfinite(approx).all()
    scale = exact.abs().max().item()
    assert max_err(approx, exact) <= 0.05 * scale
    assert max_err(split, exact) <= 0.05 * scale
    assert max_err(approx, exact) > 0  # it did run in bf16


# --- names, shapes, loading ---------------------------------------------------------------------

def nvidia_names_8x8(mapping_layers: int) -> set[str]:
    """Written out by hand from NVIDIA's Generator for an 8x8 generator (c_dim = 0)."""
    names = {"mapping.w_avg", "synthesis.b4.const", "synthesis.b4.resample_filter",
             "synthesis.b8.resample_filter"}
    names |= {f"mapping.fc{i}.{p}" for i in range(mapping_layers) for p in ("weight", "bias")}
    layer = ("weight", "bias", "noise_strength", "noise_const", "resample_filter",
             "affine.weight", "affine.bias")
    rgb = ("weight", "bias", "affine.weight", "affine.bias")
    for prefix in ("synthesis.b4.conv1", "synthesis.b8.conv0", "synthesis.b8.conv1"):
        names |= {f"{prefix}.{p}" for p in layer}
    for prefix in ("synthesis.b4.torgb", "synthesis.b8.torgb"):
        names |= {f"{prefix}.{p}" for p in rgb}
    return names


def test_state_dict_names_are_nvidias():
    config = StyleGAN2Config(8, (8, 4), z_dim=4, w_dim=4, mapping_layers=2)
    assert set(StyleGAN2Generator(config).state_dict()) == nvidia_names_8x8(2)
    assert set(config.expected_shapes()) == nvidia_names_8x8(2)


@pytest.mark.parametrize("config", [PLANS["r16"][0], PLANS["r32_clip"][0],
                                    StyleGAN2Config.official(64, channel_base=512,
                                                             channel_max=32, z_dim=8, w_dim=8,
                                                             mapping_layers=2)])
def test_expected_shapes_are_the_modules(config):
    state = StyleGAN2Generator(config).state_dict()
    expected = config.expected_shapes()
    assert list(expected) == list(state)  # same names in the same order
    assert expected == {name: tuple(t.shape) for name, t in state.items()}


def test_strict_load_round_trips():
    config, net, state = plan("r32_clip")
    loaded = net.state_dict()
    assert set(loaded) == set(state)
    for name, tensor in state.items():
        assert torch.equal(loaded[name], tensor), name
    fresh = StyleGAN2Generator(config)
    fresh.load_state_dict(loaded, strict=True)
    ws = random_ws(config, seed=13)
    with torch.no_grad():
        assert torch.equal(fresh.synthesis(ws), net.synthesis(ws))
    missing = {k: v for k, v in state.items() if k != "synthesis.b8.conv0.noise_const"}
    with pytest.raises(RuntimeError, match="noise_const"):
        StyleGAN2Generator(config).load_state_dict(missing, strict=True)
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
    assert torch.equal(fresh.synthesis.b8.conv0.resample_filter, torch.outer(taps, taps) / 64)


# --- config ---------------------------------------------------------------------------------------

def test_official_plan_and_counts():
    config = StyleGAN2Config.official(1024)
    assert config.channels == (512, 512, 512, 512, 512, 256, 128, 64, 32)
    assert config.num_ws == 18 and config.num_layers == 17
    assert StyleGAN2Config.official(256).num_ws == 14
    assert StyleGAN2Config.official(256, conv_clamp=256).conv_clamp == 256.0
    shapes = config.expected_shapes()  # no allocation needed for a 1024 plan
    assert shapes["synthesis.b1024.conv0.weight"] == (32, 64, 3, 3)
    assert shapes["synthesis.b4.const"] == (512, 4, 4)


def test_split_geometry():
    config = PLANS["r32_clip"][0]  # channels 16, 16, 8, 8 at 4, 8, 16, 32
    assert config.num_layers == 7
    assert [config.layer_name(j) for j in range(7)] == [
        "b4.conv1", "b8.conv0", "b8.conv1", "b16.conv0", "b16.conv1", "b32.conv0", "b32.conv1"]
    assert config.feature_shape(1) == (16, 4, 4) and config.skip_image_shape(1) == (3, 4, 4)
    assert config.feature_shape(2) == (16, 8, 8) and config.skip_image_shape(2) == (3, 4, 4)
    assert config.feature_shape(4) == (8, 16, 16) and config.skip_image_shape(4) == (3, 8, 8)
    assert config.feature_shape(7) == (8, 32, 32) and config.skip_image_shape(7) == (3, 32, 32)
    assert config.split_ws_slots(3) == (range(0, 4), range(3, 8))
    assert config.split_ws_slots(4) == (range(0, 4), range(4, 8))
    for bad in (0, 8, -1, True):
        with pytest.raises(ValueError, match="split layer k="):
            config.check_split(bad)


@pytest.mark.parametrize("kwargs,field", [
    (dict(resolution=12, channels=(8, 8)), "resolution"),
    (dict(resolution=4, channels=(8,)), "resolution"),
    (dict(resolution=2048, channels=(8,) * 10), "resolution"),
    (dict(resolution=True, channels=(8,)), "resolution"),
    (dict(resolution=16, channels=(8, 8)), "channel counts"),
    (dict(resolution=16, channels=(8, 0, 8)), "channels entry"),
    (dict(resolution=16, channels=(8, 8, 8), z_dim=0), "z_dim"),
    (dict(resolution=16, channels=(8, 8, 8), w_dim=-4), "w_dim"),
    (dict(resolution=16, channels=(8, 8, 8), mapping_layers=0), "mapping_layers"),
    (dict(resolution=16, channels=(8, 8, 8), img_channels=0), "img_channels"),
    (dict(resolution=16, channels=(8, 8, 8), mapping_lr_multiplier=0.0), "mapping_lr_multiplier"),
    (dict(resolution=16, channels=(8, 8, 8), conv_clamp=-1.0), "conv_clamp"),
    (dict(resolution=16, channels=(8, 8, 8), conv_clamp=math.inf), "conv_clamp"),
])
def test_config_validation(kwargs, field):
    with pytest.raises(ValueError, match=field) as error:
        StyleGAN2Config(**kwargs)
    assert "\n" not in str(error.value)


def test_config_dict_round_trip():
    for config, _ in PLANS.values():
        data = json.loads(json.dumps(config.to_dict()))
        assert StyleGAN2Config.from_dict(data) == config
    with pytest.raises(ValueError, match="unknown StyleGAN2 config field"):
        StyleGAN2Config.from_dict({**PLANS["r16"][0].to_dict(), "architecture": "resnet"})
    with pytest.raises(ValueError, match="missing channels"):
        StyleGAN2Config.from_dict({"resolution": 16})
