"""SemBridge's part of a student run, set up in one place: its settings (sembridge.yaml, the profile,
the request), the loss weights it implies, the matcher SSM retrieves with, and later the pairing
(SSM, then DynM's re-matches) and the knowledge alignment (the Planner's optimal transport).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from ..errors import AckdError
from ..provenance import sha256_file
from ..resources import resource_file
from .request import RunRequest


def sembridge_defaults() -> dict[str, Any]:
    return yaml.safe_load(resource_file("methods", "sembridge.yaml").read_text())


def dynm_epochs(defaults: dict[str, Any], dataset: str, source: str, epochs: int,
                schedule: tuple[int, int, int] | None = None) -> list[int]:
    """DynM's re-match epochs: an explicit Eq. 12 schedule (`--dynm`) first, then the reference code's
    list for the dataset (`source` "reference"), else Eq. 12 with the dataset's (e0, step, growth),
    continued to the last epoch."""
    from ..methods.sembridge.matching import dynm_schedule as schedule_of

    if schedule is None and source == "reference" and dataset in defaults["dynm_epochs"]:
        return [int(e) for e in defaults["dynm_epochs"][dataset] if int(e) < epochs]
    triple = schedule or defaults["dynm_schedule"].get(dataset, defaults["dynm_schedule"]["default"])
    return schedule_of(*[int(x) for x in triple], epochs=epochs)


@dataclass
class SemBridgeRun:
    """What SemBridge adds to a student run."""

    settings: dict[str, Any]  # the run config's `sembridge` section: params, DynM epochs, matcher sha256
    ablation: tuple[str, ...]
    matcher: Any = None  # SSM's matcher (None when SSM is switched off)

    def alignment(self):
        """The knowledge alignment of the OT terms left on (None when both are switched off)."""
        if {"ot1", "ot2"} <= set(self.ablation):
            return None
        from ..methods.sembridge.alignment import KnowledgeAlignment

        return KnowledgeAlignment("ot1" not in self.ablation, "ot2" not in self.ablation, int(self.settings["dim"]),
                                  int(self.settings["heads"]), self.settings["coral"])

    def pairing(self, task, cache, rt, cfg, seed: int):
        """SSM's initial partners (or the naive same-class draw with SSM off), re-matched by DynM."""
        from .pairing import SemBridgePairing, random_same_class, ssm_pairs

        if "ssm" in self.ablation:  # the naive pairing, drawn once
            initial = random_same_class(task.rgb_train.labels, task.galleries, seed, 0)
        else:
            initial = ssm_pairs(self.matcher, task.rgb_split, task.ms_train, task.galleries, rt, cfg.batch_size)
        gallery_logits = None
        if "dynm" not in self.ablation:  # on the device, where the student's logits are computed (N x classes: small)
            gallery_logits = rt.place((task.source.cache or cache).tensors["logits"])
        return SemBridgePairing(initial, self.settings["dynm_epochs"], gallery_logits, task.galleries,
                                float(self.settings["gamma"]), cfg.batch_size, self.settings["dynm_divergence"],
                                self.settings["dynm_assignment"])


def sembridge_run(request: RunRequest, data, choices: dict[str, Any], epochs: int) -> SemBridgeRun:
    """SemBridge's settings and matcher for a student `request` (its profile's `choices`) on
    `data` (a `runs.BuiltDataset`: the matcher must have been trained on the MS bands it feeds)."""
    defaults = sembridge_defaults()
    settings = {**defaults["params"], **request.sembridge.params()}
    settings["dynm_epochs"] = dynm_epochs(defaults, data.manifest.dataset, choices["dynm_epochs"], epochs,
                                          request.sembridge.dynm)
    for option in ("dynm_divergence", "dynm_assignment", "coral", "ot_weight"):
        settings[option] = choices[option]
    matcher = None
    if "ssm" not in request.ablation:
        if request.matcher is None:
            raise AckdError("SemBridge's SSM needs a matcher: pass --matcher CHECKPOINT (from train-matcher) "
                            "or --ablate ssm")
        from ..hub import resolve_checkpoint
        from .matcher import load_matcher

        path = resolve_checkpoint(request.matcher)
        matcher = load_matcher(path, data.manifest, data.ms_bands)
        settings["matcher_sha256"] = sha256_file(path)
    return SemBridgeRun(settings, request.ablation, matcher)
