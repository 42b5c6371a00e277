"""The small prior that ships with the pack, so the main job runs with no download."""
from __future__ import annotations

from pathlib import Path

PRIORS_DIR = Path(__file__).resolve().parent
BUNDLED_PRIOR_NAME = "facades64.safetensors"


def bundled_prior_path() -> Path:
    """The 64x64 procedural-facade PGGAN trained by `python -m ganprior_core train` (MODEL_CARD.md)."""
    path = PRIORS_DIR / BUNDLED_PRIOR_NAME
    if not path.is_file():
        raise FileNotFoundError(f"the bundled prior {path} is missing; reinstall the package or "
                                f"point to a checkpoint of your own")
    return path
