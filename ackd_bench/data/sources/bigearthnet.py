"""BigEarthNet-S2 v2 (reBEN; Clasen et al. 2025): 120x120 Sentinel-2 patches over Europe, multi-label.

Published on the hub (torchgeo/bigearthnet, pinned below) as `metadata.parquet` (patch_id, 19-class
labels, official split, snow and cloud/shadow flags), the S2 patches as one tar.gz cut into two
parts, and the CORINE reference maps (per-pixel CLC codes) as a one-part tar.gz. The recipe's
categories are sets of the 43 CORINE classes (airports, port areas and sport facilities exist only
there), so labels come from the reference maps: a class counts when it covers at least
`min_label_pixels` pixels of the patch.

The S2 parts (about 60 GB) are never extracted whole: they are read once as a stream and only the
band files of the patches the recipe selects are written out. torchgeo's `BigEarthNetV2` is not
used for the download: in 0.8.1 it saves each part under its md5 as file name, unverified.
"""

from __future__ import annotations

import io
import os
import tarfile
import zlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ...errors import DatasetError
from ..shards import SampleRef
from .fetch import fetch_file
from .rasters import read_bands

# BigEarthNet's 43-class nomenclature: CORINE Land Cover level-3 code and name (torchgeo's
# BigEarthNet.class_sets[43] order; codes as in reBEN's clc_metadata.json).
CLC_CLASSES = (
    (111, "Continuous urban fabric"), (112, "Discontinuous urban fabric"), (121, "Industrial or commercial units"),
    (122, "Road and rail networks and associated land"), (123, "Port areas"), (124, "Airports"),
    (131, "Mineral extraction sites"), (132, "Dump sites"), (133, "Construction sites"), (141, "Green urban areas"),
    (142, "Sport and leisure facilities"), (211, "Non-irrigated arable land"), (212, "Permanently irrigated land"),
    (213, "Rice fields"), (221, "Vineyards"), (222, "Fruit trees and berry plantations"), (223, "Olive groves"),
    (231, "Pastures"), (241, "Annual crops associated with permanent crops"), (242, "Complex cultivation patterns"),
    (243, "Land principally occupied by agriculture, with significant areas of natural vegetation"),
    (244, "Agro-forestry areas"), (311, "Broad-leaved forest"), (312, "Coniferous forest"), (313, "Mixed forest"),
    (321, "Natural grassland"), (322, "Moors and heathland"), (323, "Sclerophyllous vegetation"),
    (324, "Transitional woodland/shrub"), (331, "Beaches, dunes, sands"), (332, "Bare rock"),
    (333, "Sparsely vegetated areas"), (334, "Burnt areas"), (411, "Inland marshes"), (412, "Peatbogs"),
    (421, "Salt marshes"), (422, "Salines"), (423, "Intertidal flats"), (511, "Water courses"), (512, "Water bodies"),
    (521, "Coastal lagoons"), (522, "Estuaries"), (523, "Sea and ocean"),
)
CLC_CODE = {name: code for code, name in CLC_CLASSES}
SPLIT_NAMES = {"train": "train", "validation": "val", "test": "test"}
FLAG_COLUMNS = ("contains_seasonal_snow", "contains_cloud_or_shadow")


GB = 10**9


@dataclass(frozen=True)
class PublishedFile:
    filename: str
    md5: str
    size: str
    max_bytes: int  # what a download of it may write (its size, or a bound where none is published)


def map_patch(member: str) -> str:
    return Path(member).name.removesuffix("_reference_map.tif")


def patch_folder(patch_id: str) -> str:
    """`<tile product>/<patch_id>`: the product name is the patch id without its last two fields."""
    return f"{patch_id.rsplit('_', 2)[0]}/{patch_id}"


class ConcatenatedParts(io.RawIOBase):
    """The parts of a split archive (`.tar.gzaa`, `.tar.gzab`, ...) read as one byte stream."""

    def __init__(self, paths: list[Path], bar: tqdm | None = None):
        self.paths, self.bar, self.index, self.handle = list(paths), bar, 0, None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while self.index < len(self.paths):
            if self.handle is None:
                self.handle = open(self.paths[self.index], "rb")
            count = self.handle.readinto(buffer)
            if count:
                if self.bar is not None:
                    self.bar.update(count)
                return count
            self.handle.close()
            self.handle, self.index = None, self.index + 1
        return 0

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
        super().close()


def stream_members(paths: list[Path], what: str, wanted: Callable[[str], bool]) -> Iterator[tuple[str, bytes]]:
    """(member name, bytes) of every wanted file of a split tar.gz, read front to back once."""
    total = sum(p.stat().st_size for p in paths)
    with tqdm(total=total, unit="B", unit_scale=True, desc=f"read {what}", disable=None) as bar:
        raw = ConcatenatedParts(paths, bar)
        try:
            with tarfile.open(fileobj=io.BufferedReader(raw, 1 << 20), mode="r|gz") as archive:
                for member in archive:
                    if member.isfile() and wanted(member.name):
                        yield member.name, archive.extractfile(member).read()
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise DatasetError(f"{' + '.join(p.name for p in paths)}: damaged or truncated archive "
                               f"({type(exc).__name__}: {exc})") from None
        finally:
            raw.close()


class BigEarthNetV2:
    name = "bigearthnet"
    url = "https://hf.co/datasets/torchgeo/bigearthnet/resolve/3cf3a5910a5302d449fdb8e570e5b78de24fe07f/V2/{}"
    metadata = PublishedFile("metadata.parquet", "55687065e77b6d0b0f1ff604a6e7b49c", "size not published", 2 * GB)
    s2_parts = (PublishedFile("BigEarthNet-S2.tar.gzaa", "94e8ed32065234d3ab46353d814778d1", "half of ~60 GB", 40 * GB),
                PublishedFile("BigEarthNet-S2.tar.gzab", "24c223d9e36166136c13b24a27debe34", "half of ~60 GB", 40 * GB))
    map_parts = (PublishedFile("Reference_Maps.tar.gzaa", "b0cd1f0a31b49fcbfd61d80f963e759d", "size not published", 20 * GB),)
    s2_tree, maps_tree = "BigEarthNet-S2", "Reference_Maps"
    # extracted trees accepted in --source-dir: the hub archives' own, and the reBEN release's
    # (everything under one BigEarthNet/ folder)
    tree_parents = ("", "BigEarthNet", "bigearthnet")
    file_bands = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
    band_size = {"B01": 20, "B09": 20, "B02": 120, "B03": 120, "B04": 120, "B08": 120,
                 "B05": 60, "B06": 60, "B07": 60, "B8A": 60, "B11": 60, "B12": 60}
    patch_size = 120
    licence = "CDLA-Permissive-1.0"
    citation = ("K. N. Clasen, L. Hackel, T. Burgert, G. Sumbul, B. Demir, V. Markl. reBEN: Refined BigEarthNet "
                "Dataset for Remote Sensing Image Analysis. IGARSS 2025.")

    def __init__(self, spec: dict[str, Any], targets: list[str], size: int, *, root: Path,
                 source_dir: Path | None = None, download: bool = True):
        self.targets, self.size, self.root, self.source_dir, self.download = targets, size, root, source_dir, download
        self.bands = list(spec["bands"])
        unknown_bands = [b for b in self.bands if b not in self.file_bands]
        if unknown_bands:
            raise DatasetError(f"recipe asks bigearthnet for band(s) {unknown_bands}; it has {', '.join(self.file_bands)}")
        unknown = sorted({c for names in spec["class_map"].values() for c in names} - set(CLC_CODE))
        if unknown:
            raise DatasetError(f"recipe maps unknown BigEarthNet CORINE class(es) {unknown}")
        if set(spec["class_map"]) - set(targets):
            raise DatasetError(f"recipe maps BigEarthNet onto unknown class(es) {sorted(set(spec['class_map']) - set(targets))}")
        self.target_codes = {targets.index(t): {CLC_CODE[c] for c in names} for t, names in spec["class_map"].items()}
        self.min_pixels = int(spec.get("min_label_pixels", 1))
        self.official_split = bool(spec.get("official_split", False))
        self.work = root / ".sources" / self.name
        self.metadata_path, origin = self._fetch(self.metadata)
        # where the files came from, as provenance() gives it to the manifest (not a result record)
        self.source_facts: dict[str, Any] = {
            "name": self.name, "url": self.url.format(""), "metadata": self.metadata.filename,
            "metadata_md5": self.metadata.md5, "metadata_from": origin,
        }
        self.s2_root = self._extracted(self.s2_tree)

    def _fetch(self, published: PublishedFile) -> tuple[Path, str]:
        return fetch_file(published.filename, self.url.format(published.filename), published.md5, published.size,
                          max_bytes=published.max_bytes,
                          root=self.root, source_dir=self.source_dir, download=self.download)

    def _extracted(self, tree: str) -> Path | None:
        if self.source_dir is None:
            return None
        return next((self.source_dir / parent / tree for parent in self.tree_parents
                     if (self.source_dir / parent / tree).is_dir()), None)

    # --- labels -----------------------------------------------------------------------------

    def _clean_patches(self) -> pd.DataFrame:
        try:
            table = pd.read_parquet(self.metadata_path)
        except Exception as exc:  # pyarrow raises several types for a damaged file
            raise DatasetError(f"{self.metadata_path}: unreadable parquet ({type(exc).__name__}: {exc})") from None
        missing = [c for c in ("patch_id", "split", *FLAG_COLUMNS) if c not in table.columns]
        if missing:
            raise DatasetError(f"{self.metadata_path}: column(s) {', '.join(missing)} missing; expected reBEN's "
                               "metadata.parquet (patch_id, labels, split, ..., contains_cloud_or_shadow)")
        flagged = table[list(FLAG_COLUMNS)].any(axis=1)
        self.source_facts["excluded_snow_cloud_shadow"] = int(flagged.sum())
        return table.loc[~flagged, ["patch_id", "split"]].reset_index(drop=True)

    def reference_pixels(self, patch_ids: set[str]) -> pd.DataFrame:
        """Pixels per CORINE code per patch (columns patch_id, code, pixels), cached after one pass."""
        cache = self.work / f"reference-pixels-{self.metadata.md5[:12]}.parquet"
        if cache.is_file():
            return pd.read_parquet(cache)
        rows: dict[str, list] = defaultdict(list)
        import rasterio  # with the raster reads, not the package (see rasters.read_bands)
        from rasterio.io import MemoryFile

        def count(patch_id: str, data: bytes | Path) -> None:
            try:
                if isinstance(data, Path):
                    with rasterio.open(data, driver="GTiff") as src:  # never a VRT naming other files
                        codes = src.read(1)
                else:
                    with MemoryFile(data) as memory, memory.open() as src:
                        codes = src.read(1)
            except Exception as exc:  # rasterio raises several types for a damaged file
                raise DatasetError(f"{patch_id}_reference_map.tif: unreadable GeoTIFF ({exc})") from None
            values, pixels = np.unique(codes, return_counts=True)
            for value, n in zip(values.tolist(), pixels.tolist()):
                rows["patch_id"].append(patch_id)
                rows["code"].append(int(value))
                rows["pixels"].append(int(n))

        seen = set()
        tree = self._extracted(self.maps_tree)
        if tree is not None:
            self.source_facts["reference_maps_from"] = f"extracted tree {tree}"
            for patch_id in tqdm(sorted(patch_ids), desc="read reference maps", disable=None):
                path = tree / patch_folder(patch_id) / f"{patch_id}_reference_map.tif"
                if path.is_file():
                    count(patch_id, path)
                    seen.add(patch_id)
        else:
            parts = [self._fetch(p)[0] for p in self.map_parts]
            self.source_facts["reference_maps_from"] = ", ".join(p.name for p in parts)
            def wanted(name: str) -> bool:
                return name.endswith("_reference_map.tif") and map_patch(name) in patch_ids

            for name, data in stream_members(parts, "reference maps", wanted):
                count(map_patch(name), data)
                seen.add(map_patch(name))
        absent = sorted(patch_ids - seen)
        if absent:
            raise DatasetError(f"{len(absent)} patch(es) of {self.metadata.filename} have no reference map, "
                               f"e.g. {absent[0]}_reference_map.tif")
        table = pd.DataFrame(rows).astype({"code": "int32", "pixels": "int32"})
        self.work.mkdir(parents=True, exist_ok=True)
        partial = cache.with_name(cache.name + ".partial")
        table.to_parquet(partial, index=False)
        os.replace(partial, cache)
        return table

    def refs(self) -> list[SampleRef]:
        patches = self._clean_patches()
        pixels = self.reference_pixels(set(patches["patch_id"]))
        present = pixels[pixels["pixels"] >= self.min_pixels].groupby("patch_id")["code"].apply(frozenset)
        refs = []
        for patch_id, split in zip(patches["patch_id"], patches["split"]):
            codes = present.get(patch_id, frozenset())
            labels = tuple(t for t in sorted(self.target_codes) if codes & self.target_codes[t])
            if not labels:
                continue
            if split not in SPLIT_NAMES:
                raise DatasetError(f"{self.metadata_path}: patch {patch_id} has split {split!r}, expected one of "
                                   f"{', '.join(SPLIT_NAMES)}")
            refs.append(SampleRef(f"{self.name}/{patch_id}", labels[0], labels,
                                  SPLIT_NAMES[split] if self.official_split else None))
        return refs

    # --- pixels -----------------------------------------------------------------------------

    def band_path(self, patch_id: str, band: str) -> Path:
        return self.member_path(f"{patch_id}_{band}.tif")

    def member_path(self, filename: str) -> Path:
        """Where a band file (`<patch_id>_<band>.tif`) lives: the user's tree or our extraction."""
        root = self.s2_root if self.s2_root is not None else self.work / self.s2_tree
        return root / patch_folder(filename.rsplit("_", 1)[0]) / filename

    def prepare(self, chosen: list[SampleRef]) -> None:
        """Write out the band files of the chosen patches from the S2 parts, in one pass over them."""
        if self.s2_root is not None:
            self.source_facts.update({"archive_verified": False, "from": f"extracted tree {self.s2_root}"})
            return
        wanted = {f"{ref.source_id.split('/', 1)[1]}_{band}.tif" for ref in chosen for band in self.bands}
        missing = {name for name in wanted if not self.member_path(name).is_file()}
        self.source_facts.update({"archive_verified": True, "archives": [p.filename for p in self.s2_parts],
                            "md5": [p.md5 for p in self.s2_parts]})
        if not missing:
            self.source_facts["from"] = "earlier extraction"
            return
        parts = [self._fetch(p)[0] for p in self.s2_parts]
        self.source_facts["from"] = ", ".join(str(p) for p in parts)
        for name, data in stream_members(parts, "BigEarthNet-S2 parts", lambda n: Path(n).name in missing):
            target = self.member_path(Path(name).name)
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.partial")
            partial.write_bytes(data)
            os.replace(partial, target)
            missing.discard(target.name)
            if not missing:
                break
        if missing:
            raise DatasetError(f"{' + '.join(p.name for p in parts)}: {len(missing)} band file(s) of the selected "
                               f"patches are not in the archive (truncated?), e.g. {sorted(missing)[0]}")

    def load(self, ref: SampleRef) -> np.ndarray:
        patch_id = ref.source_id.split("/", 1)[1]
        bands = []
        for band in self.bands:
            path = self.band_path(patch_id, band)
            if not path.is_file():
                raise DatasetError(f"{path}: band file missing (patch {patch_id})")
            bands.append(read_bands(path, count=1, size=self.band_size[band], indexes=[1], out_size=self.size)[0])
        return np.stack(bands)

    def provenance(self) -> dict[str, Any]:
        return {**self.source_facts, "licence": self.licence, "citation": self.citation}
