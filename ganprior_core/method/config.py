"""How one run optimises: steps and stopping, learning rates, loss weights, precision, compilation."""
from __future__ import annotations

from dataclasses import dataclass

from ..validation import check_count, check_non_negative
from . import compilation
from .auto_stop import STOP_MODES, AutoStopConfig
from .precision import PRECISIONS

SCHEDULES = ("constant", "cosine")
# The loss history is preallocated on the device (one float per step): 10^6 steps is 4 MB and
# ~330 times the paper's 3000; 10^11 would try to allocate 400 GB.
MAX_STEPS = 1_000_000
# Every code carries its own feature map through G1 in one batch: 100,000 codes of a 256x256
# prior need hundreds of GB. 256 is ~8 times the paper's 30 and the node's limit.
MAX_LATENT_CODES = 256
# How several members (a batch's images, one image's starts) are stepped together: "loop" (each
# member's pass in turn: exact, what a CPU runs fastest), "vmap" (vectorized.py: one pass for
# all, what a GPU needs; equal up to float rounding), "auto" (vmap on CUDA, else loop).
VECTORIZE_CHOICES = ("auto", "loop", "vmap")


def vectorizes(vectorize: str, device) -> bool:
    """Whether `vectorize` (VECTORIZE_CHOICES) steps members in one vmap pass on `device`."""
    return vectorize == "vmap" or (vectorize == "auto" and device.type == "cuda")


@dataclass(frozen=True)
class OptimizerConfig:
    # With stop="auto" the most steps a run may take; with "fixed" exactly this many (the paper's
    # protocol). Auto-stop holds out a few known pixels, stops once their error no longer falls
    # and returns an earlier iterate (auto_stop.py). auto_stop None: the prior family's own rule
    # (its family's `auto_stop`), chosen on held-out facades per family.
    steps: int = 3000
    stop: str = "auto"
    auto_stop: AutoStopConfig | None = None
    lr_latent: float = 0.05
    lr_alpha: float = 0.01
    lr_beta: float = 0.01
    # PGGAN's own training rate: with equalised learning rate every stored weight is unit-scale,
    # so the same Adam step suits every layer and resolution (chosen over 1e-4 on held-out
    # facades: ganprior_core/README.md, the method's choices).
    lr_generator: float = 1e-3
    schedule: str = "cosine"  # constant, or cosine decay to 0 over `steps`
    mse_weight: float = 1.0
    perceptual_weight: float = 0.1
    # bf16 autocast for the networks (parameters and loss stay fp32), fp32, or auto: bf16 where
    # the device has native bf16 arithmetic (precision.py)
    precision: str = "auto"
    preview_every: int = 50  # progress carries loss and preview image every this many steps
    # torch.compile the forward pass and loss: True, False or "auto" (compile when the run is long
    # enough to repay the compilation, paid once per process; see compilation.py)
    compile: bool | str = "auto"
    # From this step on, in runs that fine-tune the whole generator (finetune="all", the paper's
    # method), the codes and G1 are frozen and their features computed once: a step then runs
    # only the fusion, G2 and the loss (docs/late_phase.md). None: every step runs G1, the paper's
    # per-step computation. Runs that keep G1 frozen (mganprior, single-z) fit mainly the codes
    # and never freeze them. At least 1: frozen from the start, the codes would never be fitted.
    freeze_g1_at: int | None = 100

    def validate(self) -> None:
        check_count(self.steps, "steps", 1, MAX_STEPS)
        if self.stop not in STOP_MODES:
            raise ValueError(f"stop must be one of {', '.join(STOP_MODES)}, got {self.stop!r}")
        if self.auto_stop is not None:
            if not isinstance(self.auto_stop, AutoStopConfig):
                raise ValueError(f"auto_stop must be an AutoStopConfig or None (the family's "
                                 f"rule), got {type(self.auto_stop).__name__}")
            self.auto_stop.validate()
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        for name in ("lr_latent", "lr_alpha", "lr_beta", "lr_generator", "mse_weight",
                     "perceptual_weight"):
            check_non_negative(getattr(self, name), name)
        if self.mse_weight == 0 and self.perceptual_weight == 0:
            raise ValueError("mse_weight and perceptual_weight are both 0: the loss would be 0 "
                             "and nothing would be fitted")
        check_count(self.preview_every, "preview_every", 1)
        if self.freeze_g1_at is not None:
            check_count(self.freeze_g1_at, "freeze_g1_at", 1, MAX_STEPS)
        if self.compile not in compilation.COMPILE_SETTINGS:
            raise ValueError(f"compile must be True, False or 'auto', got {self.compile!r}")


def g1_freeze_step(model_config, optimizer_config: OptimizerConfig) -> int | None:
    """After how many steps a run with these configs freezes the codes and G1, or None: only runs
    that fine-tune the whole generator (`model_config.finetune == "all"`), and only before their
    last step."""
    freeze_at = optimizer_config.freeze_g1_at
    if freeze_at is None or freeze_at >= optimizer_config.steps or model_config.finetune != "all":
        return None
    return freeze_at
