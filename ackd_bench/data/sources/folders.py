"""Sources laid out as one folder per source class (EuroSAT, RESISC45, AID, NaSC-TG2)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image, UnidentifiedImageError

from ...errors import DatasetError
from ..shards import SampleRef
from .fetch import Archive, locate
from .rasters import read_bands


def _sample_file(path: Path, tree: Path | None = None) -> Path:
    """A source file, or one line: a regular file (a FIFO or device would block or stream forever) with
    a UTF-8 name (it becomes the sample's id, written into shards and manifests as text), inside the
    source's `tree` once links are followed (a link may not lead the build to read any file)."""
    try:
        path.name.encode("utf-8")
    except UnicodeEncodeError:
        shown = path.name.encode("utf-8", "surrogateescape").decode("ascii", "backslashreplace")
        raise DatasetError(f"{path.parent}/{shown}: the file name is not UTF-8 text; rename it") from None
    if not path.is_file():  # follows links: a link to a regular file is one
        raise DatasetError(f"{path}: not a regular file (a FIFO, device or dangling link); remove it from the source "
                           "folder")
    if tree is not None:
        resolved, base = path.resolve(), tree.resolve()
        if base not in resolved.parents:
            raise DatasetError(f"{path}: a link to {resolved}, outside the source folder {base}; copy the file in")
    return path


class ClassFolderSource(ABC):
    """A recipe side drawn from a class-folder source: target class <- source class folders."""

    name: ClassVar[str]
    archive: ClassVar[Archive]
    classes: ClassVar[tuple[str, ...]]
    suffix: ClassVar[str]
    file_bands: ClassVar[tuple[str, ...]] = ("R", "G", "B")
    licence: ClassVar[str]
    citation: ClassVar[str]

    def __init__(self, spec: dict[str, Any], targets: list[str], size: int, *, root: Path,
                 source_dir: Path | None = None, download: bool = True):
        self.spec, self.targets, self.size = spec, targets, size
        self.bands = list(spec["bands"])
        unknown_bands = [b for b in self.bands if b not in self.file_bands]
        if unknown_bands:
            raise DatasetError(f"recipe asks {self.name} for band(s) {unknown_bands}; it has {', '.join(self.file_bands)}")
        self.class_map: dict[str, list[str]] = spec["class_map"]
        unknown = sorted({c for sources in self.class_map.values() for c in sources} - set(self.classes))
        if unknown:
            raise DatasetError(f"recipe maps unknown {self.name} class(es) {unknown}")
        self.tree, self.source_facts = locate(self.archive, root=root, source_dir=source_dir, download=download)

    def refs(self) -> list[SampleRef]:
        refs = []
        for label, target in enumerate(self.targets):
            for source_class in self.class_map.get(target, []):
                folder = self.tree / source_class
                if not folder.is_dir():
                    raise DatasetError(f"{folder}: class folder missing ({self.name} class '{source_class}', "
                                       f"mapped to '{target}')")
                files = [_sample_file(f, self.tree) for f in sorted(folder.glob(f"*{self.suffix}"))]
                if not files:
                    raise DatasetError(f"{folder}: no *{self.suffix} files")
                refs += [SampleRef(f"{self.name}/{source_class}/{f.name}", label) for f in files]
        return refs

    def prepare(self, chosen: list[SampleRef]) -> None:
        """Nothing to fetch: the class folders are already on disk (stream sources override this)."""

    def path(self, ref: SampleRef) -> Path:
        _, source_class, filename = ref.source_id.split("/")
        return self.tree / source_class / filename

    @abstractmethod
    def load(self, ref: SampleRef) -> np.ndarray:
        """The sample's pixels as (bands, size, size), in the shard dtype."""

    def provenance(self) -> dict[str, Any]:
        return {**self.source_facts, "licence": self.licence, "citation": self.citation}


class GeoTiffFolderSource(ClassFolderSource):
    """Multispectral patches, one multi-band GeoTIFF per sample (EuroSAT, NaSC-TG2)."""

    suffix = ".tif"
    patch_size: ClassVar[int]

    def load(self, ref: SampleRef) -> np.ndarray:
        return read_bands(self.path(ref), count=len(self.file_bands), size=self.patch_size,
                          indexes=[self.file_bands.index(b) + 1 for b in self.bands], out_size=self.size)


class JpegFolderSource(ClassFolderSource):
    """RGB JPEG scenes (RESISC45, AID, EuroSAT RGB), resized to the recipe's image size."""

    suffix = ".jpg"

    def load(self, ref: SampleRef) -> np.ndarray:
        path = self.path(ref)
        try:
            with Image.open(path) as image:
                image = image.convert("RGB")
                if image.size != (self.size, self.size):  # antialiased downsampling to the MS size
                    image = image.resize((self.size, self.size), Image.Resampling.LANCZOS)
                return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1).copy()
        except Image.DecompressionBombError as exc:  # a header declaring more pixels than Pillow's guard allows
            raise DatasetError(f"{path}: refused, declares more pixels than a scene has ({exc})"[:300]) from None
        except (UnidentifiedImageError, OSError) as exc:
            raise DatasetError(f"{path}: unreadable JPEG ({exc})") from None


class PairedJpegSource(JpegFolderSource):
    """The RGB image of the same scene as an MS sample (EuroSAT RGB, NaSC-TG2 RGB): same class folder,
    same file stem. A symmetric control for analyses, never the student's training data."""

    def __init__(self, size: int, *, root: Path, source_dir: Path | None = None, download: bool = True):
        super().__init__({"bands": ["R", "G", "B"], "class_map": {}}, [], size, root=root, source_dir=source_dir,
                         download=download)

    def pair(self, ms_ref: SampleRef) -> np.ndarray:
        _, source_class, filename = ms_ref.source_id.split("/")
        ref = SampleRef(f"{self.name}/{source_class}/{Path(filename).stem}{self.suffix}", ms_ref.label)
        if not self.path(ref).is_file():
            raise DatasetError(f"{self.path(ref)}: no paired RGB image for MS sample {ms_ref.source_id}")
        return self.load(ref)
