import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from ganprior_core.method.perceptual import PerceptualModelError, load_vgg16_features

# Indices of the convolutions in torchvision's vgg16().features, and where its max pools sit.
CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
CONV_CHANNELS = ((3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
                 (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512))


def _torchvision_state_dict():
    generator = torch.Generator().manual_seed(0)
    state = {}
    for index, (cin, cout) in zip(CONV_INDICES, CONV_CHANNELS):
        state[f"features.{index}.weight"] = torch.randn(cout, cin, 3, 3, generator=generator) * (2 / (9 * cin)) ** 0.5
        state[f"features.{index}.bias"] = torch.randn(cout, generator=generator) * 0.1
    state["classifier.0.weight"] = torch.zeros(4, 4)  # present in the real file, must be ignored
    return state


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
    state = _torchvision_state_dict()
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
