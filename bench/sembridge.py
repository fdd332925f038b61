"""SemBridge costs: DynM re-matching (batched vs per-sample loop) and the student step over vanilla KD.

(a) DynM at N students x M teachers per class over C classes: the batched per-class matrix
    computation against the reference code's approach, a Python loop over student samples (each
    computing its KL to every gallery teacher of its class). The loop is timed on a subset of
    students and extrapolated linearly (it is linear in the number of students).
    Budget: >= 100x.
(b) Student training step time with SemBridge (KD + Planner + CORAL on tokens and pooled
    features) over the vanilla-KD step, teacher outputs from the cache, for R/R and S/S.
    Budget: <= 1.10x.

    python bench/sembridge.py [--students 5000] [--teachers 3000] [--classes 10] [--loop-sample 500]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from ackd_bench.methods import build_distiller
from ackd_bench.methods.sembridge.alignment import KnowledgeAlignment
from ackd_bench.methods.sembridge.matching import dynm_match
from ackd_bench.models import build_backbone
from ackd_bench.train.device import place_module, resolve_device, uses_channels_last


def per_sample_loop(student_logits, teacher_logits, labels, galleries, gamma, subset):
    """The reference approach: one student at a time against its class's gallery, KL(p_T || p_S)."""
    matches = []
    for n in subset:
        gallery = galleries[labels[n]]
        log_s = F.log_softmax(student_logits[n] / gamma, dim=0)
        log_ts = [F.log_softmax(teacher_logits[k] / gamma, dim=0) for k in gallery]
        kls = [(log_t.exp() * (log_t - log_s)).sum() for log_t in log_ts]
        matches.append(gallery[int(torch.stack(kls).argmin())])
    return matches


def bench_dynm(args, device) -> list[str]:
    rng = np.random.default_rng(0)
    classes = args.classes
    labels = np.repeat(np.arange(classes), args.students)
    student_logits = torch.randn(len(labels), classes, device=device) * 3
    teacher_logits = torch.randn(classes * args.teachers, classes, device=device) * 3
    galleries = [np.arange(c * args.teachers, (c + 1) * args.teachers) for c in range(classes)]
    start = time.perf_counter()
    batched = dynm_match(student_logits, teacher_logits, labels, galleries, 3.0)
    if device.type == "cuda":
        torch.cuda.synchronize()
    batched_s = time.perf_counter() - start
    subset = rng.choice(len(labels), size=min(args.loop_sample, len(labels)), replace=False)
    start = time.perf_counter()
    looped = per_sample_loop(student_logits, teacher_logits, labels, galleries, 3.0, subset)
    loop_s = (time.perf_counter() - start) * len(labels) / len(subset)
    agree = np.mean(np.asarray(looped) == batched[subset])
    return [
        f"DynM re-match, {args.students} students x {args.teachers} teachers per class x {classes} classes ({device})",
        f"  batched per class      {batched_s:10.3f} s",
        f"  per-sample loop        {loop_s:10.1f} s   (timed on {len(subset)} students, extrapolated)",
        f"  speed-up               {loop_s / batched_s:10.0f}x  (target >= 100x); same matches on the subset: {agree:.0%}",
    ]


def step_time(arch: str, sembridge: bool, device, batch: int, steps: int, size: int = 48, classes: int = 10) -> float:
    torch.manual_seed(0)
    student = place_module(build_backbone(arch, 3, classes), device)
    kd = place_module(build_distiller("kd", classes), device)
    alignment = place_module(KnowledgeAlignment(True, True, 512, 8), device) if sembridge else None
    params = list(student.parameters()) + (list(alignment.parameters()) if alignment else [])
    optimizer = torch.optim.Adam(params, lr=1e-3)
    grid = (size + 31) // 32
    images = torch.randn(batch, 3, size, size, device=device)
    if uses_channels_last(device):  # as the modules are
        images = images.contiguous(memory_format=torch.channels_last)
    targets = torch.randint(0, classes, (batch,), device=device)
    teacher = {"logits": torch.randn(batch, classes, device=device), "pooled": torch.randn(batch, 512, device=device),
               "tokens": torch.randn(batch, grid * grid, 512, device=device)}
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    timings = []
    for step in range(steps + 3):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with autocast:
            out = {k: v.float() for k, v in student(images).items()}
            loss = 0.3 * F.cross_entropy(out["logits"], targets) + 0.4 * kd(out, teacher, targets, 0)["kd"]
            if alignment is not None:
                loss = loss + 0.003 * sum(alignment(out, teacher).values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step >= 3:
            timings.append(time.perf_counter() - start)
    return float(np.median(timings))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=5000)
    parser.add_argument("--teachers", type=int, default=3000)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--loop-sample", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--size", type=int, default=48, help="input size (48: toy; 64/120/128: real datasets)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    lines = bench_dynm(args, device)
    lines.append(f"Student step, batch {args.batch_size}, {args.size}x{args.size} ({device}); median of {args.steps}")
    lines.append(f"  {'pair':<6}{'KD step':>12}{'SemBridge':>12}{'ratio':>8}   (target <= 1.10x)")
    for arch, pair in (("R", "R/R"), ("S", "S/S")):
        kd = step_time(arch, False, device, args.batch_size, args.steps, args.size)
        sb = step_time(arch, True, device, args.batch_size, args.steps, args.size)
        lines.append(f"  {pair:<6}{kd * 1e3:>10.1f}ms{sb * 1e3:>10.1f}ms{sb / kd:>7.2f}x")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
