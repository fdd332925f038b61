"""How much SemBridge's alignment terms (L_ot1, L_ot2: CORAL, Eq. 19) weigh in a student's loss, at
each batch size, in each CORAL form (methods/sembridge/coral.py): their values and their shares of
the loss and of the gradient norm on the student's weights, next to the task and KD terms.

A teacher (S, 10 bands) and a KD student (S) are trained on toy with the demo schedule (or reused
under --runs); each batch size draws --batches batches of RGB train images, each with a random MS
partner of its class, and evaluates the student in training mode, as a training step does. The
Planner is freshly initialised (seed 0), as at a run's start.

    python bench/alignment.py [--batch-sizes 16 64 256] [--batches 5] [--runs runs-alignment]

Each profile's weights: `paper` 0.3 task, 0.4 KD (no T^2), 0.3 x 0.01 OT with the reference CORAL;
`bench` 0.3 task, 0.4 KD x T^2, (1 - 0.4) x ot_scale OT with the covariance CORAL (its ot_scale is
read from the profile).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

TERMS = ("task", "kd", "ot1", "ot2")


def profile_weights(profile: str) -> dict[str, float]:
    """The weight each raw term carries in a SemBridge student's loss under `profile` at lambda1 = 0.4."""
    from ackd_bench.methods import load_method_defaults
    from ackd_bench.train.api import loss_weights
    from ackd_bench.train.profiles import load_profile
    from ackd_bench.train.sembridge_run import sembridge_defaults

    data = load_profile(profile)
    choices = data["options"]
    weights = loss_weights(data["student"], {}, choices, sembridge_defaults()["params"])
    kd = {**load_method_defaults("kd")["params"], **data["methods"].get("kd", {})}
    kd_scale = kd["temperature"] ** 2 if kd["t_squared"] else 1.0
    ot = weights["ot"] * weights["ot_scale"]
    return {"task": weights["task"], "kd": weights["kd"] * kd_scale, "ot1": ot, "ot2": ot, "form": choices["coral"]}


def measure(student, teacher, rgb, ms, batch: int, batches: int, form: str, seed: int = 0) -> dict[str, np.ndarray]:
    """Mean over `batches` batches of each raw term's value and of its gradient's norm on the student."""
    from ackd_bench.methods import build_distiller
    from ackd_bench.methods.sembridge.alignment import KnowledgeAlignment

    torch.manual_seed(seed)
    alignment = KnowledgeAlignment(True, True, 512, 8, form)
    kd = build_distiller("kd", len(rgb.classes), {"t_squared": False})
    rng = np.random.default_rng(seed)
    params = [p for p in student.parameters() if p.requires_grad]
    values, norms = [], []
    student.train()
    for _ in range(batches):
        picks = rng.choice(len(rgb), size=batch, replace=False)
        labels = rgb.labels[picks]
        partners = np.array([rng.choice(np.flatnonzero(ms.labels == c)) for c in labels])
        images = torch.stack([s["image"] for s in rgb.__getitems__(picks.tolist())])
        with torch.no_grad():
            t_out = {k: v.float() for k, v in teacher(torch.stack([s["image"] for s in ms.__getitems__(
                partners.tolist())])).items()}
        out = {k: v.float() for k, v in student(images).items()}
        terms = {"task": F.cross_entropy(out["logits"], torch.as_tensor(labels)),
                 "kd": kd(out, t_out, None, 0)["kd"], **alignment(out, t_out)}
        values.append([float(terms[t].detach()) for t in TERMS])
        norms.append([float(torch.cat([g.flatten() for g in torch.autograd.grad(terms[t], params, retain_graph=True,
                                                                                 allow_unused=True)
                                       if g is not None]).norm()) for t in TERMS])
    return {"value": np.mean(values, axis=0), "grad": np.mean(norms, axis=0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--runs", default="runs-alignment")
    parser.add_argument("--data", type=Path, default=Path("data"))
    args = parser.parse_args()

    from ackd_bench.data.build import build_dataset
    from ackd_bench.data.dataset import ShardDataset
    from ackd_bench.train.api import RunOptions, train_classifier, train_student
    from ackd_bench.train.request import RunRequest
    from ackd_bench.train.teacher_cache import load_teacher
    from ackd_bench.train.transport import load_student

    dataset = args.data / "toy"
    build_dataset("toy", dataset, progress=False)
    options = RunOptions(runs_root=Path(args.runs), device="cpu", progress=False, reuse_finished=True)
    teacher_run = train_classifier(RunRequest.teacher_run(dataset, "S", profile="demo"), options)
    teacher_path = Path(teacher_run["run_dir"]) / "checkpoints" / "best.pt"
    student_run = train_student(RunRequest.student_run(dataset, "S", "kd", teacher=str(teacher_path), profile="demo"),
                                options)
    ms, rgb = ShardDataset(dataset, "ms", "train"), ShardDataset(dataset, "rgb", "train")
    teacher, _ = load_teacher(teacher_path, ms.manifest)
    student = load_student(Path(student_run["run_dir"]) / "checkpoints" / "best.pt", rgb.manifest)
    rows = {(b, form): measure(student, teacher, rgb, ms, b, args.batches, form)
            for b in args.batch_sizes for form in ("reference", "covariance")}
    print(f"Raw terms and the norms of their gradients on the student's weights ({dataset}, S/S, a trained KD "
          f"student, mean of {args.batches} batches; KD without T^2)\n")
    print("| batch | CORAL | " + " | ".join(TERMS) + " | " + " | ".join(f"grad {t}" for t in TERMS) + " |")
    print("|---|---|" + "---|" * 2 * len(TERMS))
    for (b, form), r in rows.items():
        print(f"| {b} | {form} | " + " | ".join(f"{v:.3g}" for v in r["value"]) + " | "
              + " | ".join(f"{g:.3g}" for g in r["grad"]) + " |")
    print("\nEach profile's weighted terms: share of the loss / share of the summed gradient norms (%)\n")
    print("| profile | batch | CORAL | weights (task, KD, OT) | " + " | ".join(TERMS) + " |")
    print("|---|---|---|---|" + "---|" * len(TERMS))
    for profile in ("paper", "bench"):
        w = profile_weights(profile)
        for b in args.batch_sizes:
            r = rows[(b, w["form"])]
            weighted = np.array([w[t] for t in TERMS])
            loss, grad = weighted * r["value"], weighted * r["grad"]
            print(f"| {profile} | {b} | {w['form']} | {w['task']:g}, {w['kd']:g}, {w['ot1']:g} | "
                  + " | ".join(f"{100 * l / loss.sum():.2g} / {100 * g / grad.sum():.2g}" for l, g in zip(loss, grad))
                  + " |")


if __name__ == "__main__":
    main()
