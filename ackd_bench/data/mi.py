"""Within-class mutual information between the MS and RGB sides (the paper's Fig. 6).

Estimator: both images are reduced to one intensity channel (the MS side's pseudo-RGB, i.e. its
R, G, B bands, and the RGB image, each averaged over the three channels), quantised per image
into K equal-frequency bins (ranks, so a monotone appearance shift such as gamma or gain does not
change the codes), and the MI of the pixel-wise code pairs is the plug-in estimate from their
joint histogram (scikit-learn's `mutual_info_score`, in nats).

Bias: the plug-in estimate is biased upwards; for independent images it is about
(K - 1)^2 / (2 n) nats for n pixels (Miller-Madow), e.g. 0.05 nats for K = 16 and 48 x 48 px.
The permutation baseline (MS and RGB images drawn from different classes) measures that floor
empirically; compare classes against it, not against zero.

For each class it reports the mean MI of N unpaired same-class pairs, the permutation baseline,
and, where the dataset has a paired control (the toy generator's RGB view of the MS scene;
EuroSAT RGB and NaSC-TG2 RGB for the real sets), the mean MI of N truly paired images.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any, Callable

import numpy as np
from sklearn.metrics import mutual_info_score

from ..errors import DatasetError
from ..provenance import atomic_path
from .dataset import ShardDataset, class_galleries


def quantise(image: np.ndarray, bins: int) -> np.ndarray:
    """(C, H, W) or (H, W) -> (H*W,) codes in [0, bins): per-image equal-frequency bins of the
    channel-mean intensity (ties broken by position, which keeps the marginal uniform)."""
    intensity = image.astype(np.float64)
    if intensity.ndim == 3:
        intensity = intensity.mean(axis=0)
    ranks = np.argsort(np.argsort(intensity.ravel(), kind="stable"), kind="stable")
    return (ranks * bins // ranks.size).astype(np.int64)


def image_mi(a: np.ndarray, b: np.ndarray, bins: int = 16) -> float:
    if a.shape[-2:] != b.shape[-2:]:
        raise DatasetError(f"MI needs images of one size, got {a.shape[-2:]} and {b.shape[-2:]}")
    return float(mutual_info_score(quantise(a, bins), quantise(b, bins)))


def pseudo_rgb(ms_image: np.ndarray, ms_bands: list[str], rgb_bands: list[str] | None) -> np.ndarray:
    if not rgb_bands:
        raise DatasetError("the MS side names no R, G, B bands (recipe modalities.ms.rgb_bands): no pseudo-RGB")
    return ms_image[[ms_bands.index(b) for b in rgb_bands]]


TOY_ID = re.compile(r"toy/ms/(?P<name>[^/]{1,64})/(?P<number>[0-9]{1,6})")


def paired_view(ms: ShardDataset) -> Callable[[int], np.ndarray] | None:
    """MS sample index -> the RGB image of the same scene (uint8, 3 x H x W), where the dataset has
    one: the `paired_rgb` images stored next to the MS pixels, or the toy generator's RGB view."""
    manifest = ms.manifest
    if manifest.modalities["ms"].paired_status == "present":
        return lambda index: ms.reader.read(int(index), "paired_rgb")
    if manifest.recipe_source == "toy":
        from .toy import MAX_PER_CLASS, ToyGenerator

        generator = ToyGenerator(manifest.built_recipe())
        classes = list(manifest.classes)
        ids = ms.source_ids()

        def render(index: int) -> np.ndarray:
            found = TOY_ID.fullmatch(ids[int(index)])
            if not found or found["name"] not in classes or int(found["number"]) >= MAX_PER_CLASS:
                raise DatasetError(f"{ms.manifest.dataset}: MS source id {ids[int(index)][:80]!r} is not one the toy generator "
                                   "writes (toy/ms/CLASS/NUMBER): a crafted shard?")
            return generator.paired_rgb(classes.index(found["name"]), int(found["number"]))

        return render
    return None


def within_class_mi(root: str | Path, *, pairs: int = 100, bins: int = 16, seed: int = 0,
                    split: str = "train") -> list[dict[str, Any]]:
    ms = ShardDataset(root, "ms", split, normalize=False)
    rgb = ShardDataset(root, "rgb", split, normalize=False)
    if len(ms) == 0 or len(rgb) == 0:
        raise DatasetError(f"{root}: the {split} split needs both MS and RGB samples for MI ({len(ms)} MS, {len(rgb)} RGB)")
    rgb_bands = ms.manifest.modalities["ms"].rgb_bands
    paired = paired_view(ms)
    rng = np.random.default_rng(seed)
    # a multi-label MS patch (BigEarthNet) belongs to every class it carries, not only to its first
    ms_galleries = class_galleries(ms)
    rows = []
    for c, name in enumerate(ms.classes):
        ms_members, rgb_members = ms_galleries[c], np.flatnonzero(rgb.labels == c)
        others = np.flatnonzero(rgb.labels != c)
        for side, members in (("MS", ms_members), ("RGB", rgb_members)):
            if len(members) < pairs:
                raise DatasetError(f"class {name} has {len(members)} {side} {split} samples, fewer than --pairs {pairs}")
        if len(others) == 0:
            raise DatasetError("the permutation baseline needs RGB samples of at least two classes")
        draw_ms = rng.choice(ms_members, pairs, replace=False)
        draw_rgb = rng.choice(rgb_members, pairs, replace=False)
        draw_other = rng.choice(others, pairs, replace=True)
        views = [pseudo_rgb(ms.reader.read(int(i)), ms.bands, rgb_bands) for i in draw_ms]
        unpaired = [image_mi(v, rgb.reader.read(int(j)), bins) for v, j in zip(views, draw_rgb)]
        permuted = [image_mi(v, rgb.reader.read(int(j)), bins) for v, j in zip(views, draw_other)]
        row = {"class": name, "pairs": pairs, "bins": bins, "mi_unpaired": float(np.mean(unpaired)),
               "mi_unpaired_std": float(np.std(unpaired)), "mi_permutation": float(np.mean(permuted)),
               "mi_paired": None}
        if paired:
            row["mi_paired"] = float(np.mean([image_mi(v, paired(int(i)), bins)
                                              for v, i in zip(views, draw_ms)]))
        rows.append(row)
    return rows


def write_mi(rows: list[dict[str, Any]], out_dir: str | Path, title: str) -> tuple[Path, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = out_dir / "mi.csv", out_dir / "mi.png"
    with atomic_path(csv_path) as tmp:
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in rows)
    x = np.arange(len(rows))
    series = [("unpaired (same class)", "mi_unpaired"), ("permutation baseline", "mi_permutation")]
    if rows[0]["mi_paired"] is not None:
        series.insert(0, ("paired control", "mi_paired"))
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(rows)), 3.5))
    for k, (label, key) in enumerate(series):
        ax.bar(x + k * width, [r[key] for r in rows], width, label=label)
    ax.set_xticks(x + width * (len(series) - 1) / 2, [r["class"] for r in rows], rotation=30, ha="right")
    ax.set_ylabel("mutual information (nats)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(png_path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return csv_path, png_path


def summary(rows: list[dict[str, Any]], seed: int) -> dict[str, Any]:
    def mean(key):
        values = [r[key] for r in rows if r[key] is not None]
        return float(np.mean(values)) if values else None

    return {"estimator": "plug-in joint histogram of per-image equal-frequency intensity codes (nats)",
            "bins": rows[0]["bins"], "pairs_per_class": rows[0]["pairs"], "seed": seed,
            "mean_unpaired": mean("mi_unpaired"), "mean_permutation": mean("mi_permutation"),
            "mean_paired": mean("mi_paired"),
            "per_class": {r["class"]: {k: r[k] for k in ("mi_unpaired", "mi_permutation", "mi_paired")} for r in rows}}
