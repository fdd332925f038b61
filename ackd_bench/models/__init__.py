"""Backbones for N-band inputs with a common output contract (see backbones.py)."""

from .backbones import ARCHITECTURES, Backbone, build_backbone, canonical_arch

__all__ = ["ARCHITECTURES", "Backbone", "build_backbone", "canonical_arch"]
