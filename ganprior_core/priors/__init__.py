"""The small priors that ship with the pack, so the main job runs with no download: one PGGAN and
one StyleGAN2, both 64x64 procedural facades (MODEL_CARD.md)."""
from __future__ import annotations

from pathlib import Path

PRIORS_DIR = Path(__file__).resolve().parent
BUNDLED_PRIORS = {"pggan": "facades64.safetensors", "stylegan2": "facades64_stylegan2.safetensors"}
BUNDLED_PRIOR_NAME = BUNDLED_PRIORS["pggan"]


def bundled_prior_path(family: str = "pggan") -> Path:
    """The bundled 64x64 procedural-facade prior of `family` ("pggan" or "stylegan2"), trained by
    `python -m ganprior_core train` (MODEL_CARD.md)."""
    if family not in BUNDLED_PRIORS:
        raise ValueError(f"no bundled prior of family {family!r}; choose one of "
                         f"{', '.join(BUNDLED_PRIORS)}")
    path = PRIORS_DIR / BUNDLED_PRIORS[family]
    if not path.is_file():
        raise FileNotFoundError(f"the bundled prior {path} is missing; reinstall the package or "
                                f"point to a checkpoint of your own")
    return path
