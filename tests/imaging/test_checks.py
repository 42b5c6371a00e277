"""The value checks every entry point shares (ganprior_core/imaging/checks.py): one hole rule (a mask
value of one half is a hole everywhere), one range conversion, and the same refusal of a wrong
range, dtype or NaN from the metrics and the imaging functions alike."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganprior_core import imaging, metrics
from tests.pack_under_test import ROOT

pytestmark = pytest.mark.usefixtures("one_thread")


def nan_at_hole(image):
    image = image.clone()
    image[:, 5, 5] = float("nan")  # inside the hole: still refused, it would poison the loss
    return image


@pytest.mark.parametrize("call, message", [
    (lambda a, b: metrics.psnr((a * 255).to(torch.uint8), (b * 255).to(torch.uint8)), "floating-point"),
    (lambda a, b: metrics.psnr(nan_at_hole(a), b), "NaN"),
    (lambda a, b: metrics.psnr(a * 255, b * 255), r"\[0, 255\]"),
    (lambda a, b: metrics.ssim(a * 2 - 1, b), r"\[0, 1\]"),
    (lambda a, b: metrics.psnr(a, b, data_range=float("nan")), "data_range"),
    (lambda a, b: metrics.measure(a, b, torch.ones(16, 16) * 255), r"\[0, 1\]"),
    (lambda a, b: imaging.composite(a * 255, b, torch.zeros(16, 16)), r"\[0, 255\]"),
    (lambda a, b: imaging.save_image(nan_at_hole(a), "unused.png"), "NaN"),
    (lambda a, b: imaging.resize_mask(torch.full((4, 4), float("nan")), (2, 2)), "NaN"),
])
def test_metrics_and_imaging_refuse_wrong_ranges(call, message):
    a, b = torch.rand(3, 16, 16), torch.rand(3, 16, 16)
    with pytest.raises(ValueError, match=message):
        call(a, b)


def test_a_mask_value_of_exactly_one_half_is_a_hole_everywhere(tmp_path, tiny_generator):
    from ganprior_core.lab import baselines
    from ganprior_core.lab.dip import DIPConfig, dip_inpaint
    from ganprior_core.method.auto_stop import AutoStopConfig, holdout_mask
    from ganprior_core.optimize import inpaint, preset
    half = torch.full((16, 16), 0.5)
    assert imaging.hole_pixels(half).all()
    assert imaging.resize_mask(half, (8, 8)).eq(1).all()
    assert imaging.resize_mask(half, (16, 16)).eq(1).all()
    Image.fromarray(np.full((16, 16), 0.5, np.float32), "F").save(tmp_path / "half.tif")
    assert imaging.load_mask(tmp_path / "half.tif").eq(1).all()
    assert holdout_mask(half, 0, AutoStopConfig()).eq(0).all()
    model, optimizer = preset("mganprior", tiny_generator.config)
    image = torch.rand(3, 16, 16)
    result = inpaint(tiny_generator, image, half, model, optimizer, 0)
    assert any("covers the whole image" in note for note in result.notes)
    dip = dip_inpaint(image, half, DIPConfig(steps=1, precision="fp32"), 0)
    assert any("covers the whole image" in note for note in dip.notes)
    one = torch.zeros(16, 16)
    one[3, 3] = 0.5
    filled = baselines.mean_fill(image, one)
    assert not torch.equal(filled[:, 3, 3], image[:, 3, 3])
    assert metrics.measure(image, image, one).psnr_hole is not None


def code_lines(path: Path) -> dict[int, str]:
    """Each line's code without strings and comments (docstrings may quote the rule)."""
    import tokenize
    lines: dict[int, str] = {}
    with open(path, "rb") as stream:
        for token in tokenize.tokenize(stream.readline):
            if token.type in (tokenize.STRING, tokenize.COMMENT, tokenize.ENCODING):
                continue
            lines[token.start[0]] = lines.get(token.start[0], "") + " " + token.string
    return lines


def test_no_second_hole_threshold_or_range_conversion_in_the_code():
    checks = ROOT / "ganprior_core" / "imaging" / "checks.py"
    pattern = re.compile(r"[<>]=?\s*0\.5\b|[<>]=?\s*HOLE_THRESHOLD|\*\s*2\s*-\s*1\b|\+\s*1\)\s*/\s*2|"
                         r"^HOLE_THRESHOLD\s*=|\b(IMAGE_SUFFIXES|EXTENSIONS)\s*=\s*[({\[]\s*,")
    offenders = []
    for path in [*sorted((ROOT / "ganprior_core").rglob("*.py")), *sorted((ROOT / "nodes").glob("*.py"))]:
        if path == checks:
            continue
        for number, code in code_lines(path).items():
            code = re.sub(r"\s+", " ", code).replace("( ", "(").replace(" )", ")").strip()
            if pattern.search(code) and "rng . random" not in code and "_COLS + 0.5" not in code:
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {code.strip()}")
    # load_mask compares a NumPy array with HOLE_THRESHOLD (>=, the same rule).
    allowed = ("imaging/image_files.py", "IMAGE_SUFFIXES = tuple(")
    assert [o for o in offenders if not any(a in o for a in allowed)] == []
