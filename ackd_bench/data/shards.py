"""The HDF5 shard format (docs/formats.md): writing, finalising and reading shards.

A shard `{modality}-{split}-NNNNN.h5` holds `images` (N, C, H, W) in one-sample chunks (uint16
reflectance for MS, uint8 for RGB), `labels` (N,) int16, `source_ids` (N,) strings and, for
multi-label MS, `multilabels` (N, L) uint8. Attributes carry band and class names, the
compression, and the per-band train mean/std used for normalisation.

A shard is built in two atomic steps so that an interrupted build never leaves a file that looks
finished: samples go to a hidden `.NAME.writing` file which becomes `NAME.partial` when complete;
once the train statistics are known, finalisation writes a copy with them and renames it to
`NAME`. Only the manifest (written last) makes a set of shards a dataset.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import h5py
import numpy as np

from ..errors import DatasetError
from ..provenance import fsync_and_rename

FORMAT = "ackd-bench-shard/1"
MODALITIES = ("ms", "rgb")
IMAGE_DTYPES = {"ms": np.uint16, "rgb": np.uint8}
PARTIAL_SUFFIX = ".partial"
WRITE_BLOCK = 64


def shard_name(modality: str, split: str, index: int) -> str:
    return f"{modality}-{split}-{index:05d}.h5"


@dataclass(frozen=True)
class SampleRef:
    """One sample as a source knows it: where it came from and its label(s)."""

    source_id: str
    label: int
    multilabel: tuple[int, ...] | None = None
    split: str | None = None  # set when the source publishes an official split the recipe keeps


def fixed_strings(value: str | Sequence[str]) -> np.ndarray:
    """UTF-8 text as fixed-length bytes. Variable-length strings live in HDF5's global heap, whose
    unused bytes are not zeroed, so they would make identical shards differ byte for byte."""
    if isinstance(value, str):
        return np.bytes_(value.encode())
    encoded = [v.encode() for v in value]
    return np.array(encoded, dtype=f"S{max([len(e) for e in encoded] + [1])}")


def read_text(value) -> str | list[str]:
    if isinstance(value, (bytes, np.bytes_)):
        return value.decode()
    return [v.decode() if isinstance(v, (bytes, np.bytes_)) else str(v) for v in value]


def _compression_args(compression: str) -> dict:
    # The byte-shuffle filter groups the high and low bytes of uint16 reflectances: ~30% smaller
    # files and faster reads than lzf alone.
    if compression == "none":
        return {}
    if compression == "gzip":
        return {"compression": "gzip", "compression_opts": 4, "shuffle": True}
    return {"compression": "lzf", "shuffle": True}


@dataclass(frozen=True)
class EncodedSample:
    """A sample and its chunk, already filtered (shuffled and compressed) by a decode worker, so the
    writing process only copies bytes: compression is the costliest step of writing a shard."""

    pixels: np.ndarray
    chunk: bytes


_ENCODERS: dict[tuple, h5py.Dataset] = {}


def as_stored(pixels: np.ndarray, dtype, source_id: str) -> np.ndarray:
    """A decoded sample in the shard's dtype; NaN or inf (a damaged source file) is refused, not cast."""
    pixels = np.asarray(pixels)
    if pixels.dtype.kind in "fc" and not np.isfinite(pixels).all():
        raise DatasetError(f"{source_id}: non-finite pixel values (NaN or inf): a damaged source file; remove it "
                           "from the source folder or fetch it again")
    return np.ascontiguousarray(pixels, dtype)


def encode_sample(pixels: np.ndarray, compression: str) -> EncodedSample:
    """Run a sample through the shard's own HDF5 filter pipeline, in memory, in this process."""
    key = (pixels.shape, pixels.dtype.str, compression)
    dataset = _ENCODERS.get(key)
    if dataset is None:
        memory = h5py.File(f"encoder-{os.getpid()}-{len(_ENCODERS)}", "w", driver="core", backing_store=False)
        dataset = _ENCODERS[key] = memory.create_dataset(
            "x", shape=(1, *pixels.shape), dtype=pixels.dtype, chunks=(1, *pixels.shape), **_compression_args(compression))
    dataset[0] = pixels
    _, chunk = dataset.id.read_direct_chunk((0,) * dataset.ndim)
    return EncodedSample(pixels, chunk)


def pixels_of(sample: np.ndarray | EncodedSample) -> np.ndarray:
    return sample.pixels if isinstance(sample, EncodedSample) else sample


class BlockWriter:
    """Fills a one-sample-chunk dataset a block of samples at a time: one HDF5 call per block, as
    per-sample writes cost more than decoding."""

    def __init__(self, dataset: h5py.Dataset):
        self.dataset, self.start, self.filled = dataset, 0, 0
        self.buffer = np.empty((min(WRITE_BLOCK, max(len(dataset), 1)), *dataset.shape[1:]), dtype=dataset.dtype)

    def add(self, sample: np.ndarray | EncodedSample) -> np.ndarray:
        """Queue one sample; returns it as stored (in the shard's dtype)."""
        if isinstance(sample, EncodedSample):  # filtered already: its bytes go straight to the file
            self.flush()
            self.dataset.id.write_direct_chunk((self.start,) + (0,) * (self.dataset.ndim - 1), sample.chunk)
            self.start += 1
            return sample.pixels
        row = self.buffer[self.filled]
        row[...] = sample
        self.filled += 1
        if self.filled == len(self.buffer):
            self.flush()
        return row

    def flush(self) -> None:
        if self.filled:
            self.dataset[self.start:self.start + self.filled] = self.buffer[:self.filled]
            self.start, self.filled = self.start + self.filled, 0


def write_partial(
    path: Path,
    refs: Sequence[SampleRef],
    images: Iterable[np.ndarray],
    *,
    modality: str,
    shape: tuple[int, int, int],
    attrs: dict,
    compression: str,
    num_multilabels: int | None = None,
    paired_shape: tuple[int, int, int] | None = None,
) -> Path:
    """Stream `images` (one (C, H, W) array per ref) into `path` + '.partial', atomically.

    With `paired_shape`, each item is (image, paired RGB image of the same scene), and the paired
    images go to a `paired_rgb` dataset (uint8, same order): the symmetric control for analyses."""
    partial = path.with_name(path.name + PARTIAL_SUFFIX)
    writing = path.with_name(f".{path.name}.writing")
    dtype = IMAGE_DTYPES[modality]
    count = len(refs)
    try:
        # no chunk cache: chunks go to disk in selection order, so the bytes do not depend on cache eviction
        with h5py.File(writing, "w", track_order=False, rdcc_nbytes=0) as handle:
            dset = handle.create_dataset(
                "images", shape=(count, *shape), dtype=dtype, chunks=(1, *shape),
                track_times=False, **_compression_args(compression),
            )
            paired_set = None if paired_shape is None else handle.create_dataset(
                "paired_rgb", shape=(count, *paired_shape), dtype=np.uint8, chunks=(1, *paired_shape),
                track_times=False, **_compression_args(compression),
            )
            written = 0
            content = hashlib.sha256()
            band_sum = np.zeros(shape[0])
            band_sumsq = np.zeros(shape[0])
            image_blocks = BlockWriter(dset)
            paired_blocks = None if paired_set is None else BlockWriter(paired_set)
            for i, item in enumerate(images):
                image = item
                if paired_blocks is not None:
                    image, paired = item
                    if (got := pixels_of(paired).shape) != paired_shape:
                        raise DatasetError(f"{refs[i].source_id}: paired RGB image has shape {got}, expected {paired_shape}")
                    # not in the content hash: the dataset version names the training data, which
                    # is the same whether or not the analyses' paired control is there
                    paired_blocks.add(paired)
                if (got := pixels_of(image).shape) != shape:
                    raise DatasetError(f"{refs[i].source_id}: image has shape {got}, expected {shape} (bands, height, width)")
                stored = image_blocks.add(image)
                content.update(stored.tobytes())
                pixels = stored.reshape(shape[0], -1).astype(np.float64)
                band_sum += pixels.sum(axis=1)
                band_sumsq += np.einsum("ij,ij->i", pixels, pixels)
                written += 1
            for blocks in (image_blocks, paired_blocks):
                if blocks is not None:
                    blocks.flush()
            if written != count:
                raise DatasetError(f"{path.name}: source produced {written} images for {count} samples")
            labels = np.array([r.label for r in refs], dtype=np.int16)
            source_ids = fixed_strings([r.source_id for r in refs])
            handle.create_dataset("labels", data=labels, track_times=False)
            handle.create_dataset("source_ids", data=source_ids, track_times=False)
            content.update(labels.tobytes())
            content.update(source_ids.tobytes())
            if num_multilabels is not None:
                multi = np.zeros((count, num_multilabels), dtype=np.uint8)
                for i, ref in enumerate(refs):
                    multi[i, list(ref.multilabel or ())] = 1
                handle.create_dataset("multilabels", data=multi, track_times=False)
                content.update(multi.tobytes())
            # per-band sums let the build compute train statistics without reading the shard back
            handle.attrs["band_sum"] = band_sum
            handle.attrs["band_sumsq"] = band_sumsq
            handle.attrs["pixel_count"] = count * shape[1] * shape[2]
            described = {"format": FORMAT, "modality": modality, "compression": compression, **attrs}
            for key, value in described.items():
                handle.attrs[key] = fixed_strings(value) if isinstance(value, (str, list, tuple)) else value
            content.update(json.dumps({"shape": [count, *shape], "dtype": np.dtype(dtype).str, **described},
                                      sort_keys=True, default=str).encode())
            # the compressed bytes are not reproducible (lzf leaves its hash table uninitialised), so a
            # shard's identity is the hash of what it holds, not of its file
            handle.attrs["content_sha256"] = np.bytes_(content.hexdigest().encode())
        fsync_and_rename(writing, partial)
    except (OSError, RuntimeError) as exc:  # h5py reports a failed write as OSError, then RuntimeError on close
        writing.unlink(missing_ok=True)
        raise DatasetError(f"{path}: cannot write shard ({write_failure(exc)}); free disk space and rerun the build "
                           "to resume") from None
    except BaseException:
        writing.unlink(missing_ok=True)
        raise
    return partial


def write_failure(exc: BaseException) -> str:
    """The OS's reason for a failed write, from an OSError or from the errno h5py puts in its message."""
    while exc is not None:
        code = getattr(exc, "errno", None)
        if not code:
            found = re.search(r"errno = (\d+)", str(exc))
            code = int(found.group(1)) if found else None
        if code:
            return os.strerror(code)
        exc = exc.__context__
    return "write failed"


def partial_matches(partial: Path, refs: Sequence[SampleRef], recipe_hash: str | None = None) -> bool:
    """True when an existing partial holds exactly these samples, written from this recipe (so a
    resumed build can keep it)."""
    try:
        with h5py.File(partial, "r") as handle:
            stored = handle["source_ids"].asstr("utf-8")[()]
            labels = handle["labels"][()]
            written_by = read_text(handle.attrs.get("recipe_hash", b""))
    except (OSError, KeyError):
        return False
    if recipe_hash is not None and written_by != recipe_hash:
        return False
    return list(stored) == [r.source_id for r in refs] and list(labels) == [r.label for r in refs]


def band_statistics(paths: Sequence[Path]) -> tuple[np.ndarray, np.ndarray]:
    """Per-band mean and std over every image of the given shards, from the sums each shard
    recorded when it was written (float64)."""
    total, sum_x, sum_xx = 0, 0.0, 0.0
    for path in paths:
        with h5py.File(path, "r") as handle:
            sum_x = sum_x + handle.attrs["band_sum"]
            sum_xx = sum_xx + handle.attrs["band_sumsq"]
            total += int(handle.attrs["pixel_count"])
    if not total:
        raise DatasetError("cannot compute normalisation statistics: the train split is empty")
    mean = np.asarray(sum_x) / total
    std = np.sqrt(np.maximum(np.asarray(sum_xx) / total - mean**2, 0.0))
    return mean, np.maximum(std, 1e-6)


def finalize(partial: Path, mean: np.ndarray, std: np.ndarray) -> Path:
    """Record normalisation statistics and move the shard to its final name.

    The attributes are written into a copy, never into the partial itself: an interruption at any
    point leaves either the untouched partial or the finished shard, so a resumed build produces
    byte-identical files to an uninterrupted one.
    """
    final = partial.with_name(partial.name[: -len(PARTIAL_SUFFIX)])
    work = partial.with_name(f".{final.name}.finalizing")
    try:
        shutil.copyfile(partial, work)
        with h5py.File(work, "r+") as handle:
            handle.attrs["mean"] = mean
            handle.attrs["std"] = std
        fsync_and_rename(work, final)
    except BaseException:
        work.unlink(missing_ok=True)
        raise
    partial.unlink()
    return final


def has_paired(path: Path) -> bool:
    try:
        with h5py.File(path, "r") as handle:
            return "paired_rgb" in handle
    except OSError:
        return False


def content_digest(path: Path) -> str:
    with h5py.File(path, "r") as handle:
        return read_text(handle.attrs["content_sha256"])


def has_statistics(final: Path, mean: np.ndarray, std: np.ndarray) -> bool:
    try:
        with h5py.File(final, "r") as handle:
            return np.array_equal(handle.attrs.get("mean"), mean) and np.array_equal(handle.attrs.get("std"), std)
    except OSError:
        return False


def self_contained(handle: h5py.File, path: Path) -> h5py.File:
    """A shard whose data lives in the shard file and nowhere else, or one line: HDF5 can keep a
    dataset's data in other files (external and soft links, external raw storage, virtual datasets),
    which would read pixels from outside the dataset folder, unseen by the shard's checksum."""
    for name in handle:
        link = handle.get(name, getlink=True)
        if not isinstance(link, h5py.HardLink):
            raise DatasetError(f"{path}: '{name}' is an {type(link).__name__}; a shard's data lives in the shard file")
        member = handle[name]
        if not isinstance(member, h5py.Dataset):
            raise DatasetError(f"{path}: '{name}' is a group; a shard holds datasets only")
        if member.is_virtual or member.external:
            kind = "a virtual dataset" if member.is_virtual else "external storage"
            raise DatasetError(f"{path}: dataset '{name}' keeps its data in other files ({kind}); a shard's data "
                               "lives in the shard file")
    return handle


def open_shard(path: Path) -> h5py.File:
    """A shard opened for reading, checked to be self-contained (`self_contained`)."""
    handle = h5py.File(path, "r")
    try:
        return self_contained(handle, path)
    except DatasetError:
        handle.close()
        raise


class ShardReader:
    """Random access to the samples of a list of shards, opening files lazily in each process.

    h5py handles must not cross a fork, so handles are opened on first use and reopened when the
    reader finds itself in a new process (a DataLoader worker). With `channels`, every read of
    `images` returns those channels (stored indices, in that order): the bands a run selects.
    """

    def __init__(self, paths: Sequence[Path], counts: Sequence[int], channels: Sequence[int] | None = None):
        self.channels = None if channels is None else list(channels)
        self.paths = [Path(p) for p in paths]
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._handles: dict[int, h5py.File] = {}
        self._fields: dict[tuple[int, str], h5py.Dataset] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_handles"], state["_fields"] = {}, {}
        return state

    def _handle(self, shard: int) -> h5py.File:
        if self._pid != os.getpid():
            self._handles, self._fields = {}, {}
            self._pid = os.getpid()
        handle = self._handles.get(shard)
        if handle is None:
            try:
                handle = open_shard(self.paths[shard])
            except OSError as exc:
                raise DatasetError(f"{self.paths[shard]}: cannot open shard: {exc}") from None
            self._handles[shard] = handle
        return handle

    def locate(self, index: int) -> tuple[int, int]:
        if not 0 <= index < len(self):
            raise IndexError(f"sample index {index} out of range [0, {len(self)})")
        shard = int(np.searchsorted(self.offsets, index, side="right") - 1)
        return shard, index - int(self.offsets[shard])

    def _selected(self, images: np.ndarray, field: str) -> np.ndarray:
        """The selected channels of images (..., C, H, W) of `field` images; other fields as they are."""
        if field != "images" or self.channels is None:
            return images
        return np.ascontiguousarray(images[..., self.channels, :, :])

    def read(self, index: int, field: str = "images") -> np.ndarray:
        shard, local = self.locate(index)
        try:
            return self._selected(self._dataset(shard, field)[local], field)
        except (OSError, KeyError) as exc:
            raise DatasetError(f"{self.paths[shard]}: cannot read sample {local} of '{field}': {exc}") from None

    def _dataset(self, shard: int, field: str) -> h5py.Dataset:
        dataset = self._fields.get((shard, field))
        if dataset is None:  # looking a dataset up by name costs as much as reading a sample
            try:
                dataset = self._fields[shard, field] = self._handle(shard)[field]
            except KeyError:
                raise DatasetError(f"{self.paths[shard]}: no '{field}' dataset in shard") from None
        return dataset

    def read_images(self, indices: Sequence[int]) -> np.ndarray:
        """Images of several samples into one (B, C, H, W) array.

        Uses h5py's low-level hyperslab read into the batch buffer: the high-level indexing path
        costs about as much Python time as decompressing the sample.
        """
        first = self._dataset(self.locate(int(indices[0]))[0], "images")
        sample_shape = first.shape[1:]
        out = np.empty((len(indices), *sample_shape), dtype=first.dtype)
        memory_space = h5py.h5s.create_simple((1, *sample_shape))
        origin, count = (0,) * len(sample_shape), (1, *sample_shape)
        spaces: dict[int, tuple] = {}
        for k, index in enumerate(indices):
            shard, local = self.locate(int(index))
            if shard not in spaces:
                dataset = self._dataset(shard, "images")
                spaces[shard] = (dataset.id, dataset.id.get_space())
            dataset_id, file_space = spaces[shard]
            file_space.select_hyperslab((local, *origin), count)
            try:
                dataset_id.read(memory_space, file_space, out[k:k + 1])
            except (OSError, KeyError) as exc:
                raise DatasetError(f"{self.paths[shard]}: cannot read sample {local}: {exc}") from None
        return self._selected(out, "images")

    def read_all(self, field: str = "images") -> np.ndarray:
        """Every sample of `field`, all shards in order, read straight into one array (a selection
        of channels shard by shard, so that the unselected bands never take memory all at once)."""
        first = self._dataset(0, field)
        shape = list(first.shape[1:])
        if field == "images" and self.channels is not None:
            shape[0] = len(self.channels)
        out = np.empty((len(self), *shape), dtype=first.dtype)
        for shard in range(len(self.paths)):
            start, stop = int(self.offsets[shard]), int(self.offsets[shard + 1])
            if stop > start:
                try:
                    dataset = self._dataset(shard, field)
                    if field == "images" and self.channels is not None:
                        out[start:stop] = self._selected(dataset[()], field)
                    else:
                        dataset.read_direct(out, dest_sel=np.s_[start:stop])
                except (OSError, KeyError) as exc:
                    raise DatasetError(f"{self.paths[shard]}: cannot read '{field}': {exc}") from None
        return out

    def read_column(self, field: str) -> Iterator[np.ndarray]:
        """A small per-sample field (labels, source ids) for every shard, in order."""
        for path in self.paths:
            with open_shard(path) as handle:
                if field != "source_ids":
                    yield handle[field][()]
                    continue
                try:
                    yield handle[field].asstr("utf-8")[()]
                except UnicodeDecodeError as exc:
                    raise DatasetError(f"{path}: source_ids are not UTF-8 text (byte {exc.start} of one id)") from None

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles, self._fields = {}, {}
