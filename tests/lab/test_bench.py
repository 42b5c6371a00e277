"""`bench` (ganprior_core/lab/bench.py): the paper's tables from every method and ablation, on a
tiny PGGAN (one module-scoped run, reused) and on a tiny StyleGAN2, whose report names its choices."""
import contextlib
import csv
import io
import json
import shutil
import statistics

import pytest
import torch
from PIL import Image

from ganprior_core import imaging, metrics
from ganprior_core.checkpoints import save_generator
from ganprior_core.cli import main
from ganprior_core.lab import baselines, masks, procedural
from tests.tiny_priors import tiny_stylegan2_with_biases

pytestmark = pytest.mark.usefixtures("one_thread")

METHODS = ["paper", "mganprior", "single-z", "dip", "mean-fill", "diffusion-fill"]
ABLATION_ROWS = ["paper-random-init", "paper-N1"]
SEED = 7


def _run(arguments):
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["bench", *arguments])
    return code, stdout.getvalue(), stderr.getvalue()


def _arguments(checkpoint, out):
    return ["--checkpoint", str(checkpoint), "--procedural", "2", "--steps", "3",
            "--precision", "fp32", "--seed", str(SEED), "--ablation", "random-init",
            "--codes", "1,30", "--log-every", "2", "--threads", "1", "--out", str(out)]


@pytest.fixture(scope="module")
def run(checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "out"
    code, stdout, stderr = _run(_arguments(checkpoint, out))
    assert code == 0, stderr
    return out, stdout


def _csv_rows(out):
    with open(out / "results.csv", newline="") as stream:
        return list(csv.DictReader(stream))


def _table_rows(report):
    """{method: [cells]} of every table row in report.md."""
    rows = {}
    for line in report.splitlines():
        if line.startswith("| `"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            rows[cells[0].strip("`")] = cells[1:]
    return rows


def test_progress_lines_name_image_method_and_rate(run):
    _, stdout = run
    assert "[image 1/2 000-seed10000000] paper: step 2/3" in stdout
    assert "steps/s" in stdout
    assert "[image 2/2 001-seed10000001] diffusion-fill: done" in stdout


def test_report_has_a_row_per_method_with_the_image_count(run):
    out, _ = run
    report = (out / "report.md").read_text()
    table = _table_rows(report)
    assert list(table) == METHODS + ABLATION_ROWS
    assert all(cells[0] == "2" for cells in table.values())
    assert "Status: complete." in report
    assert "## Ablations (variants of `paper`)" in report
    assert "`paper-N30` is the same configuration as `paper`" in report
    assert "idinvert" in report and "no such encoder exists for PGGAN" in report
    assert "MSE only" in report
    assert "## Against the paper's ordering" in report
    assert "- pretrained weights beat a randomly initialised generator" in report
    csv_rows = _csv_rows(out)
    assert len(csv_rows) == 2 * len(table)
    assert {(row["image"], row["method"]) for row in csv_rows} == {
        (image, method) for image in ("000-seed10000000", "001-seed10000001") for method in table}


def test_report_and_summary_numbers_are_the_csv_mean_and_std(run):
    out, _ = run
    table = _table_rows((out / "report.md").read_text())
    summary = json.loads((out / "summary.json").read_text())
    columns = [("psnr", 2), ("ssim", 4), ("psnr_hole", 2), ("ssim_hole", 4)]
    for method, cells in table.items():
        rows = [row for row in _csv_rows(out) if row["method"] == method]
        for position, (metric, digits) in enumerate(columns, start=1):
            values = [float(row[metric]) for row in rows]
            mean, std = statistics.fmean(values), statistics.stdev(values)
            assert cells[position] == f"{mean:.{digits}f} ± {std:.{digits}f}", (method, metric)
            assert summary["aggregates"][method][metric] == {"mean": mean, "std": std,
                                                             "max": max(values)}
        seconds = [float(row["seconds"]) for row in rows]
        assert summary["aggregates"][method]["seconds"]["mean"] == statistics.fmean(seconds)
        steps = [int(row["steps"]) for row in rows if row["steps"]]
        if steps:  # the table shows mean ± std (max) of the steps each image ran
            mean, std = statistics.fmean(steps), statistics.stdev(steps)
            assert cells[7] == f"{mean:.0f} ± {std:.0f} (max {max(steps):.0f})", method
    assert summary["complete"] is True


def test_masks_and_images_are_saved_as_scored_and_regenerate_from_their_seeds(run):
    out, _ = run
    summary = json.loads((out / "summary.json").read_text())
    assert [entry["seed"] for entry in summary["images"]] == [SEED, SEED + 1]
    assert [entry["image_seed"] for entry in summary["images"]] == procedural.evaluation_seeds(2)
    for entry in summary["images"]:
        saved_mask = imaging.load_mask(out / "masks" / f"{entry['name']}.png")
        assert torch.equal(saved_mask, masks.make_mask("box", 16, entry["seed"]))
        saved_image = imaging.load_image(out / "images" / f"{entry['name']}.png")
        regenerated = imaging.resize_image(procedural.facade_image(entry["image_seed"]), (16, 16))
        assert (saved_image - regenerated).abs().max() <= 0.5 / 255 + 1e-6


def test_naive_fills_score_what_the_metrics_give_directly(run):
    out, _ = run
    rows = {(row["image"], row["method"]): row for row in _csv_rows(out)}
    for index, name in enumerate(("000-seed10000000", "001-seed10000001")):
        image = imaging.load_image(out / "images" / f"{name}.png")
        hole = masks.make_mask("box", 16, SEED + index)
        for method, fill in (("mean-fill", baselines.mean_fill), ("diffusion-fill", baselines.diffusion_fill)):
            expected = metrics.measure(fill(image, hole), image, hole)
            row = rows[(name, method)]
            assert float(row["psnr"]) == expected.psnr
            assert float(row["ssim"]) == expected.ssim
            assert float(row["psnr_hole"]) == expected.psnr_hole
            assert float(row["ssim_hole"]) == expected.ssim_hole
            assert row["psnr_fit_known"] == "inf"  # fills keep the known pixels exactly


def test_random_init_is_a_different_generator(run):
    out, _ = run
    rows = {(row["image"], row["method"]): row for row in _csv_rows(out)}
    key = "000-seed10000000"
    assert rows[(key, "paper-random-init")]["final_loss"] != rows[(key, "paper")]["final_loss"]


def test_figure_has_input_mask_every_method_and_truth(run):
    out, _ = run
    with Image.open(out / "figure.png") as figure:
        width, height = figure.size
    panels = 2 + len(METHODS + ABLATION_ROWS) + 1  # input, mask, methods, ground truth
    panel = 16 * 8  # 16-pixel images are enlarged to 128 for legible labels
    assert width == panels * panel + (panels - 1) * 4
    assert height > 2 * panel + 4  # two image rows and a caption strip


def test_rerun_does_no_new_work_and_a_lost_row_repeats_exactly(run, checkpoint, tmp_path):
    original, _ = run
    out = tmp_path / "out"
    shutil.copytree(original, out)
    before = (out / "results.csv").read_bytes()
    code, stdout, _ = _run(_arguments(checkpoint, out))
    assert code == 0
    assert "running" not in stdout and "skipped 16" in stdout
    assert (out / "results.csv").read_bytes() == before

    # Drop one finished row and leave a line cut short, as a run killed mid-write would.
    lines = before.decode().splitlines(keepends=True)
    lost = next(line for line in lines if line.startswith("001-seed10000001,") and ",paper," in line)
    lines.remove(lost)
    (out / "results.csv").write_text("".join(lines) + lost[:30])
    code, stdout, _ = _run(_arguments(checkpoint, out))
    assert code == 0
    assert stdout.count("running") == 1 and "001-seed10000001] paper: running" in stdout
    rows = _csv_rows(out)
    assert len(rows) == 16
    again = next(row for row in rows if row["image"] == "001-seed10000001" and row["method"] == "paper")
    lost_row = dict(zip(rows[0].keys(), next(csv.reader([lost]))))
    for field in ("psnr", "ssim", "psnr_hole", "ssim_hole", "psnr_fit_known", "final_loss", "seed"):
        assert again[field] == lost_row[field], field


def test_other_settings_refuse_to_reuse_the_directory(run, checkpoint):
    out, _ = run
    arguments = _arguments(checkpoint, out)
    arguments[arguments.index("--steps") + 1] = "4"
    code, _, stderr = _run(arguments)
    assert code == 2 and "differs in: steps" in stderr


def test_reconstruction_leaves_the_fills_out_and_has_no_hole_scores(checkpoint, tmp_path):
    out = tmp_path / "rec"
    code, _, stderr = _run(["--checkpoint", str(checkpoint), "--procedural", "1", "--task", "reconstruct",
                            "--methods", "single-z,mean-fill", "--steps", "2", "--precision", "fp32",
                            "--threads", "1", "--out", str(out)])
    assert code == 0, stderr
    report = (out / "report.md").read_text()
    table = _table_rows(report)
    assert list(table) == ["single-z"]
    assert table["single-z"][3] == "–" and table["single-z"][4] == "–"  # PSNR / SSIM hole
    assert "`mean-fill` left out: reconstruction has no hole to fill" in report
    assert "2 steps (auto-stop watches a hole: a reconstruction runs them all)" in report
    assert not (out / "masks").exists()


def test_saved_images_rerun_from_a_directory_give_the_same_rows(run, checkpoint, tmp_path):
    original, _ = run
    out = tmp_path / "from-files"
    code, _, stderr = _run(["--checkpoint", str(checkpoint), "--images", str(original / "images"),
                            "--methods", "mean-fill,diffusion-fill", "--seed", str(SEED),
                            "--out", str(out)])
    assert code == 0, stderr
    before = {(row["image"], row["method"]): row for row in _csv_rows(original)}
    for row in _csv_rows(out):
        assert row["image_seed"] == ""  # directory images have no procedural seed
        first = before[(row["image"], row["method"])]
        assert [row[k] for k in ("seed", "psnr", "ssim", "psnr_hole", "ssim_hole")] == \
               [first[k] for k in ("seed", "psnr", "ssim", "psnr_hole", "ssim_hole")]


def test_partial_runs_compare_methods_on_the_images_all_of_them_finished():
    from ganprior_core.lab.bench import METRIC_FIELDS, Case, Variant, aggregate
    cases = [Case(name, torch.zeros(3, 16, 16), None, None, index) for index, name in enumerate("ab")]
    variants = [Variant("fast", "", "fill"), Variant("slow", "", "fill")]
    row = {metric: 1.0 for metric in METRIC_FIELDS}
    rows = {("a", "fast"): row, ("a", "slow"): row, ("b", "fast"): {**row, "psnr": 3.0}}
    stats = aggregate(rows, cases, variants)
    assert stats["fast"]["images"] == stats["slow"]["images"] == 1  # image b is not finished
    assert stats["fast"]["psnr"] == {"mean": 1.0, "std": None, "max": 1.0}


def test_centred_box_masks_are_one_box_for_every_image_and_the_report_says_so(checkpoint, tmp_path):
    out = tmp_path / "centred"
    code, _, stderr = _run(["--checkpoint", str(checkpoint), "--procedural", "2",
                            "--methods", "mean-fill", "--mask-area", "0.25", "--mask-centred",
                            "--seed", str(SEED), "--out", str(out)])
    assert code == 0, stderr
    first, second = (imaging.load_mask(out / "masks" / f"{name}.png")
                     for name in ("000-seed10000000", "001-seed10000001"))
    assert torch.equal(first, second)
    assert torch.equal(first, masks.box_mask(16, area_fraction=0.25))
    report = (out / "report.md").read_text()
    assert "- Masks: `box` (25% of the image, centred), the same for every image;" in report
    assert "seeded" not in report.split("- Masks:")[1].splitlines()[0]


@pytest.mark.parametrize("source, seed, message", [
    (["--images", "no-such-folder"], "0", "image directory not found"),
    (["--procedural", "3"], str(2 ** 64 - 2), "too large for 3 images: image i uses seed + i"),
])
def test_unusable_images_or_seeds_are_refused_before_the_output_folder_exists(checkpoint, tmp_path,
                                                                               source, seed, message):
    out = tmp_path / "never-created"
    code, _, stderr = _run(["--checkpoint", str(checkpoint), *source, "--seed", seed,
                            "--methods", "mean-fill", "--out", str(out)])
    assert code == 2 and message in stderr
    assert not out.exists()


def _files_under(folder):
    return {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in sorted(folder.rglob("*"))
            if path.is_file()}


@pytest.mark.parametrize("problem, message", [
    (["--mask-area", "1"], "covers the whole 16x16 image"),
    (["--codes", "1000"], "numbers of codes must be in 1 ... 256"),
    (["--steps", "100000000"], "steps must be in 1 ..."),
])
def test_a_refused_configuration_leaves_out_as_it_was(checkpoint, tmp_path, problem, message):
    """Checked whole before --out is made or written: the corrected command never starts from a
    half-made folder."""
    arguments = ["--checkpoint", str(checkpoint), "--procedural", "1", "--methods", "single-z",
                 "--steps", "2", "--stop", "fixed", "--precision", "fp32", "--threads", "1"]
    absent = tmp_path / "absent"
    code, _, stderr = _run([*arguments, *problem, "--out", str(absent)])
    assert code == 2 and message in stderr
    assert not absent.exists()
    finished = tmp_path / "finished"
    assert _run([*arguments, "--out", str(finished)])[0] == 0
    before = _files_under(finished)
    code, _, stderr = _run([*arguments, *problem, "--out", str(finished)])
    assert code == 2 and message in stderr
    assert _files_under(finished) == before


def test_the_report_says_what_precision_auto_ran_here():
    import torch

    from ganprior_core.lab.bench import _precision_run
    from ganprior_core.method.precision import uses_bf16
    here = "bf16" if uses_bf16("auto", torch.device("cpu")) else "fp32"
    assert _precision_run("auto", "cpu") == f"precision auto ({here} here)"
    assert _precision_run("fp32", "cpu") == "fp32" and _precision_run("bf16", "cpu") == "bf16"


def test_bench_runs_every_method_and_ablation_on_a_stylegan2_prior(tmp_path):
    prior = tmp_path / "sg2.safetensors"
    save_generator(tiny_stylegan2_with_biases(), prior)
    images = tmp_path / "images"
    images.mkdir()
    for index in range(2):
        imaging.save_image(torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(index)),
                           images / f"{index}.png")
    out = tmp_path / "bench"
    assert main(["bench", "--checkpoint", str(prior), "--images", str(images), "--masks", "strokes",
                 "--methods", "paper,mganprior,single-z,dip,diffusion-fill", "--ablations",
                 "random-init,frozen,alpha-only", "--stop", "fixed", "--steps", "2", "--threads", "1",
                 "--out", str(out)]) == 0
    with open(out / "results.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    methods = {"paper", "mganprior", "single-z", "dip", "diffusion-fill", "paper-random-init",
               "paper-frozen", "paper-alpha-only"}
    assert {row["method"] for row in rows} == methods and len(rows) == 2 * len(methods)
    report = (out / "report.md").read_text()
    assert "k=3 (16×8×8 features), codes in w+, G₂ styles learnt, noise const" in report
    assert "`single-z`: N=1, k=5 (8×16×16 features), codes in w+, noise const, no α" in report
    assert "`paper-random-init`: randomly initialised generator" in report


def test_a_stylegan2_directory_made_under_another_auto_stop_rule_is_not_resumed(tmp_path, capsys):
    import json

    from ganprior_core.families import STYLEGAN2
    prior = tmp_path / "sg2.safetensors"
    save_generator(tiny_stylegan2_with_biases(), prior)
    images = tmp_path / "images"
    images.mkdir()
    imaging.save_image(torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0)), images / "0.png")
    out = tmp_path / "bench"
    args = ["bench", "--checkpoint", str(prior), "--images", str(images), "--methods", "single-z",
            "--steps", "2", "--threads", "1", "--out", str(out)]
    assert main(args) == 0
    settings = json.loads((out / "run.json").read_text())
    assert settings["auto_stop"]["rewind"] == STYLEGAN2.auto_stop.rewind
    assert f"{STYLEGAN2.auto_stop.rewind:g} × the best one's step returned" in (out / "report.md").read_text()
    del settings["auto_stop"]  # as a directory made before the StyleGAN2 rule existed
    (out / "run.json").write_text(json.dumps(settings))
    capsys.readouterr()
    assert main(args) == 2 and "differs in: auto_stop" in capsys.readouterr().err
