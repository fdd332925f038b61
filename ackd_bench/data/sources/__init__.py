"""Public sources of the benchmark datasets: one module per source, its facts as class attributes."""

from .eurosat import EuroSATAllBands
from .nasc_tg2 import NaSCTG2Multispectral
from .resisc45 import RESISC45

SOURCES = {cls.name: cls for cls in (EuroSATAllBands, RESISC45, NaSCTG2Multispectral)}

__all__ = ["SOURCES", "EuroSATAllBands", "NaSCTG2Multispectral", "RESISC45"]
