"""S2S-EU from fixtures in the published layouts, downloaded over HTTP from 127.0.0.1 (nothing mocked
but the pinned checksums, which are set to the fixtures' own, as torchgeo's tests do)."""

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

from ackd_bench.cli import main
from ackd_bench.data.dataset import ShardDataset
from ackd_bench.data.manifest import MANIFEST, read_manifest
from ackd_bench.data.shards import SampleRef
from ackd_bench.data.sources import RESISC45, EuroSATAllBands, EuroSATRGB
from ackd_bench.data.sources.fetch import MIRROR_ENV, md5_file

from .conftest import REALDATA
from .data.eurosat import data as eurosat_data
from .data.resisc45 import data as resisc45_data


@pytest.fixture
def served_sources(http_server, monkeypatch):
    served, url = http_server
    archives = {"eurosat": eurosat_data.make_archive(served, per_class=6),
                "eurosat_rgb": eurosat_data.make_rgb_archive(served, per_class=6),
                "resisc45": resisc45_data.make_archive(served, per_class=5)}
    for cls, key in ((EuroSATAllBands, "eurosat"), (EuroSATRGB, "eurosat_rgb"), (RESISC45, "resisc45")):
        monkeypatch.setattr(cls, "archive", dataclasses.replace(cls.archive, md5=md5_file(archives[key])))
    monkeypatch.setenv(MIRROR_ENV, url)
    return served


def test_s2s_eu_downloads_verifies_and_builds(served_sources, tmp_path, capsys):
    out = tmp_path / "s2s-eu"
    assert main(["build", "s2s-eu", "--out", str(out), "--quiet", "--no-mi"]) == 0
    manifest = read_manifest(out)
    assert manifest.classes[0] == "SeaLake" and len(manifest.classes) == 10
    counts = {m: {c: sum(manifest.counts[m][s][c] for s in ("train", "val", "test")) for c in manifest.classes}
              for m in ("ms", "rgb")}
    assert set(counts["ms"].values()) == {6}
    assert counts["rgb"]["Residential"] == 10 and counts["rgb"]["AnnualCrop"] == 5  # two RESISC45 classes merged
    assert list(manifest.modalities["ms"].bands) == ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A",
                                                     "B09", "B10", "B11", "B12"]
    assert manifest.sources["ms"]["archive_verified"] is True and manifest.sources["rgb"]["from"].startswith("http")
    # band order: the shard's band 8 (B8A) is the file's 13th band, B09-B12 its 9th to 12th
    ms = ShardDataset(out, "ms", "train", normalize=False)
    source_id = ms.source_ids()[0]
    _, cls, name = source_id.split("/")
    import rasterio

    with rasterio.open(out / ".sources" / "eurosat" / eurosat_data.TREE / cls / name) as src:
        raw = src.read()
    np.testing.assert_array_equal(ms.reader.read(0)[:8], raw[:8])
    np.testing.assert_array_equal(ms.reader.read(0)[8], raw[12])
    np.testing.assert_array_equal(ms.reader.read(0)[9:], raw[8:12])
    # the paired control: EuroSAT's own JPEG of the same patch, stored next to the MS pixels
    from PIL import Image

    with Image.open(out / ".sources" / "eurosat_rgb" / "2750" / cls / name.replace(".tif", ".jpg")) as jpeg:
        np.testing.assert_array_equal(ms.reader.read(0, "paired_rgb"), np.asarray(jpeg.convert("RGB")).transpose(2, 0, 1))
    assert manifest.modalities["ms"].paired_rgb == {"status": "present", "source": "eurosat_rgb",
                                                          "bands": ["R", "G", "B"]}
    assert manifest.sources["ms_paired_rgb"]["md5"] == EuroSATRGB.archive.md5
    from ackd_bench.data.mi import within_class_mi

    rows = within_class_mi(out, pairs=1, split="train")
    assert all(row["mi_paired"] is not None for row in rows)
    rgb = ShardDataset(out, "rgb", "train", normalize=False)
    assert rgb.reader.read(0).shape == (3, 64, 64) and rgb.reader.read(0).dtype == np.uint8
    assert "Residential" in (out / "DATASET.md").read_text() and "Helber" in (out / "DATASET.md").read_text()
    # nothing is downloaded twice: a forced rebuild works with the mirror gone
    for archive in served_sources.glob("*.zip"):
        archive.unlink()
    assert main(["build", "s2s-eu", "--out", str(out), "--force", "--quiet", "--no-mi"]) == 0
    assert read_manifest(out).dataset_version == manifest.dataset_version
    assert main(["info", str(out)]) == 0


def test_checksum_mismatch_keeps_the_file_aside(http_server, monkeypatch, tmp_path, capsys):
    served, url = http_server
    eurosat_data.make_archive(served, per_class=2)
    monkeypatch.setenv(MIRROR_ENV, url)
    out = tmp_path / "s2s-eu"
    assert main(["build", "s2s-eu", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"md5 mismatch for {url}/EuroSATallBands.zip: expected {EuroSATAllBands.archive.md5}, got " in err
    assert (out / ".downloads" / "EuroSATallBands.zip.corrupt").exists()
    assert not (out / ".downloads" / "EuroSATallBands.zip").exists() and not (out / MANIFEST).exists()


def test_no_download_says_where_to_get_the_archive(tmp_path, capsys):
    assert main(["build", "s2s-eu", "--out", str(tmp_path / "x"), "--no-download", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "EuroSATallBands.zip (2.0 GB) not found" in err and "hf.co/datasets/torchgeo/eurosat" in err


def _source_dir(tmp_path, *, eurosat_classes=eurosat_data.CLASSES, resisc_classes=resisc45_data.S2S_EU_CLASSES):
    source_dir = tmp_path / "sources"
    eurosat_data.make_tree(source_dir, per_class=3, classes=eurosat_classes)
    eurosat_data.make_rgb_tree(source_dir, per_class=3, classes=eurosat_classes)
    resisc45_data.make_tree(source_dir, per_class=3, classes=resisc_classes, size=128)
    return source_dir


def test_missing_paired_rgb_image(tmp_path, capsys):
    source_dir = _source_dir(tmp_path)
    missing = source_dir / "2750" / "River" / "River_2.jpg"
    missing.unlink()
    out = tmp_path / "s2s-eu"
    assert main(["build", "s2s-eu", "--out", str(out), "--source-dir", str(source_dir), "--no-download", "--quiet"]) == 2
    assert f"{missing}: no paired RGB image for MS sample eurosat/River/River_2.tif" in capsys.readouterr().err
    assert not (out / MANIFEST).exists()


def test_builds_from_ms_and_resisc45_alone_then_adds_the_paired_control(tmp_path, capsys):
    source_dir = _source_dir(tmp_path)
    rgb_tree = source_dir / "2750"
    shutil.move(rgb_tree, tmp_path / "later")  # no EuroSAT RGB: the paired control is missing
    out = tmp_path / "s2s-eu"
    args = ["build", "s2s-eu", "--out", str(out), "--source-dir", str(source_dir), "--no-download", "--quiet"]
    assert main([*args, "--require-paired"]) == 2
    assert "EuroSAT.zip (94 MB) not found" in capsys.readouterr().err and not (out / MANIFEST).exists()

    assert main(args) == 0
    captured = capsys.readouterr()
    note = [line for line in captured.err.splitlines() if line.strip()]
    assert len(note) == 1 and note[0].startswith("ackd-bench: building without the MS side's paired control "
                                                 "(eurosat_rgb): EuroSAT.zip (94 MB) not found")
    assert "MI and transport-cost" in note[0] and "--require-paired" in note[0]
    assert "paired control n/a: no paired control" in captured.out  # the build's MI summary
    manifest = read_manifest(out)
    paired = manifest.modalities["ms"].paired_rgb
    assert paired["status"] == "absent" and paired["source"] == "eurosat_rgb" and "EuroSAT.zip" in paired["reason"]
    assert "paired_rgb: absent (eurosat_rgb: EuroSAT.zip" in (out / "DATASET.md").read_text()
    ms = ShardDataset(out, "ms", "train")
    from ackd_bench.data.mi import paired_view
    from ackd_bench.data.shards import has_paired

    assert paired_view(ms) is None and not has_paired(out / manifest.shards[0].file)
    assert main(["mi", str(out), "--pairs", "1"]) == 0
    assert "paired control n/a: no paired control" in capsys.readouterr().out

    # the files arrive later: a plain rebuild adds the control, rewrites only the MS shards, keeps the splits
    rgb_shards = {e.file: (out / e.file).stat().st_mtime_ns for e in manifest.shards if e.modality == "rgb"}
    shutil.move(tmp_path / "later", rgb_tree)
    assert main(args) == 0
    added = read_manifest(out)
    assert added.modalities["ms"].paired_rgb["status"] == "present"
    assert added.dataset_version == manifest.dataset_version  # the version names the training data
    assert added.counts == manifest.counts
    assert ShardDataset(out, "ms", "train").source_ids() == ms.source_ids()
    assert {f: (out / f).stat().st_mtime_ns for f in rgb_shards} == rgb_shards
    assert paired_view(ShardDataset(out, "ms", "train")) is not None
    assert "paired_rgb: present" in (out / "DATASET.md").read_text()


def test_source_dir_with_extracted_trees(tmp_path):
    source_dir = _source_dir(tmp_path)
    out = tmp_path / "s2s-eu"
    assert main(["build", "s2s-eu", "--out", str(out), "--source-dir", str(source_dir), "--no-download", "--quiet",
                 "--no-mi"]) == 0
    manifest = read_manifest(out)
    assert manifest.sources["ms"]["archive_verified"] is False
    assert not (out / ".downloads").exists()


def test_missing_class_folder(tmp_path, capsys):
    source_dir = _source_dir(tmp_path, resisc_classes=[c for c in resisc45_data.S2S_EU_CLASSES if c != "terrace"])
    out = tmp_path / "s2s-eu"
    assert main(["build", "s2s-eu", "--out", str(out), "--source-dir", str(source_dir), "--no-download",
                 "--quiet"]) == 2
    assert "NWPU-RESISC45/terrace: class folder missing (resisc45 class 'terrace', mapped to 'PermanentCrop')" in \
        capsys.readouterr().err
    assert not (out / MANIFEST).exists()


def test_wrong_band_count_and_unreadable_jpeg(tmp_path, capsys):
    source_dir = _source_dir(tmp_path)
    bad_tif = source_dir / eurosat_data.TREE / "Forest" / "Forest_2.tif"
    eurosat_data.write_tif(bad_tif, np.random.default_rng(1), bands=12)
    out = tmp_path / "a"
    assert main(["build", "s2s-eu", "--out", str(out), "--source-dir", str(source_dir), "--no-download", "--quiet"]) == 2
    assert f"{bad_tif}: 12 bands of 64x64, expected 13 bands of 64x64" in capsys.readouterr().err
    assert not (out / MANIFEST).exists() and not list(out.glob("*.h5"))
    assert main(["info", str(out)]) == 2

    eurosat_data.write_tif(bad_tif, np.random.default_rng(1))
    bad_jpg = source_dir / "NWPU-RESISC45" / "lake" / "lake_001.jpg"
    bad_jpg.write_bytes(b"not a jpeg at all")
    out = tmp_path / "b"
    assert main(["build", "s2s-eu", "--out", str(out), "--source-dir", str(source_dir), "--no-download", "--quiet"]) == 2
    assert f"{bad_jpg}: unreadable JPEG" in capsys.readouterr().err
    assert not (out / MANIFEST).exists()


@pytest.mark.skipif(not (REALDATA / "eurosat_ms").is_dir(), reason="../shared/realdata/eurosat_ms is absent")
def test_readers_on_real_eurosat_and_resisc45_files(tmp_path):
    tree = REALDATA / "eurosat_ms" / "EuroSAT_MS"
    eurosat = EuroSATAllBands.__new__(EuroSATAllBands)
    eurosat.tree, eurosat.bands, eurosat.size = tree, ["B02", "B03", "B04", "B8A"], 64
    name = sorted((tree / "Forest").glob("*.tif"))[0].name
    image = eurosat.load(SampleRef(f"eurosat/Forest/{name}", 0))
    assert image.shape == (4, 64, 64) and image.dtype == np.uint16
    import rasterio

    with rasterio.open(tree / "Forest" / name) as src:
        assert src.count == 13
        np.testing.assert_array_equal(image[3], src.read(13))  # B8A is the 13th band of the published files
    resisc = RESISC45.__new__(RESISC45)
    resisc.tree, resisc.size = REALDATA / "resisc45" / "NWPU-RESISC45", 64
    jpg = sorted((resisc.tree / "airplane").glob("*.jpg"))[0].name
    rgb = resisc.load(SampleRef(f"resisc45/airplane/{jpg}", 0))
    assert rgb.shape == (3, 64, 64) and rgb.dtype == np.uint8 and rgb.std() > 5


def test_interrupted_download_resumes_with_a_range_request(served_sources, tmp_path, capsys):
    from .conftest import CUT_AFTER, RANGE_REQUESTS

    CUT_AFTER["EuroSATallBands.zip"] = 1_000_000
    out = tmp_path / "s2s-eu"
    assert main(["build", "s2s-eu", "--out", str(out), "--quiet", "--no-mi"]) == 2
    err = capsys.readouterr().err
    kept = (out / ".downloads" / "EuroSATallBands.zip.part").stat().st_size
    assert 0 < kept <= 1_000_000  # whole blocks received before the cut are kept
    assert "EuroSATallBands.zip: download failed" in err and f"rerun to resume from EuroSATallBands.zip.part ({kept} bytes)" in err
    assert not (out / ".downloads" / "EuroSATallBands.zip").exists() and not (out / MANIFEST).exists()
    assert main(["build", "s2s-eu", "--out", str(out), "--quiet", "--no-mi"]) == 0
    assert RANGE_REQUESTS == [("EuroSATallBands.zip", f"bytes={kept}-")]
    assert md5_file(out / ".downloads" / "EuroSATallBands.zip") == EuroSATAllBands.archive.md5
    assert (out / ".sources" / "verified" / "EuroSATallBands.zip.md5-ok").is_file()


# --- recipe version 2: all 13 bands stored, the profile's band set fed (issue #27, finding 2) --------

STORED = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]
RECIPE_SET = ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"]
REFERENCE_SET = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B10", "B11", "B12"]  # utils/dataset.py:86
V1_RECIPE = Path(__file__).parent / "data" / "s2s-eu-v1.yaml"


@pytest.fixture(scope="module")
def versions(tmp_path_factory):
    """S2S-EU built from the same extracted fixture trees twice: recipe version 1 (tests/data) and 2."""
    from ackd_bench.data.build import build_dataset
    from ackd_bench.data.recipe import Recipe
    from ackd_bench.untrusted import load_yaml

    root = tmp_path_factory.mktemp("s2s-eu-versions")
    source_dir = root / "sources"
    eurosat_data.make_tree(source_dir, per_class=6)
    eurosat_data.make_rgb_tree(source_dir, per_class=6)
    resisc45_data.make_tree(source_dir, per_class=5, size=128)
    v1 = Recipe.from_dict(load_yaml(V1_RECIPE.read_text(), str(V1_RECIPE)), str(V1_RECIPE))
    builds = {}
    for version, recipe in ((1, v1), (2, None)):
        builds[version] = root / f"v{version}"
        build_dataset("s2s-eu", builds[version], recipe=recipe, source_dir=source_dir, download=False, progress=False)
    return source_dir, builds


def test_version_2_stores_all_13_bands_and_keeps_the_samples_and_splits_of_version_1(versions):
    import torch

    from ackd_bench.data.card import render_card
    from ackd_bench.data.mi import within_class_mi
    from ackd_bench.data.splits import SPLITS
    from ackd_bench.train.runs import load_dataset

    source_dir, builds = versions
    v1, v2 = read_manifest(builds[1]), read_manifest(builds[2])
    assert list(v2.modalities["ms"].bands) == STORED and list(v1.modalities["ms"].bands) == RECIPE_SET
    assert v2.modalities["ms"].band_sets == {"recipe": tuple(RECIPE_SET), "reference": tuple(REFERENCE_SET)}
    assert v1.modalities["ms"].band_sets is None and (v1.recipe["version"], v2.recipe["version"]) == (1, 2)
    assert v2.dataset_version != v1.dataset_version  # the version names the stored data
    assert v2.counts == v1.counts and v2.splits.salt == v1.splits.salt == "s2s-eu-v1"
    for modality in ("ms", "rgb"):
        for split in SPLITS:
            assert ShardDataset(builds[2], modality, split).source_ids() == \
                ShardDataset(builds[1], modality, split).source_ids()
    # each stored plane is the file band of its name: the fixture's band k holds 1000 k .. 1000 k + 999
    ms = ShardDataset(builds[2], "ms", "train", normalize=False)
    assert [int(plane.min()) // 1000 for plane in ms.reader.read(0)] == [0, 1, 2, 3, 4, 5, 6, 7, 12, 8, 9, 10, 11]
    _, cls, name = ms.source_ids()[0].split("/")
    import rasterio

    with rasterio.open(source_dir / eurosat_data.TREE / cls / name) as src:
        np.testing.assert_array_equal(ms.reader.read(0), src.read([1, 2, 3, 4, 5, 6, 7, 8, 13, 9, 10, 11, 12]))
    # under `recipe` both versions feed the same tensors: same pixels, same per-band statistics
    for split in SPLITS:
        old, new = (load_dataset(builds[v], "recipe").split("ms", split) for v in (1, 2))
        assert old.bands == new.bands == RECIPE_SET and len(old) == len(new) > 0
        everything = list(range(len(old)))
        assert torch.equal(torch.stack([s["image"] for s in old.__getitems__(everything)]),
                           torch.stack([s["image"] for s in new.__getitems__(everything)]))
    # MI reads the recipe's R, G, B bands (B04, B03, B02) by name among the stored bands: the same on both
    assert within_class_mi(builds[1], pairs=1) == within_class_mi(builds[2], pairs=1)
    card = render_card(v2)
    assert "## Band sets" in card and f"- `reference` (10): {' '.join(REFERENCE_SET)}" in card
    assert f"| MS | {' '.join(STORED)} | 64x64 | uint16 |" in card and "## Band sets" not in render_card(v1)
    from ackd_bench.data.manifest import describe

    assert f"band set reference (10): {' '.join(REFERENCE_SET)}  (options.ms_bands reference)" in describe(v2)


def test_either_band_set_trains_a_teacher_of_ten_bands_with_its_own_cache(versions, tmp_path):
    import json

    import torch

    from ackd_bench.hub import model_card
    from ackd_bench.train.api import RunOptions, train_classifier, train_student
    from ackd_bench.train.checkpoint import CheckpointError
    from ackd_bench.train.engine import Runtime
    from ackd_bench.train.request import RunRequest
    from ackd_bench.train.runs import load_dataset
    from ackd_bench.train.teacher_cache import build_or_load_cache, load_teacher

    data_dir = versions[1][2]
    options = RunOptions(runs_root=tmp_path, progress=False, device="cpu")
    small = {"epochs": 1, "batch_size": 16}
    runs = {band_set: train_classifier(RunRequest.teacher_run(data_dir, "S", profile=profile, overrides=small), options)
            for band_set, profile in (("reference", "paper"), ("recipe", "smoke"))}
    paths = {band_set: Path(run["run_dir"]) / "checkpoints" / "best.pt" for band_set, run in runs.items()}
    for band_set, bands in (("reference", REFERENCE_SET), ("recipe", RECIPE_SET)):
        state = torch.load(paths[band_set], weights_only=True)
        assert state["bands"] == bands and state["in_channels"] == 10
        assert state["module"]["backbone.body.0.0.weight"].shape[1] == 10  # the first convolution's input
        config = json.loads((paths[band_set].parent.parent / "config.json").read_text())
        assert config["options"]["ms_bands"] == band_set and config["bands"] == bands
        assert f"MS bands fed: {' '.join(bands)} " in model_card(config, {"config_hash": config["config_hash"]})
    manifest = read_manifest(data_dir)
    with pytest.raises(CheckpointError) as refused:  # a `paper` teacher in a run that feeds the recipe's set
        load_teacher(paths["reference"], manifest, RECIPE_SET)
    assert str(refused.value) == (f"{paths['reference']}: a teacher of MS bands {' '.join(REFERENCE_SET)}, but this run "
                                  f"feeds {' '.join(RECIPE_SET)} (options.ms_bands): use a teacher trained on the same "
                                  "band set")
    with pytest.raises(CheckpointError, match="a teacher of MS bands B01 B02"):
        train_student(RunRequest.student_run(data_dir, "S", "kd", teacher=paths["reference"], profile="smoke",
                                             overrides=small), RunOptions(run_dir=tmp_path / "never", device="cpu"))
    assert not (tmp_path / "never").exists()
    rt = Runtime(device=torch.device("cpu"), progress=False)
    caches = {band_set: build_or_load_cache(paths[band_set], load_dataset(data_dir, band_set).split("ms", "train"), rt)
              for band_set in paths}
    keys = {band_set: cache.keys for band_set, cache in caches.items()}
    assert keys["reference"]["ms_bands"] == REFERENCE_SET and keys["recipe"]["ms_bands"] == RECIPE_SET
    assert keys["reference"]["dataset_version"] == keys["recipe"]["dataset_version"] == manifest.dataset_version
    assert keys["reference"]["teacher_sha256"] != keys["recipe"]["teacher_sha256"]
    assert caches["reference"].tensors["logits"].shape == caches["recipe"].tensors["logits"].shape == (
        sum(manifest.counts["ms"]["train"].values()), 10)
    with pytest.raises(CheckpointError, match="but this run feeds B02"):  # nor its cache, under the other set
        build_or_load_cache(paths["reference"], load_dataset(data_dir, "recipe").split("ms", "train"), rt)
    # transport cost has no profile: the teacher is fed the bands it was trained on
    from ackd_bench.train.transport import transport_cost_from_checkpoints

    student = train_classifier(RunRequest.student_run(data_dir, "S", "none", profile="smoke", overrides=small), options)
    student_path = Path(student["run_dir"]) / "checkpoints" / "best.pt"
    for band_set in paths:
        cost = transport_cost_from_checkpoints(data_dir, paths[band_set], student_path, split="train", device="cpu")
        assert cost["n"] > 1 and cost["asymmetric"] > 0 and cost["symmetric"] > 0


def test_a_version_1_build_feeds_the_recipe_set_and_names_what_the_reference_set_lacks(versions, tmp_path, capsys):
    from ackd_bench.errors import DatasetError
    from ackd_bench.train.runs import load_dataset

    v1 = versions[1][1]
    assert load_dataset(v1, "recipe").ms_bands == tuple(RECIPE_SET)
    with pytest.raises(DatasetError) as caught:
        load_dataset(v1, "reference")
    assert str(caught.value) == (
        f"{v1}: built from recipe 's2s-eu' version 1, which stores MS bands {' '.join(RECIPE_SET)}; options.ms_bands "
        f"reference selects {' '.join(REFERENCE_SET)} and this build lacks B01 B10: rebuild it with `ackd-bench build "
        "s2s-eu --force` (recipe version 2 stores them)")
    capsys.readouterr()
    assert main(["train-teacher", str(v1), "--arch", "S", "--profile", "paper", "--out", str(tmp_path / "never"),
                 "--device", "cpu", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "this build lacks B01 B10: rebuild it" in err and not (tmp_path / "never").exists()


def test_the_torchgeo_export_holds_all_13_bands(versions):
    from ackd_bench.data.nongeo import BenchmarkDataModule, BenchmarkDataset

    data_dir = versions[1][2]
    dataset = BenchmarkDataset(data_dir, "train", side="ms")
    assert dataset.bands == STORED and dataset[0]["image"].shape == (13, 64, 64)
    assert dataset.rgb_indices == [3, 2, 1]  # B04, B03, B02 for plot()
    assert [int(plane.min()) // 1000 for plane in dataset[0]["image"]] == [0, 1, 2, 3, 4, 5, 6, 7, 12, 8, 9, 10, 11]
    assert BenchmarkDataModule(data_dir, side="ms").mean.shape == (13,)


def test_the_matcher_sees_the_band_set_and_its_pseudo_rgb_finds_its_bands(versions, tmp_path):
    import torch

    from ackd_bench.train.api import RunOptions, train_matcher
    from ackd_bench.train.checkpoint import CheckpointError
    from ackd_bench.train.matcher import build_matcher, load_matcher
    from ackd_bench.train.request import RunRequest
    from ackd_bench.train.runs import load_dataset

    data_dir = versions[1][2]
    manifest = read_manifest(data_dir)
    reference, recipe = ({"pseudo_rgb": mode} for mode in ("first-bands-image-max", "rgb-bands"))
    # the recipe's B04, B03, B02 looked up by name among the bands fed
    assert build_matcher(manifest, "S", recipe, REFERENCE_SET).rgb_indices.tolist() == [3, 2, 1]
    assert build_matcher(manifest, "S", recipe, RECIPE_SET).rgb_indices.tolist() == [2, 1, 0]
    # the reference's pseudo-RGB: the first three bands fed (B01, B02, B03 under `reference`), each image
    # over its own maximum, to [-1, 1] (utils/dataset.py:69-70)
    matcher = build_matcher(manifest, "S", reference, REFERENCE_SET)
    assert matcher.ms_encoder.body[0][0].in_channels == 10 and matcher.rgb_indices.tolist() == [0, 1, 2]
    ms = load_dataset(data_dir, "reference").split("ms", "train")
    raw = torch.from_numpy(ms.reader.read(0)[:3].astype("float64"))
    assert [int(plane.min()) // 1000 for plane in raw] == [0, 1, 2]  # the file's B01, B02, B03
    torch.testing.assert_close(matcher.pseudo_rgb(ms[0]["image"][None])[0].double(), raw / raw.max() * 2 - 1,
                               rtol=1e-5, atol=1e-5)
    run = train_matcher(RunRequest.matcher_run(data_dir, "S", profile="paper", overrides={"epochs": 1, "batch_size": 16}),
                        RunOptions(run_dir=tmp_path / "matcher", device="cpu", progress=False))
    path = Path(run["run_dir"]) / "checkpoints" / "best.pt"
    assert load_matcher(path, manifest, REFERENCE_SET).ms_encoder.body[0][0].in_channels == 10
    with pytest.raises(CheckpointError, match=r"checkpoint has bands=\['B01', 'B02'.*expected \['B02', 'B03'"):
        load_matcher(path, manifest, RECIPE_SET)
