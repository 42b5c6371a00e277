"""The perceptual model (ganprior_core/method/perceptual.py): torchvision's VGG16 weights read from
either format and matching a written-out forward, and every bad or hostile file a one-line refusal."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from ganprior_core.method.perceptual import PerceptualModelError, load_vgg16_features
from tests.vgg_builders import PAYLOAD_MARKER, hostile_vgg_files, torchvision_state_dict, vgg_state

pytestmark = pytest.mark.usefixtures("one_thread")


def _reference_relu3_3(state, images):
    """torchvision features[:16] written out: conv-relu x2, pool, conv-relu x2, pool, conv-relu x3."""
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = ((images + 1) / 2 - mean) / std
    for index in (0, 2, "pool", 5, 7, "pool", 10, 12, 14):
        if index == "pool":
            x = F.max_pool2d(x, 2)
        else:
            x = F.relu(F.conv2d(x, state[f"features.{index}.weight"], state[f"features.{index}.bias"], padding=1))
    return x


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_torchvision_weights_load_and_match_a_written_out_forward(tmp_path, suffix):
    state = torchvision_state_dict()
    path = tmp_path / f"vgg16-test{suffix}"
    if suffix == ".pth":
        torch.save(state, path)
    else:
        save_file(state, str(path))
    model = load_vgg16_features(path)
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        features = model(images)
    assert features.shape == (2, 256, 8, 8)
    torch.testing.assert_close(features, _reference_relu3_3(state, images), rtol=1e-4, atol=1e-5)


def test_missing_file_and_wrong_file_are_clear_errors(tmp_path):
    with pytest.raises(PerceptualModelError, match="no such VGG16 weights file"):
        load_vgg16_features(tmp_path / "absent.pth")
    with pytest.raises(PerceptualModelError, match="is a directory"):
        load_vgg16_features(tmp_path)
    wrong = tmp_path / "generator.pth"
    torch.save({"layer0.conv.weight": torch.zeros(1)}, wrong)
    with pytest.raises(PerceptualModelError, match="not a VGG16 state dict"):
        load_vgg16_features(wrong)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(PerceptualModelError, match="cannot read VGG16 weights"):
        load_vgg16_features(garbage)


def test_vgg_format_comes_from_the_content_not_the_suffix(tmp_path):
    save_file(vgg_state(), str(tmp_path / "really-safetensors.pth"))
    torch.save(vgg_state(), tmp_path / "really-torch.safetensors")
    for name in ("really-safetensors.pth", "really-torch.safetensors"):
        model = load_vgg16_features(tmp_path / name)
        assert float(model[0].weight[0, 0, 0, 0]) == pytest.approx(0.01)


def test_hostile_vgg_files_are_one_line_refusals(tmp_path):
    marker = PAYLOAD_MARKER
    marker.unlink(missing_ok=True)
    for name, (path, message) in hostile_vgg_files(tmp_path).items():
        with pytest.raises(PerceptualModelError) as caught:
            load_vgg16_features(path)
        text = str(caught.value)
        assert message in text and "\n" not in text and len(text) < 500, (name, text)
    assert not marker.exists()


def test_a_vgg_file_larger_than_any_vgg16_is_refused_unread(tmp_path, monkeypatch):
    from ganprior_core.method import perceptual
    path = tmp_path / "big.pth"
    torch.save(vgg_state(), path)
    monkeypatch.setattr(perceptual, "MAX_VGG_FILE_BYTES", 1024)
    with pytest.raises(perceptual.PerceptualModelError, match="far more than VGG16"):
        perceptual.load_vgg16_features(path)
