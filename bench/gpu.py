"""Where a run's time goes on a GPU (or CPU), and what the paper's grid costs at that rate.

One command, one report, each line printed as soon as it is measured:
  1. pure compute: each architecture's forward + backward + Adam step on random inputs already on
     the device, built as the profile's runs build it (its backbone width and heads) and in its
     forward precision: `paper` in fp32, and the student step again as `bench` runs it (bf16 autocast
     on GPUs that compute it natively); channels-last on CUDA; steps pipelined as in a real epoch (one
     synchronisation around the timed window); as the project runs it (deterministic algorithms),
     without that setting, and without it but with cudnn.benchmark (one change at a time);
  2. the project's real steps under `paper`, read from real runs (train-teacher, train-matcher,
     train-student with none / kd / dkd / sembridge for each X/X pair) on a toy benchmark scaled to
     S2S-EU's size, beside the pure step of the same model in the same precision: the step loop's
     time per step (log.csv `train_seconds / steps`, epochs after the first), the rest of each epoch
     (pairing, validation, checkpoint) and the run's set-up;
  3. `--runs-per-gpu` K: K student runs at once on one device, each in its own process (this
     process first hands its cached device memory back);
  4. the projected device-hours of Tables 3-6 x 3 seeds per dataset (S2S-EU, S2S-CN, M2S-GL): run
     counts from the grid, epochs from the paper profile, steps from each dataset's train size,
     real step = pure compute at the dataset's size x the real/pure ratio measured here.

Targets (H100): real steps <= 1.3x pure compute; everything but steps <= 10% of an epoch;
SemBridge step <= 1.10x KD; the whole grid (3 datasets x 3 seeds) <= 8 GPU-hours.

    python bench/gpu.py                       # GPU defaults: 64 px, batch 256, S2S-EU-sized toy, R M S
    python bench/gpu.py --device cpu          # CPU defaults: small sizes, ShuffleNetV2 only
    bash bench/gpu_accept.sh OUT              # the acceptance run: the cuda tests, then this at a reduced size

Measured: the acceptance run's tiny configuration on the CPU stand-in takes 51 s (2 cores). The GPU
defaults have not run on a GPU yet (the CUDA path never has); bench/gpu_accept.sh runs a reduced
size (1,500 MS / 500 RGB images per class, R and S, 2 epochs) under a 240 s limit, and its log
keeps whatever it measured before a limit.
"""

from __future__ import annotations

import argparse
import copy
import csv
import gc
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch
import torch.nn.functional as F

from ackd_bench.data.build import build_dataset
from ackd_bench.data.recipe import Recipe, load_recipe
from ackd_bench.harness.grid import GridRun, expand_grid
from ackd_bench.harness.plan import RunPlan
from ackd_bench.harness.runner import run_concurrently
from ackd_bench.models import build_backbone, canonical_arch
from ackd_bench.train.api import RunOptions, train_classifier, train_matcher, train_student
from ackd_bench.train.device import place_module, resolve_device, uses_channels_last
from ackd_bench.train.engine import resolve_precision
from ackd_bench.models.backbones import backbone_settings
from ackd_bench.train.profiles import load_profile
from ackd_bench.train.request import RunRequest, SemBridgeSettings

STUDENT_METHODS = ("none", "kd", "dkd", "sembridge")
# Approximate split sizes of the real benchmarks (recipes: 60/20/20 splits; M2S-GL: the caps, an upper bound).
DATASETS = {
    #            px  MS bands  MS train  MS val  RGB train  RGB val
    "S2S-EU": (64, 10, 16_200, 5_400, 4_620, 1_540),    # EuroSAT 27,000; RESISC45 11 x 700
    "S2S-CN": (128, 14, 12_000, 4_000, 4_200, 1_400),   # NaSC-TG2 10 x 2,000; RESISC45 10 x 700
    "M2S-GL": (120, 10, 18_000, 6_000, 9_000, 3_000),   # caps 15 x 2,000 MS, 15 x 1,000 RGB
}
PAPER_EPOCHS = {"teacher": 200, "student": 200, "matcher": 100}
PAPER_BATCH = {"teacher": 256, "student": 256, "matcher": 64}


def say(*lines: str) -> None:
    """Each line as soon as it is measured: a run cut short by a time limit keeps what it printed."""
    for line in lines:
        print(line, flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def profile_model(profile: str, arch: str, device: torch.device) -> tuple[dict, str]:
    """What a profile's runs build: the backbone settings (width, heads) and the forward precision on
    `device` (the engine's own resolution: `paper` is fp32, `bench` bf16 where the GPU computes it)."""
    options = load_profile(profile)["options"]
    return backbone_settings(arch, options), resolve_precision("auto", device, options["forward_precision"])


def pure_step_ms(arch: str, bands: int, size: int, batch: int, device: torch.device, steps: int,
                 deterministic: bool, benchmark: bool = False, profile: str = "paper") -> float:
    """Mean ms of forward + backward + Adam on random inputs already on the device, over `steps`
    steps after up to 3 of warm-up, pipelined as the engine's steps are (no synchronisation between
    them), for the model and precision `profile`'s runs use: like for like with its real runs."""
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.benchmark = benchmark
    try:
        settings, precision = profile_model(profile, arch, device)
        model = place_module(build_backbone(arch, bands, 10, **settings), device)
        images = torch.randn(batch, bands, size, size, device=device)
        if uses_channels_last(device):
            images = images.contiguous(memory_format=torch.channels_last)
        targets = torch.randint(0, 10, (batch,), device=device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype is not None and device.type == "cuda")

        def step() -> None:
            with autocast:
                loss = F.cross_entropy(model(images)["logits"].float(), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        for _ in range(min(3, steps)):  # warm-up (cuDNN's algorithm choice, the allocator)
            step()
        sync(device)
        started = time.perf_counter()
        for _ in range(steps):
            step()
        sync(device)
        return 1e3 * (time.perf_counter() - started) / steps
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=True)
        torch.backends.cudnn.benchmark = False


def epoch_split(run_dir: Path) -> dict[str, float]:
    """Step time, rest of the epoch and set-up of a finished run, from its log.csv and result.json."""
    import json

    with open(run_dir / "log.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    steady = rows[1:] or rows  # the first epoch pays cuDNN's and the allocator's warm-up
    steps = statistics.median(int(r["steps"]) for r in steady)
    train = statistics.median(float(r["train_seconds"]) for r in steady)
    total = statistics.median(float(r["seconds"]) for r in steady)
    result = json.loads((run_dir / "result.json").read_text())
    setup = result.get("wall_seconds", 0.0) - sum(float(r["seconds"]) for r in rows) if "wall_seconds" in result else None
    return {"steps": steps, "step_ms": 1e3 * train / max(steps, 1), "epoch_s": total, "other_s": total - train,
            "setup_s": setup}


def len_split(dataset: Path, modality: str, split: str) -> int:
    from ackd_bench.data.manifest import read_manifest

    return sum(e.samples for e in read_manifest(dataset).entries(modality, split))


def run_seconds(kind: str, method: str, arch: str, facts: tuple, measured: dict, size: int, bench_val: dict,
                archs: list[str], device: torch.device, pure_steps: int, pure_cache: dict,
                projection_batch: int | None = None) -> float:
    """One paper-profile run of a real dataset: epochs x (steps x real step + rest of epoch) + set-up.

    Real step = pure compute at the dataset's size x the real/pure ratio measured at the bench's
    size (the matcher: its measured step x pixel ratio); the rest of an epoch scales with the
    validation split and the pixels."""
    px, bands, ms_train, ms_val, rgb_train, rgb_val = facts
    timed = {canonical_arch(a)[0].upper() for a in archs}
    arch = arch if arch in timed else sorted(timed)[0]
    pixels = (px / size) ** 2
    if kind == "matcher":
        split = measured["matcher"]
        step_ms = split["step_ms"] * pixels
    else:
        timed_method = "teacher" if kind == "teacher" else (method if method in STUDENT_METHODS else "kd")
        split, pure = measured[(kind, timed_method, arch)]
        in_bands = bands if kind == "teacher" else 3
        key = (arch, in_bands, px, kind)
        if key not in pure_cache:  # timed at the paper's batch, or at a smaller one scaled linearly to it
            batch = projection_batch or PAPER_BATCH[kind]
            pure_cache[key] = pure_step_ms(arch, in_bands, px, batch, device, pure_steps, True) * PAPER_BATCH[kind] / batch
        step_ms = pure_cache[key] * split["step_ms"] / pure
    train_n, val_n, bench_val_n = (rgb_train, rgb_val, bench_val["rgb"]) if kind == "student" else \
        (ms_train, ms_val, bench_val["ms"])
    other = split["other_s"] * val_n / max(bench_val_n, 1) * pixels
    steps = train_n // PAPER_BATCH[kind]
    return PAPER_EPOCHS[kind] * (steps * step_ms / 1e3 + other) + (split["setup_s"] or 0.0)


def scaled_toy(root: Path, size: int, ms_per_class: int, rgb_per_class: int, workers: int) -> Path:
    raw = copy.deepcopy(load_recipe("toy").raw)
    raw["image_size"] = size
    raw["generator"]["sides"]["ms"]["samples_per_class"] = ms_per_class
    rgb = raw["generator"]["sides"]["rgb"]
    rgb.pop("split_counts", None)  # hashed 60/20/20 splits at the size asked for, as toy v2 had
    rgb["samples_per_class"] = rgb_per_class
    raw["shards"]["max_samples"] = 2048
    build_dataset("toy", root, recipe=Recipe.from_dict(raw, f"toy at {size} px"), progress=False, workers=workers)
    return root


class StudentJob:
    """One K-run throughput sample: a KD student from a fixed teacher (picklable for spawn)."""

    def __init__(self, dataset: Path, teacher: Path, arch: str, overrides: dict, runs_root: Path, device: str):
        self.dataset, self.teacher, self.arch, self.overrides, self.runs_root, self.device = (
            dataset, teacher, arch, overrides, runs_root, device)

    def __call__(self, request: GridRun, config: SweepConfig) -> dict:
        train_student(RunRequest.student_run(self.dataset, self.arch, "kd", teacher=self.teacher, profile="paper",
                                               seed=request.seed, overrides=self.overrides),
                      RunOptions(run_dir=self.runs_root / f"k-{request.seed}", device=self.device, progress=False,
                                 force=True, threads=config.options.threads))
        return {"status": "done"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", type=int, help="px of the scaled toy (GPU default 64, CPU 48)")
    parser.add_argument("--batch-size", type=int, help="GPU default 256, CPU 32")
    parser.add_argument("--ms-per-class", type=int, help="GPU default 4500 (S2S-EU's size), CPU 100")
    parser.add_argument("--rgb-per-class", type=int, help="GPU default 1300, CPU 80")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of each real run (the first is warm-up)")
    parser.add_argument("--archs", nargs="+", help="GPU default R M S, CPU S")
    parser.add_argument("--ks", nargs="+", type=int, help="--runs-per-gpu values (GPU default 1 2 4 8, CPU 1 2)")
    parser.add_argument("--k-epochs", type=int, help="epochs of each K-throughput run (GPU default 10, CPU 2)")
    parser.add_argument("--pure-steps", type=int, help="timed pure-compute steps (GPU 20, CPU 3)")
    parser.add_argument("--projection-batch", type=int,
                        help="batch at which section 4 times each real dataset's step, scaled linearly to the "
                             "paper's (default: the paper's batch itself)")
    parser.add_argument("--build-workers", type=int, default=4)
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    gpu = device.type == "cuda"
    size = args.size or (64 if gpu else 48)
    batch = args.batch_size or (256 if gpu else 32)
    archs = [canonical_arch(a) for a in (args.archs or (["R", "M", "S"] if gpu else ["S"]))]
    ks = args.ks or ([1, 2, 4, 8] if gpu else [1, 2])
    pure_steps = args.pure_steps or (20 if gpu else 3)
    k_epochs = args.k_epochs or (10 if gpu else 2)
    name = torch.cuda.get_device_name(device) if gpu else str(device)
    started = time.time()
    say(f"bench/gpu.py on {name} ({device}), torch {torch.__version__}, {size} px, batch {batch}")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        dataset = scaled_toy(tmp / "toy", size, args.ms_per_class or (4500 if gpu else 100),
                             args.rgb_per_class or (1300 if gpu else 80), args.build_workers)
        say(f"scaled toy built in {time.time() - started:.0f} s")

        # 1 + 2: pure compute against the real steps
        overrides = {"epochs": args.epochs, "batch_size": batch}
        # the pure-compute loop's threads, not the load-dependent default: both sides on equal terms
        threads = torch.get_num_threads()
        options = lambda run: RunOptions(run_dir=tmp / "runs" / run, device=args.device, progress=False,  # noqa: E731
                                         checkpoint_every=600, threads=threads)
        measured, pure_cache = {}, {}

        def row(label: str, pure: float | None, split: dict) -> None:
            ratio = f"{split['step_ms'] / pure:>6.2f}x" if pure else f"{'-':>7}"
            say(f"{label:<26}{pure or float('nan'):>9.1f}{split['step_ms']:>9.1f}{ratio}{split['steps']:>7.0f}"
                f"{split['epoch_s']:>9.2f}{split['other_s']:>9.2f}{100 * split['other_s'] / split['epoch_s']:>8.1f}%"
                f"{split['setup_s'] or float('nan'):>10.1f}")

        say("", "real runs (paper profile) against pure compute of the same model in the same precision "
            f"({profile_model('paper', archs[0], device)[1]})",
            f"{'run':<26}{'pure ms':>9}{'real ms':>9}{'ratio':>7}{'steps':>7}{'epoch s':>9}"
            f"{'other s':>9}{'other %':>9}{'set-up s':>10}")
        matcher = train_matcher(RunRequest.matcher_run(dataset, "R" if "resnet34" in archs else archs[0],
                                                         profile="paper", overrides={"epochs": args.epochs}),
                                options("matcher"))
        matcher_ckpt = Path(matcher["run_dir"]) / "checkpoints" / "best.pt"
        measured["matcher"] = epoch_split(Path(matcher["run_dir"]))
        row("matcher (batch 64)", None, measured["matcher"])
        for arch in archs:
            short = arch[0].upper()
            pure = {bands: pure_step_ms(arch, bands, size, batch, device, pure_steps, True) for bands in (10, 3)}
            for bands, kind in ((10, "teacher"), (3, "student")):  # the timing section 4 would make
                if args.projection_batch is None and batch == PAPER_BATCH[kind]:
                    pure_cache[(short, bands, size, kind)] = pure[bands]
            teacher = train_classifier(RunRequest.teacher_run(dataset, arch, profile="paper", overrides=overrides),
                                       options(f"teacher-{short}"))
            split = epoch_split(Path(teacher["run_dir"]))
            row(f"{short} teacher (10 bands)", pure[10], split)
            measured[("teacher", "teacher", short)] = (split, pure[10])
            ckpt = Path(teacher["run_dir"]) / "checkpoints" / "best.pt"
            for method in STUDENT_METHODS:
                request = RunRequest.student_run(dataset, arch, method, teacher=ckpt if method != "none" else None,
                                                   matcher=matcher_ckpt, profile="paper", overrides=overrides,
                                                   sembridge=SemBridgeSettings(dynm=(1, 1000, 0)))
                result = train_student(request, options(f"student-{short}-{method}"))
                split = epoch_split(Path(result["run_dir"]))
                row(f"{short}/{short} student {method}", pure[3], split)
                measured[("student", method, short)] = (split, pure[3])
            kd, sembridge = measured[("student", "kd", short)][0], measured[("student", "sembridge", short)][0]
            say(f"{short}/{short}: SemBridge step / KD step = {sembridge['step_ms'] / kd['step_ms']:.2f}x (target <= 1.10x)")
            # the same student step in the `bench` profile's model and precision, and two speed settings
            bench_settings, bench_precision = profile_model("bench", arch, device)
            pure_bench = pure_step_ms(arch, 3, size, batch, device, pure_steps, True, profile="bench")
            pure_fast = pure_step_ms(arch, 3, size, batch, device, pure_steps, False)
            pure_benchmark = pure_step_ms(arch, 3, size, batch, device, pure_steps, False, benchmark=True)
            say(f"{short}: pure student step, paper profile: {pure[3]:.1f} ms deterministic, {pure_fast:.1f} ms "
                f"without deterministic algorithms, {pure_benchmark:.1f} ms with cudnn.benchmark too; bench profile "
                f"({bench_precision}, width {bench_settings['width']}, {bench_settings['heads']} heads): {pure_bench:.1f} ms")

        # 3: K runs at once on one device; this process's cached blocks go back to the device first
        gc.collect()
        if gpu:
            torch.cuda.empty_cache()
            say(f"(this process still holds {torch.cuda.memory_reserved(device) / 2**20:.0f} MiB "
                         "reserved besides its CUDA context)")
        say("", f"--runs-per-gpu K: {k_epochs}-epoch KD students ({archs[-1][0].upper()}/{archs[-1][0].upper()}), "
                  "each in its own process", f"{'K':>3}{'wall s':>9}{'runs/hour':>11}{'vs K=1':>8}")
        teacher_ckpt = tmp / "runs" / f"teacher-{archs[-1][0].upper()}" / "checkpoints" / "best.pt"
        job = StudentJob(dataset, teacher_ckpt, archs[-1], {"epochs": k_epochs, "batch_size": batch}, tmp / "k",
                         args.device)
        base, best_gain = None, 1.0
        for k in ks:
            requests = [GridRun(1, str(dataset), "student", "kd", "", "", "", seed) for seed in range(k)]
            t0 = time.time()
            outcomes = run_concurrently(requests, RunPlan(options=RunOptions(device=args.device)), k, job=job)
            wall = time.time() - t0
            failed = [o for o in outcomes if o["status"] != "done"]
            rate = 3600 * (k - len(failed)) / wall
            base = base or rate
            say(f"{k:>3}{wall:>9.1f}{rate:>11.1f}{rate / base:>7.2f}x" + (f"  {len(failed)} failed: "
                         f"{failed[0]['error']}" if failed else ""))
            best_gain = max(best_gain, rate / base)

        # 4: projected device-hours of Tables 3-6 x 3 seeds
        bench_val = {"ms": len_split(dataset, "ms", "val"), "rgb": len_split(dataset, "rgb", "val")}
        say("", "projected device-hours, Tables 3-6 x 3 seeds (paper profile: 200/200/100 epochs; steps, rest of "
                  "each epoch and set-up)", f"{'dataset':<8}{'px':>5}{'runs':>6}{'hours':>8}{'with best K':>13}")
        grand = 0.0
        for dataset_name, facts in DATASETS.items():
            runs = Counter((r.kind, r.method.split("+")[0], r.student if r.kind == "student" else r.teacher)
                           for r in expand_grid([dataset_name], seeds=[0, 1, 2]))
            seconds = sum(count * run_seconds(kind, method, arch, facts, measured, size, bench_val, archs, device,
                                              pure_steps, pure_cache, args.projection_batch)
                          for (kind, method, arch), count in runs.items())
            hours = seconds / 3600
            grand += hours
            say(f"{dataset_name:<8}{facts[0]:>5}{sum(runs.values()):>6}{hours:>8.1f}{hours / best_gain:>13.1f}")
        say(f"{'all':<8}{'':>5}{'':>6}{grand:>8.1f}{grand / best_gain:>13.1f}   (target <= 8 GPU-hours; "
                     f"best K gain {best_gain:.2f}x)")
        untimed = sorted({"R", "M", "S"} - {canonical_arch(a)[0].upper() for a in archs})
        if untimed:
            say(f"architectures not timed here ({', '.join(untimed)}) are projected at "
                         f"{archs[0][0].upper()}'s rates: pass --archs R M S for their own")
        say("methods not timed here (rkd, logits, ctkd, lskd, vpr) at KD's real/pure ratio; SemBridge "
                     "variants and ablations at SemBridge's; rest of epoch scaled by val size and pixels")
    say(f"bench wall time {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
