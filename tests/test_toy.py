"""The toy generator: v1 still builds exactly, v2 carries the paper's problem (sub-types that move the
teacher's soft labels, shown only partly on the RGB side, drawn at different rates per side)."""

import copy
import csv
from pathlib import Path

import numpy as np
import pytest

from ackd_bench.data.build import build_dataset
from ackd_bench.data.recipe import Recipe, load_recipe
from ackd_bench.data.toy import SPECTRA, ToyGenerator
from ackd_bench.errors import RecipeError
from ackd_bench.resources import resource_file
from ackd_bench.untrusted import load_yaml

V1 = Path(__file__).parent / "data" / "toy-v1.yaml"
V2 = Path(__file__).parent / "data" / "toy-v2.yaml"


def accepted_versions() -> dict[str, str]:
    with resource_file("leaderboard", "dataset_versions.csv").open() as handle:
        return {row["note"]: row["dataset_version"] for row in csv.DictReader(handle) if row["dataset"] == "toy"}


def v2_generator(size: int = 48, **edits) -> ToyGenerator:
    raw = copy.deepcopy(load_recipe("toy").raw)
    raw["image_size"] = size  # what is counted here does not depend on the size; 8 px renders fast
    for key, value in edits.items():
        node = raw["generator"]
        *path, last = key.split(".")
        for part in path:
            node = node[part]
        node[last] = value
    return ToyGenerator(Recipe.from_dict(raw, "toy"))


def test_the_v1_recipe_still_builds_the_accepted_v1_dataset(tmp_path):
    recipe = Recipe.from_dict(load_yaml(V1.read_text(), str(V1)), str(V1))
    assert "version" not in recipe.generator  # absent = the v1 generator
    built = build_dataset("toy", tmp_path / "toy-v1", recipe=recipe, progress=False)
    versions = accepted_versions()
    assert built.manifest.dataset_version == versions["synthetic toy benchmark, recipe v1"]
    assert built.manifest.dataset_version.startswith("39a303ae3e530850")
    assert load_recipe("toy").version == 3
    assert len(set(versions.values())) == 3  # v2's and v3's rows were added beside v1's


def test_the_v2_recipe_still_builds_the_accepted_v2_dataset(tmp_path):
    recipe = Recipe.from_dict(load_yaml(V2.read_text(), str(V2)), str(V2))
    built = build_dataset("toy", tmp_path / "toy-v2", recipe=recipe, progress=False)
    assert built.manifest.dataset_version == accepted_versions()["synthetic toy benchmark, recipe v2"]
    assert sum(built.manifest.counts["rgb"]["test"].values()) == 109  # the test split v3 replaces


def test_v3_has_3000_balanced_rgb_test_images_and_v2s_ms_side(toy_dir):
    from ackd_bench.data.manifest import read_manifest

    manifest = read_manifest(toy_dir)
    assert manifest.dataset_version == accepted_versions()["synthetic toy benchmark, recipe v3"]
    rgb = manifest.counts["rgb"]
    assert [set(rgb[split].values()) for split in ("train", "val", "test")] == [{60}, {100}, {500}]
    assert sum(rgb["test"].values()) == 3000 and sum(rgb["val"].values()) == 600
    assert manifest.splits.from_source == ("rgb",) and manifest.splits.salt == "toy-v2"
    assert sum(manifest.counts["ms"]["val"].values()) == 151  # v2's MS side, split by the same salt


@pytest.mark.parametrize("counts, message", [
    ({"train": 60, "val": 100}, "must map exactly train, val, test"),
    ({"train": 60, "val": 0, "test": 5}, r"split_counts.val must be a whole number from 1 to 100,000; got 0"),
    ({"train": 60, "val": 10, "test": "5"}, r"split_counts.test must be a whole number"),
    ({"train": 10**9, "val": 10, "test": 5}, r"split_counts.train must be a whole number from 1 to 100,000"),
])
def test_bad_split_counts_are_one_line(counts, message):
    from ackd_bench.data.toy import toy_sources

    raw = copy.deepcopy(load_recipe("toy").raw)
    raw["generator"]["sides"]["rgb"]["split_counts"] = counts
    with pytest.raises(RecipeError, match=message):
        toy_sources(Recipe.from_dict(raw, "toy"))
    raw["generator"]["sides"]["rgb"]["split_counts"] = {"train": 1, "val": 1, "test": 1}
    raw["generator"]["sides"]["rgb"]["samples_per_class"] = 3
    with pytest.raises(RecipeError, match="gives both samples_per_class and split_counts"):
        toy_sources(Recipe.from_dict(raw, "toy"))


def test_v2_sub_types_are_mixed_toward_their_look_alike_class_by_hand():
    generator = v2_generator()
    fg, bg = (np.asarray(s) for s in SPECTRA["Forest"])
    # B08 (index 6): Forest 0.37 / 0.20; AnnualCrop (look-alike 1) 0.45 / 0.22; Residential (2) 0.19 / 0.32
    for subtype, visibility, expected in ((0, 1.0, (0.37, 0.20)), (1, 1.0, (0.75 * 0.37 + 0.25 * 0.45, 0.75 * 0.20 + 0.25 * 0.22)),
                                          (2, 1.0, (0.6 * 0.37 + 0.4 * 0.19, 0.6 * 0.20 + 0.4 * 0.32)),
                                          (2, 0.5, (0.8 * 0.37 + 0.2 * 0.19, 0.8 * 0.20 + 0.2 * 0.32))):
        mixed_fg, mixed_bg = generator._mixed("Forest", subtype, fg, bg, visibility)
        assert (mixed_fg[6], mixed_bg[6]) == pytest.approx(expected)
    # rendered: Forest's sub-type 2 moves the visible red (B04) toward Residential's 0.135 / 0.04
    red = {k: [] for k in range(3)}
    for index in range(150):
        scene = generator.scene("ms", 0, index)
        red[scene.subtype].append(scene.reflectance[2].mean())
    assert np.mean(red[2]) > np.mean(red[0]) + 0.01


def test_v2_rgb_shows_sub_types_only_partly_and_the_sides_draw_them_at_their_rates():
    generator, n = v2_generator(size=8), 3000
    ms = [generator.scene("ms", 1, i) for i in range(n)]
    rgb = [generator.scene("rgb", 1, i) for i in range(n)]
    assert all(s.look == s.subtype for s in ms)
    # an ambiguous RGB image (25%) shows a random sub-type's look: another than its own 2/3 of the time
    # (binomial sd 0.007 at n = 3000)
    assert np.mean([s.look != s.subtype for s in rgb]) == pytest.approx(0.25 * 2 / 3, abs=0.025)
    assert np.bincount([s.subtype for s in ms], minlength=3) / n == pytest.approx([0.5, 0.3, 0.2], abs=0.03)
    assert np.bincount([s.subtype for s in rgb], minlength=3) / n == pytest.approx([0.2, 0.3, 0.5], abs=0.03)
    assert [generator.subtype("rgb", 1, i) for i in range(n)] == [s.subtype for s in rgb]
    never = v2_generator(size=8, **{"sides.rgb.ambiguous": 0.0})
    assert all(never.scene("rgb", 1, i).look == never.scene("rgb", 1, i).subtype for i in range(50))


def test_a_v2_recipe_without_its_settings_is_one_line():
    raw = copy.deepcopy(load_recipe("toy").raw)
    raw["generator"]["subtypes"]["mix"] = [0.0, 0.3]
    with pytest.raises(RecipeError, match="generator.subtypes.mix needs 3 amounts, the first"):
        ToyGenerator(Recipe.from_dict(raw, "toy"))
    raw["generator"]["subtypes"]["mix"] = [0.1, 0.2, 0.3]  # the typical sub-type is not mixed
    with pytest.raises(RecipeError, match=r"the first \(the typical sub-type's\) 0"):
        ToyGenerator(Recipe.from_dict(raw, "toy"))
    del raw["generator"]["sides"]["rgb"]["visibility"]
    with pytest.raises(RecipeError, match="needs numbers at generator.subtypes.mix and generator.sides.rgb.visibility"):
        ToyGenerator(Recipe.from_dict(raw, "toy"))
    raw["generator"]["version"] = 3
    with pytest.raises(RecipeError, match="generator.version 3: expected 1 or 2"):
        ToyGenerator(Recipe.from_dict(raw, "toy"))
