"""S2S-CN: NaSC-TG2 multispectral from a local tree (its only form), RESISC45 downloaded over HTTP
from 127.0.0.1 (checksum pinned to the fixture's own, as torchgeo's tests do)."""

import dataclasses

import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio", reason="rasterio is not installed (the GPU acceptance image has none); `pip install -e .[dev]` brings it")

from ackd_bench.cli import main
from ackd_bench.data.dataset import ShardDataset
from ackd_bench.data.manifest import MANIFEST, read_manifest
from ackd_bench.data.sources import RESISC45
from ackd_bench.data.sources.fetch import MIRROR_ENV, md5_file

from .data.nasc_tg2 import data as nasc_data
from .data.resisc45 import data as resisc45_data


@pytest.fixture
def sources(http_server, monkeypatch, tmp_path):
    served, url = http_server
    archive = resisc45_data.make_archive(served, per_class=3, classes=nasc_data.RESISC45_NAMESAKES)
    monkeypatch.setattr(RESISC45, "archive", dataclasses.replace(RESISC45.archive, md5=md5_file(archive)))
    monkeypatch.setenv(MIRROR_ENV, url)
    source_dir = tmp_path / "nasc"
    nasc_data.make_tree(source_dir, per_class=3)
    return source_dir


def test_s2s_cn_builds_from_a_local_nasc_tg2_tree(sources, tmp_path):
    out = tmp_path / "s2s-cn"
    assert main(["build", "s2s-cn", "--out", str(out), "--source-dir", str(sources), "--quiet", "--no-mi"]) == 0
    manifest = read_manifest(out)
    assert list(manifest.classes) == list(nasc_data.CLASSES)
    assert list(manifest.modalities["ms"].bands) == [f"B{i:02d}" for i in range(1, 15)]
    assert manifest.modalities["ms"].image_size == (128, 128) == manifest.modalities["rgb"].image_size
    totals = {m: {c: sum(manifest.counts[m][s][c] for s in ("train", "val", "test")) for c in manifest.classes}
              for m in ("ms", "rgb")}
    assert set(totals["ms"].values()) == {3}
    assert totals["rgb"]["residential"] == 6 and totals["rgb"]["snowberg"] == 3
    assert manifest.sources["ms"]["archive_verified"] is False
    assert manifest.sources["rgb"]["archive_verified"] is True
    ms = ShardDataset(out, "ms", "train", normalize=False)
    _, cls, name = ms.source_ids()[0].split("/")
    with rasterio.open(sources / "MS" / cls / name) as src:
        np.testing.assert_array_equal(ms.reader.read(0), src.read())  # all 14 bands, file order, no resampling
    assert ms.reader.read(0, "paired_rgb").shape == (3, 128, 128)  # the release's JPEG of the same scene
    assert manifest.sources["ms_paired_rgb"]["name"] == "nasc_tg2_rgb"
    rgb = ShardDataset(out, "rgb", "test", normalize=False)
    assert rgb.reader.read(0).shape == (3, 128, 128)  # 256 px RESISC45 scenes downsampled to the MS size
    card = (out / "DATASET.md").read_text()
    assert "Tiangong-2" in card and "| residential | residential | dense_residential; medium_residential |" in card
    assert main(["info", str(out)]) == 0


def test_splits_are_stable_when_files_are_added(sources, tmp_path, capsys):
    out = tmp_path / "s2s-cn"
    assert main(["build", "s2s-cn", "--out", str(out), "--source-dir", str(sources), "--quiet"]) == 0
    # MI runs with as many pairs as the smallest class allows, and has the paired control
    printed = capsys.readouterr().out
    assert "within-class MI (nats, mean over classes)" in printed and "paired control n/a" not in printed

    def splits(root):
        return {sid: split for split in ("train", "val", "test")
                for sid in ShardDataset(root, "ms", split, normalize=False).source_ids()}

    before = splits(out)
    nasc_data.make_tree(tmp_path / "more", per_class=5, seed=7)
    for name in nasc_data.CLASSES:  # two new scenes per class, the old ones untouched
        for n in (4, 5):
            for kind, ext in (("MS", "tif"), ("RGB", "jpg")):
                (tmp_path / "more" / kind / name / f"{name}_{n}.{ext}").replace(sources / kind / name / f"{name}_{n}.{ext}")
    grown = tmp_path / "grown"
    assert main(["build", "s2s-cn", "--out", str(grown), "--source-dir", str(sources), "--quiet", "--no-mi"]) == 0
    after = splits(grown)
    assert len(after) == len(before) + 20 and all(after[sid] == split for sid, split in before.items())


def test_missing_nasc_tg2_directory_says_where_it_is_published(sources, tmp_path, capsys):
    out = tmp_path / "s2s-cn"
    assert main(["build", "s2s-cn", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ackd-bench: error: nasc_tg2_ms is not on any hub and no --source-dir was given: "
                          "download it from http://www.msadc.cn/")
    assert "MS/<class>/*.tif (14-band 128x128 GeoTIFFs; classes beach, circularfarmland," in err
    assert len(err.splitlines()) == 1 and not (out / MANIFEST).exists()


def test_nasc_tg2_raster_of_the_wrong_size_or_dtype(sources, tmp_path, capsys):
    bad = sources / "MS" / "desert" / "desert_2.tif"
    nasc_data.write_tif(bad, np.random.default_rng(0), size=64)
    assert main(["build", "s2s-cn", "--out", str(tmp_path / "a"), "--source-dir", str(sources), "--quiet"]) == 2
    assert f"{bad}: 14 bands of 64x64, expected 14 bands of 128x128" in capsys.readouterr().err
    nasc_data.write_tif(bad, np.random.default_rng(0), dtype="float32")
    assert main(["build", "s2s-cn", "--out", str(tmp_path / "b"), "--source-dir", str(sources), "--quiet"]) == 2
    assert f"{bad}: dtype float32, expected uint16 (or uint8) reflectance" in capsys.readouterr().err
    assert not list((tmp_path / "b").glob("*.h5")) and not (tmp_path / "b" / MANIFEST).exists()


def test_unreadable_tiff(sources, tmp_path, capsys):
    bad = sources / "MS" / "forest" / "forest_1.tif"
    bad.write_bytes(b"II*\x00 truncated")
    assert main(["build", "s2s-cn", "--out", str(tmp_path / "a"), "--source-dir", str(sources), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ackd-bench: error: {bad}: unreadable GeoTIFF") and len(err.strip().splitlines()) == 1
