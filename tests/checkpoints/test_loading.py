"""load_generator tells the format by content (ganprior_core/checkpoints/loading.py) and answers
what it cannot load with one line naming the file and every accepted format
(tests.checkpoint_builders.load_refused)."""
from __future__ import annotations

import os
import pickle
import sys
import types

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

from ganprior_core.checkpoints import (
    CHECKPOINT_EXTENSIONS,
    convert_checkpoint,
    load_generator,
)
from tests.checkpoint_builders import (
    SMALL,
    PickledNetwork,
    genforce_state_dict,
    load_refused,
    nvidia_pickle,
    tf_discriminator_variables,
    tf_network_state,
    tf_variables,
    theano_network_state,
    theano_param_values,
    write_pickle,
)
from tests.stylegan2_builders import (
    KWARGS,
    Persistent,
    generator_kwargs,
    module_state,
    nvidia_state,
    sg2ada_snapshot,
    tf_generator,
    tf_pickle,
    write,
)


def test_format_is_detected_by_content_not_extension(tmp_path):
    variables = tf_variables(SMALL, np.random.default_rng(6))
    pickle_named_pth = nvidia_pickle(tmp_path / "nvidia.pth", tf_network_state(variables))
    genforce_named_pkl = tmp_path / "genforce.pkl"
    torch.save(genforce_state_dict(SMALL, np.random.default_rng(6)), genforce_named_pkl)
    assert load_generator(pickle_named_pth).config.resolution == 16
    assert load_generator(genforce_named_pkl).config.resolution == 16


def test_loaded_generator_is_cpu_float32_in_eval_mode(tmp_path):
    path = tmp_path / "g.pth"
    torch.save(genforce_state_dict(SMALL, np.random.default_rng(8)), path)
    generator = load_generator(path)
    assert not generator.training
    assert {(p.device.type, p.dtype) for p in generator.parameters()} == {("cpu", torch.float32)}


def test_mid_training_checkpoints_are_refused(tmp_path):
    rng = np.random.default_rng(10)
    genforce = tmp_path / "genforce.pth"
    torch.save(genforce_state_dict(SMALL, rng, lod=0.5), genforce)
    tf = nvidia_pickle(tmp_path / "tf.pkl", tf_network_state(tf_variables(SMALL, rng, lod=1.0)))
    theano = nvidia_pickle(tmp_path / "theano.pkl", theano_network_state(
        SMALL, theano_param_values(SMALL, rng, True), True, cur_lod=2.0), python2=True)
    for path in (genforce, tf, theano):
        load_refused(path, "mid-training", "lod")


def test_damaged_files_are_refused(tmp_path):
    pickled = nvidia_pickle(tmp_path / "full.pkl", tf_network_state(
        tf_variables(SMALL, np.random.default_rng(12))))
    genforce = tmp_path / "full.pth"
    torch.save(genforce_state_dict(SMALL, np.random.default_rng(12)), genforce)
    converted = tmp_path / "full.safetensors"
    convert_checkpoint(genforce, converted)
    for source in (pickled, genforce, converted):
        data = source.read_bytes()
        truncated = tmp_path / f"truncated{source.suffix}"
        truncated.write_bytes(data[:len(data) // 2])
        load_refused(truncated, "damaged")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    load_refused(garbage, "damaged")
    empty = tmp_path / "empty.pkl"
    empty.write_bytes(b"")
    load_refused(empty, "empty")
    load_refused(tmp_path / "missing.pkl", "no such checkpoint file")
    load_refused(tmp_path, "is a directory")
    os.mkfifo(tmp_path / "pipe.pth")  # opening a pipe would block: refused by its type
    load_refused(tmp_path / "pipe.pth", "not a regular file")


def test_files_of_the_wrong_kind_are_refused(tmp_path):
    image = tmp_path / "photo.pkl"
    Image.new("RGB", (8, 8)).save(image, format="PNG")
    load_refused(image, "damaged")

    random_pickle = tmp_path / "random.pkl"
    random_pickle.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    load_refused(random_pickle, "holds a dict")

    rng = np.random.default_rng(13)
    discriminator = write_pickle(tmp_path / "d.pkl", PickledNetwork(tf_network_state(
        tf_discriminator_variables(SMALL, rng), name="D", build_func_name="D_paper")))
    load_refused(discriminator, "discriminator")

    stylegan = write_pickle(tmp_path / "stylegan.pkl", (PickledNetwork({}),) * 3,
                            network_module="dnnlib.tflib.network")
    load_refused(stylegan, "StyleGAN")

    stylegan_pth = tmp_path / "stylegan_ffhq1024_generator.pth"
    torch.save({"mapping.dense0.linear.weight": torch.zeros(2, 2)}, stylegan_pth)
    load_refused(stylegan_pth, "StyleGAN")

    unrelated_state_dict = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(2, 2)}, unrelated_state_dict)
    load_refused(unrelated_state_dict, "not a genforce PGGAN generator")

    foreign_safetensors = tmp_path / "sd15.safetensors"
    save_file({"model.weight": torch.zeros(2)}, str(foreign_safetensors))
    load_refused(foreign_safetensors, "no 'ganprior' metadata")

    conditional = nvidia_pickle(tmp_path / "cifar.pkl", tf_network_state(
        tf_variables(SMALL, rng), static_kwargs={"label_size": 10}))
    load_refused(conditional, "label_size=10")


def test_pytorch_gan_zoo_checkpoint_is_recognised_and_refused(tmp_path, monkeypatch):
    # pytorch_GAN_zoo saves {'config': models.utils.config.BaseConfig(), 'netG', 'netD', 'avgG'}.
    config_module = types.ModuleType("models.utils.config")

    class BaseConfig:
        pass

    BaseConfig.__module__, BaseConfig.__qualname__ = "models.utils.config", "BaseConfig"
    config_module.BaseConfig = BaseConfig
    for name in ("models", "models.utils"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "models.utils.config", config_module)
    config = BaseConfig()
    config.depthScale0, config.alpha = 12, 0.0
    net_g = {"formatLayer.module.weight": torch.zeros(16 * 12, 16),
             "formatLayer.module.bias": torch.zeros(16 * 12),
             "toRGBLayers.0.module.weight": torch.zeros(3, 12, 1, 1)}
    path = tmp_path / "celebaHQ_s6_i80000.pth"
    torch.save({"config": config, "netG": net_g, "netD": {}, "avgG": net_g}, path)
    load_refused(path, "pytorch_GAN_zoo", "not supported")


def test_stylegan3_conditional_resnet_v1_and_discriminator_only_files_are_refused(tmp_path):
    state = nvidia_state(15)
    sg3 = sg2ada_snapshot(state, None, generator_kwargs(**KWARGS))
    synthesis = sg3["G_ema"].meta["state"]["_modules"]["synthesis"].meta["state"]
    synthesis["layer_names"] = ["L0_36_16", "L1_36_16"]
    synthesis["_modules"] = {"input": Persistent("SynthesisInput", module_state({}, {}, {})),
                             "L0_36_16": Persistent("SynthesisLayer", module_state({}, {}, {}))}
    load_refused(write(tmp_path / "stylegan3-t.pkl", sg3), "StyleGAN3")

    conditional_kwargs = {**generator_kwargs(**KWARGS), "c_dim": 4}
    load_refused(write(tmp_path / "conditional.pkl", sg2ada_snapshot(state, None, conditional_kwargs)),
            "conditional", "c_dim = 4")

    resnet = sg2ada_snapshot(state, None, generator_kwargs(**KWARGS, architecture="resnet"),
                             block_attributes={"architecture": "resnet"})
    load_refused(write(tmp_path / "resnet.pkl", resnet), "'resnet' architecture")
    # the blocks alone say so (init_kwargs silent)
    orig = sg2ada_snapshot(state, None, generator_kwargs(**KWARGS),
                           block_attributes={"architecture": "orig"})
    load_refused(write(tmp_path / "orig.pkl", orig), "'orig' architecture")

    v1 = tf_generator(nvidia_state(16, resolution=32), 32, g_function="G_style",
                      synthesis_function="G_synthesis")
    load_refused(tf_pickle(tmp_path / "stylegan1.pkl", v1), "StyleGAN (version 1)")
    tf_conditional = tf_generator(nvidia_state(16, resolution=32), 32, label_size=10)
    load_refused(tf_pickle(tmp_path / "tf_conditional.pkl", tf_conditional), "label_size = 10")
    tf_resnet = tf_generator(nvidia_state(16, resolution=32), 32, architecture="resnet")
    load_refused(tf_pickle(tmp_path / "tf_resnet.pkl", tf_resnet), "architecture=resnet")

    only_d = sg2ada_snapshot(None, None, generator_kwargs(**KWARGS))
    load_refused(write(tmp_path / "d_only.pkl", only_d), "no generator", "D")


def test_extensions_cover_every_accepted_format():
    assert set(CHECKPOINT_EXTENSIONS) == {".pth", ".pt", ".pkl", ".safetensors"}
