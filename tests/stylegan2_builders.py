"""StyleGAN2 checkpoint files of every layout the loaders read, written by hand for the tests.

The pickles have the structure NVIDIA's and rosinality's code writes, produced by the pure-Python
pickler with chosen global names (nothing of NVIDIA's or rosinality's code is imported or run):

- stylegan2-ada-pytorch / stylegan3 repository: a dict {'training_set_kwargs', 'G', 'D', 'G_ema',
  'augment_pipe'} whose networks reduce to
  `torch_utils.persistence._reconstruct_persistent_obj(meta)` with meta = {'type': 'class',
  'version': 6, 'module_src': <text>, 'class_name': ..., 'state': module __dict__} (the __reduce__
  of persistence.py's decorator); the state's `_parameters` / `_buffers` / `_modules` are
  `collections.OrderedDict`s, parameters `torch._utils._rebuild_parameter` of
  `_rebuild_tensor_v2` over `torch.storage._load_from_bytes(<legacy torch.save stream>)`
  (real torch tensors, pickled by their own __reduce_ex__), `_init_kwargs` nest
  `dnnlib.util.EasyDict`s;
- NVlabs/stylegan2 TensorFlow: (G, D, Gs) of `dnnlib.tflib.network.Network` NEWOBJ + BUILD(state)
  with version 4, static_kwargs, components {mapping, synthesis} and variables [(name, ndarray)],
  the variables derived from an NVIDIA-named state dict by inverting legacy.py's conversion;
- rosinality: `torch.save` (zip) of plain dicts, and train.py's layout with a real
  argparse.Namespace as `args`.
"""
from __future__ import annotations

import argparse
import io
import math
import pickle
import types
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganprior_core.checkpoints import convert_checkpoint
from tests.stylegan2_reference import random_state, reference_mapping, reference_synthesis

NUMPY_1 = "numpy.core.multiarray"
NUMPY_2 = "numpy._core.multiarray"
MODULE_SRC = ('"""training/networks.py stand-in: never executed by the loader."""\n'
              "import torch\n\nclass Generator(torch.nn.Module):\n    pass\n")
BUFFERS = ("resample_filter", "noise_const", "w_avg")


def _reconstruct_persistent_obj(meta):  # pickled under torch_utils.persistence's name
    raise AssertionError("never called")


class EasyDict(dict):  # pickled as dnnlib.util.EasyDict
    pass


class TFNetwork:  # pickled as dnnlib.tflib.network.Network: NEWOBJ + BUILD(state)
    def __init__(self, state: dict) -> None:
        self._state = state

    def __getstate__(self) -> dict:
        return self._state


class Persistent:
    """A torch_utils.persistence object: reduces to _reconstruct_persistent_obj(meta)."""

    def __init__(self, class_name: str, state: dict, module_src: str = MODULE_SRC,
                 version: int = 6) -> None:
        self.meta = {"type": "class", "version": version, "module_src": module_src,
                     "class_name": class_name, "state": state}

    def __reduce__(self):
        return _reconstruct_persistent_obj, (self.meta,)


class Reduce:
    """Any object that pickles as func(*args) (for hostile files)."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


class NamedPickler(pickle._Pickler):
    """The pure-Python pickler, writing chosen (module, name) for some objects."""

    def __init__(self, file, protocol: int, names: dict) -> None:
        super().__init__(file, protocol=protocol)
        self.names = names

    def save_global(self, obj: Any, name: str | None = None) -> None:
        for candidate, (module, qualname) in self.names.items():
            if candidate is obj:
                if self.proto >= 4:
                    self.save(module)
                    self.save(qualname)
                    self.write(pickle.STACK_GLOBAL)
                else:
                    self.write(pickle.GLOBAL + f"{module}\n{qualname}\n".encode("ascii"))
                self.memoize(obj)
                return
        super().save_global(obj, name)

    dispatch = dict(pickle._Pickler.dispatch)
    dispatch[types.FunctionType] = save_global  # the base table holds the base method


def dumps(obj: Any, protocol: int = 4, numpy_module: str = NUMPY_2,
          extra_names: dict | None = None) -> bytes:
    reconstruct, _, _ = np.empty(0).__reduce__()
    scalar, _ = np.float32(0).__reduce__()
    names = {_reconstruct_persistent_obj: ("torch_utils.persistence",
                                           "_reconstruct_persistent_obj"),
             EasyDict: ("dnnlib.util", "EasyDict"), TFNetwork: ("dnnlib.tflib.network", "Network"),
             reconstruct: (numpy_module, "_reconstruct"), scalar: (numpy_module, "scalar"),
             **(extra_names or {})}
    buffer = io.BytesIO()
    NamedPickler(buffer, protocol, names).dump(obj)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------
# stylegan2-ada-pytorch network pickles

_CLASS_NAMES = {"": "Generator", "mapping": "MappingNetwork", "synthesis": "SynthesisNetwork"}


def _class_name(path: str) -> str:
    if path in _CLASS_NAMES:
        return _CLASS_NAMES[path]
    last = path.rsplit(".", 1)[-1]
    if last.startswith("b") and last[1:].isdigit():
        return "SynthesisBlock"
    return {"conv0": "SynthesisLayer", "conv1": "SynthesisLayer", "torgb": "ToRGBLayer"}.get(
        last, "FullyConnectedLayer")


def module_state(parameters: dict, buffers: dict, modules: dict, **attributes: Any) -> dict:
    """A torch.nn.Module __dict__ as torch 2 pickles it."""
    hooks = ("_backward_pre_hooks", "_backward_hooks", "_forward_hooks",
             "_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_forward_pre_hooks",
             "_forward_pre_hooks_with_kwargs", "_state_dict_hooks", "_state_dict_pre_hooks",
             "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks")
    return {"training": False, "_parameters": OrderedDict(parameters),
            "_buffers": OrderedDict(buffers), "_non_persistent_buffers_set": set(),
            **{hook: OrderedDict() for hook in hooks}, "_is_full_backward_hook": None,
            "_modules": OrderedDict(modules), **attributes}


def persistent_tree(state: dict, root_attributes: dict, nhwc: bool = False,
                    block_attributes: dict | None = None) -> Persistent:
    """NVIDIA-named flat state dict -> nested persistent modules."""
    tree: dict = {}
    for name, tensor in state.items():
        *path, leaf = name.split(".")
        node = tree
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = tensor

    def build(node: dict, path: str) -> Persistent:
        parameters, buffers, modules = {}, {}, {}
        for key, value in node.items():
            if isinstance(value, dict):
                modules[key] = build(value, f"{path}.{key}" if path else key)
            elif key in BUFFERS:
                buffers[key] = value.clone()
            else:
                tensor = value.clone()
                if nhwc and tensor.ndim == 4 and key == "weight":
                    tensor = tensor.contiguous(memory_format=torch.channels_last)
                parameters[key] = torch.nn.Parameter(tensor, requires_grad=False)
        name = _class_name(path)
        attributes = dict(root_attributes) if not path else {}
        if name == "SynthesisBlock":
            attributes.update({"architecture": "skip", **(block_attributes or {})})
        if name == "FullyConnectedLayer":
            attributes.update({"activation": "linear", "weight_gain": np.float64(0.25)})
        return Persistent(name, module_state(parameters, buffers, modules, **attributes))

    return build(tree, "")


def generator_kwargs(resolution: int, channel_base: int, channel_max: int, z_dim: int,
                     w_dim: int, mapping_layers: int, conv_clamp: float | None = None,
                     flat: bool = False, **synthesis: Any) -> dict:
    """Generator init_kwargs: stylegan2-ada (synthesis_kwargs) or stylegan3 repo (flat)."""
    synthesis_kwargs = EasyDict(channel_base=channel_base, channel_max=channel_max,
                                num_fp16_res=2, conv_clamp=conv_clamp, **synthesis)
    kwargs = {"z_dim": z_dim, "w_dim": w_dim, "mapping_kwargs": EasyDict(num_layers=mapping_layers),
              "c_dim": 0, "img_resolution": resolution, "img_channels": 3}
    if flat:
        return {**kwargs, **synthesis_kwargs, "fused_modconv_default": "inference_only"}
    return {**kwargs, "synthesis_kwargs": synthesis_kwargs}


def discriminator(rng_seed: int = 5) -> Persistent:
    g = torch.Generator().manual_seed(rng_seed)
    block = Persistent("DiscriminatorBlock", module_state(
        {}, {"resample_filter": torch.ones(4, 4) / 16},
        {"conv0": Persistent("Conv2dLayer", module_state(
            {"weight": torch.nn.Parameter(torch.randn(4, 4, 3, 3, generator=g),
                                          requires_grad=False)}, {}, {}))},
        architecture="resnet"))
    return Persistent("Discriminator", module_state({}, {}, {"b16": block},
                                                    _init_args=(), _init_kwargs={"c_dim": 0}))


# A numpy scalar inside training_set_kwargs, as snapshots hold (max_size).
NUMPY_SCALAR = np.int64(100)


def sg2ada_snapshot(g_ema: dict, g: dict | None, kwargs: dict, *, nhwc: bool = False,
                    legacy_layout: bool = False, numpy_scalar: Any = NUMPY_SCALAR,
                    module_src: str = MODULE_SRC, block_attributes: dict | None = None) -> dict:
    """The dict training_loop.py pickles (or legacy.py's dict(G, D, G_ema) + None fields)."""
    attributes = {"_init_args": (), "_init_kwargs": kwargs, "z_dim": kwargs["z_dim"],
                  "c_dim": kwargs["c_dim"], "w_dim": kwargs["w_dim"],
                  "img_resolution": kwargs["img_resolution"], "img_channels": 3}

    def network(state: dict) -> Persistent:
        tree = persistent_tree(state, attributes, nhwc, block_attributes)
        tree.meta["module_src"] = module_src
        return tree

    content: dict = {}
    if not legacy_layout:
        content["training_set_kwargs"] = {"class_name": "training.dataset.ImageFolderDataset",
                                          "path": "/data/tiny.zip", "use_labels": False,
                                          "max_size": numpy_scalar, "xflip": False,
                                          "resolution": kwargs["img_resolution"]}
    if g is not None:
        content["G"] = network(g)
    content["D"] = discriminator()
    if g_ema is not None:
        content["G_ema"] = network(g_ema)
    content["augment_pipe"] = None if legacy_layout else Persistent(
        "AugmentPipe", module_state({}, {"p": torch.zeros([])}, {}, xflip=1.0))
    if legacy_layout:
        content["training_set_kwargs"] = None
    return content


# ---------------------------------------------------------------------------------------------
# NVlabs/stylegan2 TensorFlow pickles

def tf_variables(state: dict) -> tuple[list, list, list]:
    """(G, mapping, synthesis) variables from an NVIDIA-named state dict (legacy.py inverted)."""
    def array(tensor: torch.Tensor) -> np.ndarray:
        return np.array(tensor.numpy(), dtype=np.float32)  # 0-d stays 0-d

    def kernel(weight: torch.Tensor, flip: bool = False) -> np.ndarray:
        value = weight.permute(2, 3, 1, 0).numpy()  # [out, in, kh, kw] -> [kh, kw, in, out]
        return array(torch.from_numpy(value[::-1, ::-1].copy() if flip else value))

    g_vars = [("lod", np.float32(0.0)), ("dlatent_avg", array(state["mapping.w_avg"]))]
    mapping_vars = []
    i = 0
    while f"mapping.fc{i}.weight" in state:
        mapping_vars += [(f"Dense{i}/weight", array(state[f"mapping.fc{i}.weight"].t())),
                         (f"Dense{i}/bias", array(state[f"mapping.fc{i}.bias"]))]
        i += 1
    resolutions = sorted(int(k.split(".")[1][1:]) for k in state if k.endswith("torgb.weight"))
    synthesis_vars = []
    layer = 0
    for res in resolutions:
        synthesis_vars.append((f"noise{layer}", array(
            state[f"synthesis.b{res}.conv{1 if res == 4 else 0}.noise_const"][None, None])))
        layer += 1
        if res > 4:
            synthesis_vars.append((f"noise{layer}", array(
                state[f"synthesis.b{res}.conv1.noise_const"][None, None])))
            layer += 1

    def modulated(prefix: str, scope: str, flip: bool = False, noise: bool = True) -> list:
        out = [(f"{scope}/weight", kernel(state[f"{prefix}.weight"], flip)),
               (f"{scope}/mod_weight", array(state[f"{prefix}.affine.weight"].t())),
               (f"{scope}/mod_bias", array(state[f"{prefix}.affine.bias"] - 1))]
        if noise:
            out.append((f"{scope}/noise_strength", array(state[f"{prefix}.noise_strength"])))
        return out + [(f"{scope}/bias", array(state[f"{prefix}.bias"]))]

    for res in resolutions:
        scope, block = f"{res}x{res}", f"synthesis.b{res}"
        if res == 4:
            synthesis_vars.append(("4x4/Const/const", array(state[f"{block}.const"][None])))
            synthesis_vars += modulated(f"{block}.conv1", "4x4/Conv")
        else:
            synthesis_vars += modulated(f"{block}.conv0", f"{scope}/Conv0_up", flip=True)
            synthesis_vars += modulated(f"{block}.conv1", f"{scope}/Conv1")
        synthesis_vars += modulated(f"{block}.torgb", f"{scope}/ToRGB", noise=False)
    return g_vars, mapping_vars, synthesis_vars


def tf_network(name: str, function: str, variables: list, static_kwargs: dict,
               components: dict | None = None) -> TFNetwork:
    return TFNetwork({"version": 4, "name": name, "static_kwargs": static_kwargs,
                      "components": components or {},
                      "build_module_src": f"def {function}(*args, **kwargs):\n    raise SystemExit\n",
                      "build_func_name": function, "variables": variables})


def tf_generator(state: dict, resolution: int, *, g_function: str = "G_main",
                 synthesis_function: str = "G_synthesis_stylegan2", **static: Any) -> TFNetwork:
    g_vars, mapping_vars, synthesis_vars = tf_variables(state)
    # The channel plan of the weights: nf(stage) = fmap_base / 2 ** stage, capped at fmap_max.
    widths = {int(name.split(".")[1][1:]): tensor.shape[0] for name, tensor in state.items()
              if name.startswith("synthesis.b") and name.endswith(".conv1.weight")}
    top = max(widths)
    kwargs = {"num_channels": 3, "resolution": resolution, "label_size": 0,
              "fmap_base": widths[top] * top // 2, "fmap_max": widths[4],
              "latent_size": state["mapping.fc0.weight"].shape[1],
              "dlatent_size": state["mapping.w_avg"].shape[0],
              "mapping_layers": len(mapping_vars) // 2, **static}
    mapping = tf_network("G_mapping", "G_mapping", mapping_vars, kwargs)
    synthesis = tf_network("G_synthesis", synthesis_function, synthesis_vars, kwargs)
    return tf_network("G", g_function, g_vars, kwargs,
                      {"mapping": mapping, "synthesis": synthesis})


def tf_pickle(path: Path, gs: TFNetwork, g: TFNetwork | None = None, protocol: int = 3) -> Path:
    """(G, D, Gs) as misc.save_pkl wrote it (HIGHEST_PROTOCOL: 4 under Python 3.6/3.7)."""
    d = tf_network("D", "D_stylegan2", [("4x4/Conv/weight", np.zeros((3, 3, 4, 4), np.float32))],
                   {"resolution": 16, "label_size": 0})
    path.write_bytes(dumps((g or gs, d, gs), protocol=protocol, numpy_module=NUMPY_1))
    return path


# ---------------------------------------------------------------------------------------------
# rosinality/stylegan2-pytorch

BLUR = torch.outer(torch.tensor([1.0, 3, 3, 1]), torch.tensor([1.0, 3, 3, 1])) / 16


def rosinality_state(resolution: int, channels: list[int], style_dim: int, n_mlp: int,
                     seed: int) -> dict:
    """A random g_ema state dict with rosinality's names and shapes (model.py Generator)."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape: int, scale: float = 1.0, shift: float = 0.0) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * scale + shift

    state: dict[str, torch.Tensor] = {}
    for i in range(1, n_mlp + 1):
        state[f"style.{i}.weight"] = randn(style_dim, style_dim, scale=100.0)  # / lr_mul
        state[f"style.{i}.bias"] = randn(style_dim, scale=10.0)
    state["input.input"] = randn(1, channels[0], 4, 4)

    def styled(name: str, c_in: int, c_out: int, upsample: bool) -> None:
        state[f"{name}.conv.weight"] = randn(1, c_out, c_in, 3, 3)
        state[f"{name}.conv.modulation.weight"] = randn(c_in, style_dim)
        state[f"{name}.conv.modulation.bias"] = randn(c_in, scale=0.2, shift=1.0)
        if upsample:
            state[f"{name}.conv.blur.kernel"] = BLUR.clone()
        state[f"{name}.noise.weight"] = randn(1, scale=0.3)
        state[f"{name}.activate.bias"] = randn(c_out, scale=0.2)

    def to_rgb(name: str, c_in: int, upsample: bool) -> None:
        if upsample:
            state[f"{name}.upsample.kernel"] = BLUR.clone()
        state[f"{name}.bias"] = randn(1, 3, 1, 1, scale=0.2)
        state[f"{name}.conv.weight"] = randn(1, 3, c_in, 1, 1)
        state[f"{name}.conv.modulation.weight"] = randn(c_in, style_dim)
        state[f"{name}.conv.modulation.bias"] = randn(c_in, scale=0.2, shift=1.0)

    styled("conv1", channels[0], channels[0], False)
    to_rgb("to_rgb1", channels[0], False)
    blocks = int(math.log2(resolution)) - 2
    for layer in range(2 * blocks + 1):
        res = 2 ** ((layer + 5) // 2)
        state[f"noises.noise_{layer}"] = randn(1, 1, res, res)
    for k in range(blocks):
        styled(f"convs.{2 * k}", channels[k], channels[k + 1], True)
        styled(f"convs.{2 * k + 1}", channels[k + 1], channels[k + 1], False)
        to_rgb(f"to_rgbs.{k}", channels[k + 1], True)
    return state


def rosinality_converted(path: Path, g_ema: dict, latent_avg: torch.Tensor) -> Path:
    torch.save({"g_ema": g_ema, "latent_avg": latent_avg}, path)
    return path


def rosinality_train_checkpoint(path: Path, g: dict, g_ema: dict, resolution: int,
                                n_mlp: int, latent: int) -> Path:
    params = list(g.values())
    optim = {"state": {i: {"step": torch.tensor(10.0), "exp_avg": torch.zeros_like(p),
                           "exp_avg_sq": torch.zeros_like(p)} for i, p in enumerate(params[:3])},
             "param_groups": [{"lr": 0.002, "betas": (0.0, 0.99), "eps": 1e-8,
                               "weight_decay": 0, "amsgrad": False,
                               "params": list(range(len(params)))}]}
    args = argparse.Namespace(path="/data/lmdb", iter=800000, batch=16, size=resolution,
                              n_mlp=n_mlp, latent=latent, channel_multiplier=2, r1=10,
                              augment=False, ada_target=0.6, local_rank=0, distributed=False)
    torch.save({"g": g, "d": {"convs.0.0.weight": torch.zeros(4, 3, 1, 1)}, "g_ema": g_ema,
                "g_optim": optim, "d_optim": {"state": {}, "param_groups": []}, "args": args,
                "ada_aug_p": 0.0}, path)
    return path


# ---------------------------------------------------------------------------------------------
# Real torch.nn.Module trees, reduced the way torch_utils.persistence does

_NVIDIA_CLASS = {"StyleGAN2Generator": "Generator", "ModulatedConv3x3": "SynthesisLayer",
                 "ToRGB": "ToRGBLayer", "FullyConnected": "FullyConnectedLayer"}


class PersistencePickler(NamedPickler):
    """Every torch.nn.Module pickles as persistence.py's decorated classes do: `fields =
    list(super().__reduce__())` (copyreg's (_reconstructor, args, module __dict__)), then
    (_reconstruct_persistent_obj, (meta,), None) with meta's state = fields[2] plus the
    `_init_args` / `_init_kwargs` the decorator records. The project's own `config` attribute
    (a dataclass, not part of NVIDIA's modules) is left out."""

    def __init__(self, file, protocol: int, names: dict, root: torch.nn.Module,
                 init_kwargs: dict) -> None:
        super().__init__(file, protocol, names)
        self.root, self.init_kwargs = root, init_kwargs

    def reducer_override(self, obj: Any):
        if not isinstance(obj, torch.nn.Module):
            return NotImplemented
        fields = list(object.__reduce__(obj))
        state = {key: value for key, value in fields[2].items() if key != "config"}
        state["_init_args"] = ()
        state["_init_kwargs"] = self.init_kwargs if obj is self.root else {}
        name = type(obj).__name__
        meta = {"type": "class", "version": 6, "module_src": MODULE_SRC,
                "class_name": _NVIDIA_CLASS.get(name, name), "state": state}
        return _reconstruct_persistent_obj, (meta,), None


def real_module_snapshot(generator: torch.nn.Module, init_kwargs: dict, protocol: int) -> bytes:
    reconstruct, _, _ = np.empty(0).__reduce__()
    scalar, _ = np.float32(0).__reduce__()
    names = {_reconstruct_persistent_obj: ("torch_utils.persistence",
                                           "_reconstruct_persistent_obj"),
             EasyDict: ("dnnlib.util", "EasyDict"), reconstruct: (NUMPY_1, "_reconstruct"),
             scalar: (NUMPY_1, "scalar")}
    content = {"training_set_kwargs": {"resolution": np.int64(16), "use_labels": False},
               "G": generator, "D": discriminator(), "G_ema": generator, "augment_pipe": None}
    buffer = io.BytesIO()
    PersistencePickler(buffer, protocol, names, generator, init_kwargs).dump(content)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------
# Seeds of the fuzz and hostile-file tests

def valid_stylegan2_files(directory: Path) -> dict[str, Path]:
    """One small valid file per StyleGAN2 layout: 8x8, 4 channels, z = w = 4, one mapping layer
    (small files, many mutations per second)."""
    directory.mkdir(parents=True, exist_ok=True)
    state = random_state(8, [4, 4], 4, 4, 1, seed=0)
    kwargs = generator_kwargs(resolution=8, channel_base=32, channel_max=4, z_dim=4, w_dim=4,
                              mapping_layers=1)
    paths = {"sg2ada_p4.pkl": directory / "sg2ada_p4.pkl",
             "sg2ada_p3.pkl": directory / "sg2ada_p3.pkl"}
    paths["sg2ada_p4.pkl"].write_bytes(dumps(sg2ada_snapshot(state, None, kwargs), 4))
    paths["sg2ada_p3.pkl"].write_bytes(dumps(sg2ada_snapshot(state, None, kwargs, nhwc=True), 3))
    paths["tf.pkl"] = tf_pickle(directory / "tf.pkl", tf_generator(state, 8))
    ros = rosinality_state(8, [4, 4], 4, 1, seed=1)
    paths["rosinality.pt"] = rosinality_converted(directory / "rosinality.pt", ros,
                                                  torch.zeros(4))
    paths["rosinality_train.pt"] = rosinality_train_checkpoint(
        directory / "rosinality_train.pt", ros, ros, 8, 1, 4)
    paths["stylegan2.safetensors"] = directory / "stylegan2.safetensors"
    convert_checkpoint(paths["rosinality.pt"], paths["stylegan2.safetensors"])
    return paths


# ---------------------------------------------------------------------------------------------
# The small networks of tests/checkpoints/ and their check against tests/stylegan2_reference.py

TOLERANCE = 1e-4
Z = W = 8
MAPPING = 2
# 16x16: channel_base 128, channel_max 16 -> 16, 16, 8 channels at 4, 8, 16.
SMALL_CONFIG = dict(resolution=16, channels=[16, 16, 8], z_dim=Z, w_dim=W, mapping_layers=MAPPING)
KWARGS = dict(resolution=16, channel_base=128, channel_max=16, z_dim=Z, w_dim=W,
              mapping_layers=MAPPING)


def nvidia_state(seed: int, resolution: int = 16) -> dict:
    channels = [min(128 // r, 16) for r in (4 * 2 ** i for i in range(int(math.log2(resolution)) - 1))]
    return random_state(resolution, channels, Z, W, MAPPING, seed)


def write(path: Path, content, protocol: int = 4, numpy_module: str = NUMPY_2,
          extra_names: dict | None = None) -> Path:
    path.write_bytes(dumps(content, protocol, numpy_module, extra_names))
    return path


def max_error_nvidia(generator: torch.nn.Module, state: dict,
                     conv_clamp: float | None = None) -> float:
    """Max |generator - reference| over z at psi 1 and 0.7, w+ codes, noise const and none."""
    g = torch.Generator().manual_seed(1)
    z = torch.randn(2, Z, generator=g)
    ws_plus = torch.randn(2, generator.num_ws, W, generator=g)
    errors = []
    with torch.no_grad():
        for psi in (1.0, 0.7):
            ref_ws = reference_mapping(state, z, psi)
            errors.append((generator.mapping(z, truncation_psi=psi).double() - ref_ws).abs().max())
            for noise in ("const", "none"):
                image = generator(z, truncation_psi=psi, noise_mode=noise).double()
                errors.append((image - reference_synthesis(state, ref_ws, noise, conv_clamp))
                              .abs().max())
        for noise in ("const", "none"):
            image = generator.synthesis(ws_plus, noise_mode=noise).double()
            errors.append((image - reference_synthesis(state, ws_plus, noise, conv_clamp))
                          .abs().max())
    return float(max(errors))
