"""Load pretrained GAN priors (PGGAN and StyleGAN2 generators) from the formats users download,
and write this project's own.

StyleGAN2 (read into `StyleGAN2Generator`, `LoadedCheckpoint.family` "stylegan2"):
- NVIDIA stylegan2-ada-pytorch / stylegan3-repository network pickles (`nvidia_stylegan2`):
  torch_utils.persistence objects read as data, their module source never run;
- NVIDIA's TensorFlow-era StyleGAN2 (G, D, Gs) pickles (`nvidia_stylegan2_tf`);
- rosinality stylegan2-pytorch `.pt` files (`rosinality`);
- this project's `.safetensors` with format "ganprior-stylegan2".
StyleGAN3, conditional, non-'skip' and StyleGAN v1 networks are refused with one line.

PGGAN (read into `PGGANGenerator`, family "pggan"):

Accepted (detected by the file's bytes, whatever its name or extension):
- genforce/genforce model-zoo PyTorch files (`pggan_<name><res>.pth`): a dict holding
  `generator_smooth` (the moving average, used when present) and/or `generator`, or such a state
  dict on its own, keys `layer{i}.weight`, `layer{i}.bias`, `output{j}.weight`, `output{j}.bias`;
- genforce / mGANprior PyTorch state dicts (`layer{i}.conv.weight`, `layer{i}.wscale.bias`, ...);
- NVIDIA's official pickles of (G, D, Gs), both the TensorFlow-era `tfutil.Network` state and the
  legacy Theano `network.Network` state, as written under numpy 1 or re-saved under numpy 2
  (protocol 5 included);
- this project's `.safetensors` (tensors in `PGGANGenerator` naming + a JSON header).

One module per format (`genforce`, `nvidia_pggan`, `project_file`), the PGGAN architecture
checks they share (`pggan_layout`), the bounded readers (`torch_file`, `safe_pickle`) and the
dispatch by content (`loading`).

No file is trusted. PyTorch files and pickles are read by `torch_file` and `safe_pickle`, which
never run anything from the file and let only plain numeric arrays out, with bounded sizes. Every
architecture value (resolution, channels, latent size, fused upsampling) is checked for type and
range and against the shapes of the weights present before a network is built, and every weight
must be finite. Any failure is a `CheckpointError`: one line naming the file, the problem and the
accepted formats.

facebookresearch pytorch_GAN_zoo PGAN checkpoints are recognised and refused: their format layer is
an `nn.Linear` with one bias per output position (16 per channel), which the PGGAN network here
(one bias per channel, as in NVIDIA's and genforce's models) cannot represent exactly.

Layouts and scales follow the public code: NVIDIA progressive_growing_of_gans (networks.py,
tfutil.py, legacy.py; the Theano branch's network.py), genforce/mganprior
(models/pggan_generator*.py and its TF converter) and genforce/genforce (models/pggan_generator.py).
"""
from .common import (
                     ACCEPTED_FORMATS,
                     CHECKPOINT_EXTENSIONS,
                     GANPRIOR,
                     GANPRIOR_SG2,
                     GENFORCE,
                     GENFORCE_ZOO,
                     NVIDIA_SG2_TF,
                     NVIDIA_SG2ADA,
                     NVIDIA_TF,
                     NVIDIA_THEANO,
                     ROSINALITY,
                     CheckpointError,
                     LoadedCheckpoint,
)
from .loading import convert_checkpoint, load_checkpoint, load_generator
from .project_file import save_generator

__all__ = ["ACCEPTED_FORMATS", "CHECKPOINT_EXTENSIONS", "GANPRIOR", "GANPRIOR_SG2", "GENFORCE",
           "GENFORCE_ZOO", "NVIDIA_SG2_TF", "NVIDIA_SG2ADA", "NVIDIA_THEANO", "NVIDIA_TF",
           "ROSINALITY", "CheckpointError", "LoadedCheckpoint", "convert_checkpoint",
           "load_checkpoint", "load_generator", "save_generator"]
