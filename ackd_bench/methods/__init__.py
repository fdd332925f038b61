"""Distillation losses: one module per method, a common interface and a registry (mdistiller-style)."""

from .base import Distiller
from .registry import BASELINES, build_distiller, load_method_defaults

__all__ = ["BASELINES", "Distiller", "build_distiller", "load_method_defaults"]
