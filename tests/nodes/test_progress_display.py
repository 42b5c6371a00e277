"""What GAN-Prior Inpaint shows while it runs and after (issue 35): a progress bar towards the run's
expected length, revised from auto-stop's state (the library's arithmetic: auto_stop.expected_steps,
Progress, BatchProgress), one line saying what the run waits for, the throttle kept, and at the
end the image the node returns, scaled up, as its last picture and its UI output."""
from __future__ import annotations

import io
import re
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from tests.nodes.node_runs import STEPS, FakeClock, box_mask, build, fast_optimizer, inpaint, photo
from tests.pack_under_test import load_pack, pack_module

pytestmark = pytest.mark.usefixtures("one_thread")


def auto_stop():
    return pack_module("ganprior_core.method.auto_stop")


def results():
    return pack_module("ganprior_core.method.results")


def state(last_check, best_step, checks_since_best, check_every=25, patience=2):
    return auto_stop().StopState(check_every, patience, last_check, best_step, checks_since_best)


# --- The library's arithmetic ------------------------------------------------------------------

def test_the_stop_rule_stops_patience_checks_after_its_best():
    assert state(None, None, 0).stops_at == 50  # step 0's check will be the first best
    assert state(225, 225, 0).stops_at == 275
    assert state(250, 225, 1).stops_at == 275  # one check failed to improve: the next ends it
    assert state(50, None, 1).stops_at == 75  # a non-finite first check counts towards patience


def test_the_expected_length_is_a_typical_run_until_the_rule_says_more_and_never_past_the_max():
    expected = auto_stop().expected_steps
    assert expected(None, 3000) == 3000  # no rule (fixed, or nothing to watch): the steps set
    assert expected(state(100, 100, 0), 3000) == auto_stop().TYPICAL_AUTO_STOP_STEPS == 500
    assert expected(state(600, 600, 0), 3000) == 650  # still improving late: one check at a time
    assert expected(state(625, 600, 1), 3000) == 650
    assert expected(state(2975, 2975, 0), 3000) == 3000
    assert expected(state(100, 100, 0), 300) == 300  # a lower maximum caps it
    assert expected(state(100, 100, 0), 3000, typical=275) == 275  # a batch's own typical length


def test_the_issue_run_shows_progress_towards_its_stop_not_the_maximum():
    """The run of issue 35: at most 3000 steps, auto-stop ended it at 475 (best check 425). The bar
    read 7 % after 100 s; now it reads its share of the expected 500 steps, and completes."""
    Progress = results().Progress
    rule = auto_stop().StopRule(auto_stop().AutoStopConfig())
    shown = []
    for step in range(3000):
        if rule.is_check(step):  # improving until 425, then two checks without improvement
            rule.record(step, 1.0 / (step + 1) if step <= 425 else 1.0)
            if rule.should_stop:
                break
        progress = Progress(step + 1, 3000, stop=rule.state())
        shown.append(results().BatchProgress(1).bar(progress))
    assert step == 475 == rule.state().last_check
    value, total = shown[99]
    assert (value, total) == (100, 500)  # 20 %, not 100 / 3000 = 3 %
    assert all(value <= total for value, total in shown)
    assert len(shown) == 475 and {total for _, total in shown} == {500}  # no jump, no stall
    last = Progress(3000, 3000, stopped_early=True, stop=rule.state())
    assert last.steps_done == last.expected_total() == 475
    assert results().BatchProgress(1).bar(last) == (475, 475)  # the bar ends full, at 475


def test_a_fixed_batch_counts_plainly_and_an_auto_batch_learns_its_typical_length():
    Progress, BatchProgress = results().Progress, results().BatchProgress
    fixed = BatchProgress(3)
    assert fixed.bar(Progress(10, 40)) == (10, 120)
    assert fixed.finish(40) == (40, 120)
    assert fixed.bar(Progress(5, 40)) == (45, 120)
    auto = BatchProgress(3)
    early = Progress(100, 3000, stop=state(100, 100, 0))
    assert auto.bar(early) == (100, 1500)  # three runs of a typical 500
    assert auto.finish(275) == (275, 825)  # the later two are now expected to take 275 each
    assert auto.typical() == 275
    assert auto.bar(Progress(100, 3000, stop=state(100, 100, 0))) == (375, 825)
    assert auto.bar(Progress(400, 3000, stop=state(400, 400, 0))) == (675, 1000)  # revised up
    assert auto.finish(450) == (725, 725 + 362)
    sample = BatchProgress(1)
    assert sample.finish(0) == (0, 0)  # an unconditional sample takes no steps


def test_the_progress_line_says_what_the_run_waits_for():
    Progress = results().Progress
    assert Progress(260, 3000).describe() == "step 260 of 3000"
    assert Progress(110, 3000, stop=state(100, 100, 0)).describe() == (
        "step 110 of ~500 (max 3000): held-out error improving, best at 100")
    assert Progress(260, 3000, stop=state(250, 225, 1)).describe() == (
        "step 260 of ~500 (max 3000): stops at 275 unless the held-out error improves")
    assert Progress(3000, 3000, stopped_early=True, stop=state(275, 225, 2)).describe() == (
        "stopped at step 275: held-out error best at step 225")
    assert Progress(1, 3000, stop=state(None, None, 0)).describe() == "step 1 of ~500 (max 3000)"


# --- The throttled bar with a total that moves (fake clock) --------------------------------------

class RecordingBar:
    def __init__(self, total):
        self.total, self.sent = total, []

    def update_absolute(self, value, total=None, preview=None):
        if total is not None:
            self.total = total
        self.sent.append((value, self.total, preview))


def test_the_bar_sends_a_moving_total_and_the_text_with_its_throttled_updates(monkeypatch):
    host = pack_module("nodes.host")
    texts = []
    monkeypatch.setattr(host, "send_progress_text", texts.append)
    clock = FakeClock(0.0)
    bar = host.ProgressBar(3000, clock=clock)
    bar._bar = recorder = RecordingBar(3000)
    for value in range(1, 61):
        clock.time += 0.02  # 50 steps a second
        bar.update(value, total=500 if value < 50 else 550, text=f"step {value}")
    sent = recorder.sent
    assert sent[0] == (1, 500, None) and texts[0] == "step 1"
    assert len(sent) == len(texts) < 60 / 4  # at most ten a second, each with its line
    assert {total for value, total, _ in sent if value >= 50} == {550}
    assert all(value <= total for value, total, _ in sent)
    bar.flush()
    assert sent[-1][:2] == (60, 550) and texts[-1] == "step 60"
    clock.time += 0.001
    bar.update(550, total=550, preview="picture", preview_format="PNG")
    assert sent[-1] == (550, 550, ("PNG", "picture", host.PREVIEW_MAX_SIZE))
    assert texts[-1] == "step 60"  # no new text: nothing sent for it


# --- The node: bar, line and last picture ------------------------------------------------------

@pytest.fixture
def display(fake_comfy, monkeypatch):
    """fake_comfy plus the node's progress text, recorded."""
    comfy = fake_comfy()
    comfy.texts = []
    host = pack_module("nodes.host")
    monkeypatch.setattr(host, "send_progress_text", comfy.texts.append)

    class ProgressBar(RecordingBar):  # ComfyUI's: update_absolute keeps a total it is given
        def __init__(self, total):
            super().__init__(total)
            self.sent = comfy.updates
    monkeypatch.setattr(host, "comfy_utils", SimpleNamespace(ProgressBar=ProgressBar))
    return comfy


def eager_auto_stop(steps=60):
    """Checked every step with little patience: a generator this eager overfits and stops early."""
    return replace(fast_optimizer(steps=steps, lr_generator=0.05, lr_latent=0.3, stop="auto"),
                   auto_stop=auto_stop().AutoStopConfig(check_every=1, patience=3, smoothing=0.0,
                                                        holdout_fraction=0.1))


def pixels(picture) -> torch.Tensor:
    return torch.from_numpy(np.asarray(picture.convert("RGB"), dtype=np.float32) / 255)


def shown_as(image: torch.Tensor, picture: Image.Image) -> bool:
    """True if `picture` is `image` ([H, W, 3] in [0, 1]) scaled up by a whole factor (nearest)."""
    factor = picture.width // image.shape[1]
    if factor < 1 or picture.size != (image.shape[1] * factor, image.shape[0] * factor):
        return False
    small = pixels(picture)[::factor, ::factor]
    return bool(((small - image).abs() <= 0.5 / 255 + 1e-6).all())


def test_an_auto_stopped_batch_fills_the_bar_with_the_steps_it_ran(unchanged_prior, display):
    *_, info = inpaint(build(unchanged_prior), photo(2, 20, 20), box_mask(1, 20, 20, 5, 15, 5, 15),
                       optimizer=eager_auto_stop())
    steps = [int(line.split(" steps (")[0].rsplit(" ", 1)[1]) for line in info.splitlines()]
    assert all(run < 60 for run in steps)
    values = [(value, total) for value, total, _ in display.updates]
    assert all(value <= total for value, total in values)
    assert values[-1] == (sum(steps), sum(steps))  # the bar ends full at the steps run
    # Stepped together: once the first image stops, the total counts it at the steps it took.
    first_stop = min(steps)
    assert any(value == 2 * first_stop and total <= first_stop + 60 for value, total in values)
    assert all(value == total == sum(steps) for value, total in values[-3:])  # results, then all
    assert max(total for _, total in values) <= 2 * 60
    assert any(text.startswith("image 1 of 2: step ") for text in display.texts)
    assert f"image 2 of 2: done: {steps[1]} steps in " in "\n".join(display.texts)
    assert display.texts[-1] == f"done: 2 images, {sum(steps)} steps in all (see info)"


def test_a_fixed_run_counts_every_step_towards_the_steps_set(unchanged_prior, display):
    inpaint(build(unchanged_prior), photo(1, 20, 20), box_mask(1, 20, 20, 5, 15, 5, 15))
    during = [(value, total) for value, total, _ in display.updates]
    assert during[:STEPS] == [(step, STEPS) for step in range(1, STEPS + 1)]
    assert display.texts[:STEPS] == [f"step {step} of {STEPS}" for step in range(1, STEPS + 1)]
    assert re.fullmatch(rf"done: {STEPS} steps in \d+\.\d s", display.texts[-1])


def test_the_summary_line_says_what_the_run_came_to():
    result = results().InpaintResult(torch.zeros(3, 4, 4), torch.zeros(3, 4, 4), [0.1] * 475, 12.34,
                                     steps_run=475, best_step=325)
    assert result.summary() == "done: 475 steps in 12.3 s, returned the image of step 325"
    sample = results().InpaintResult(torch.zeros(3, 4, 4), torch.zeros(3, 4, 4), [], 0.1)
    assert sample.summary() == "done: an unconditional sample (nothing was known)"


def test_the_last_picture_of_the_node_is_the_image_it_returns(unchanged_prior, display):
    image, *_ = inpaint(build(unchanged_prior), photo(1, 20, 28), box_mask(1, 20, 28, 5, 15, 5, 15),
                        optimizer=eager_auto_stop())
    previews = [preview for _, _, preview in display.updates if preview is not None]
    kind, picture, max_size = previews[-1]
    assert kind == "PNG" and max_size == 512
    assert picture.size == (28 * 18, 20 * 18)  # scaled up by the largest whole factor within 512
    assert shown_as(image[0], picture)
    kind, live, _ = previews[0]
    assert kind == "JPEG" and live.size == (16, 16)  # live: the generator at the prior's size


def test_a_reconstruction_ends_on_the_reconstruction_not_on_its_unchanged_input(unchanged_prior, display):
    """With an empty mask the `image` output is the input itself; what the node returns as its
    result is `generated`, and that is what it shows."""
    image = photo(1, 16, 16)
    filled, generated, *_ = inpaint(build(unchanged_prior), image, torch.zeros(1, 16, 16))
    assert torch.equal(filled, image)
    kind, picture, _ = [preview for _, _, preview in display.updates if preview is not None][-1]
    assert kind == "PNG" and shown_as(generated[0], picture) and not shown_as(image[0], picture)


def test_a_batch_ends_on_all_its_returned_images(unchanged_prior, display):
    images, *_ = inpaint(build(unchanged_prior), photo(3, 16, 16), box_mask(1, 16, 16, 4, 12, 4, 12))
    previews = [preview[1] for _, _, preview in display.updates if preview is not None
                and preview[0] == "PNG"]
    assert len(previews) == 4  # each image's result as it finishes, then the batch
    for index, picture in enumerate(previews[:3]):
        assert shown_as(images[index], picture)
    sheet = previews[-1]
    cell = sheet.height  # one row of three square cells, 4 pixels apart
    assert sheet.width == 3 * cell + 2 * 4
    for index in range(3):
        assert shown_as(images[index], sheet.crop((index * (cell + 4), 0, index * (cell + 4) + cell, cell)))


def test_inside_comfyui_the_node_returns_its_pictures_as_ui_images(unchanged_prior, display, tmp_path,
                                                                   monkeypatch):
    host = pack_module("nodes.host")
    monkeypatch.setattr(host, "folder_paths", SimpleNamespace(get_temp_directory=lambda: str(tmp_path)))
    cls = load_pack().NODE_CLASS_MAPPINGS["GANPriorInpaint"]
    with torch.inference_mode():
        returned = cls().inpaint(image=photo(2, 16, 16), mask=box_mask(1, 16, 16, 4, 12, 4, 12),
                                 generator=build(unchanged_prior), seed=0, fit="resize",
                                 optimizer=fast_optimizer())
    assert set(returned) == {"ui", "result"} and len(returned["result"]) == len(cls.RETURN_TYPES)
    entries = returned["ui"]["images"]
    assert [entry["type"] for entry in entries] == ["temp", "temp"]
    for entry, image in zip(entries, returned["result"][0]):
        with Image.open(tmp_path / entry["subfolder"] / entry["filename"]) as picture:
            assert picture.format == "PNG" and shown_as(image, picture)


def test_showing_progress_changes_nothing_in_the_result(unchanged_prior, fake_comfy):
    generator, image = build(unchanged_prior), photo(1, 20, 20)
    mask, optimizer = box_mask(1, 20, 20, 5, 15, 5, 15), eager_auto_stop()
    quiet = inpaint(generator, image, mask, optimizer=optimizer)  # no ComfyUI: nothing shown
    fake_comfy(tick=0.001)  # a throttled bar, previews and lines
    shown = inpaint(generator, image, mask, optimizer=optimizer)
    assert torch.equal(quiet[0], shown[0]) and torch.equal(quiet[1], shown[1])
    assert quiet[3].split(" s, ")[1] == shown[3].split(" s, ")[1]  # same steps, stop and loss


def test_display_pictures_scale_up_by_whole_factors_only():
    previews = pack_module("nodes.previews")
    small = torch.rand(3, 64, 48)
    picture = previews.display_image(small)
    assert picture.size == (48 * 8, 64 * 8)
    assert shown_as(small.permute(1, 2, 0), picture)
    large = torch.rand(3, 600, 300)
    assert previews.display_image(large).size == (300, 600)  # never scaled down here
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    assert buffer.tell() > 0


def test_the_line_goes_to_the_client_that_queued_the_run_on_the_running_node(monkeypatch):
    """Sent to every client, other browsers showed it on whatever node of theirs had the same id."""
    import sys
    host = pack_module("nodes.host")
    sent = []
    instance = SimpleNamespace(client_id="browser-1", last_node_id="6",
                               send_progress_text=lambda *arguments: sent.append(arguments))
    monkeypatch.setitem(sys.modules, "server", SimpleNamespace(PromptServer=SimpleNamespace(instance=instance)))
    monkeypatch.setattr(host, "comfy_utils", SimpleNamespace())  # inside ComfyUI
    host.send_progress_text("step 1 of 4")
    assert sent == [("step 1 of 4", "6", "browser-1")]
    monkeypatch.setattr(host, "comfy_utils", None)  # outside ComfyUI: no message, no error
    host.send_progress_text("step 2 of 4")
    assert len(sent) == 1


def test_starts_side_by_side_show_one_bar_over_every_start(unchanged_prior, display, monkeypatch):
    """What a GPU user sees (`auto` runs the starts side by side on CUDA; forced here on the CPU):
    one bar that never goes back and ends full at every step of every start, and a line naming
    the starts side by side until they are compared."""
    starts = pack_module("ganprior_core.method.starts")
    monkeypatch.setattr(starts.StartsConfig, "runs_together", lambda self, device: True)
    optimizer = replace(eager_auto_stop(steps=40), preview_every=4)
    *_, info = inpaint(build(unchanged_prior), photo(1, 20, 20), box_mask(1, 20, 20, 5, 15, 5, 15),
                       optimizer=optimizer, starts=3)
    assert "stepped side by side" in info
    values = [value for value, _, _ in display.updates]
    assert values == sorted(values)
    assert all(value <= total for value, total, _ in display.updates)
    assert display.updates[-1][0] == display.updates[-1][1]  # the bar ends full
    assert any(text.startswith("3 starts side by side: step ") for text in display.texts)
