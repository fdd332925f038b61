"""The embedded `toy` benchmark: a synthetic, download-free stand-in with the paper's structure.

Each class has a pair of materials (foreground, background) with 10-band spectra and three
sub-types with distinct layouts (stripes, blobs, parcels), whose class-specific parameters survive
in both views. Classes come in pairs that look alike in the visible bands and differ in the red
edge, NIR and SWIR, so the MS teacher has information the RGB student lacks.

The RGB side is unpaired and weakly consistent with the MS side, as in the paper: its scenes are
independent draws, it favours other sub-types, its materials have another tint (another
geography) and it goes through another sensor (blur, gain, gamma, 8-bit noise). `paired_rgb`
renders an MS scene with the RGB side's appearance: the symmetric control, used only by the
analyses (MI, transport cost), never for training.

Two generator versions, chosen by the recipe's `generator.version` (absent: 1):

- v1 (dataset version 39a303ae..., tests/data/toy-v1.yaml): sub-types change only an image's
  layout. The teacher's soft labels hardly depend on them, so which same-class MS partner an RGB
  image gets barely matters and SemBridge has nothing to find (bench/mechanism.py measures it).
- v2 (recipes/toy.yaml): the paper's problem. Sub-type 0 is the class's typical look; sub-types
  1 and 2 have their materials mixed toward the class's two look-alikes (LOOKALIKES, classes of
  the other two pairs) by `subtypes.mix`, so (a) the teacher's soft labels say "Forest, a bit like
  AnnualCrop" for one sub-type and "Forest, rather like Residential" for another, and a partner of
  the wrong sub-type teaches the wrong similarity; (c) the mixing moves the visible bands too, so a
  matcher can see it in RGB and pseudo-RGB; (b) the RGB side shows it weakly: mixing at
  `sides.rgb.visibility` of its MS strength, and a share `sides.rgb.ambiguous` of RGB images look
  like a random sub-type (layout and mixing). The sides draw the sub-types at different rates.

Everything here is SYNTHETIC and labelled so wherever it appears.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter

from .recipe import Recipe
from .shards import SampleRef

BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
RGB_BANDS = ("R", "G", "B")
RGB_SOURCE_BANDS = (2, 1, 0)  # B04, B03, B02
SIDE_CODES = {"ms": 0, "rgb": 1}

# Reflectance spectra over BANDS. Members of a pair share the visible bands (B02-B04).
_VEG_VIS, _CROP_VIS, _URBAN_VIS = (0.035, 0.065, 0.040), (0.060, 0.095, 0.070), (0.120, 0.125, 0.135)
SPECTRA = {
    "Forest": ((*_VEG_VIS, 0.10, 0.28, 0.34, 0.37, 0.39, 0.17, 0.08), (0.02, 0.04, 0.03, 0.06, 0.15, 0.19, 0.20, 0.21, 0.10, 0.05)),
    "HerbaceousVegetation": ((*_VEG_VIS, 0.13, 0.20, 0.23, 0.25, 0.26, 0.27, 0.17), (0.02, 0.04, 0.03, 0.09, 0.13, 0.15, 0.16, 0.17, 0.20, 0.13)),
    "AnnualCrop": ((*_CROP_VIS, 0.14, 0.33, 0.42, 0.45, 0.46, 0.24, 0.12), (0.10, 0.13, 0.16, 0.18, 0.20, 0.21, 0.22, 0.23, 0.30, 0.26)),
    "PermanentCrop": ((*_CROP_VIS, 0.11, 0.21, 0.26, 0.28, 0.29, 0.31, 0.22), (0.10, 0.13, 0.16, 0.20, 0.25, 0.27, 0.28, 0.29, 0.22, 0.15)),
    "Residential": ((*_URBAN_VIS, 0.15, 0.17, 0.18, 0.19, 0.20, 0.24, 0.21), (0.03, 0.06, 0.04, 0.10, 0.25, 0.30, 0.32, 0.33, 0.17, 0.09)),
    "Industrial": ((*_URBAN_VIS, 0.14, 0.15, 0.16, 0.17, 0.17, 0.34, 0.31), (0.09, 0.10, 0.11, 0.13, 0.15, 0.16, 0.17, 0.18, 0.26, 0.23)),
}

# Layout parameters per class: stripe angle (deg) and frequency (cycles per image), blob count
# and radius (fraction of the image), parcel grid size. Pair members differ, but jitter overlaps.
LAYOUTS = {
    "Forest": (10, 2.0, 9, 0.10, 3),
    "HerbaceousVegetation": (30, 2.6, 6, 0.13, 4),
    "AnnualCrop": (60, 3.0, 4, 0.16, 5),
    "PermanentCrop": (80, 3.8, 5, 0.12, 6),
    "Residential": (120, 4.5, 14, 0.06, 7),
    "Industrial": (145, 3.5, 7, 0.09, 3),
}
SUBTYPES = ("stripes", "blobs", "parcels")

# v2: the class that sub-types 1 and 2 of a class are mixed toward. Both belong to the other two
# pairs, so the mixing moves the visible bands too (RGB and pseudo-RGB can see it), and the two go
# to different classes, so the teacher's soft labels differ by sub-type.
LOOKALIKES = {
    "Forest": ("AnnualCrop", "Residential"),
    "HerbaceousVegetation": ("PermanentCrop", "Industrial"),
    "AnnualCrop": ("Forest", "Industrial"),
    "PermanentCrop": ("HerbaceousVegetation", "Residential"),
    "Residential": ("HerbaceousVegetation", "AnnualCrop"),
    "Industrial": ("Forest", "PermanentCrop"),
}


@dataclass(frozen=True)
class Scene:
    """A rendered ground truth: reflectance (bands, H, W) in [0, 1] plus what it was drawn from."""

    reflectance: np.ndarray
    label: int
    subtype: int  # the sub-type it was drawn as
    look: int  # the sub-type it looks like: another for v2's ambiguous RGB images


class ToyGenerator:
    """Deterministic scenes: a sample's pixels depend only on (seed, side, class, index)."""

    def __init__(self, recipe: Recipe):
        self.classes: list[str] = list(recipe.classes)
        unknown = [c for c in self.classes if c not in SPECTRA]
        if unknown:
            from ..errors import RecipeError

            raise RecipeError(f"toy recipe: classes {unknown} have no spectra; known: {', '.join(SPECTRA)}")
        self.size = recipe.image_size
        # the recipe's `generator:` section is this module's own: read here and nowhere else
        generator = recipe.generator
        self.version = int(generator.get("version", 1))
        if self.version not in (1, 2):
            from ..errors import RecipeError

            raise RecipeError(f"toy recipe: generator.version {self.version}: expected 1 or 2")
        self.seed = int(generator["seed"])
        self.sides = generator["sides"]
        self.shift = generator["rgb_shift"]
        if self.version == 2:
            self._v2_settings(generator)

    def _v2_settings(self, generator: dict[str, Any]) -> None:
        from ..errors import RecipeError

        try:
            self.mix = [float(m) for m in generator["subtypes"]["mix"]]
            rgb = generator["sides"]["rgb"]
            self.visibility, self.ambiguous = float(rgb["visibility"]), float(rgb["ambiguous"])
        except (KeyError, TypeError, ValueError) as exc:
            raise RecipeError(f"toy recipe: generator.version 2 needs numbers at generator.subtypes.mix and "
                              f"generator.sides.rgb.visibility / .ambiguous ({type(exc).__name__}: {exc})") from None
        in_range = all(0 <= m <= 1 for m in [*self.mix, self.visibility, self.ambiguous])
        if len(self.mix) != len(SUBTYPES) or self.mix[0] != 0 or not in_range:
            raise RecipeError(f"toy recipe: generator.subtypes.mix needs {len(SUBTYPES)} amounts, the first (the "
                              "typical sub-type's) 0; they, sides.rgb.visibility and .ambiguous lie in [0, 1]")
        missing = [c for c in self.classes if c not in LOOKALIKES]
        if missing:
            raise RecipeError(f"toy recipe: classes {missing} have no look-alikes for generator.version 2")

    def _rng(self, side: str, label: int, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, SIDE_CODES[side], label, index])

    def _mask(self, rng: np.random.Generator, class_name: str, subtype: int) -> np.ndarray:
        angle, freq, blobs, radius, grid = LAYOUTS[class_name]
        n = self.size
        yy, xx = np.mgrid[0:n, 0:n] / n
        if SUBTYPES[subtype] == "stripes":
            theta = np.deg2rad(angle + rng.normal(0, 12))
            f = freq * (1 + rng.normal(0, 0.12))
            wave = np.sin(2 * np.pi * f * (xx * np.cos(theta) + yy * np.sin(theta)) + rng.uniform(0, 2 * np.pi))
            return 1 / (1 + np.exp(-4 * wave))
        if SUBTYPES[subtype] == "blobs":
            mask = np.zeros((n, n))
            for _ in range(max(1, blobs + int(rng.integers(-2, 3)))):
                cy, cx = rng.uniform(0, 1, 2)
                r = radius * rng.uniform(0.7, 1.3)
                mask += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
            return np.clip(mask, 0, 1)
        cells = max(2, grid + int(rng.integers(-1, 2)))
        coarse = (rng.uniform(size=(cells, cells)) < 0.5).astype(float)
        reps = -(-n // cells)
        return np.kron(coarse, np.ones((reps, reps)))[:n, :n]

    def scene(self, side: str, label: int, index: int, tint_side: str | None = None) -> Scene:
        """The scene of (side, label, index); its materials carry the tint of `tint_side`."""
        rng = self._rng(side, label, index)
        subtype = int(rng.choice(len(SUBTYPES), p=self.sides[side]["subtype_probs"]))
        class_name = self.classes[label]
        fg, bg = (np.asarray(s, dtype=np.float64) for s in SPECTRA[class_name])
        look = subtype
        if self.version == 2:
            if side == "rgb" and rng.uniform() < self.ambiguous:
                look = int(rng.integers(len(SUBTYPES)))  # weak consistency: looks like a random sub-type
            fg, bg = self._mixed(class_name, look, fg, bg, self.visibility if side == "rgb" else 1.0)
        if (tint_side or side) == "rgb":  # another geography: the same materials under another tint
            tint = np.ones(len(BANDS))
            tint[list(RGB_SOURCE_BANDS)] = self.shift["tint"]
            fg, bg = fg * tint, bg * tint
        mask = self._mask(rng, class_name, look)
        jitter = rng.uniform(0.92, 1.08, size=(len(BANDS), 1, 1)) * rng.uniform(0.85, 1.15)
        reflectance = (mask[None] * fg[:, None, None] + (1 - mask[None]) * bg[:, None, None]) * jitter
        reflectance += rng.normal(0, 0.004, reflectance.shape)
        return Scene(np.clip(reflectance, 0, 1), label, subtype, look)

    def _mixed(self, class_name: str, subtype: int, fg: np.ndarray, bg: np.ndarray,
               visibility: float) -> tuple[np.ndarray, np.ndarray]:
        """v2: sub-type k's materials moved toward its look-alike class by mix[k] (times `visibility`)."""
        amount = self.mix[subtype] * visibility
        if amount == 0:  # always for sub-type 0, the typical one
            return fg, bg
        other_fg, other_bg = (np.asarray(s, dtype=np.float64) for s in SPECTRA[LOOKALIKES[class_name][subtype - 1]])
        return (1 - amount) * fg + amount * other_fg, (1 - amount) * bg + amount * other_bg

    def subtype(self, side: str, label: int, index: int) -> int:
        """The sub-type a sample was drawn with (its scene's first random draw), without rendering it."""
        return int(self._rng(side, label, index).choice(len(SUBTYPES), p=self.sides[side]["subtype_probs"]))

    def ms_image(self, scene: Scene) -> np.ndarray:
        return np.round(scene.reflectance * 10000).astype(np.uint16)

    def rgb_image(self, scene: Scene, rng: np.random.Generator) -> np.ndarray:
        """The RGB sensor: blur (coarser optics), random gain, gamma, 8-bit quantisation noise."""
        linear = scene.reflectance[list(RGB_SOURCE_BANDS)]
        linear = gaussian_filter(linear, sigma=(0, self.shift["blur_sigma"], self.shift["blur_sigma"]))
        gain = self.shift["gain"] * rng.uniform(0.8, 1.2)
        encoded = np.clip(linear * gain, 0, 1) ** (1 / self.shift["gamma"]) * 255
        encoded += rng.normal(0, self.shift["noise_dn"], encoded.shape)
        return np.clip(np.round(encoded), 0, 255).astype(np.uint8)

    def sample(self, side: str, label: int, index: int) -> np.ndarray:
        scene = self.scene(side, label, index)
        if side == "ms":
            return self.ms_image(scene)
        return self.rgb_image(scene, self._rng("rgb", label, index + 1_000_003))

    def paired_rgb(self, label: int, index: int) -> np.ndarray:
        """The RGB view of MS sample (label, index): the symmetric (paired) control.

        Same scene (layout, sub-type, spectra) as the MS sample, rendered with the RGB side's
        appearance (tint and sensor), so that paired and unpaired RGB differ only in which scene
        they show, which is the asymmetry the paper is about."""
        scene = self.scene("ms", label, index, tint_side="rgb")
        return self.rgb_image(scene, self._rng("ms", label, index + 1_000_003))


# the most images per class and side a recipe may ask for: 100x the largest toy, far below what a
# machine cannot hold (the counts decide how many images a build renders)
MAX_PER_CLASS = 100_000


class ToyModality:
    """Source adapter: the sample list and pixels of one side of the toy benchmark.

    A side gives either `samples_per_class` (split by the recipe's hashed fractions) or, from
    recipe v3 on, `split_counts` per class and split: indices [0, train) are train, the next `val`
    are val, the next `test` are test. The generator's images are exchangeable, so an index range is
    as random as a hash, and exact counts keep each split balanced across classes."""

    def __init__(self, generator: ToyGenerator, side: str):
        self.generator, self.side = generator, side
        self.bands = list(BANDS if side == "ms" else RGB_BANDS)
        self.split_counts = _split_counts(generator.sides[side], side)
        self.per_class = sum(self.split_counts.values()) if self.split_counts else _count(
            generator.sides[side].get("samples_per_class"), f"generator.sides.{side}.samples_per_class")
        self.paired = None  # the toy's paired view is rendered on demand (data/mi.py), not stored
        self.paired_absent = None

    def refs(self) -> list[SampleRef]:
        splits = [s for s, n in (self.split_counts or {}).items() for _ in range(n)] or [None] * self.per_class
        return [
            SampleRef(f"toy/{self.side}/{name}/{index:05d}", label, split=split)
            for label, name in enumerate(self.generator.classes)
            for index, split in enumerate(splits)
        ]

    def load(self, ref: SampleRef) -> np.ndarray:
        index = int(ref.source_id.rsplit("/", 1)[1])
        return self.generator.sample(self.side, ref.label, index)

    def provenance(self) -> dict[str, Any]:
        return {"name": "toy generator (synthetic)", "kind": "generated", "seed": self.generator.seed,
                "licence": "CC0 (generated by ackd-bench)"}


def _count(value: Any, where: str) -> int:
    from ..errors import RecipeError

    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_PER_CLASS:
        raise RecipeError(f"toy recipe: {where} must be a whole number from 1 to {MAX_PER_CLASS:,}; got {value!r}"[:300])
    return value


def _split_counts(side_spec: dict[str, Any], side: str) -> dict[str, int] | None:
    """A side's `split_counts` ({train, val, test} -> images per class), checked; None when it has none."""
    from ..errors import RecipeError
    from .splits import SPLITS

    counts = side_spec.get("split_counts")
    if counts is None:
        return None
    where = f"generator.sides.{side}.split_counts"
    if not isinstance(counts, dict) or set(counts) != set(SPLITS):
        raise RecipeError(f"toy recipe: {where} must map exactly {', '.join(SPLITS)} to image counts per class")
    if "samples_per_class" in side_spec:
        raise RecipeError(f"toy recipe: generator.sides.{side} gives both samples_per_class and split_counts; keep one")
    checked = {split: _count(counts[split], f"{where}.{split}") for split in SPLITS}
    _count(sum(checked.values()), f"the sum of {where}")
    return checked


def toy_sources(recipe: Recipe) -> dict[str, ToyModality]:
    generator = ToyGenerator(recipe)
    return {side: ToyModality(generator, side) for side in ("ms", "rgb")}
