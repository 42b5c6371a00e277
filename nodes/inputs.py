"""What several nodes declare alike: the menu category, the socket types, shared inputs and tooltips.

Plain data: importing this module registers nothing with ComfyUI (the pack's __init__ does that,
through nodes.registration).

The socket type names are part of saved workflows and API prompts: `PGGAN_PRIOR` carries a
StyleGAN2 prior just as well, and keeps its name so that what was saved still connects.
"""
from __future__ import annotations

CATEGORY = "inpaint/GAN prior"

# The prior's socket type. Never rename: saved workflows name it.
PRIOR = "PGGAN_PRIOR"

COMPILE_CHOICES = ("auto", "on", "off")
STOP_TOOLTIP = ("auto: a few known pixels are left out of the fit; the run stops once their "
                "error no longer improves and returns the image of a check before their best "
                "one (usually a few hundred steps; a reconstruction, with an empty mask, runs "
                "all steps). fixed: exactly `steps` steps, the paper's protocol.")
PRIOR_TOOLTIP = ("The pretrained generator from Load GAN Prior (PGGAN or StyleGAN2; the socket "
                 "type keeps the name PGGAN_PRIOR). Shared and cached: never changed here.")
GENERATOR_TOOLTIP = ("The prior with the method's configuration (codes, split layer, weights, "
                     "fine-tuning), from Build Multi-Latent Generator or GAN-Prior Preset. Each "
                     "run optimises a private copy; the prior itself is never changed.")


def seed_input(tooltip: str):
    return ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True,
                    "tooltip": tooltip})


def prior_input(purpose: str):
    """The `prior` input: PRIOR_TOOLTIP after what this node does with it."""
    return (PRIOR, {"tooltip": f"{purpose} {PRIOR_TOOLTIP}"})
