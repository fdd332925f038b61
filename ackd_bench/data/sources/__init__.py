"""Public sources of the benchmark datasets: one module per source, its facts as class attributes."""

from .aid import AID
from .bigearthnet import BigEarthNetV2
from .eurosat import EuroSATAllBands, EuroSATRGB
from .nasc_tg2 import NaSCTG2Multispectral, NaSCTG2RGB
from .resisc45 import RESISC45

SOURCES = {cls.name: cls for cls in (EuroSATAllBands, RESISC45, NaSCTG2Multispectral, AID, BigEarthNetV2)}
# the RGB image of the same scene as an MS sample, for the symmetric controls (recipe: ms.paired_rgb)
PAIRED_SOURCES = {cls.name: cls for cls in (EuroSATRGB, NaSCTG2RGB)}

__all__ = ["AID", "PAIRED_SOURCES", "SOURCES", "BigEarthNetV2", "EuroSATAllBands", "EuroSATRGB",
           "NaSCTG2Multispectral", "NaSCTG2RGB", "RESISC45"]
