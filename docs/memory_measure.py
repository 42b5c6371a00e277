"""Measure the peak memory of one `paper` run per case, each in a fresh process: the table of
docs/memory.md comes from this script.

    python docs/memory_measure.py                     # every case, one process at a time
    python docs/memory_measure.py --only stylegan2:256:30:bf16
    python docs/memory_measure.py --batches           # the batch cases (docs/memory.md, "Batches")

A case is family:resolution:codes:precision[:vgg][:compile][:mganprior|:single-z]. Its process sets one thread, builds
the family's generator with the official channel plan (PGGAN: 512 capped, NVIDIA's plan;
StyleGAN2: config-f) and random weights (family bundled-pggan / bundled-stylegan2: the bundled
64x64 facade prior), and reads its resident memory (VmRSS); then it runs
`inpaint` with the `paper` preset, 2 fixed steps, the given number of codes and precision
(`vgg`: with a VGG16 perceptual loss, random weights; `compile`: torch.compile on; `mganprior`,
`single-z`: that preset instead), and reads its
peak resident memory (ru_maxrss). Measured = peak - resident before the run: what the run added
to a process that had imported torch and loaded the prior. A case whose estimate is above
MEASURE_LIMIT is not run (on the 24 GB machine measured it would crowd out everything else); it
is reported as refused, with the estimate.

Other kinds of case, measured the same way:
- batch:family:resolution:codes:precision:members[:vmap]: inpaint_batch of `members` random
  images (seeds 0, 1, ...; the same centred hole) with the `paper` preset, 2 fixed steps, the
  members stepped in a loop (`vmap`: in one torch.func.vmap pass, vectorized.py), against
  memory.estimate_batch; the worker refuses to measure where fewer members would run together
  (batch_size_that_fits: the memory free now), so the peak is always the whole batch's;
- generate:family:resolution:count: sampling.generate of `count` seeded codes (its batch as
  memory.generate_batch chooses);
- copies:library:side / copies:cli:side / copies:cli16:side / copies:node:side:batch: a side x
  side image (batch of them) through inpaint_any_size, the `inpaint` command (an 8-bit PNG in, a
  PNG out; cli16: a 16-bit RGBA PNG in and out) or the inpaint node, on a 16x16 PGGAN, 2 steps:
  the image-sized copies each holds.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MEASURE_LIMIT = 18 * 2 ** 30
FAMILIES = ("pggan", "stylegan2")
RESOLUTIONS = (64, 256, 1024)
CODES = (1, 30, 200)
PRECISIONS = ("fp32", "bf16")
# docs/memory.md, "Batches": the bundled priors at 1 to 8 members, the official 256x256 priors at
# 1 to 4 (one member is the single run through inpaint_batch, the baseline of the same day); then
# the same in one vmap pass (fp32, and precision auto, which vmap runs in fp32).
BATCH_CASES = tuple(
    [f"batch:bundled-{family}:64:30:{precision}:{members}" for family in FAMILIES
     for precision in PRECISIONS for members in (1, 2, 4, 8)]
    + [f"batch:{family}:256:30:{precision}:{members}" for family in FAMILIES
       for precision in PRECISIONS for members in (1, 2, 4)]
    + [f"batch:bundled-{family}:64:30:fp32:{members}:vmap" for family in FAMILIES
       for members in (2, 4, 8)]
    + [f"batch:{family}:256:30:fp32:{members}:vmap" for family in FAMILIES for members in (2, 4)]
    + ["batch:bundled-stylegan2:64:30:auto:4:vmap", "batch:pggan:256:30:auto:4:vmap"])


def build(family: str, resolution: int):
    import torch

    from ganprior_core.networks.pggan import PGGANConfig, PGGANGenerator
    from ganprior_core.networks.stylegan2 import StyleGAN2Config, StyleGAN2Generator
    torch.manual_seed(0)
    if family.startswith("bundled-"):  # the bundled facade priors (their own resolution)
        from ganprior_core import bundled_prior_path, load_generator
        return load_generator(bundled_prior_path(family.removeprefix("bundled-")))
    if family == "pggan":
        return PGGANGenerator(PGGANConfig.official(resolution)).eval()
    return StyleGAN2Generator(StyleGAN2Config.official(resolution)).eval()


def configs(generator, codes: int, precision: str, vgg: bool, compiled: bool = False,
            preset_name: str = "paper"):
    from ganprior_core import preset
    model_config, optimizer_config = preset(preset_name, generator.config)
    model_config = replace(model_config, num_codes=codes)
    optimizer_config = replace(optimizer_config, steps=2, stop="fixed", precision=precision,
                               compile=compiled, perceptual_weight=0.1 if vgg else 0.0)
    return model_config, optimizer_config


def preset_of(options: list[str]) -> str:
    """A case's preset: `paper` unless its options name another."""
    return next((option for option in options if option in ("mganprior", "single-z")), "paper")


def resident_bytes(field: str = "VmRSS") -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field}")


def run_case(case: str) -> dict:
    """In this (fresh) process: the run's peak above the resident memory before it."""
    import torch
    torch.set_num_threads(1)
    kind = case.split(":")[0]
    work = {"generate": _generate_work, "copies": _copies_work,
            "batch": _batch_work}.get(kind, _inpaint_work)(case)
    before, virtual = resident_bytes(), resident_bytes("VmSize")
    idle_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    # The sampler's own thread maps a stack and, once it allocates, a malloc arena (about 70 MiB
    # of address space): only cases that start processes (torch.compile's workers) run it.
    children = ChildrenSampler() if "compile" in case.split(":") else None
    if children is not None:
        children.start()
    work()
    if children is not None:
        children.stop()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    # measured: resident memory; virtual: address space (what RLIMIT_AS limits); children: the
    # largest sum, sampled every 0.1 s, of the resident memory of the processes it started
    # (torch.compile's compiler workers and compilers)
    return {"case": case, "before": before, "idle_peak": idle_peak, "peak": peak,
            "measured": peak - before, "virtual": resident_bytes("VmPeak") - virtual,
            "children": children.peak if children is not None else 0}


class ChildrenSampler:
    """The largest total resident memory of this process's descendants, sampled in a thread."""

    def __init__(self) -> None:
        import threading
        self.peak = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._done.wait(0.1):
            self.peak = max(self.peak, self._descendants_rss())

    @staticmethod
    def _descendants_rss() -> int:
        parents, rss = {}, {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                parents[int(entry.name)] = int(fields[1])
                rss[int(entry.name)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
            except (OSError, IndexError, ValueError):
                continue
        mine, found = {os.getpid()}, True
        while found:
            found = False
            for pid, parent in parents.items():
                if parent in mine and pid not in mine:
                    mine.add(pid)
                    found = True
        return sum(rss[pid] for pid in mine if pid != os.getpid())


def _inpaint_work(case: str):
    import torch

    from ganprior_core import VGG16Features, inpaint
    family, resolution, codes, precision, *rest = case.split(":")
    resolution, codes = int(resolution), int(codes)
    generator = build(family, resolution)
    model_config, optimizer_config = configs(generator, codes, precision, "vgg" in rest,
                                             "compile" in rest, preset_of(rest))
    perceptual = VGG16Features().eval() if "vgg" in rest else None
    image = torch.rand(3, resolution, resolution, generator=torch.Generator().manual_seed(0))
    hole = torch.zeros(resolution, resolution)
    hole[resolution // 4: 3 * resolution // 4, resolution // 4: 3 * resolution // 4] = 1
    return lambda: inpaint(generator, image, hole, model_config, optimizer_config, seed=0,
                           perceptual=perceptual)


def _batch_work(case: str):
    import torch

    from ganprior_core import batch_size_that_fits, inpaint_batch
    _, family, resolution, codes, precision, members, *rest = case.split(":")
    resolution, members = int(resolution), int(members)
    generator = build(family, resolution)
    resolution = generator.config.resolution
    model_config, optimizer_config = configs(generator, int(codes), precision, False)
    together = batch_size_that_fits(generator, model_config, optimizer_config, members=members,
                                    vectorized="vmap" in rest)
    if together < members:
        raise SystemExit(f"{case}: only {together} of {members} members fit together in the memory "
                         f"free now; free memory first")
    images = [torch.rand(3, resolution, resolution, generator=torch.Generator().manual_seed(seed))
              for seed in range(members)]
    hole = torch.zeros(resolution, resolution)
    hole[resolution // 4: 3 * resolution // 4, resolution // 4: 3 * resolution // 4] = 1
    return lambda: inpaint_batch(generator, images, [hole] * members, model_config,
                                 optimizer_config, list(range(members)),
                                 vectorize="vmap" if "vmap" in rest else "loop")


def _generate_work(case: str):
    from ganprior_core.sampling import generate, sample_latents
    _, family, resolution, count = case.split(":")
    generator = build(family, int(resolution))
    latents = sample_latents(int(count), 512, 0)
    return lambda: generate(generator, latents)


def _tiny_prior():
    import torch

    from ganprior_core.networks.pggan import PGGANConfig, PGGANGenerator
    torch.manual_seed(0)
    return PGGANGenerator(PGGANConfig(16, (32, 32, 16), latent_dim=32)).eval()


def _copies_work(case: str):
    """A large image through one entry point, on a 16x16 PGGAN: what it holds is image copies."""
    import tempfile

    import torch

    from ganprior_core import imaging, inpaint_any_size, preset
    _, entry, side, *batch = case.split(":")
    side = int(side)
    prior = _tiny_prior()
    model_config, optimizer_config = preset("paper", prior.config)
    model_config = replace(model_config, num_codes=2)
    optimizer_config = replace(optimizer_config, steps=2, stop="fixed", precision="fp32", compile=False)
    hole = torch.zeros(side, side)
    hole[side // 4: side // 2, side // 4: side // 2] = 1
    if entry == "library":
        image = torch.rand(3, side, side, generator=torch.Generator().manual_seed(0))
        return lambda: inpaint_any_size(prior, image, hole, model_config, optimizer_config, 0)
    if entry in ("cli", "cli16"):  # cli16: a 16-bit RGBA PNG in, a 16-bit RGBA PNG out
        from ganprior_core.checkpoints import save_generator
        from ganprior_core.cli import main
        folder = Path(tempfile.mkdtemp())
        save_generator(prior, folder / "prior.safetensors")
        pixels = torch.rand(3, side, side, generator=torch.Generator().manual_seed(0))
        alpha = torch.ones(side, side)
        alpha[:8, :8] = 0.5
        imaging.save_image(pixels, folder / "in.png", alpha=alpha if entry == "cli16" else None,
                           bits=16 if entry == "cli16" else 8)
        del pixels, alpha
        imaging.save_mask(hole, folder / "mask.png")
        argv = ["inpaint", "--checkpoint", folder / "prior.safetensors", "--image", folder / "in.png",
                "--mask", folder / "mask.png", "--out", folder / "out.png", "--steps", "2",
                "--codes", "2", "--stop", "fixed", "--precision", "fp32", "--compile", "off"]
        return lambda: main([str(arg) for arg in argv])
    from tests.nodes.node_runs import build, fast_optimizer, inpaint
    from tests.pack_under_test import pack_module
    count = int(batch[0]) if batch else 1
    network = pack_module("ganprior_core.networks.pggan")
    torch.manual_seed(0)
    node_prior = network.PGGANGenerator(network.PGGANConfig(16, (32, 32, 16), latent_dim=32)).eval()
    generator = build(node_prior)
    images = torch.rand(count, side, side, 3, generator=torch.Generator().manual_seed(0))
    return lambda: inpaint(generator, images, hole[None], optimizer=fast_optimizer(steps=2))


def estimate(case: str) -> int:
    import torch

    from ganprior_core import VGG16Features
    from ganprior_core.method import memory
    kind, *fields = case.split(":")
    if kind == "generate":
        family, resolution, count = fields
        generator = build(family, int(resolution))
        batch = memory.generate_batch(generator, 16)
        return memory.estimate_generate(generator, int(count), batch).total
    if kind == "batch":
        family, resolution, codes, precision, members, *rest = fields
        generator = build(family, int(resolution))
        model_config, optimizer_config = configs(generator, int(codes), precision, False)
        return memory.estimate_batch(generator, model_config, optimizer_config, None, "cpu",
                                     int(members), vectorized="vmap" in rest).total
    if kind == "copies":
        entry, side, *batch = fields
        prior = _tiny_prior()
        model_config, optimizer_config = configs(prior, 2, "fp32", False)
        copies = {"library": memory.INPAINT_IMAGE_COPIES}
        if entry in ("cli", "cli16"):
            from ganprior_core.cli import INPAINT_COMMAND_IMAGE_COPIES as cli_copies
            copies[entry] = cli_copies
        if entry == "node":
            from tests.pack_under_test import pack_module
            copies["node"] = pack_module("nodes.inpaint_nodes").node_image_copies(
                int(batch[0]) if batch else 1)
        return memory.estimate_run(prior, model_config, optimizer_config, None, "cpu",
                                   (int(side), int(side)), copies[entry]).total
    family, resolution, codes, precision, *rest = case.split(":")
    generator = build(family, int(resolution))
    model_config, optimizer_config = configs(generator, int(codes), precision, "vgg" in rest,
                                             "compile" in rest, preset_of(rest))
    perceptual = VGG16Features() if "vgg" in rest else None
    compiles = memory.will_compile(generator, model_config, optimizer_config, perceptual,
                                   torch.device("cpu"))
    return memory.estimate_run(generator, model_config, optimizer_config, perceptual, "cpu",
                               compiles=compiles).total


def all_cases() -> list[str]:
    return [f"{family}:{resolution}:{codes}:{precision}" for family in FAMILIES
            for resolution in RESOLUTIONS for codes in CODES for precision in PRECISIONS]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", help=argparse.SUPPRESS)  # the worker: one case, JSON out
    parser.add_argument("--only", help="comma-separated cases (default: every case)")
    parser.add_argument("--batches", action="store_true",
                        help="the batch cases of docs/memory.md instead of the main table")
    parser.add_argument("--out", default=None, help="append JSON lines here")
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case)))
        return
    cases = args.only.split(",") if args.only else list(BATCH_CASES) if args.batches else all_cases()
    for case in cases:
        row = {"case": case, "estimate": estimate(case)}
        if row["estimate"] > MEASURE_LIMIT:
            row["refused"] = True
        else:
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
            started = time.monotonic()
            done = subprocess.run([sys.executable, __file__, "--case", case], capture_output=True,
                                  text=True, env=env)
            if done.returncode != 0:
                raise SystemExit(f"{case} failed: {done.stderr.strip().splitlines()[-1:]}")
            row.update(json.loads(done.stdout.strip().splitlines()[-1]))
            row["ratio"] = row["estimate"] / row["measured"]
            row["seconds"] = round(time.monotonic() - started, 1)  # the case's process, start to end
        line = json.dumps(row)
        print(line, flush=True)
        if args.out:
            with open(args.out, "a") as file:
                file.write(line + "\n")


if __name__ == "__main__":
    main()
