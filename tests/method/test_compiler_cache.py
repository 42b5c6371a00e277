"""torch's compiler cache folder: every fallback the library takes for it is one note in the notes
of every run that uses it (method/compiler_cache.py), and no unusable folder ever breaks a run."""
import importlib
import os
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from ganprior_core.method import compilation, compiler_cache
from ganprior_core.method.multi_latent import MultiLatentConfig
from ganprior_core.optimize import OptimizerConfig, inpaint
from tests.cli_harness import inpaint_argv, subprocess_env
from tests.pack_under_test import ROOT
from tests.tiny_priors import inpainting_problem

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = OptimizerConfig(steps=3, lr_latent=0.05, lr_alpha=0.05, lr_beta=0.05, lr_generator=1e-3,
                       schedule="constant", perceptual_weight=0.0, precision="fp32", preview_every=3,
                       stop="fixed", compile=True)
CONFIG = MultiLatentConfig(num_codes=2, split_layer=3)


@pytest.fixture
def compiling_is_cheap(monkeypatch, tmp_path):
    """A run that compiles without building anything (the step is the plain function), in an
    installation whose paths have no space, with a home folder of its own and no folder replaced
    earlier in this process."""
    monkeypatch.setattr(compilation, "_compile", compilation._fresh_function)
    monkeypatch.setattr(compilation, "_compiled", {})
    monkeypatch.setattr(compilation, "_failed", {})
    monkeypatch.setattr(compilation, "_unquoted_paths_with_spaces", lambda: [])
    monkeypatch.setattr(compiler_cache, "_replacements", {})
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def _runs(generator, config, count=2):
    image, hole = inpainting_problem(generator)
    return [inpaint(generator, image, hole, CONFIG, config, seed=0) for _ in range(count)]


@pytest.mark.parametrize("compile_setting", [True, False])
def test_an_unusable_folder_is_replaced_with_one_note_in_every_run(
        tiny_generator, compiling_is_cheap, monkeypatch, tmp_path, compile_setting):
    afile = tmp_path / "afile"
    afile.write_text("x")
    monkeypatch.setenv(compiler_cache.CACHE_VARIABLE, str(afile))
    for result in _runs(tiny_generator, replace(FAST, compile=compile_setting)):
        assert len(result.notes) == 1, result.notes
        assert "TORCHINDUCTOR_CACHE_DIR" in result.notes[0] and "it is a file" in result.notes[0]


def test_a_folder_with_a_space_is_replaced_with_one_note_in_every_compiled_run(
        tiny_generator, compiling_is_cheap, monkeypatch, tmp_path):
    monkeypatch.setenv(compiler_cache.CACHE_VARIABLE, str(tmp_path / "cache with space"))
    eager = _runs(tiny_generator, replace(FAST, compile=False), count=1)[0]
    assert eager.notes == []  # a space harms only C++ builds
    for result in _runs(tiny_generator, FAST):
        assert len(result.notes) == 1, result.notes
        assert "has a space" in result.notes[0]
    assert " " not in os.environ[compiler_cache.CACHE_VARIABLE]


def test_no_usable_folder_is_one_note_and_the_run_goes_on_eagerly(
        tiny_generator, compiling_is_cheap, monkeypatch, tmp_path):
    importlib.import_module("torch._dynamo")  # imported with a usable folder: the run's check is tested
    afile = tmp_path / "afile"
    afile.write_text("x")
    monkeypatch.setenv(compiler_cache.CACHE_VARIABLE, str(afile))
    monkeypatch.setattr(compiler_cache, "_fallback_cache_dirs", lambda: [str(afile), "/proc/cache"])
    eager = _runs(tiny_generator, replace(FAST, compile=False), count=1)[0]
    for result in _runs(tiny_generator, FAST):
        cache_notes = [note for note in result.notes if "no usable folder was found" in note]
        assert len(cache_notes) == 1, result.notes
        assert any("ran eagerly" in note for note in result.notes), result.notes
        assert torch.equal(result.output, eager.output)


def test_a_usable_folder_gives_no_note(tiny_generator, compiling_is_cheap, monkeypatch, tmp_path):
    monkeypatch.setenv(compiler_cache.CACHE_VARIABLE, str(tmp_path / "cache"))
    for result in _runs(tiny_generator, FAST):
        assert result.notes == []


def test_inductor_cache_folder_with_a_space_is_moved_for_cpu_builds_only(monkeypatch, tmp_path):
    monkeypatch.setattr(compiler_cache, "_replacements", {})
    spaced = str(tmp_path / "cache with space")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", spaced)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    notes = []
    assert compiler_cache.prepare_cache_dir(notes)  # importing the compiler stack copes with it
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == spaced and notes == []
    assert compiler_cache.prepare_cache_dir(notes, for_cpu_build=True)
    moved = os.environ["TORCHINDUCTOR_CACHE_DIR"]
    assert " " not in moved and len(notes) == 1 and "has a space" in notes[0]


def test_the_cache_check_names_what_is_wrong(tmp_path, monkeypatch):
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert "a file" in compiler_cache._folder_problem(str(afile))
    assert "/proc" in compiler_cache._folder_problem("/proc/x")
    assert compiler_cache._folder_problem(str(tmp_path / "new" / "cache")) is None
    assert not (tmp_path / "new").exists()  # checked, not created
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(afile))
    monkeypatch.setenv("HOME", str(afile))
    notes: list[str] = []
    assert compiler_cache.prepare_cache_dir(notes)
    assert "TORCHINDUCTOR_CACHE_DIR" in notes[0]
    replacement = os.environ["TORCHINDUCTOR_CACHE_DIR"]
    assert str(afile) not in replacement and compiler_cache._folder_problem(replacement) is None


@pytest.mark.parametrize("cache", ["file", "proc"])
def test_an_unusable_compiler_cache_never_breaks_inpaint(ws, cache):
    folder = {"file": str(ws["in"] / "image.png"), "proc": "/proc/ganprior-cache"}[cache]
    argv = inpaint_argv(ws)
    for setting in ("off", "auto") if cache == "file" else ("off",):
        argv[argv.index("--compile") + 1] = setting
        completed = subprocess.run([sys.executable, "-m", "ganprior_core", *map(str, argv)],
                                   cwd=ROOT, capture_output=True, text=True, timeout=300,
                                   env=subprocess_env(TORCHINDUCTOR_CACHE_DIR=folder,
                                                      HOME="/proc/no-home"))
        assert completed.returncode == 0, completed.stderr[-2000:]
        assert "Traceback" not in completed.stderr
        note = [line for line in completed.stdout.splitlines() if "TORCHINDUCTOR_CACHE_DIR" in line]
        assert note and "/proc/no-home" not in note[0].split("using", 1)[1], completed.stdout
