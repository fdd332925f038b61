"""RGB student distilled from an MS teacher through an unpaired pairing (Eq. 20 without SKA)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.dataset import ShardDataset, class_galleries
from ..methods import Distiller
from ..methods.sembridge.alignment import KnowledgeAlignment
from ..models import Backbone
from .engine import OptimConfig, Runtime, Task, loss_precision
from .feed import Split, TrainFeed, decide_resident, open_splits
from .pairing import PairedStudentData, check_galleries, random_same_class
from .runs import evaluate
from .teacher_cache import TeacherCache


class StudentModule(nn.Module):
    """Student backbone + distiller (+ SemBridge's alignment): Eq. 20,
    w_task * CE + w_kd * sum(distiller terms) + w_ot * s_ot * (L_ot1 + L_ot2), the loss terms in
    float32 unless `precision` is "autocast"."""

    def __init__(self, backbone: Backbone, distiller: Distiller, weights: dict[str, float],
                 alignment: KnowledgeAlignment | None = None, precision: str = "fp32"):
        super().__init__()
        self.backbone, self.distiller, self.alignment = backbone, distiller, alignment
        self.w_task, self.w_kd = float(weights["task"]), float(weights["kd"])
        self.w_ot = float(weights.get("ot", 0.0)) * float(weights.get("ot_scale", 1.0))
        self.precision = precision

    def forward(self, images: torch.Tensor, targets: torch.Tensor, teacher: dict[str, torch.Tensor],
                epoch: int) -> dict[str, torch.Tensor]:
        out = self.backbone(images)
        with loss_precision(self.precision, images.device.type):
            student = {k: v.float() for k, v in out.items()} if self.precision == "fp32" else out
            task = F.cross_entropy(student["logits"], targets)
            terms = self.distiller(student, teacher, targets, epoch)
            loss = self.w_task * task + self.w_kd * sum(terms.values())
            if self.alignment is not None:
                ot_terms = self.alignment(student, teacher)
                loss = loss + self.w_ot * sum(ot_terms.values())
                terms.update(ot_terms)
        diagnostics = self.distiller.diagnostics(epoch)
        return {"loss": loss, "task": task.detach(), **{k: v.detach() for k, v in terms.items()}, **diagnostics}


class TeacherSource:
    """Teacher outputs for a batch's MS partners: looked up in the cache, or computed by the live teacher."""

    def __init__(self, rt: Runtime, cache: TeacherCache | None = None, teacher: nn.Module | None = None):
        self.rt, self.cache, self.teacher = rt, cache, teacher

    @property
    def live(self) -> bool:
        return self.cache is None

    @torch.no_grad()
    def outputs(self, ms_index: torch.Tensor, ms_images: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if self.cache is not None:
            return self.cache.lookup(ms_index, self.rt.device)
        with self.rt.autocast():
            out = self.teacher(ms_images)
        return {k: v.float() for k, v in out.items()}


class NaivePairing:
    """What an SCKD method gets in the asymmetric setting: a random same-class MS sample per epoch."""

    def __init__(self, student_labels: np.ndarray, galleries: list[np.ndarray], seed: int):
        self.student_labels, self.galleries, self.seed = student_labels, galleries, seed

    def for_epoch(self, epoch: int, task: "DistillationTask") -> np.ndarray:
        return random_same_class(self.student_labels, self.galleries, self.seed, epoch)

    def state(self) -> dict[str, Any]:
        return {}

    def load_state(self, state: dict[str, Any]) -> None:
        del state


class DistillationTask(Task):
    """Student batches with their MS partners' teacher outputs. With resident splits the pairing,
    the teacher cache and (for a live teacher) the MS images are on the device, so a step is a few
    gathers; streamed, a live teacher's MS partners are loaded by the DataLoader workers."""

    def __init__(self, module: StudentModule, rgb_train: ShardDataset, rgb_val: ShardDataset, ms_train: ShardDataset,
                 source: TeacherSource, cfg: OptimConfig, augment: Sequence[str], seed: int, rt: Runtime,
                 pairing=None, log_transport_cost: bool = False):
        self.module, self.source, self.cfg, self.augment, self.seed, self.rt = module, source, cfg, augment, seed, rt
        self.rgb_train, self.rgb_val, self.ms_train = rgb_train, rgb_val, ms_train
        cache_bytes = source.cache.nbytes if source.cache is not None else 0
        splits = open_splits([rgb_train, rgb_val, *([ms_train] if source.live else [])], rt, cache_bytes)
        self.rgb_split, self.val_split = splits[0], splits[1]
        self.ms_split: Split | None = splits[2] if source.live else None
        if source.cache is not None and decide_resident("on" if rt.resident == "on" else "auto", cache_bytes, rt.device):
            # on the device whenever it fits, resident images or not: it is far smaller than they are,
            # and a host cache would cost a round trip on every step
            source.cache = source.cache.to(rt.device)
        streamed_live = source.live and not self.rgb_split.resident
        self.feed = TrainFeed(self.rgb_split, cfg.batch_size, seed, augment, rt, stream=2,
                              loader_dataset=PairedStudentData(rgb_train, ms_train) if streamed_live else None)
        self.galleries = class_galleries(ms_train)
        check_galleries(self.galleries, rgb_train.labels, rgb_train.classes)
        self.pairing = pairing or NaivePairing(rgb_train.labels, self.galleries, seed)
        self.pairs: torch.Tensor | None = None
        self.log_transport_cost = log_transport_cost

    def on_epoch_start(self, epoch: int) -> None:
        pairs = np.asarray(self.pairing.for_epoch(epoch, self), dtype=np.int64)
        self.pairs = self.rt.place(torch.from_numpy(pairs))  # one transfer per epoch
        if self.feed.loader is not None and self.source.live:
            self.feed.sampler.partners = pairs

    def state(self) -> dict[str, Any]:
        return {"pairing": self.pairing.state()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.pairing.load_state(state.get("pairing", {}))

    def train_batches(self, epoch: int):
        return self.feed.epoch(epoch)

    def prepare(self, batch: dict[str, Any], epoch: int, step: int) -> dict[str, Any]:
        ms_index = self.pairs[batch["index"]]
        ms_images = None
        if self.source.live:
            ms_images = batch["ms_image"] if "ms_image" in batch else self.ms_split.images(ms_index)
            ms_images = self.rt.layout(ms_images)
        return {"images": batch["image"], "targets": batch["label"], "teacher": self.source.outputs(ms_index, ms_images),
                "epoch": epoch}

    def validate(self) -> dict[str, float | None]:
        metrics = evaluate(self.module.backbone, self.val_split, self.rt, self.cfg.batch_size)
        result = {"oa": metrics["oa"], "f1": metrics["f1"], "score": metrics["oa"]}
        if self.log_transport_cost:  # Fig. 2: teacher (MS train) vs current student (RGB train) logits
            from .transport import transport_costs

            cache = self.source.cache
            costs = transport_costs(self.source.teacher, self.module.backbone, self.ms_train, self.rgb_train, self.rt,
                                    samples=512, teacher_logits=cache.tensors["logits"] if cache else None,
                                    batch_size=self.cfg.batch_size)
            result["transport_asymmetric"] = costs["asymmetric"]
            result["transport_symmetric"] = costs["symmetric"]
        return result
