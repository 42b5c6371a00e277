"""`compare`: paired differences between bench runs, checked against the rows computed by hand,
and refusals for runs that are not on the same images and holes."""
import contextlib
import csv
import hashlib
import io
import math
import shutil
import statistics

import pytest
import torch

from ganprior_core.checkpoints import save_generator
from ganprior_core.cli import main
from ganprior_core.lab import compare, paired
from ganprior_core.networks.pggan import PGGANConfig, PGGANGenerator
from tests.tiny_priors import tiny_stylegan2_with_biases

pytestmark = pytest.mark.usefixtures("one_thread")


def _cli(arguments):
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(arguments)
    return code, stdout.getvalue(), stderr.getvalue()


def _bench(checkpoint, out, masks="box", methods="paper,diffusion-fill,mean-fill"):
    code, _, stderr = _cli(["bench", "--checkpoint", str(checkpoint), "--procedural", "3",
                            "--masks", masks, "--methods", methods, "--stop", "fixed", "--steps", "2",
                            "--precision", "fp32", "--threads", "1", "--out", str(out)])
    assert code == 0, stderr


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    torch.manual_seed(3)
    pggan, stylegan2 = root / "pggan.safetensors", root / "sg2.safetensors"
    save_generator(PGGANGenerator(PGGANConfig(16, (16, 16, 8), latent_dim=16)), pggan)
    save_generator(tiny_stylegan2_with_biases(), stylegan2)
    _bench(pggan, root / "pggan")
    _bench(stylegan2, root / "sg2", methods="paper")
    return root


def _rows(folder):
    with open(folder / "results.csv", newline="") as stream:
        return {(row["image"], row["method"]): row for row in csv.DictReader(stream)}


def _table_line(report, name):
    return next(line for line in report.splitlines() if line.startswith(f"| {name} |"))


def _tree_digest(folder):
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return digest.hexdigest()


def test_paired_differences_are_the_rows_differenced_image_by_image(runs):
    code, stdout, stderr = _cli(["compare", "--run", f"pggan={runs / 'pggan'}",
                                 "--run", f"sg2={runs / 'sg2'}", "--pair", "sg2:paper,pggan:paper"])
    assert code == 0, stderr
    pggan, sg2 = _rows(runs / "pggan"), _rows(runs / "sg2")
    images = sorted(image for image, method in sg2 if method == "paper")
    assert len(images) == 3
    line = _table_line(stdout, "`sg2:paper` − `pggan:paper`").split("|")
    for column, (key, scale) in zip(line[3:7], (("psnr_hole", 1), ("ssim_hole", 100), ("psnr", 1),
                                                ("ssim", 100))):
        differences = [(float(sg2[(i, "paper")][key]) - float(pggan[(i, "paper")][key])) * scale
                       for i in images]
        error = statistics.stdev(differences) / math.sqrt(3)
        assert column.strip() == f"{statistics.fmean(differences):+.2f} ± {error:.2f}"
    hole = [float(sg2[(i, "paper")]["psnr_hole"]) - float(pggan[(i, "paper")]["psnr_hole"]) for i in images]
    assert line[7].strip() == f"{sum(d > 0 for d in hole)} / {sum(d < 0 for d in hole)}"
    assert line[2].strip() == "3"


def test_default_pairs_put_each_paper_against_its_methods_and_the_prior_free_ones(runs):
    report = compare.run_compare(compare.CompareConfig(
        (("pggan", str(runs / "pggan")), ("sg2", str(runs / "sg2")))))
    pairs = [line.split("|")[1].strip() for line in report.splitlines() if " − " in line and "`" in line]
    assert pairs == ["`pggan:paper` − `sg2:paper`",
                     "`pggan:paper` − `pggan:diffusion-fill`", "`pggan:paper` − `pggan:mean-fill`",
                     "`sg2:paper` − `pggan:diffusion-fill`", "`sg2:paper` − `pggan:mean-fill`"]


@pytest.mark.parametrize(("values", "expected"), [
    ([1.0, 1.1, 0.9], "a wins"), ([-1.0, -1.1, -0.9], "b wins"), ([1.0, -1.0, 0.5], "tie"),
    ([2.0], "too few images")])
def test_the_verdict_needs_the_mean_beyond_two_standard_errors(values, expected):
    mean, error = paired.mean_and_error(values)
    assert compare.verdict(mean, error, "a", "b") == expected


def test_mean_and_standard_error_of_a_hand_computed_case():
    # [1, 2, 3, 6]: mean 3, sample variance (4 + 1 + 0 + 9) / 3 = 14 / 3, s.e. sqrt(14 / 3 / 4).
    mean, error = paired.mean_and_error([1.0, 2.0, 3.0, 6.0])
    assert mean == 3.0 and abs(error - (14 / 12) ** 0.5) < 1e-12
    assert paired.format_mean_se([1.0, 2.0, 3.0, 6.0]) == "+3.00 ± 1.08"
    assert paired.format_mean_se([-0.5]) == "-0.50" and paired.format_mean_se([]) == "–"


def test_compare_writes_nothing_into_the_runs_even_with_a_cut_results_line(runs, tmp_path):
    run = tmp_path / "cut"
    shutil.copytree(runs / "pggan", run)
    with open(run / "results.csv", "a") as stream:
        stream.write("000-seed10000000,10000000,0,paper,3")  # a line cut by a killed run
    before = _tree_digest(run)
    out = tmp_path / "report.md"
    code, stdout, stderr = _cli(["compare", "--run", f"cut={run}", "--out", str(out)])
    assert code == 0, stderr
    assert _tree_digest(run) == before
    assert out.read_text() == stdout.removesuffix(f"wrote {out}\n")


def test_runs_on_other_holes_are_refused(runs, tmp_path):
    strokes = tmp_path / "strokes"
    _bench(runs / "pggan.safetensors", strokes, masks="strokes", methods="mean-fill")
    code, _, stderr = _cli(["compare", "--run", f"box={runs / 'pggan'}", "--run", f"strokes={strokes}"])
    assert code == 2 and "run.json differs in: masks" in stderr


def test_a_changed_mask_file_is_refused(runs, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(runs / "sg2", copy)
    mask = sorted((copy / "masks").glob("*.png"))[0]
    shutil.copyfile(sorted((copy / "images").glob("*.png"))[0], mask)
    code, _, stderr = _cli(["compare", "--run", f"pggan={runs / 'pggan'}", "--run", f"copy={copy}"])
    assert code == 2 and f"masks/{mask.name} is different files in pggan, copy" in stderr


@pytest.mark.parametrize(("arguments", "message"), [
    (["--run", "nolabel"], "--run takes LABEL=DIRECTORY"),
    (["--run", "a b=x"], "must be 1-40 letters"),
    (["--run", "x={missing}"], "not a bench directory: run.json is missing"),
    (["--run", "p={pggan}", "--pair", "p:paper"], "--pair takes LABEL:METHOD,LABEL:METHOD"),
    (["--run", "p={pggan}", "--pair", "p:paper,p:dip"], "run 'p' has no rows of method 'dip'"),
    (["--run", "p={pggan}", "--pair", "q:paper,p:paper"], "with LABEL one of p"),
    (["--run", "p={pggan}", "--run", "p={pggan}"], "every --run needs its own label"),
    (["--run", "p={pggan}", "--out", "{pggan}/report.md"], "lies in the bench directory"),
    (["--run", "p={pggan}", "--out", "{pggan}/comparison.txt"], "accepted: .md"),
])
def test_bad_arguments_are_refused_with_what_would_be_accepted(runs, tmp_path, arguments, message):
    before = _tree_digest(runs / "pggan")
    filled = [text.format(pggan=runs / "pggan", missing=tmp_path / "missing") for text in arguments]
    code, stdout, stderr = _cli(["compare", *filled])
    assert code == 2 and message in stderr and "Traceback" not in stderr
    assert _tree_digest(runs / "pggan") == before


def test_an_exact_fill_is_left_out_of_the_differences_and_counted(runs, tmp_path):
    copy = tmp_path / "exact"
    shutil.copytree(runs / "pggan", copy)
    with open(copy / "results.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    exact = next(row for row in rows if row["method"] == "paper")
    exact["psnr_hole"] = exact["psnr"] = "inf"
    with open(copy / "results.csv", "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    code, stdout, stderr = _cli(["compare", "--run", f"p={copy}", "--run", f"sg2={runs / 'sg2'}",
                                 "--pair", "p:paper,sg2:paper"])
    assert code == 0, stderr
    line = _table_line(stdout, "`p:paper` − `sg2:paper`").split("|")
    assert line[2].strip() == "3 (1 exact, left out)" and "inf" not in line[3]
    assert line[7].strip().replace(" ", "").count("/") == 1


def _sr_bench(checkpoint, out, scale, methods):
    code, _, stderr = _cli(["bench", "--checkpoint", str(checkpoint), "--procedural", "3",
                            "--task", "sr", "--scale", str(scale), "--methods", methods,
                            "--stop", "fixed", "--steps", "2", "--precision", "fp32",
                            "--threads", "1", "--out", str(out)])
    assert code == 0, stderr


def test_super_resolution_runs_pair_with_the_baseline_on_whole_image_scores(runs, tmp_path):
    _sr_bench(runs / "pggan.safetensors", tmp_path / "pggan", 2, "paper,bicubic")
    _sr_bench(runs / "sg2.safetensors", tmp_path / "sg2", 2, "paper")
    report = compare.run_compare(compare.CompareConfig(
        (("pggan", str(tmp_path / "pggan")), ("sg2", str(tmp_path / "sg2")))))
    assert f"`{tmp_path / 'sg2'}` (prior sha256" in report and "task `sr` ×2 `area`)" in report
    assert "masks `box`" not in report
    pairs = [line.split("|")[1].strip() for line in report.splitlines() if " − " in line and "`" in line]
    # bicubic reads no prior: each paper is paired with the one run's baseline rows
    assert pairs == ["`pggan:paper` − `sg2:paper`", "`pggan:paper` − `pggan:bicubic`",
                     "`sg2:paper` − `pggan:bicubic`"]
    line = _table_line(report, "`sg2:paper` − `pggan:bicubic`").split("|")
    sg2, pggan = _rows(tmp_path / "sg2"), _rows(tmp_path / "pggan")
    differences = [float(sg2[(i, "paper")]["psnr"]) - float(pggan[(i, "bicubic")]["psnr"])
                   for i, method in sg2 if method == "paper"]
    mean, error = statistics.fmean(differences), statistics.stdev(differences) / math.sqrt(3)
    assert line[3].strip() == "–" and line[5].strip() == f"{mean:+.2f} ± {error:.2f}"
    # no hole: wins / losses and the verdict are of the whole image's PSNR
    assert line[7].strip() == f"{sum(d > 0 for d in differences)} / {sum(d < 0 for d in differences)}"
    assert line[8].strip() == " / ".join(
        compare.verdict(*paired.mean_and_error(values), "sg2:paper", "pggan:bicubic")
        for values in (differences, [100 * (float(sg2[(i, "paper")]["ssim"])
                                            - float(pggan[(i, "bicubic")]["ssim"]))
                                     for i, method in sg2 if method == "paper"]))
    mean_line = _table_line(report, "`pggan:bicubic`").split("|")
    bicubic = [float(row["psnr"]) for (_, method), row in pggan.items() if method == "bicubic"]
    assert mean_line[3].strip() == "–" and mean_line[5].strip() == f"{statistics.fmean(bicubic):.2f}"


def test_super_resolution_runs_of_other_scales_are_refused(runs, tmp_path):
    _sr_bench(runs / "pggan.safetensors", tmp_path / "x2", 2, "bicubic")
    _sr_bench(runs / "pggan.safetensors", tmp_path / "x4", 4, "bicubic")
    code, _, stderr = _cli(["compare", "--run", f"a={tmp_path / 'x2'}", "--run", f"b={tmp_path / 'x4'}",
                            "--pair", "a:bicubic,b:bicubic"])
    assert code == 2 and "run.json differs in: scale" in stderr
