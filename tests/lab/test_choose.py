"""`choose`: variants of the method on held-out facades, paired against a reference."""
import json

import pytest
import torch

from ganprior_core.checkpoints import save_generator
from ganprior_core.checkpoints.loading import load_generator
from ganprior_core.cli import main
from ganprior_core.lab import choose, held_out, procedural
from ganprior_core.method.presets import preset
from ganprior_core.priors import bundled_prior_path
from tests.pack_under_test import ROOT
from tests.tiny_priors import tiny_stylegan2_with_biases

pytestmark = pytest.mark.usefixtures("one_thread")


def _write(path, spec):
    path.write_text(json.dumps(spec))
    return path


def test_variants_change_only_what_they_name_and_default_to_mse_only(tmp_path):
    config = tiny_stylegan2_with_biases().config
    spec = {"reference": "base", "variants": {
        "base": {}, "w": {"stylegan2": {"latent_space": "w"}}, "k1": {"split_layer": 1},
        "lr": {"optimizer": {"lr_generator": 3e-4}}, "frozen": {"preset": "mganprior"}}}
    reference, variants = choose.read_variants(_write(tmp_path / "v.json", spec), config)
    by_name = {v.name: v for v in variants}
    paper_model, paper_optimizer = preset("paper", config)
    assert reference == "base" and list(by_name) == ["base", "w", "k1", "lr", "frozen"]
    assert by_name["base"].model == paper_model
    assert by_name["base"].optimizer.perceptual_weight == 0.0
    assert by_name["w"].model.stylegan2.latent_space == "w"
    assert by_name["w"].model.stylegan2.g2_styles == paper_model.stylegan2.g2_styles
    assert by_name["k1"].model.split_layer == 1 and by_name["k1"].model.num_codes == paper_model.num_codes
    assert by_name["lr"].optimizer.lr_generator == 3e-4
    assert by_name["lr"].optimizer.lr_latent == paper_optimizer.lr_latent
    assert by_name["frozen"].model == preset("mganprior", config)[0]


@pytest.mark.parametrize("spec, message", [
    ({"variants": {}}, "expected"),
    ({"reference": "x", "variants": {"a": {}}}, "reference 'x' is not among"),
    ({"variants": {"a": {"split": 3}}}, "unknown model setting"),
    ({"variants": {"a": {"optimizer": {"lr": 1}}}}, "unknown optimizer setting"),
    ({"variants": {"a": {"stylegan2": {"latent_space": "s"}}}}, "latent_space must be one of"),
    ({"variants": {"a": {"split_layer": 99}}}, "variant 'a'"),
    ({"variants": {"a": {"preset": "best"}}}, "unknown preset 'best'"),
    ({"variants": {"a, b": {}}}, "without commas")])
def test_bad_variants_files_are_refused_by_name(tmp_path, spec, message):
    with pytest.raises(ValueError, match=message):
        choose.read_variants(_write(tmp_path / "v.json", spec), tiny_stylegan2_with_biases().config)


def test_held_out_facades_are_not_the_evaluation_facades():
    seeds = {seed for seed, *_ in held_out.held_out_cases(50, 64)}
    assert len(seeds) == 50 and not seeds & set(procedural.evaluation_seeds(50))


def test_the_report_pairs_each_variant_with_the_reference_on_the_same_runs():
    first, second, third, beyond = held_out.held_out_seeds(4)
    rows = []
    for variant, offsets in (("ref", (20.0, 22.0, 24.0)), ("other", (21.0, 21.0, 27.0))):
        for (seed, hole), psnr in zip(((first, "box"), (first, "strokes"), (second, "box")), offsets):
            rows.append({"variant": variant, "facade_seed": str(seed), "hole": hole,
                         "psnr_hole": str(psnr), "ssim_hole": "0.5", "steps": "100", "seconds": "1"})
    for seed, variant in ((third, "other"), (beyond, "ref"), (beyond, "other")):
        # the third facade has no reference run (unpaired); the fourth is beyond --facades 3
        rows.append({"variant": variant, "facade_seed": str(seed), "hole": "box", "psnr_hole": "99",
                     "ssim_hole": "0.5", "steps": "100", "seconds": "1"})
    variants = [choose.Variant("ref", None, None), choose.Variant("other", None, None)]
    report = choose.format_report("ref", variants, rows, choose.ChoiceConfig("p", "v", "o", 3))
    assert "| other | 4 |" in report and "| ref | 3 |" in report
    line = next(line for line in report.splitlines() if line.startswith("| other"))
    # differences +1, -1, +3: mean +1.00, s.e. 2 / sqrt(3) = 1.15; box +1, +3: +2.00 ± 1.00
    assert "| +1.00 ± 1.15 | +2.00 ± 1.00 | -1.00 |" in line
    assert next(line for line in report.splitlines() if line.startswith("| ref")).split("|")[3].strip() == "22.00 dB"


def test_cli_refuses_a_prior_of_another_size_and_an_unknown_only(tmp_path, capsys):
    prior = tmp_path / "sg2.safetensors"
    save_generator(tiny_stylegan2_with_biases(), prior)
    spec = {"variants": {"a": {"optimizer": {"stop": "fixed", "steps": 3, "compile": False}},
                         "b": {"optimizer": {"stop": "fixed", "steps": 3, "compile": False},
                               "stylegan2": {"g2_styles": "average"}}}}
    variants = _write(tmp_path / "v.json", spec)
    args = ["choose", "--checkpoint", str(prior), "--variants", str(variants), "--facades", "1",
            "--out", str(tmp_path / "out"), "--threads", "1"]
    # A 16x16 prior cannot be scored on the 64x64 facades: refused before any run.
    assert main(args) == 2 and "procedural facades are 64x64" in capsys.readouterr().err
    assert main([*args[:-4], "--only", "c", *args[-4:]]) == 2
    assert "--only names variant(s) not in" in capsys.readouterr().err


def test_cli_choose_on_a_64_pixel_prior_writes_rows_once(tmp_path, capsys):
    from ganprior_core.networks.stylegan2 import StyleGAN2Config, StyleGAN2Generator
    torch.manual_seed(0)
    prior = tmp_path / "sg2_64.safetensors"
    save_generator(StyleGAN2Generator(StyleGAN2Config(64, (8, 8, 8, 8, 8), z_dim=8, w_dim=8,
                                                      mapping_layers=1)).eval(), prior)
    spec = {"variants": {"a": {"num_codes": 2, "optimizer": {"stop": "fixed", "steps": 2,
                                                             "compile": False}}}}
    args = ["choose", "--checkpoint", str(prior), "--variants", str(_write(tmp_path / "v.json", spec)),
            "--facades", "1", "--out", str(tmp_path / "out"), "--threads", "1"]
    assert main(args) == 0
    rows = choose.read_rows(tmp_path / "out")
    assert [(r["variant"], r["hole"]) for r in rows] == [("a", "box"), ("a", "strokes")]
    assert main(args) == 0  # resumed: nothing left to run, nothing appended
    assert len(choose.read_rows(tmp_path / "out")) == 2
    assert "| a | 2 |" in capsys.readouterr().out


def test_the_documented_variants_files_are_valid_for_the_bundled_stylegan2_prior():
    """docs/stylegan2_prior.md runs these files on the bundled prior; the re-check's reference
    must be today's `paper` defaults, as its table says."""
    config = load_generator(bundled_prior_path("stylegan2")).config
    choices = ROOT / "docs" / "choices"
    for name in ("stylegan2_facades64.json", "stylegan2_facades64_292k.json"):
        reference, variants = choose.read_variants(choices / name, config)
        assert reference in {variant.name for variant in variants}, name
    reference, variants = choose.read_variants(choices / "stylegan2_facades64_292k.json", config)
    chosen = next(variant for variant in variants if variant.name == reference)
    paper_model, paper_optimizer = preset("paper", config)
    assert chosen.model == paper_model
    assert chosen.optimizer.lr_generator == paper_optimizer.lr_generator
