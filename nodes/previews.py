"""What GAN-Prior Inpaint shows on its node while it runs and after: the progress bar (towards the
run's expected length, revised as auto-stop's held-out error evolves: the library's
BatchProgress), one line of text saying what the run waits for, live previews, and at the end the
image the node returns, large enough to see.

ComfyUI's frontend (1.35) draws a node's latest live preview in preference to the images its
output carries, and draws a picture no larger than its own pixels: so the last preview sent is
the returned image, scaled up by a whole factor (nearest neighbour: each pixel a visible square),
and the same pictures go out as the node's UI images for frontends that draw those.
"""
from __future__ import annotations

import math
import os
import uuid

import torch
from PIL import Image

from ..ganprior_core import BatchProgress, Progress, TogetherProgress
from . import host, tensors

DISPLAY_SIZE = host.PREVIEW_MAX_SIZE  # the longer side a small result is scaled up to, at most
GRID_COLUMNS = 4  # a batch's results side by side, this many a row


def display_image(image: torch.Tensor, size: int = DISPLAY_SIZE) -> Image.Image:
    """[3, H, W] in [0, 1] as an RGB picture scaled up by the largest whole factor that keeps its
    longer side within `size` (nearest neighbour; a picture that large already is unchanged)."""
    picture = tensors.to_pil(image)
    factor = max(1, size // max(picture.size))
    if factor == 1:
        return picture
    return picture.resize((picture.width * factor, picture.height * factor), Image.Resampling.NEAREST)


def grid(pictures: list[Image.Image], columns: int = GRID_COLUMNS, gap: int = 4) -> Image.Image:
    """Pictures side by side, `columns` a row, on white; each cell the size of the largest."""
    if len(pictures) == 1:
        return pictures[0]
    width, height = max(p.width for p in pictures), max(p.height for p in pictures)
    columns = min(columns, len(pictures))
    rows = math.ceil(len(pictures) / columns)
    sheet = Image.new("RGB", (columns * width + (columns - 1) * gap, rows * height + (rows - 1) * gap),
                      "white")
    for index, picture in enumerate(pictures):
        row, column = divmod(index, columns)
        sheet.paste(picture, (column * (width + gap), row * (height + gap)))
    return sheet


def result_picture(images: torch.Tensor) -> Image.Image:
    """The node's picture of its returned images [B, 3, H, W]: each scaled up (display_image),
    a batch in a grid that fits DISPLAY_SIZE."""
    columns = min(GRID_COLUMNS, len(images))
    rows = math.ceil(len(images) / columns)
    cell = max(1, DISPLAY_SIZE // max(columns, rows))
    return grid([display_image(image, cell) for image in images], columns)


def save_ui_images(images: torch.Tensor) -> list[dict] | None:
    """The returned images, scaled up as the node shows them, as PNGs in ComfyUI's temp folder;
    their entries for the node's UI output ({"filename", "subfolder", "type": "temp"}, as
    PreviewImage's). None outside ComfyUI."""
    folder = host.temp_folder()
    if folder is None:
        return None
    os.makedirs(folder, exist_ok=True)
    stem = f"ganprior_inpaint_{uuid.uuid4().hex[:12]}"
    entries = []
    for index, image in enumerate(images):
        filename = f"{stem}_{index:03d}.png"
        display_image(image).save(os.path.join(folder, filename), compress_level=1)
        entries.append({"filename": filename, "subfolder": "", "type": "temp"})
    return entries


class InpaintProgress:
    """GAN-Prior Inpaint's display for a batch of `count` images with at most `max_steps` each."""

    def __init__(self, count: int, max_steps: int, clock=None) -> None:
        self.count, self.max_steps = count, max_steps
        self.batch = BatchProgress(count)
        self.bar = host.ProgressBar(count * max_steps, clock=clock)

    def _prefix(self, index: int) -> str:
        return f"image {index + 1} of {self.count}: " if self.count > 1 else ""

    def reporter(self, index: int):
        """The library's callback for image `index`: checks for Cancel, moves the bar, shows the
        live preview (the generator's image at the prior's resolution) and what the run waits for."""
        def report(progress: Progress):
            host.throw_if_interrupted()
            value, total = self.batch.bar(progress)
            preview = None if progress.preview is None else tensors.to_pil(progress.preview)
            text = self._prefix(index) + progress.describe(self.batch.typical())
            self.bar.update(value, preview, total=total, text=text)
        return report

    def finished(self, index: int, steps_run: int, result: torch.Tensor, line: str) -> None:
        """Image `index` is done: the bar counts the steps it took and the node shows `result`
        (what it returns for the image: the filled image, or a reconstruction) and `line`
        (InpaintResult.summary: the info output has the rest)."""
        value, total = self.batch.finish(steps_run)
        if total <= 0:  # nothing but unconditional samples so far: no steps, a full bar
            value = total = 1
        self.bar.update(value, display_image(result), total=total,
                        text=self._prefix(index) + line, preview_format="PNG")
        self.bar.flush()

    def done(self, composites: torch.Tensor) -> dict | None:
        """After the batch: the node's last picture is what it returns (`composites`, one per
        image, as `finished` showed them); the UI output for the node, or None outside ComfyUI."""
        if self.count > 1:
            value = total = max(1, sum(self.batch.finished))
            text = f"done: {self.count} images, {sum(self.batch.finished)} steps in all (see info)"
            self.bar.update(value, result_picture(composites), total=total, text=text,
                            preview_format="PNG")
        self.bar.flush()
        images = save_ui_images(composites)
        return None if images is None else {"images": images}


class InpaintTogetherProgress(InpaintProgress):
    """InpaintProgress for a batch whose images are optimised together (the library's
    inpaint_batch_any_size): the bar counts every image's steps as they are made (the library's
    TogetherProgress), the preview and line are those of the image reporting. Once the batch is
    done every step has been made, so the bar stays full while each image's result is shown in
    turn as InpaintProgress shows it, then all of them."""

    def __init__(self, count: int, max_steps: int, clock=None) -> None:
        super().__init__(count, max_steps, clock)
        self.together = TogetherProgress(count)

    def reporter(self, index: int):
        def report(progress: Progress):
            host.throw_if_interrupted()
            value, total = self.together.bar(index, progress)
            preview = None if progress.preview is None else tensors.to_pil(progress.preview)
            self.bar.update(value, preview, total=total,
                            text=self._prefix(index) + progress.describe())
        return report

    def finished(self, index: int, steps_run: int, result: torch.Tensor, line: str) -> None:
        self.batch.finish(steps_run)  # the tally `done` reports
        steps = max(1, sum(report.steps_done for report in self.together.latest.values()))
        self.bar.update(steps, display_image(result), total=steps,
                        text=self._prefix(index) + line, preview_format="PNG")
        self.bar.flush()
