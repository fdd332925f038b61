"""Public sources of the benchmark datasets: one module per source, its facts as class attributes."""

from .eurosat import EuroSATAllBands
from .resisc45 import RESISC45

SOURCES = {cls.name: cls for cls in (EuroSATAllBands, RESISC45)}

__all__ = ["SOURCES", "EuroSATAllBands", "RESISC45"]
