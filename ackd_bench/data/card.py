"""`DATASET.md`: the dataset card written next to the manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..provenance import atomic_path
from .manifest import Manifest
from .recipe import Recipe
from .splits import SPLITS

PAPER_CITATION = ("R. Wei, K. Yao, C. Yang, J. Wang, Z. Gao, C. Li. Asymmetric Cross-Modal Knowledge Distillation: "
                  "Bridging Modalities with Weak Semantic Consistency. AAAI 2026.")


def source_parts(source: dict[str, Any]) -> list[dict[str, Any]]:
    """A side's source records: one, or the several a multi-source side lists under `parts`."""
    return list(source.get("parts", [source]))


def paired_lines(manifest: Manifest) -> list[str]:
    """Whether the analyses' paired control (the RGB image of each MS scene) is in this build."""
    lines = []
    for modality, spec in manifest.modalities.items():
        paired = spec.paired_rgb
        if not paired:
            continue
        if spec.paired_status == "present":
            lines.append(f"- {modality.upper()}: paired_rgb: present ({paired.get('source')}), stored with the pixels; "
                         "not part of the dataset version")
        else:
            lines.append(f"- {modality.upper()}: paired_rgb: absent ({paired.get('source')}: {paired.get('reason')}); "
                         "the MI and transport-cost analyses report no paired control")
    return ["", "## Paired control", "", *lines] if lines else []


def band_set_lines(band_sets: dict[str, Sequence[str]] | None) -> list[str]:
    """The MS side's named band selections: what a run under each `options.ms_bands` value feeds."""
    if not band_sets:
        return []
    lines = ["", "## Band sets", "",
             "A run feeds the MS bands that its profile's `options.ms_bands` names (`paper`: reference, "
             "`bench`: recipe); the dataset version names all stored bands.", ""]
    return lines + [f"- `{name}` ({len(bands)}): {' '.join(bands)}" for name, bands in band_sets.items()]


def selection_lines(recipe: Recipe) -> list[str]:
    """What a side keeps of its sources, where it does not keep everything."""
    lines = []
    for modality, side in recipe.modalities.items():
        if side.cap_per_class:
            lines.append(f"- {modality.upper()}: at most {side.cap_per_class} samples drawn per class (by hash of "
                         "the source id; multi-label: rarest class first)")
        if side.min_label_pixels:
            lines.append(f"- {modality.upper()}: a CORINE class labels a patch from {side.min_label_pixels} pixels up")
    return ["", "## Selection", "", *lines] if lines else []


def class_map_lines(recipe: Recipe, classes: Sequence[str]) -> list[str]:
    """Target class <- source classes, per side (with the source name where a side has several)."""
    maps = {modality: side.class_maps for modality, side in recipe.modalities.items()}
    if not any(maps.values()):
        return []
    lines = ["", "## Class maps", "", "| class | " + " | ".join(m.upper() for m in maps) + " |",
             "|---|" + "---|" * len(maps)]
    for c in classes:
        cells = []
        for per_source in maps.values():
            named = len(per_source) > 1
            # "; " because CORINE names contain commas
            cells.append("; ".join(f"{name}:{s}" if named else str(s) for name, class_map in per_source.items()
                                   for s in class_map.get(c, [])) or "–")
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    return lines


def render_card(manifest: Manifest) -> str:
    lines = [f"# {manifest.dataset}" + (" (SYNTHETIC)" if manifest.synthetic else ""), ""]
    recipe = manifest.built_recipe()
    if recipe is not None and recipe.description:
        lines += [recipe.description, ""]
    splits = manifest.splits
    lines += [
        f"- dataset version: `{manifest.dataset_version}`",
        f"- recipe hash: `{manifest.recipe_hash}` (recipe v{recipe.version if recipe is not None else '?'})",
        f"- built by ackd-bench {manifest.code_version or '?'} on {manifest.created_utc or '?'}",
    ]
    if splits is not None:
        lines.append(f"- splits: {splits.fractions} by sha256(salt '{splits.salt}', source id)"
                     + "".join(f"; {m.upper()} keeps the source's own split (official, or the generator's)" for m in splits.from_source))
    lines += ["", "## Modalities", "", "| side | bands | size | dtype | labels |", "|---|---|---|---|---|"]
    for modality, spec in manifest.modalities.items():
        h, w = spec.image_size
        kind = "multi-label" if spec.multilabel else "single-label"
        lines.append(f"| {modality.upper()} | {' '.join(spec.bands)} | {h}x{w} | {spec.dtype} | {kind} |")
    lines += band_set_lines(manifest.modalities["ms"].band_sets) + paired_lines(manifest)
    if recipe is not None:
        lines += selection_lines(recipe) + class_map_lines(recipe, manifest.classes)
    lines += ["", "## Counts", "", "| class | " + " | ".join(f"{m}/{s}" for m in manifest.modalities for s in SPLITS)
              + " |", "|---|" + "---|" * (len(manifest.modalities) * len(SPLITS))]
    for c in manifest.classes:
        cells = [str(manifest.counts[m][s][c]) for m in manifest.modalities for s in SPLITS]
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    if any(spec.multilabel for spec in manifest.modalities.values()):
        lines += ["", "A multi-label side counts a sample in every class it carries."]
    lines += ["", "## Sources", ""]
    for modality, source in manifest.sources.items():
        for part in source_parts(source):
            details = ", ".join(f"{k}: {v}" for k, v in part.items() if v not in (None, "", []))
            lines.append(f"- {modality.upper()}: {details}")
    mi = manifest.mi
    if mi:
        lines += ["", "## Within-class mutual information (MS pseudo-RGB vs RGB)", "",
                  f"{mi.estimator}; {mi.bins} bins, {mi.pairs_per_class} pairs per class, seed {mi.seed}. "
                  "The permutation baseline (pairs across classes) is the estimator's floor.", "",
                  "| class | unpaired | permutation | paired control |", "|---|---|---|---|"]
        for c, values in mi.per_class.items():
            paired = "–" if values.get("mi_paired") is None else f"{values['mi_paired']:.3f}"
            lines.append(f"| {c} | {values['mi_unpaired']:.3f} | {values['mi_permutation']:.3f} | {paired} |")
    lines += ["", "## How to cite", "", f"- {PAPER_CITATION}"]
    citations = [part["citation"] for source in manifest.sources.values() for part in source_parts(source)
                 if part.get("citation")]
    lines += [f"- {citation}" for citation in dict.fromkeys(citations)]
    return "\n".join(lines) + "\n"


def write_card(root: str | Path, manifest: Manifest) -> Path:
    path = Path(root) / "DATASET.md"
    with atomic_path(path) as tmp:
        tmp.write_text(render_card(manifest))
    return path
