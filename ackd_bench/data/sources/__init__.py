"""Public sources of the benchmark datasets: one module per source, its facts as class attributes."""

from .aid import AID
from .bigearthnet import BigEarthNetV2
from .eurosat import EuroSATAllBands
from .nasc_tg2 import NaSCTG2Multispectral
from .resisc45 import RESISC45

SOURCES = {cls.name: cls for cls in (EuroSATAllBands, RESISC45, NaSCTG2Multispectral, AID, BigEarthNetV2)}

__all__ = ["AID", "SOURCES", "BigEarthNetV2", "EuroSATAllBands", "NaSCTG2Multispectral", "RESISC45"]
