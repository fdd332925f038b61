"""The recipe as a typed object: the same hash as the YAML mapping, its checks' messages, and variants."""

import copy

import pytest

from ackd_bench.data.recipe import Recipe, load_recipe, recipe_hash, recipe_path
from ackd_bench.errors import RecipeError
from ackd_bench.provenance import config_hash
from ackd_bench.untrusted import load_yaml


@pytest.mark.parametrize("name", ["toy", "s2s-eu", "s2s-cn", "m2s-gl"])
def test_the_hash_is_over_the_mapping_as_the_file_holds_it(name):
    path = recipe_path(name)
    assert recipe_hash(load_recipe(name)) == config_hash(load_yaml(path.read_text(), str(path)))


def test_sides_are_typed():
    recipe = load_recipe("m2s-gl")
    ms, rgb = recipe.modalities["ms"], recipe.modalities["rgb"]
    assert ms.multilabel and ms.official_split and ms.min_label_pixels == 144 and ms.cap_per_class == 2000
    assert ms.rgb_bands == ("B04", "B03", "B02") and list(ms.sources) == ["bigearthnet"]
    assert list(rgb.sources) == ["resisc45", "aid"] and rgb.class_maps["aid"]["grassland"] == ["Meadow"]
    assert rgb.sources["aid"]["bands"] == ["R", "G", "B"]  # a source's settings fall back on its side's
    assert load_recipe("s2s-eu").modalities["ms"].paired_rgb == "eurosat_rgb"
    assert load_recipe("s2s-eu").modalities["ms"].band_sets == {
        "recipe": ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"),
        "reference": ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B10", "B11", "B12")}
    assert all(load_recipe(name).modalities["ms"].band_sets == {} for name in ("toy", "s2s-cn", "m2s-gl"))
    toy = load_recipe("toy")
    assert toy.synthetic and toy.source == "toy" and toy.modalities["rgb"].sources == {} and toy.generator["seed"] == 0


def test_a_variant_is_made_from_an_edited_copy_of_raw():
    toy = load_recipe("toy")
    raw = copy.deepcopy(toy.raw)
    raw["image_size"] = 32
    small = Recipe.from_dict(raw, "small toy")
    raw["image_size"] = 16  # later edits of the caller's mapping do not reach the recipe
    assert small.image_size == small.raw["image_size"] == 32 and toy.image_size == 48
    assert recipe_hash(small) != recipe_hash(toy)


@pytest.mark.parametrize("edit, message", [
    (lambda r: r.pop("classes"), "W: missing field(s) classes"),
    (lambda r: r.update(classes=["a", "a"]), "W: field 'classes' must be a non-empty list of distinct names"),
    (lambda r: r["modalities"].pop("rgb"), "W: field 'modalities' must define exactly 'ms' and 'rgb'"),
    (lambda r: r["modalities"]["ms"].pop("bands"), "W: modalities.ms.bands is None: expected a list of 1 to 64 band names"),
    # round four, class 7: values of the wrong type or size ended in tracebacks or gigabytes
    (lambda r: r.update(image_size=200000), "W: image_size is 200000: expected a whole number of pixels from 8 to 1024"),
    (lambda r: r.update(image_size=-5), "W: image_size is -5: expected a whole number of pixels from 8 to 1024"),
    (lambda r: r.update(image_size="64"), "W: image_size is '64': expected a whole number of pixels from 8 to 1024"),
    (lambda r: r.update(modalities=["ms", "rgb"]), "W: modalities is ['ms', 'rgb']: expected a mapping"),
    (lambda r: r["modalities"].update(ms="B02"), "W: modalities.ms is 'B02': expected a mapping"),
    (lambda r: r.update(classes="Forest"),
     "W: classes is 'Forest': expected a list of 1 to 1000 class names (text of at most 64 characters)"),
    (lambda r: r["modalities"]["ms"].update(cap_per_class=10**12),
     "W: modalities.ms.cap_per_class is 1000000000000: expected a whole number from 1 to 10,000,000"),
    (lambda r: r["splits"].update(salt=""), "W: splits.salt must be a non-empty string"),
    (lambda r: r["shards"].update(compression="zip"), "W: shards.compression must be one of lzf, gzip, none"),
    (lambda r: r["shards"].update(max_samples=0), "W: shards.max_samples is 0: expected a whole number from 1 to 1,000,000"),
    (lambda r: r["modalities"]["ms"].update(paired_rgb="eurosat_rgb"),
     "W: modalities.ms.paired_rgb must name its source: {source: NAME}"),
    (lambda r: r["modalities"]["ms"].update(band_sets=["B02"]),
     "W: modalities.ms.band_sets is a list, expected a mapping of reference / recipe to band lists"),
    (lambda r: r["modalities"]["ms"]["band_sets"].update(mine=["B02"]),
     "W: modalities.ms.band_sets: unknown band set 'mine': expected some of reference, recipe"),
    (lambda r: r["modalities"]["ms"]["band_sets"].update(reference=[]),
     "W: modalities.ms.band_sets.reference must be a non-empty list of band names"),
    (lambda r: r["modalities"]["ms"]["band_sets"].update(reference=["B01", "B13"]),
     "W: modalities.ms.band_sets.reference must name distinct stored bands (B01 B02 B03 B04 B05 B06 B07 B08 B8A B09 "
     "B10 B11 B12); B13 not stored"),
    (lambda r: r["modalities"]["ms"]["band_sets"].update(recipe=["B02", "B02"]),
     "W: modalities.ms.band_sets.recipe must name distinct stored bands (B01 B02 B03 B04 B05 B06 B07 B08 B8A B09 "
     "B10 B11 B12)"),
    (lambda r: r["modalities"]["rgb"].update(band_sets={"recipe": ["R"]}),
     "W: modalities.rgb.band_sets: only the MS side selects bands"),
])
def test_untrusted_recipes_are_refused_in_one_line(edit, message):
    raw = copy.deepcopy(load_recipe("s2s-eu").raw)
    edit(raw)
    with pytest.raises(RecipeError) as caught:
        Recipe.from_dict(raw, "W")
    assert str(caught.value) == message
    with pytest.raises(RecipeError, match="W: a recipe must be a mapping"):
        Recipe.from_dict([], "W")
