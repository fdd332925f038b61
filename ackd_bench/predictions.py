"""Per-item test predictions: what a classification run predicted for each test item, kept in its
run folder as `predictions.npz` so that a comparison can count which test items were drawn, not
only which seeds (leaderboard/paired.py).

Format (documented in docs/formats.md): an uncompressed NumPy archive (`np.savez`, every member
stored, read with `allow_pickle=False`) holding

- `item_ids`  (N,) UTF-8 bytes: the test item's source id, stable across builds of one dataset version;
- `logits`    (N, K) float32: the selected checkpoint's outputs, as the reported metrics saw them;
- `labels`    (N,) int16, the class index (single-label runs), or
  `targets`   (N, L) uint8, the multi-hot labels (multi-label runs).

The result record holds the file's sha256 (`predictions_sha256`); a board keeps a copy named by it.
A file users exchange is hostile: the reader refuses compressed members (a declared size must be
the bytes present), unknown members, pickles, and shapes or sizes beyond PREDICTION_LIMITS.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import AckdError
from .provenance import atomic_path, sha256_file

FILE_NAME = "predictions.npz"
# far above any benchmark's test split (M2S-GL's is about 10^4 items of 15 classes), far below memory
PREDICTION_LIMITS = {"items": 5_000_000, "classes": 1_000, "id_bytes": 512, "file_bytes": 1 << 30}


@dataclass(frozen=True)
class Predictions:
    item_ids: np.ndarray  # (N,) bytes
    logits: np.ndarray  # (N, K) float32
    labels: np.ndarray | None = None  # (N,) int16, single-label
    targets: np.ndarray | None = None  # (N, L) uint8, multi-label

    @property
    def multilabel(self) -> bool:
        return self.targets is not None

    @property
    def predicted(self) -> np.ndarray:
        """Single-label: the argmax class of each item (metrics.single_label_metrics' rule)."""
        return self.logits.argmax(axis=1)

    def correct(self) -> np.ndarray:
        """Single-label: 1 where the predicted class is the label, else 0 (float, for means)."""
        return (self.predicted == self.labels).astype(np.float64)

    @classmethod
    def of(cls, item_ids: list[str], logits: np.ndarray, labels: np.ndarray | None = None,
           targets: np.ndarray | None = None) -> Predictions:
        ids = np.array([i.encode("utf-8") for i in item_ids], dtype=bytes)
        return cls(ids, np.asarray(logits, dtype=np.float32),
                   None if labels is None else np.asarray(labels, dtype=np.int16),
                   None if targets is None else np.asarray(targets, dtype=np.uint8))


def write_predictions(run_dir: str | Path, predictions: Predictions) -> str:
    """`predictions.npz` in the run folder, atomically; returns its sha256."""
    path = Path(run_dir) / FILE_NAME
    arrays = {"item_ids": predictions.item_ids, "logits": predictions.logits}
    arrays.update({"labels": predictions.labels} if predictions.targets is None else {"targets": predictions.targets})
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as handle:  # a file object: np.savez would add '.npz' to a name
            np.savez(handle, **arrays)
    return sha256_file(path)


def read_predictions(path: str | Path, sha256: str | None = None) -> Predictions:
    """A predictions file, checked as hostile input; with `sha256`, it must be the file a record names."""
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise AckdError(f"{where}: no predictions file")
    size = path.stat().st_size
    if size > PREDICTION_LIMITS["file_bytes"]:
        raise AckdError(f"{where}: {size:,} bytes, above the {PREDICTION_LIMITS['file_bytes']:,} a predictions file may hold")
    if sha256 is not None and sha256_file(path) != sha256:
        raise AckdError(f"{where}: its sha256 is not the predictions_sha256 its result records (edited or replaced)")
    try:
        with zipfile.ZipFile(path) as archive:
            members = {info.filename: info for info in archive.infolist()}
    except (zipfile.BadZipFile, OSError) as exc:
        raise AckdError(f"{where}: not a NumPy .npz archive ({exc})") from None
    kind = "labels.npy" if "labels.npy" in members else "targets.npy"
    expected = {"item_ids.npy", "logits.npy", kind}
    if set(members) != expected:
        raise AckdError(f"{where}: members {sorted(members)}; expected item_ids, logits and labels or targets")
    if any(info.compress_type != zipfile.ZIP_STORED or info.file_size > size for info in members.values()):
        raise AckdError(f"{where}: compressed or oversized members; predictions files are stored uncompressed (np.savez)")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in ("item_ids", "logits", kind[:-4])}
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise AckdError(f"{where}: unreadable array ({str(exc)[:120]})") from None
    return _checked(arrays, where)


def _checked(arrays: dict[str, np.ndarray], where: str) -> Predictions:
    ids, logits = arrays["item_ids"], arrays["logits"]
    labels, targets = arrays.get("labels"), arrays.get("targets")
    limits = PREDICTION_LIMITS
    if ids.ndim != 1 or ids.dtype.kind != "S" or ids.dtype.itemsize > limits["id_bytes"]:
        raise AckdError(f"{where}: item_ids must be one column of byte strings of at most {limits['id_bytes']} bytes")
    n = len(ids)
    if not 0 < n <= limits["items"]:
        raise AckdError(f"{where}: {n} items; expected 1 to {limits['items']:,}")
    if logits.dtype != np.float32 or logits.shape[:1] != (n,) or logits.ndim != 2 or not 0 < logits.shape[1] <= limits["classes"]:
        raise AckdError(f"{where}: logits must be float32 of shape ({n}, classes) with 1 to {limits['classes']} classes")
    if not np.isfinite(logits).all():
        raise AckdError(f"{where}: logits hold non-finite values")
    if len(set(ids.tolist())) != n:
        raise AckdError(f"{where}: item_ids repeat an item")
    if labels is not None:
        if labels.dtype != np.int16 or labels.shape != (n,) or labels.min() < 0 or labels.max() >= logits.shape[1]:
            raise AckdError(f"{where}: labels must be int16 class indices below {logits.shape[1]}, one per item")
        return Predictions(ids, logits, labels=labels)
    if targets.dtype != np.uint8 or targets.shape != logits.shape or targets.max() > 1:
        raise AckdError(f"{where}: targets must be uint8 0/1 of the logits' shape {logits.shape}")
    return Predictions(ids, logits, targets=targets)
