"""Student training throughput with the live teacher vs the teacher cache (samples/s).

For each teacher/student pair, times the real student step (DataLoader, pairing, teacher outputs,
student forward/backward, Adam) with vanilla KD on toy-sized inputs: once with the teacher run on
every batch (its MS images loaded and forwarded), once reading its cached outputs.
Budget (DESIGN section 9): cache >= 1.4x faster for R/R.

    python bench/student_step.py [--steps 20] [--batch-size 64] [--pairs R/R S/S] [--device auto]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from ackd_bench.data.build import build_dataset
from ackd_bench.data.dataset import ShardDataset
from ackd_bench.methods import build_distiller
from ackd_bench.models import build_backbone, canonical_arch
from ackd_bench.train.checkpoint import save_checkpoint
from ackd_bench.train.device import resolve_device
from ackd_bench.train.engine import OptimConfig, Runtime, build_optimizer, resolve_precision, seed_everything
from ackd_bench.train.student import DistillationTask, StudentModule, TeacherSource
from ackd_bench.train.teacher_cache import build_or_load_cache, load_teacher


def random_teacher(path: Path, arch: str, manifest: dict) -> Path:
    """A teacher checkpoint with the right metadata; its weights do not matter for timing."""
    ms = manifest["modalities"]["ms"]
    model = build_backbone(arch, len(ms["bands"]), len(manifest["classes"]))
    save_checkpoint(path, {"kind": "teacher", "arch": canonical_arch(arch), "in_channels": len(ms["bands"]),
                           "num_classes": len(manifest["classes"]), "bands": ms["bands"],
                           "classes": manifest["classes"], "dataset_version": manifest["dataset_version"],
                           "module": {f"backbone.{k}": v for k, v in model.state_dict().items()}})
    return path


def samples_per_second(task: DistillationTask, rt: Runtime, steps: int, cfg: OptimConfig) -> float:
    module = rt.place_module(task.module)
    optimizer = build_optimizer([p for p in module.parameters() if p.requires_grad], cfg)
    task.on_epoch_start(0)
    seen, started = 0, None
    batches = iter(task.train_batches(0))
    for step in range(steps + 2):
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(task.train_batches(step))
            batch = next(batches)
        if step == 2:  # after warm-up
            if rt.cuda:
                torch.cuda.synchronize()
            started, seen = time.perf_counter(), 0
        inputs = task.prepare(batch, 0, step)
        with rt.autocast():
            loss = module(**inputs)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += len(batch["label"])
    if rt.cuda:
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--pairs", nargs="+", default=["R/R", "S/S"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()
    device = resolve_device(args.device)
    rt = Runtime(device=device, workers=args.workers, progress=False, precision=resolve_precision("auto", device))
    cfg = OptimConfig(epochs=1, batch_size=args.batch_size, lr=1e-3)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "toy"
        manifest = build_dataset("toy", root, progress=False).manifest
        rgb, val = ShardDataset(root, "rgb", "train"), ShardDataset(root, "rgb", "val")
        ms = ShardDataset(root, "ms", "train")
        for pair in args.pairs:
            teacher_arch, student_arch = pair.split("/")
            ckpt_dir = Path(tmp) / f"teacher-{teacher_arch}" / "checkpoints"
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            ckpt = random_teacher(ckpt_dir / "best.pt", teacher_arch, manifest)
            rates = {}
            for mode in ("live", "cache"):
                seed_everything(0)
                if mode == "cache":
                    source = TeacherSource(rt, cache=build_or_load_cache(ckpt, ms, rt, args.batch_size))
                else:
                    source = TeacherSource(rt, teacher=rt.place_module(load_teacher(ckpt, manifest)[0]))
                student = build_backbone(student_arch, 3, len(manifest["classes"]))
                module = StudentModule(student, build_distiller("kd", len(manifest["classes"])),
                                       {"task": 0.3, "kd": 0.4})
                task = DistillationTask(module, rgb, val, ms, source, cfg, ["hflip", "vflip"], 0, rt)
                rates[mode] = samples_per_second(task, rt, args.steps, cfg)
            rows.append((pair, rates["live"], rates["cache"]))
    print(f"device {rt.device}, batch {args.batch_size}, {args.steps} timed steps, 48x48 inputs (toy)")
    print(f"{'pair':<6}{'live teacher/s':>16}{'cached/s':>12}{'speed-up':>10}   (target R/R >= 1.4x)")
    for pair, live, cached in rows:
        print(f"{pair:<6}{live:>16.1f}{cached:>12.1f}{cached / live:>9.2f}x")


if __name__ == "__main__":
    main()
