"""Band sets: named selections of a dataset's stored MS bands.

A recipe's MS side stores `bands` and may name selections of them under `band_sets`; a training
profile's `options.ms_bands` picks one by name (`train.runs.load_dataset` resolves it). The dataset
version names the stored data, not a selection, so one build serves every profile. A side without
`band_sets` feeds all it stores.
"""

from __future__ import annotations

from typing import Any, Sequence

from ..errors import AckdError

# the selections a recipe may name; the first is the reference code's (options.ms_bands)
BAND_SETS = ("reference", "recipe")


def check_band_sets(band_sets: Any, stored: Sequence[str], where: str) -> dict[str, tuple[str, ...]]:
    """`band_sets` (recipe or manifest: untrusted) as {set name: band names}: each a known set name,
    each list non-empty, distinct and made of stored bands."""
    if not isinstance(band_sets, dict):
        raise AckdError(f"{where} is a {type(band_sets).__name__}, expected a mapping of "
                        f"{' / '.join(BAND_SETS)} to band lists")
    checked = {}
    for name, bands in band_sets.items():
        if name not in BAND_SETS:
            raise AckdError(f"{where}: unknown band set {str(name)[:40]!r}: expected some of {', '.join(BAND_SETS)}")
        if not isinstance(bands, list) or not bands or not all(isinstance(b, str) for b in bands):
            raise AckdError(f"{where}.{name} must be a non-empty list of band names")
        unknown = [b[:16] for b in bands if b not in stored][:5]
        if unknown or len(set(bands)) != len(bands):
            raise AckdError(f"{where}.{name} must name distinct stored bands ({' '.join(stored)})"
                            + (f"; {' '.join(unknown)} not stored" if unknown else ""))
        checked[name] = tuple(bands)
    return checked
