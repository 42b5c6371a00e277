"""Degradations: what the observation is, as a function of the generator's image, and how the
generator's image is turned into a result that agrees with the observation.

The paper's eq. (2) is general: a restoration task is a degradation operator E applied to the
generator's image x, and the fit compares E(x) with the observation y. Inpainting is one such
operator (the hole); super-resolution and colorization are others, and they combine (a gray,
low-resolution image with a hole). Every degradation here offers the same four things:

- ``observe(x) -> y``: x on the generator's grid to the observation's grid. Linear and
  differentiable, so the loss on y sends its gradient back to x (and on to the codes).
- ``observed_mask(size)``: which entries of the observation count ([h, w], 1 = observed): the
  loss compares only those, and auto-stop may hold out only those.
- ``project(x, y) -> (result, report)``: the consistency projection. The generator's image x
  becomes the result, changed as little as the degradation allows so that observing the result
  gives back y (a super-resolved image whose downsampling is not the low-resolution input has
  invented or lost content). The report says how exact that came out and what the range [0, 1]
  cost.
- ``observation_size(size)`` / ``input_size(size)``: the grids, with a ValueError naming the
  problem when a size does not fit (a factor that does not divide it, a mask of another size).

Conventions (the same for every degradation and every method):
- Images are batched: x [B, 3, H, W] and observations y [B, C, h, w], float, values in [0, 1]
  (the project's range, not the generator's [-1, 1]: the caller converts, imaging.to_unit_range).
  A single image [3, H, W] is refused with a hint to pass image[None]. Any H x W, not only the
  prior's square, as long as the degradation's grid fits it. Hole and Downsample work channel by
  channel and take any C (inside a chain after Gray they see one); Gray and Compose take C = 3.
- Masks are [h, w] on the observation's grid, float, as imaging's: the Hole's mask has 1 = hole,
  observed_mask has 1 = observed (the loss's weight; soft values are weights, as in fit.py).
- Nothing here changes its inputs. ``observe`` returns a new tensor (the Hole's identity returns
  x itself); ``project`` works on detached copies and returns a new, detached tensor.
- The observation given to ``project`` is checked (finite, in [0, 1] up to imaging's
  RANGE_TOLERANCE of resampling overshoot) and clamped to [0, 1] first, with a note, as
  fit.inpaint_any_size does with the image it composites.

The operators, and why their projection is what it is:
- Hole(mask): identity on the grid; the observed entries are the known pixels. The projection is
  imaging.composite: known pixels are the observation bit for bit.
- Downsample(factor, kernel): the observation is the image F times smaller, made the way common
  tools make low-resolution images ("area": the mean of F x F blocks; "bilinear" / "bicubic":
  antialiased resampling, F.interpolate(..., antialias=True), which is PIL's filter). The
  projection changes x as little as possible (least squares) so that its downsampling is y:
  for area exactly, in one step, x + U(y - D x) (U nearest-neighbour upsampling, D U = identity),
  and a block that leaves [0, 1] is shifted as a whole and clipped so that its mean stays y (the
  nearest image in [0, 1] with those block means); for bilinear / bicubic x + D^T r with
  D D^T r = y - D x solved by conjugate gradients (D and its adjoint D^T as products with the
  resampling's per-axis matrices), alternated with clamping to [0, 1] where that was left, until
  max |D(result) - y| <= tolerance (half a grey level by default); where that is out of reach
  (an iteration cap, or an 8-bit input no image in [0, 1] downsamples to) the report's
  `consistent` is false and a note says how far off and where.
- Gray(): colorization. The observation is the BT.601 luma Y = 0.299 R + 0.587 G + 0.114 B as one
  channel [B, 1, H, W]. The projection keeps the observed luma and takes the chroma from x: adding
  Y_obs - Y(x) to R, G and B alike moves the luma by exactly that (the weights sum to 1). A colour
  that then leaves the RGB cube is, by default, desaturated towards the gray of the same luma
  until it fits (gamut="desaturate": the luma stays exact everywhere and only saturation is lost,
  at the pixels the report counts); gamut="clip" clips instead (mGANprior's way: the luma of
  clipped pixels is lost).
- Compose(steps): a chain, e.g. Compose((Gray(), Downsample(2, "area"), Hole(low_res_mask))).
  Applied first to last; see Compose for the rules and its projection.
"""
from __future__ import annotations

import abc
import numbers
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from ..imaging.checks import check_holds_values, check_image_values, check_mask, check_same_device
from ..validation import check_count, check_non_negative

DOWNSAMPLERS = ("area", "bilinear", "bicubic")
GAMUT_MODES = ("desaturate", "clip")
# BT.601 luma weights; they sum to 1, so adding d to R, G and B adds d to the luma.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
# Half a grey level of an 8-bit image: a result within this of the observation quantises back to it.
HALF_GREY_LEVEL = 0.5 / 255
# The cap on conjugate-gradient iterations of the bilinear / bicubic projection. D D^T is well
# conditioned for these kernels (condition number about 4 for bicubic, under 14 for bilinear), so
# the plain projection takes some 10-20 iterations; the rest is for clamping rounds.
DEFAULT_MAX_ITERATIONS = 300
# Clamping rounds stop once the error has fallen by less than 2% over this many rounds: the
# observation is then out of reach within [0, 1], and more rounds only cost time.
STALL_ROUNDS, STALL_RATIO = 10, 0.98


@dataclass(frozen=True)
class ProjectionReport:
    """What a consistency projection achieved.

    clamped_pixels: pixels (positions, any channel) where the plain projection left [0, 1], so
        that the range had to be enforced there; counted on the grid the step was projected on (a
        Compose sums its steps' counts: `parts` has them one by one).
    max_error: max |observe(result) - y| over the fully observed entries (observed_mask == 1), in
        [0, 1] units, y as clamped to [0, 1].
    tolerance: what counts as consistent (HALF_GREY_LEVEL unless the degradation sets another).
    iterations: solver iterations used (0 for the closed-form projections).
    inconsistent_entries: fully observed entries off by more than `tolerance` (0 when consistent).
    notes: one line for each thing a user should know (clamping, an iteration cap that was hit).
    parts: a Compose's reports, one per step in chain order; empty for a single degradation.
    """
    clamped_pixels: int
    max_error: float
    tolerance: float
    iterations: int = 0
    inconsistent_entries: int = 0
    notes: tuple[str, ...] = ()
    parts: tuple["ProjectionReport", ...] = ()

    @property
    def consistent(self) -> bool:
        """Observing the result gives back the observation to within `tolerance`."""
        return self.max_error <= self.tolerance


class Degradation(abc.ABC):
    """A degradation operator (see the module docstring for the conventions)."""

    @abc.abstractmethod
    def observation_shape(self, shape: Sequence[int]) -> tuple[int, int, int, int]:
        """[B, C, H, W] of an input to [B, C', h, w] of its observation; ValueError when it does
        not fit (wrong number of dimensions or channels, a size the operator cannot take)."""

    @abc.abstractmethod
    def input_size(self, size: int | Sequence[int]) -> tuple[int, int]:
        """(h, w) of an observation to the (H, W) of the image it is observed from: what a result
        restored from an observation of that size will measure."""

    @abc.abstractmethod
    def observe(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, 3, H, W] to the observation [B, C, h, w]; differentiable, x is not changed."""

    @abc.abstractmethod
    def observed_mask(self, size: int | Sequence[int], device: torch.device | str | None = None
                      ) -> torch.Tensor:
        """[h, w] float32, 1 = observed, for an observation of size (h, w) (an int: square)."""

    @abc.abstractmethod
    def project(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ProjectionReport]:
        """The result nearest x that is consistent with y, and how consistent it came out."""

    def observation_size(self, size: int | Sequence[int]) -> tuple[int, int]:
        """(H, W) of an input (an int: square) to the (h, w) of its observation."""
        height, width = _size(size, "image size")
        return tuple(self.observation_shape((1, 3, height, width))[2:])

    def observes_like(self, other: "Degradation") -> bool:
        """Whether `other` maps every image to its observation exactly as this one does (where
        it is observed aside: a hole's mask weighs the loss, not the observation). Images
        restored through operators that observe alike are stepped in one vectorised pass."""
        return self == other


# --- checks shared by every degradation -------------------------------------------------------

def _size(size: int | Sequence[int], name: str) -> tuple[int, int]:
    """An int (a square side) or (height, width), each a positive integer."""
    if isinstance(size, numbers.Integral) and not isinstance(size, bool):
        size = (size, size)
    if (not isinstance(size, (tuple, list, torch.Size)) or len(size) != 2
            or any(isinstance(s, bool) or not isinstance(s, numbers.Integral) for s in size)):
        raise ValueError(f"{name} must be an integer side or (height, width), got {size!r}")
    if min(size) < 1:
        raise ValueError(f"{name} must be positive, got {tuple(size)}")
    return int(size[0]), int(size[1])


def _check_batched(x, name: str, channels: int | None) -> None:
    """x must be a tensor [B, C, H, W] (C = `channels` where given) that holds values."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch tensor [B, C, H, W], got {type(x).__name__}")
    check_holds_values(x, name)
    if x.dim() != 4:
        hint = " (a single image? pass image[None])" if x.dim() == 3 else ""
        raise ValueError(f"{name} must be batched, [B, C, H, W], got {tuple(x.shape)}{hint}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{name} must have {channels} channel(s), got {tuple(x.shape)}")
    if not x.dtype.is_floating_point:
        raise ValueError(f"{name} must be floating point with values in [0, 1], got dtype {x.dtype}")


def _shape4(shape: Sequence[int]) -> tuple[int, int, int, int]:
    if len(shape) != 4:
        hint = " (a single image? pass image[None])" if len(shape) == 3 else ""
        raise ValueError(f"an image batch must be [B, C, H, W], got {tuple(shape)}{hint}")
    return tuple(int(s) for s in shape)


def _work_dtype(x: torch.Tensor) -> torch.dtype:
    """Projections compute in float32 at least: exactness to rounding means float32 rounding."""
    return torch.promote_types(x.dtype, torch.float32)


def _prepare(degradation: Degradation, x: torch.Tensor, y: torch.Tensor, channels: int | None
             ) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """project's shared checks: x [B, C, H, W] finite (C = `channels` where given: the spatial
    steps work channel by channel and, inside a chain after Gray, see one), y of exactly
    observe(x)'s shape with values in [0, 1] (overshoot within imaging.RANGE_TOLERANCE is
    clamped, with a note). Returns detached float copies (never the caller's tensors) and the
    notes so far."""
    _check_batched(x, "image", channels)
    _check_batched(y, "observation", None)
    check_same_device({"image": x, "observation": y})
    expected = degradation.observation_shape(x.shape)
    if tuple(y.shape) != expected:
        raise ValueError(f"the observation is {tuple(y.shape)}, but an image {tuple(x.shape)} is "
                         f"observed as {expected} by {degradation!r}")
    finite = torch.isfinite(x)
    if not finite.all():
        raise ValueError(f"image contains {int((~finite).sum())} NaN or infinite value(s); the "
                         "generator's image must be finite to be projected")
    check_image_values(y, "observation")
    dtype = _work_dtype(x)
    x = x.detach().to(dtype, copy=True)
    y = y.detach().to(dtype, copy=True)
    notes = []
    outside = int(((y < 0) | (y > 1)).sum())
    if outside:
        notes.append(f"{outside} observation value(s) slightly outside [0, 1] (resampling "
                     "overshoot) were clamped to it before projecting")
        y.clamp_(0, 1)
    return x, y, notes


def _outside_pixels(values: torch.Tensor) -> int:
    """Positions [B, H, W] where any channel of values [B, C, H, W] is outside [0, 1]."""
    return int(((values < 0) | (values > 1)).any(dim=1).sum())


def _consistency(observed: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None,
                 tolerance: float) -> tuple[float, int]:
    """(max |observed - y|, how many entries exceed `tolerance`) over the entries with mask == 1
    (mask [h, w]; None: all); (0, 0) where none is observed."""
    errors = (observed.to(y.dtype) - y).abs()  # [B, C, h, w]
    if mask is not None:
        errors = errors[..., (mask == 1).expand_as(y[0, 0])]
    if errors.numel() == 0:
        return 0.0, 0
    return float(errors.max()), int((errors > tolerance).sum())


# --- the degradations -------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Hole(Degradation):
    """Inpainting: the observation is the image itself, known where the mask is 0.

    mask: [h, w] on the observation's grid, 1 = hole (imaging's convention; soft values blend in
    the projection and weigh the loss, bool masks are fine). A copy is kept: changing the
    caller's tensor later changes nothing here. eq=False: two Holes are equal only if they are
    the same object (tensors have no single truth value to compare by).
    """
    mask: torch.Tensor

    def __post_init__(self) -> None:
        check_mask(self.mask)
        object.__setattr__(self, "mask", self.mask.detach().clone())

    def __repr__(self) -> str:
        height, width = self.mask.shape
        return f"Hole({width}x{height} mask, {int((self.mask.float() >= 0.5).sum())} hole pixels)"

    def _check_size(self, size: tuple[int, int], what: str) -> None:
        if tuple(size) != tuple(self.mask.shape):
            raise ValueError(f"the hole mask is {self.mask.shape[1]}x{self.mask.shape[0]} "
                             f"(width x height) but the {what} is {size[1]}x{size[0]}: the mask "
                             f"must be on the observation's grid")

    def observation_shape(self, shape: Sequence[int]) -> tuple[int, int, int, int]:
        shape = _shape4(shape)
        self._check_size(shape[2:], "image")
        return shape

    def observes_like(self, other: Degradation) -> bool:
        # The observation is the image itself: any hole of the same size observes alike.
        return isinstance(other, Hole) and other.mask.shape == self.mask.shape

    def input_size(self, size: int | Sequence[int]) -> tuple[int, int]:
        size = _size(size, "observation size")
        self._check_size(size, "observation")
        return size

    def observe(self, x: torch.Tensor) -> torch.Tensor:
        # [B, C, H, W] -> the same tensor: the loss applies observed_mask.
        _check_batched(x, "image", None)
        self.observation_shape(x.shape)
        return x

    def observed_mask(self, size: int | Sequence[int], device: torch.device | str | None = None
                      ) -> torch.Tensor:
        # [h, w]: 1 - mask, the weight fit.py gives known pixels (soft masks give soft weights).
        self._check_size(_size(size, "observation size"), "observation")
        return (1 - self.mask.float()).to(device if device is not None else self.mask.device)

    def project(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ProjectionReport]:
        x, y, notes = _prepare(self, x, y, None)
        mask = self.mask.to(x.device)
        clamped = _outside_pixels(torch.where(mask > 0, x, 0.5))
        if clamped:
            notes.append(f"{clamped} hole pixel(s) of the generator's image were outside [0, 1] "
                         "and were clamped")
        result = _blend(y, x.clamp(0, 1), mask)
        error, off = _consistency(result, y, self.observed_mask(tuple(mask.shape), x.device),
                                  HALF_GREY_LEVEL)
        return result, ProjectionReport(clamped_pixels=clamped, max_error=error,
                                        tolerance=HALF_GREY_LEVEL, inconsistent_entries=off,
                                        notes=tuple(notes))


def _blend(known: torch.Tensor, fill: torch.Tensor, hole_mask: torch.Tensor) -> torch.Tensor:
    """imaging.composite for [B, C, H, W] with any C: known * (1 - m) + fill * m, and `known`
    bit for bit where m == 0 (whatever fill holds there, inf and NaN included)."""
    m = hole_mask.to(known.dtype)[None, None]  # [1, 1, H, W]
    blended = known * (1 - m) + fill * m
    return torch.where(m > 0, blended, known)


@dataclass(frozen=True)
class Downsample(Degradation):
    """Super-resolution by an integer factor: the observation is the image `factor` times smaller.

    kernel: how the low-resolution image was made. "area": the mean of factor x factor blocks
    (F.avg_pool2d); "bilinear" / "bicubic": antialiased resampling as PIL and torchvision make
    thumbnails (F.interpolate(..., antialias=True, align_corners=False)). No default: the kernel
    decides what consistency means, and a result projected for one is not consistent for another.
    tolerance: the bilinear / bicubic projection iterates until max |D(result) - y| is at most
    this (half an 8-bit grey level by default); area is exact to rounding whatever it is.
    max_iterations: cap on the conjugate-gradient iterations of one bilinear / bicubic projection.
    factor 1 is the identity (a task with no upscaling, e.g. colorization in a chain).
    """
    factor: int
    kernel: str
    tolerance: float = HALF_GREY_LEVEL
    max_iterations: int = DEFAULT_MAX_ITERATIONS

    def __post_init__(self) -> None:
        if isinstance(self.factor, bool) or not isinstance(self.factor, numbers.Integral):
            raise ValueError(f"the downsampling factor must be a positive integer (2, 3, 4, 8, ...), "
                             f"got {self.factor!r}")
        if self.factor < 1:
            raise ValueError(f"the downsampling factor must be a positive integer (2, 3, 4, 8, ...), "
                             f"got {self.factor}")
        object.__setattr__(self, "factor", int(self.factor))
        if self.kernel not in DOWNSAMPLERS:
            raise ValueError(f"unknown downsampler {self.kernel!r}; accepted: {', '.join(DOWNSAMPLERS)}")
        if not 0 < check_non_negative(self.tolerance, "the projection tolerance"):
            raise ValueError(f"the projection tolerance must be positive, got {self.tolerance}")
        check_count(self.max_iterations, "the projection's max iterations", 1)

    def observation_shape(self, shape: Sequence[int]) -> tuple[int, int, int, int]:
        batch, channels, height, width = _shape4(shape)
        if height % self.factor or width % self.factor:
            raise ValueError(f"the factor {self.factor} does not divide the image size "
                             f"{width}x{height} (width x height): both sides must be multiples "
                             f"of {self.factor}")
        if self.kernel != "area" and self.factor > 1 and min(height, width) < 2 * self.factor:
            # torch's antialiased resampling to a side of one pixel weighs every output row alike
            raise ValueError(f"{self.kernel} downsampling by {self.factor} needs an image at "
                             f"least {2 * self.factor} pixels on a side (two low-resolution "
                             f"pixels), got {width}x{height} (width x height)")
        return batch, channels, height // self.factor, width // self.factor

    def input_size(self, size: int | Sequence[int]) -> tuple[int, int]:
        height, width = _size(size, "observation size")
        return height * self.factor, width * self.factor

    def observe(self, x: torch.Tensor) -> torch.Tensor:
        # [B, C, H, W] -> [B, C, H/F, W/F]
        _check_batched(x, "image", None)
        self.observation_shape(x.shape)
        return self._down(x)

    def _down(self, x: torch.Tensor) -> torch.Tensor:
        if self.factor == 1:
            return x
        if self.kernel == "area":
            return F.avg_pool2d(x, self.factor)
        if x.dtype in (torch.bfloat16, torch.float16):
            x = x.float()  # CPU antialiased resampling has no bf16/fp16 kernel
        size = (x.shape[2] // self.factor, x.shape[3] // self.factor)
        return F.interpolate(x, size=size, mode=self.kernel, antialias=True, align_corners=False)

    def _linear_maps(self, size: tuple[int, int], dtype: torch.dtype, device: torch.device
                     ) -> tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]:
        """(D, D^T) for images of `size` (H, W), as matrix products.

        PyTorch's antialiased resampling is separable (one pass per axis), so D x = A_h x A_w^T
        with A_h [h, H] and A_w [w, W], read off by resampling identity matrices; D^T v is then
        A_h^T v A_w, two small matrix products instead of an autograd pass. The products equal
        F.interpolate to float rounding; the projection still measures its error with the real D.
        """
        height, width = size

        def axis(length: int) -> torch.Tensor:  # [length / F, length]
            # Each row of the identity as an image 2F wide with equal columns, so the other
            # axis's pass keeps it (its weights sum to 1). Not 1 wide: torch 2.x's antialiased
            # kernels resample a one-pixel-wide image wrongly.
            eye = torch.eye(length, dtype=dtype, device=device)[:, None, :, None]
            eye = eye.expand(length, 1, length, 2 * self.factor)  # [L, 1, L, 2F]
            out = F.interpolate(eye, size=(length // self.factor, 2), mode=self.kernel,
                                antialias=True, align_corners=False)  # [L, 1, L/F, 2]
            return out[:, 0, :, 0].T.contiguous()

        rows, cols = axis(height), axis(width)
        return (lambda x: rows @ x @ cols.T), (lambda v: rows.T @ v @ cols)

    def observed_mask(self, size: int | Sequence[int], device: torch.device | str | None = None
                      ) -> torch.Tensor:
        return torch.ones(_size(size, "observation size"), device=device)

    def project(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ProjectionReport]:
        # x [B, C, H, W], y [B, C, H/F, W/F] -> result [B, C, H, W]
        x, y, notes = _prepare(self, x, y, None)
        iterations, stop = 0, None
        if self.factor == 1:  # the identity: the only consistent image is the observation
            result, clamped = y, 0
        elif self.kernel == "area":
            result, clamped = self._project_area(x, y)
        else:
            result, clamped, iterations, stop = self._project_iterative(x, y)
        if clamped:
            notes.append(f"super-resolution: {clamped} pixel(s) of the projection fell outside "
                         "[0, 1]; the range was enforced there, keeping the downsampled image")
        error, off = _consistency(self._down(result), y, None, self.tolerance)
        if stop is not None:
            why = (f"stopped at its cap of {self.max_iterations} iterations" if stop == "cap" else
                   "stopped improving")
            notes.append(f"{self.kernel} back-projection {why}: {off} of {y.numel()} "
                         f"low-resolution values of the result differ from the input by more "
                         f"than {self.tolerance:.3g} (up to {error:.3g}). No image within [0, 1] "
                         "may downsample to them exactly (8-bit rounding and clipping at hard "
                         "edges do this); if the input was made with another downsampler, name "
                         "that one")
        return result, ProjectionReport(clamped_pixels=clamped, max_error=error,
                                        tolerance=self.tolerance, iterations=iterations,
                                        inconsistent_entries=off, notes=tuple(notes))

    def _project_area(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, int]:
        """(result, clamped pixels): the image nearest x (least squares) with block means y and values in [0, 1].

        Without the range it is x + U(y - D x) (exact: D U = identity). A block of that which
        leaves [0, 1] becomes clip(block + c, 0, 1) with the one shift c that brings its mean
        back to y (the nearest point of {mean = y} within [0, 1], found by bisection in float64),
        so the block mean stays exact wherever y is in [0, 1].
        """
        f = self.factor
        plain = x + _upsample_nearest(y - self._down(x), f)  # [B, C, H, W]
        outside = (plain < 0) | (plain > 1)
        if not outside.any():
            return plain, 0
        batch, channels, height, width = plain.shape
        h, w = height // f, width // f

        def blocks(t: torch.Tensor) -> torch.Tensor:  # [B, C, H, W] -> [B, C, h, w, F*F]
            return t.reshape(batch, channels, h, f, w, f).permute(0, 1, 2, 4, 3, 5).reshape(
                batch, channels, h, w, f * f)

        plain_blocks = blocks(plain)
        bad = blocks(outside).any(-1)  # [B, C, h, w]: blocks to shift
        values = plain_blocks[bad].double()  # [n, F*F]
        target = y[bad].double()  # [n]
        # mean(clip(values + c, 0, 1)) rises monotonically from 0 (c = -max) to 1 (c = 1 - min).
        low, high = -values.max(-1).values, 1 - values.min(-1).values
        for _ in range(64):
            middle = (low + high) / 2
            below = (values + middle[:, None]).clamp(0, 1).mean(-1) < target
            low, high = torch.where(below, middle, low), torch.where(below, high, middle)
        shifted = (values + ((low + high) / 2)[:, None]).clamp(0, 1).to(plain.dtype)
        plain_blocks = plain_blocks.clone()
        plain_blocks[bad] = shifted
        result = plain_blocks.reshape(batch, channels, h, w, f, f).permute(0, 1, 2, 4, 3, 5).reshape(
            batch, channels, height, width)
        return result, int(outside.any(dim=1).sum())

    def _project_iterative(self, x: torch.Tensor, y: torch.Tensor
                           ) -> tuple[torch.Tensor, int, int, str | None]:
        """(result, clamped pixels, iterations, why it stopped short: None, "cap" or "stalled")
        for bilinear / bicubic.

        Each round is the least-squares projection onto {D z = y}: z + D^T r with D D^T r =
        y - D z solved by conjugate gradients (D D^T is symmetric positive definite and well
        conditioned); then [0, 1] is enforced by clamping. Rounds alternate the two (projections
        onto convex sets) until the clamped image is within tolerance, the iterations run out,
        or the error stops falling (no image within [0, 1] reaches y: an 8-bit, clipped input
        with hard edges; the round with the smallest error is returned then). The first round
        alone is the nearest consistent image; the clamped pixels counted are those that round
        left outside [0, 1]. (A semismooth Newton method on the dual finds the nearest image in
        [0, 1] faster where one exists, but where 8-bit rounding puts none within reach it
        diverges and ends further off than these rounds do.)
        """
        down, adjoint = self._linear_maps(tuple(x.shape[2:]), x.dtype, x.device)
        # The linear solve aims well inside the tolerance so that clamping has room.
        inner = self.tolerance / 4
        current, used, clamped, errors, best = x, 0, None, [], None
        while True:
            current, steps = _solve(current, y, inner, self.max_iterations - used, down, adjoint)
            used += steps
            if clamped is None:
                clamped = _outside_pixels(current)
            current = current.clamp(0, 1)
            errors.append(float((self._down(current) - y).abs().max()))
            if best is None or errors[-1] < best[0]:  # the error need not fall every round
                best = errors[-1], current
            if errors[-1] <= self.tolerance:
                return current, clamped, used, None
            if used >= self.max_iterations:
                return best[1], clamped, used, "cap"
            if len(errors) > STALL_ROUNDS and errors[-1] > STALL_RATIO * errors[-1 - STALL_ROUNDS]:
                return best[1], clamped, used, "stalled"


def _solve(z: torch.Tensor, y: torch.Tensor, tolerance: float, budget: int,
           down: Callable[[torch.Tensor], torch.Tensor], adjoint: Callable[[torch.Tensor], torch.Tensor]
           ) -> tuple[torch.Tensor, int]:
    """z + D^T r with D D^T r = y - D z by conjugate gradients (z [B, C, H, W], y and r
    [B, C, h, w]), at most `budget` iterations, stopping when max |y - D(z + D^T r)| <= tolerance.
    The residual is recomputed exactly every 10 iterations so that float32 drift cannot fake
    convergence."""
    solution = torch.zeros_like(y)
    residual = y - down(z)
    direction = residual.clone()
    norm = torch.sum(residual * residual)
    iterations = 0
    while iterations < budget and float(residual.abs().max()) > tolerance:
        product = down(adjoint(direction))
        curvature = torch.sum(direction * product)
        if float(curvature) <= 0:
            break
        step = norm / curvature
        solution = solution + step * direction
        iterations += 1
        if iterations % 10 == 0:
            residual = y - down(z + adjoint(solution))
        else:
            residual = residual - step * product
        new_norm = torch.sum(residual * residual)
        direction = residual + (new_norm / norm) * direction
        norm = new_norm
    return z + adjoint(solution), iterations


def _upsample_nearest(v: torch.Tensor, factor: int) -> torch.Tensor:
    """[B, C, h, w] -> [B, C, h*F, w*F], every value repeated over its F x F block."""
    if factor == 1:
        return v
    return v.repeat_interleave(factor, dim=2).repeat_interleave(factor, dim=3)


@dataclass(frozen=True)
class Gray(Degradation):
    """Colorization: the observation is the BT.601 luma, one channel [B, 1, H, W].

    One channel rather than three equal ones: the loss then counts each observed value once, and
    a gray image read as RGB (three equal channels) gives its own values back through observe
    (Y of (v, v, v) is v, to float rounding). A perceptual network that wants three channels gets
    y.expand(-1, 3, -1, -1).

    gamut: what the projection does with a colour that leaves the RGB cube once its luma is set
    to the observed one. "desaturate" (the default) moves it towards the gray of that luma until
    it fits: the luma stays exact everywhere (for observed luma in [0, 1]) and only saturation is
    lost. "clip" clips each channel to [0, 1], as mGANprior does: those pixels lose luma.
    """
    gamut: str = "desaturate"

    def __post_init__(self) -> None:
        if self.gamut not in GAMUT_MODES:
            raise ValueError(f"unknown gamut mode {self.gamut!r}; accepted: {', '.join(GAMUT_MODES)}")

    def observation_shape(self, shape: Sequence[int]) -> tuple[int, int, int, int]:
        batch, channels, height, width = _shape4(shape)
        if channels != 3:
            raise ValueError(f"colorization observes RGB images [B, 3, H, W], got {channels} "
                             "channel(s): apply Gray before any step that leaves one channel")
        return batch, 1, height, width

    def input_size(self, size: int | Sequence[int]) -> tuple[int, int]:
        return _size(size, "observation size")

    def observe(self, x: torch.Tensor) -> torch.Tensor:
        # [B, 3, H, W] -> [B, 1, H, W]
        _check_batched(x, "image", None)
        self.observation_shape(x.shape)
        return luma(x)

    def observed_mask(self, size: int | Sequence[int], device: torch.device | str | None = None
                      ) -> torch.Tensor:
        return torch.ones(_size(size, "observation size"), device=device)

    def project(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ProjectionReport]:
        x, y, notes = _prepare(self, x, y, 3)
        chroma = x - luma(x)  # [B, 3, H, W]: luma(chroma) = 0 to rounding
        plain = y + chroma  # luma y, x's chroma
        outside = (plain < 0) | (plain > 1)
        clamped = int(outside.any(dim=1).sum())
        if self.gamut == "clip":
            result = plain.clamp(0, 1)
            if clamped:
                notes.append(f"colorization: {clamped} pixel(s) left the RGB gamut and were "
                             "clipped; their luma differs from the input's")
        else:
            # The largest s in [0, 1] with y + s * chroma inside [0, 1] in every channel.
            room = torch.where(chroma > 0, (1 - y) / chroma.clamp_min(torch.finfo(x.dtype).tiny),
                               torch.where(chroma < 0, y / (-chroma).clamp_min(torch.finfo(x.dtype).tiny),
                                           torch.ones_like(chroma)))
            scale = room.amin(dim=1, keepdim=True).clamp(0, 1)  # [B, 1, H, W]
            scale = torch.where(outside.any(dim=1, keepdim=True), scale, torch.ones_like(scale))
            # Rounding may put a value an ulp outside [0, 1]; clamping that moves the luma by as much.
            result = (y + scale * chroma).clamp(0, 1)
            if clamped:
                notes.append(f"colorization: {clamped} pixel(s) left the RGB gamut at the input's "
                             "luma and were desaturated to fit (their luma is kept)")
        error, off = _consistency(luma(result), y, None, HALF_GREY_LEVEL)
        return result, ProjectionReport(clamped_pixels=clamped, max_error=error,
                                        tolerance=HALF_GREY_LEVEL, inconsistent_entries=off,
                                        notes=tuple(notes))


def luma(x: torch.Tensor) -> torch.Tensor:
    """BT.601 luma of [B, 3, H, W] as [B, 1, H, W]: 0.299 R + 0.587 G + 0.114 B (what mGANprior's
    colorization compares, and PIL's convert("L") before rounding)."""
    red, green, blue = LUMA_WEIGHTS
    return red * x[:, 0:1] + green * x[:, 1:2] + blue * x[:, 2:3]


@dataclass(frozen=True, eq=False)
class Compose(Degradation):
    """A chain of degradations, applied first to last: Compose((Gray(), Downsample(2, "area"),
    Hole(mask))) observes luma(x), downsampled, with a hole on the low-resolution grid.

    Rules, checked when built: at least one step; nested chains are flattened; a Hole may only be
    the last step (its mask is on the observation's grid, and an entry of a later grid that mixes
    hole and known pixels would be neither); Gray at most once (it leaves one channel).
    Gray and Downsample commute (both are linear and per-pixel / per-channel), so their order
    changes nothing in what is observed; restoration_chain builds the usual order.

    observed_mask is the last step's (the Hole's, or all ones).

    The projection runs back to front: the observation fixes what the last step's input must be
    (its projection of the chain's own intermediate image onto y), that fixes the step before, and
    so on to the generator's grid. Each step's projection is consistent with its target, so the
    whole chain is consistent with y on the observed entries. Unobserved entries (the hole of a
    final Hole) are held at the chain's own value of the generator's image, so they ask nothing of
    the earlier steps: with area downsampling a low-resolution hole pixel's block is left as the
    generator made it (to float rounding, where nothing needed clamping), and the observation's
    values in the hole are never read.
    """
    steps: tuple[Degradation, ...]

    def __post_init__(self) -> None:
        if isinstance(self.steps, Degradation) or not isinstance(self.steps, (tuple, list)):
            raise ValueError("Compose takes a sequence of degradations, e.g. Compose((Gray(), "
                             f"Downsample(2, 'area'))), got {type(self.steps).__name__}")
        flat: list[Degradation] = []
        for step in self.steps:
            if not isinstance(step, Degradation):
                raise ValueError(f"Compose's steps must be degradations (Hole, Downsample, Gray, "
                                 f"Compose), got {type(step).__name__}")
            flat.extend(step.steps if isinstance(step, Compose) else (step,))
        if not flat:
            raise ValueError("Compose needs at least one degradation")
        for index, step in enumerate(flat[:-1]):
            if isinstance(step, Hole):
                raise ValueError(f"a Hole must be the last step of a chain (its mask is on the "
                                 f"observation's grid); it is step {index + 1} of {len(flat)}")
        if sum(isinstance(step, Gray) for step in flat) > 1:
            raise ValueError("a chain may hold Gray only once (it leaves one channel)")
        object.__setattr__(self, "steps", tuple(flat))

    def __repr__(self) -> str:
        return f"Compose({', '.join(repr(step) for step in self.steps)})"

    def observes_like(self, other: Degradation) -> bool:
        return (isinstance(other, Compose) and len(other.steps) == len(self.steps)
                and all(mine.observes_like(theirs) for mine, theirs in zip(self.steps, other.steps)))

    def observation_shape(self, shape: Sequence[int]) -> tuple[int, int, int, int]:
        shape = _shape4(shape)
        for step in self.steps:
            shape = step.observation_shape(shape)
        return shape

    def input_size(self, size: int | Sequence[int]) -> tuple[int, int]:
        size = _size(size, "observation size")
        for step in reversed(self.steps):
            size = step.input_size(size)
        return size

    def observe(self, x: torch.Tensor) -> torch.Tensor:
        _check_batched(x, "image", 3)
        self.observation_shape(x.shape)
        for step in self.steps:
            x = step.observe(x)
        return x

    def observed_mask(self, size: int | Sequence[int], device: torch.device | str | None = None
                      ) -> torch.Tensor:
        return self.steps[-1].observed_mask(size, device)

    def project(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ProjectionReport]:
        x, y, notes = _prepare(self, x, y, 3)
        # Forward: the chain's intermediate images of x; intermediates[i] is step i's input.
        intermediates = [x]
        with torch.no_grad():
            for step in self.steps[:-1]:
                intermediates.append(step.observe(intermediates[-1]))
        # Backward: each step's target is the projection of its own input onto the next target.
        target, reports = y, []
        for step, current in zip(reversed(self.steps), reversed(intermediates)):
            projected, report = step.project(current, target)
            reports.append(report)
            target = projected
        reports.reverse()
        result = target
        mask = self.observed_mask(tuple(y.shape[2:]), y.device)
        tolerance = max(report.tolerance for report in reports)
        error, off = _consistency(self.observe(result), y, mask, tolerance)
        notes += [note for report in reports for note in report.notes]
        return result, ProjectionReport(
            clamped_pixels=sum(report.clamped_pixels for report in reports), max_error=error,
            tolerance=tolerance, iterations=sum(report.iterations for report in reports),
            inconsistent_entries=off, notes=tuple(notes), parts=tuple(reports))


def restoration_chain(*, gray: bool = False, scale: int = 1, downsampler: str | None = None,
                      hole_mask: torch.Tensor | None = None) -> Degradation:
    """The degradation of a restoration task, in the usual order Gray, Downsample, Hole.

    gray: the input is gray (colorization); scale: the integer upscaling factor (1: none);
    downsampler: the kernel the input was made with (required when scale > 1, one of
    DOWNSAMPLERS); hole_mask: [h, w] on the input's grid, 1 = hole. With a single task this
    returns that step itself; with none (nothing to restore) a ValueError.
    """
    steps: list[Degradation] = []
    if not isinstance(gray, bool):
        raise ValueError(f"gray must be True or False, got {gray!r}")
    if gray:
        steps.append(Gray())
    if isinstance(scale, bool) or not isinstance(scale, numbers.Integral) or scale < 1:
        raise ValueError(f"the scale must be a positive integer (1, 2, 3, 4, 8, ...), got {scale!r}")
    if scale > 1:
        if downsampler is None:
            raise ValueError(f"a scale of {scale} needs the downsampler the input was made with; "
                             f"accepted: {', '.join(DOWNSAMPLERS)}")
        steps.append(Downsample(int(scale), downsampler))
    elif downsampler is not None and downsampler not in DOWNSAMPLERS:
        raise ValueError(f"unknown downsampler {downsampler!r}; accepted: {', '.join(DOWNSAMPLERS)}")
    if hole_mask is not None:
        steps.append(Hole(hole_mask))
    if not steps:
        raise ValueError("nothing to restore: give a hole mask, a scale above 1, or gray")
    return steps[0] if len(steps) == 1 else Compose(tuple(steps))


__all__ = ["DOWNSAMPLERS", "GAMUT_MODES", "HALF_GREY_LEVEL", "LUMA_WEIGHTS", "Compose", "Degradation",
           "Downsample", "Gray", "Hole", "ProjectionReport", "luma", "restoration_chain"]
