"""S2S-EU from fixtures in the published layouts, downloaded over HTTP from 127.0.0.1 (nothing mocked
but the pinned checksums, which are set to the fixtures' own, as torchgeo's tests do)."""

import dataclasses
import shutil

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
    assert list(manifest.modalities["ms"].bands) == ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"]
    assert manifest.sources["ms"]["archive_verified"] is True and manifest.sources["rgb"]["from"].startswith("http")
    # band order: the shard's band 7 (B8A) is the file's 13th band
    ms = ShardDataset(out, "ms", "train", normalize=False)
    source_id = ms.source_ids()[0]
    _, cls, name = source_id.split("/")
    import rasterio

    with rasterio.open(out / ".sources" / "eurosat" / eurosat_data.TREE / cls / name) as src:
        raw = src.read()
    np.testing.assert_array_equal(ms.reader.read(0)[7], raw[12])
    np.testing.assert_array_equal(ms.reader.read(0)[8:], raw[10:12])
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
