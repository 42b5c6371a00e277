"""The command line's layout: the product commands never load the research tools, every research
tool declares its own options in its lab module, and the listing of commands needs none of them.
Checked in fresh interpreters, where `sys.modules` shows what a command really imported."""
import json
import os
import re
import subprocess
import sys

import pytest
import torch

from ganprior_core import bundled_prior_path, imaging
from ganprior_core.cli import RESEARCH_TOOLS, build_parser
from tests.pack_under_test import ROOT

# Runs the CLI in-process, then prints the lab modules it loaded as the last line.
RUN_AND_LIST_LAB_MODULES = """
import json, sys
from ganprior_core.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(name for name in sys.modules if name.startswith("ganprior_core.lab"))))
"""


def lab_modules_loaded_by(*argv) -> list[str]:
    completed = subprocess.run([sys.executable, "-c", RUN_AND_LIST_LAB_MODULES, *map(str, argv)],
                               cwd=ROOT, capture_output=True, text=True, timeout=300,
                               env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.splitlines()[-1])


@pytest.mark.parametrize("argv", [["--help"], ["inpaint", "--help"], ["generate", "--help"],
                                  ["metrics", "--help"], ["convert", "--help"], ["no-such-command"]])
def test_listing_and_product_commands_load_no_research_tool(argv):
    assert lab_modules_loaded_by(*argv) == []


def test_an_inpaint_run_loads_no_research_tool(tmp_path):
    image = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    hole = torch.zeros(64, 64)
    hole[20:40, 20:40] = 1
    imaging.save_image(image, tmp_path / "in.png")
    imaging.save_mask(hole, tmp_path / "mask.png")
    out = tmp_path / "out.png"
    assert lab_modules_loaded_by("inpaint", "--checkpoint", bundled_prior_path(), "--image",
                                 tmp_path / "in.png", "--mask", tmp_path / "mask.png", "--out", out,
                                 "--steps", "2", "--stop", "fixed", "--precision", "fp32",
                                 "--compile", "off") == []
    assert out.is_file()


def test_a_research_tool_loads_its_own_module():
    assert "ganprior_core.lab.swd" in lab_modules_loaded_by("swd", "--help")


def test_the_listing_names_every_command_with_its_help():
    listing = subprocess.run([sys.executable, "-m", "ganprior_core", "--help"], cwd=ROOT,
                             capture_output=True, text=True, timeout=120,
                             env={**os.environ, "COLUMNS": "200"}).stdout
    for command, (_, help_text) in RESEARCH_TOOLS.items():
        # a long name gets its help on the next line
        assert re.search(rf"^ +{command}\s+{re.escape(help_text)}$", listing, re.MULTILINE), command
    for command in ("generate", "inpaint", "metrics", "convert"):
        assert re.search(rf"^ +{command} +\w", listing, re.MULTILINE), command


def test_every_research_tool_declares_options_and_a_runner_in_its_module():
    import importlib

    commands = next(action for action in build_parser()._actions if hasattr(action, "choices")
                    and isinstance(action.choices, dict))
    for command, (module_name, _) in RESEARCH_TOOLS.items():
        module = importlib.import_module(f"ganprior_core.lab.{module_name}")
        assert callable(module.add_arguments) and callable(module.run_command), command
        parser = commands.choices[command]
        assert parser.description, f"{command} has no description"
        assert parser.get_default("run") is module.run_command, command
        assert len(parser._actions) > 1, f"{command} declares no option"
