"""Knowledge-transport cost (the paper's Eq. 1-2, Fig. 2): the empirical Wasserstein distance
between teacher and student output distributions.

With two equal-size samples and uniform weights, the optimal transport plan is a permutation, so
the exact empirical W1 (Euclidean cost on logits) is the mean cost of the optimal assignment
(`scipy.optimize.linear_sum_assignment`). The asymmetric cost puts the teacher on MS images and
the student on the unpaired RGB images of the same split; the symmetric control puts the student
on the RGB view of the teacher's own MS scenes, where the dataset has one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from ..data.dataset import ShardDataset
from ..data.manifest import Manifest
from ..data.mi import paired_view
from ..errors import AckdError
from ..models.backbones import backbone_from_meta
from .checkpoint import check_compatible, load_checkpoint, load_weights, require_fields, untouched_rng
from .device import place
from .engine import Runtime
from .runs import load_dataset, predict
from .teacher_cache import load_teacher, teacher_bands


def wasserstein(a: np.ndarray, b: np.ndarray, metric: str = "euclidean") -> float:
    """Exact empirical W1 (or W2^2 with metric='sqeuclidean') between two equal-size samples."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    a, b = (a[:, None] if a.ndim == 1 else a), (b[:, None] if b.ndim == 1 else b)
    if len(a) != len(b):
        raise ValueError(f"equal-size samples needed, got {len(a)} and {len(b)}")
    cost = cdist(a, b, metric=metric)
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].mean())


def load_student(path: str | Path, manifest: Manifest) -> torch.nn.Module:
    state = load_checkpoint(path)
    check_compatible(state, {"kind": "student"}, path)
    require_fields(state, ("arch", "in_channels", "num_classes", "module"), path)
    check_compatible(state, {"bands": list(manifest.modalities["rgb"].bands), "classes": list(manifest.classes)}, path)
    check_compatible(state, {"dataset_version": manifest.dataset_version}, path)
    with untouched_rng():
        student = backbone_from_meta(state)
    load_weights(student, {k.removeprefix("backbone."): v for k, v in state["module"].items()
                           if k.startswith("backbone.")}, path, f"a {state['arch']} student")
    return student.eval()


def paired_images(rgb: ShardDataset, ms: ShardDataset, indices: np.ndarray) -> torch.Tensor | None:
    render = paired_view(ms)
    if render is None:
        return None
    return torch.stack([rgb.normalise(render(int(i))) for i in indices])


def transport_costs(teacher: torch.nn.Module, student: torch.nn.Module, ms: ShardDataset, rgb: ShardDataset,
                    rt: Runtime, samples: int | None = None, seed: int = 0, teacher_logits: torch.Tensor | None = None,
                    batch_size: int = 256) -> dict[str, Any]:
    n = min(len(ms), len(rgb), samples or len(ms))
    if n < 2:
        raise AckdError(f"transport cost needs at least 2 samples per side, got {len(ms)} MS and {len(rgb)} RGB")
    rng = np.random.default_rng(seed)
    ms_idx, rgb_idx = np.sort(rng.choice(len(ms), n, replace=False)), np.sort(rng.choice(len(rgb), n, replace=False))
    if teacher_logits is None:
        t = predict(teacher, ms, rt, batch_size, indices=ms_idx)["logits"].numpy()
    else:
        t = teacher_logits[place(torch.from_numpy(ms_idx), teacher_logits.device)].float().cpu().numpy()
    s = predict(student, rgb, rt, batch_size, indices=rgb_idx)["logits"].numpy()
    for side, logits in (("teacher", t), ("student", s)):
        if not np.isfinite(logits).all():
            raise AckdError(f"transport cost: the {side} gives non-finite logits (NaN or inf weights in its checkpoint?)")
    result = {"n": int(n), "asymmetric": wasserstein(t, s), "symmetric": None}
    paired = paired_images(rgb, ms, ms_idx)
    if paired is not None:
        was_training = student.training
        student.eval()
        with torch.no_grad():
            outputs = [student(rt.to_device(paired[i:i + batch_size]))["logits"].float().cpu()
                       for i in range(0, len(paired), batch_size)]
        student.train(was_training)
        result["symmetric"] = wasserstein(t, torch.cat(outputs).numpy())
    return result


def transport_cost_from_checkpoints(dataset_dir: str | Path, teacher_ckpt: str | Path, student_ckpt: str | Path,
                                    *, split: str = "test", samples: int | None = None, seed: int = 0,
                                    device: str = "auto") -> dict[str, Any]:
    from .device import resolve_device

    data = load_dataset(dataset_dir, teacher_bands(teacher_ckpt))  # the teacher sees the bands it was trained on
    manifest = data.manifest
    for modality in ("ms", "rgb"):
        if sum(manifest.counts[modality][split].values()) == 0:
            raise AckdError(f"{dataset_dir}: no {modality.upper()} samples in the {split} split")
    rt = Runtime(device=resolve_device(device), progress=False)
    teacher, _ = load_teacher(teacher_ckpt, manifest, data.ms_bands)
    student = load_student(student_ckpt, manifest)
    ms, rgb = data.split("ms", split), data.split("rgb", split)
    return transport_costs(rt.place_module(teacher), rt.place_module(student), ms, rgb, rt, samples, seed)


def plot_transport(run_dirs: list[str | Path], out: str | Path) -> Path:
    """Per-epoch transport cost of distillation runs (log.csv columns), like the paper's Fig. 2."""
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for run_dir in map(Path, run_dirs):
        with open(run_dir / "log.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        if not rows or "val_transport_asymmetric" not in rows[0]:
            raise AckdError(f"{run_dir}/log.csv: no transport cost logged (train with --log-transport-cost)")
        epochs = [int(r["epoch"]) + 1 for r in rows]
        ax.plot(epochs, [float(r["val_transport_asymmetric"]) for r in rows], label=f"ACKD {run_dir.name}")
        if rows[0].get("val_transport_symmetric"):
            ax.plot(epochs, [float(r["val_transport_symmetric"]) for r in rows], "--", label=f"SCKD {run_dir.name}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("Wasserstein distance (logits)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return Path(out)
