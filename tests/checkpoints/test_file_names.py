"""A good file is never refused for its name: a Linux file name is any bytes, and readers that
take UTF-8 names (safetensors) must still open it; where nothing can, the refusal names the name."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ganprior_core import bundled_prior_path, convert_checkpoint, load_checkpoint, load_vgg16_features
from tests.pack_under_test import ROOT
from tests.vgg_builders import torchvision_state_dict

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="only Linux allows non-UTF-8 names")


def non_utf8(folder: Path, stem: bytes, suffix: str) -> str:
    return os.fsdecode(os.fsencode(folder) + b"/" + stem + suffix.encode())


def test_a_prior_under_a_non_utf8_name_loads_and_converts_to_one_that_loads_again(tmp_path):
    original = load_checkpoint(bundled_prior_path("stylegan2"))
    source = non_utf8(tmp_path, b"prior-\xff", ".safetensors")
    shutil.copyfile(bundled_prior_path("stylegan2"), source)
    loaded = load_checkpoint(source)
    assert loaded.family == "stylegan2"
    for name, tensor in original.generator.state_dict().items():
        assert torch.equal(tensor, loaded.generator.state_dict()[name])

    converted = non_utf8(tmp_path, b"converted-\xfe", ".safetensors")
    convert_checkpoint(source, converted)
    assert load_checkpoint(converted).source_format == original.source_format


def test_vgg_weights_under_a_non_utf8_name_load(tmp_path):
    path = non_utf8(tmp_path, b"vgg16-\xe9", ".safetensors")
    save_file(torchvision_state_dict(), str(tmp_path / "staging.safetensors"))
    os.replace(tmp_path / "staging.safetensors", path)
    assert load_vgg16_features(path) is not None


def test_where_no_descriptor_folder_exists_the_refusal_names_the_file_name(tmp_path, monkeypatch):
    source = non_utf8(tmp_path, b"prior-\xff", ".safetensors")
    shutil.copyfile(bundled_prior_path("pggan"), source)
    real_exists = os.path.exists
    monkeypatch.setattr(os.path, "exists", lambda p: False if str(p).startswith("/proc/self/fd/")
                        else real_exists(p))
    with pytest.raises(ValueError, match="its name is not valid UTF-8.*rename the file") as refusal:
        load_checkpoint(source)
    assert "damaged" not in str(refusal.value)


def test_the_cli_inpaints_with_a_prior_under_a_non_utf8_name(tmp_path):
    source = non_utf8(tmp_path, b"prior-\xff", ".safetensors")
    shutil.copyfile(bundled_prior_path("pggan"), source)
    image = ROOT / "example_workflows" / "ganprior_facade.png"
    out = tmp_path / "out.png"
    completed = subprocess.run(
        [sys.executable, "-m", "ganprior_core", "inpaint", "--checkpoint", os.fsencode(source),
         "--image", image, "--out", out, "--steps", "2", "--stop", "fixed", "--preset", "single-z"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    assert out.is_file()
