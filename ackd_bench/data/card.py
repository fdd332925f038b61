"""`DATASET.md`: the dataset card written next to the manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..provenance import atomic_path
from .recipe import side_sources
from .splits import SPLITS

PAPER_CITATION = ("R. Wei, K. Yao, C. Yang, J. Wang, Z. Gao, C. Li. Asymmetric Cross-Modal Knowledge Distillation: "
                  "Bridging Modalities with Weak Semantic Consistency. AAAI 2026.")


def source_parts(source: dict[str, Any]) -> list[dict[str, Any]]:
    """A side's source records: one, or the several a multi-source side lists under `parts`."""
    return list(source.get("parts", [source]))


def paired_lines(manifest: dict[str, Any]) -> list[str]:
    """Whether the analyses' paired control (the RGB image of each MS scene) is in this build."""
    lines = []
    for modality, spec in manifest["modalities"].items():
        paired = spec.get("paired_rgb")
        if not paired:
            continue
        if paired.get("status", "present") == "present":
            lines.append(f"- {modality.upper()}: paired_rgb: present ({paired['source']}), stored with the pixels; "
                         "not part of the dataset version")
        else:
            lines.append(f"- {modality.upper()}: paired_rgb: absent ({paired['source']}: {paired['reason']}); the MI "
                         "and transport-cost analyses report no paired control")
    return ["", "## Paired control", "", *lines] if lines else []


def selection_lines(manifest: dict[str, Any]) -> list[str]:
    """What a side keeps of its sources, where it does not keep everything."""
    lines = []
    for modality, spec in manifest.get("recipe", {}).get("modalities", {}).items():
        if spec.get("cap_per_class"):
            lines.append(f"- {modality.upper()}: at most {spec['cap_per_class']} samples drawn per class (by hash of "
                         "the source id; multi-label: rarest class first)")
        if spec.get("min_label_pixels"):
            lines.append(f"- {modality.upper()}: a CORINE class labels a patch from {spec['min_label_pixels']} pixels up")
    return ["", "## Selection", "", *lines] if lines else []


def class_map_lines(manifest: dict[str, Any]) -> list[str]:
    """Target class <- source classes, per side (with the source name where a side has several)."""
    modalities = manifest.get("recipe", {}).get("modalities", {})
    maps = {}
    for modality, spec in modalities.items():
        maps[modality] = {name: entry.get("class_map", {}) for name, entry in side_sources(spec).items()}
    if not any(maps.values()):
        return []
    lines = ["", "## Class maps", "", "| class | " + " | ".join(m.upper() for m in maps) + " |",
             "|---|" + "---|" * len(maps)]
    for c in manifest["classes"]:
        cells = []
        for per_source in maps.values():
            named = len(per_source) > 1
            # "; " because CORINE names contain commas
            cells.append("; ".join(f"{name}:{s}" if named else str(s) for name, class_map in per_source.items()
                                   for s in class_map.get(c, [])) or "–")
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    return lines


def render_card(manifest: dict[str, Any]) -> str:
    name = manifest["dataset"]
    lines = [f"# {name}" + (" (SYNTHETIC)" if manifest.get("synthetic") else ""), ""]
    if manifest.get("recipe", {}).get("description"):
        lines += [manifest["recipe"]["description"], ""]
    lines += [
        f"- dataset version: `{manifest['dataset_version']}`",
        f"- recipe hash: `{manifest['recipe_hash']}` (recipe v{manifest.get('recipe', {}).get('version', '?')})",
        f"- built by ackd-bench {manifest.get('code_version', '?')} on {manifest.get('created_utc', '?')}",
        f"- splits: {manifest['splits']['fractions']} by sha256(salt '{manifest['splits']['salt']}', source id)"
        + "".join(f"; {m.upper()} keeps the source's official split" for m in manifest["splits"].get("from_source", [])),
        "", "## Modalities", "",
        "| side | bands | size | dtype | labels |", "|---|---|---|---|---|",
    ]
    for modality, spec in manifest["modalities"].items():
        h, w = spec["image_size"]
        kind = "multi-label" if spec.get("multilabel") else "single-label"
        lines.append(f"| {modality.upper()} | {' '.join(spec['bands'])} | {h}x{w} | {spec['dtype']} | {kind} |")
    lines += paired_lines(manifest)
    lines += selection_lines(manifest)
    lines += class_map_lines(manifest)
    lines += ["", "## Counts", "", "| class | " + " | ".join(f"{m}/{s}" for m in manifest["modalities"] for s in SPLITS)
              + " |", "|---|" + "---|" * (len(manifest["modalities"]) * len(SPLITS))]
    for c in manifest["classes"]:
        cells = [str(manifest["counts"][m][s][c]) for m in manifest["modalities"] for s in SPLITS]
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    if any(spec.get("multilabel") for spec in manifest["modalities"].values()):
        lines += ["", "A multi-label side counts a sample in every class it carries."]
    lines += ["", "## Sources", ""]
    for modality, source in manifest.get("sources", {}).items():
        for part in source_parts(source):
            details = ", ".join(f"{k}: {v}" for k, v in part.items() if v not in (None, "", []))
            lines.append(f"- {modality.upper()}: {details}")
    mi = manifest.get("analyses", {}).get("mi")
    if mi:
        lines += ["", "## Within-class mutual information (MS pseudo-RGB vs RGB)", "",
                  f"{mi['estimator']}; {mi['bins']} bins, {mi['pairs_per_class']} pairs per class, seed {mi['seed']}. "
                  "The permutation baseline (pairs across classes) is the estimator's floor.", "",
                  "| class | unpaired | permutation | paired control |", "|---|---|---|---|"]
        for c, values in mi["per_class"].items():
            paired = "–" if values["mi_paired"] is None else f"{values['mi_paired']:.3f}"
            lines.append(f"| {c} | {values['mi_unpaired']:.3f} | {values['mi_permutation']:.3f} | {paired} |")
    lines += ["", "## How to cite", "", f"- {PAPER_CITATION}"]
    citations = [part["citation"] for source in manifest.get("sources", {}).values() for part in source_parts(source)
                 if part.get("citation")]
    lines += [f"- {citation}" for citation in dict.fromkeys(citations)]
    return "\n".join(lines) + "\n"


def write_card(root: str | Path, manifest: dict[str, Any]) -> Path:
    path = Path(root) / "DATASET.md"
    with atomic_path(path) as tmp:
        tmp.write_text(render_card(manifest))
    return path
