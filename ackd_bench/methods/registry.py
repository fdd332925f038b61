"""CLI name -> distiller class; defaults come from `baselines/<name>.yaml` (configs as data)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from ..errors import AckdError
from .base import Distiller
from .ctkd import CTKD
from .dkd import DKD
from .kd import KD
from .logits import Logits
from .lskd import LSKD
from .rkd import RKD
from .vpr import VPR

BASELINES: dict[str, type[Distiller]] = {cls.name: cls for cls in (KD, RKD, DKD, Logits, CTKD, LSKD, VPR)}


def baseline_dirs() -> list[Path]:
    dirs = [Path(__file__).resolve().parents[2] / "baselines", Path(sys.prefix) / "share" / "ackd-bench" / "baselines"]
    return [d for d in dirs if d.is_dir()]


def load_method_defaults(name: str) -> dict[str, Any]:
    """The method's YAML: `params` (constructor defaults), `citation`, `notes`."""
    if name not in BASELINES:
        raise AckdError(f"unknown distillation method '{name}': expected one of none, {', '.join(BASELINES)}")
    for directory in baseline_dirs():
        path = directory / f"{name}.yaml"
        if path.is_file():
            spec = yaml.safe_load(path.read_text())
            if not isinstance(spec, dict) or not isinstance(spec.get("params"), dict):
                raise AckdError(f"{path}: expected a mapping with a 'params' mapping")
            weights = spec.get("alone_weights")
            if not (isinstance(weights, dict) and set(weights) == {"task", "kd"}):
                raise AckdError(f"{path}: expected 'alone_weights: {{task: W, kd: W}}' (the method's own CE:KD weights)")
            return spec
    raise AckdError(f"baselines/{name}.yaml not found (looked in {', '.join(map(str, baseline_dirs()))})")


def build_distiller(name: str, num_classes: int, overrides: dict[str, Any] | None = None) -> Distiller:
    params = {**load_method_defaults(name)["params"], **(overrides or {})}
    try:
        return BASELINES[name](num_classes, **params)
    except (TypeError, ValueError) as exc:
        raise AckdError(f"baselines/{name}.yaml: bad parameter ({exc})") from None
