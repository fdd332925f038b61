"""M2S-GL from fixtures in the published forms: BigEarthNet v2's metadata, split S2 parts and
reference maps and RESISC45 downloaded over HTTP from 127.0.0.1 (checksums pinned to the fixtures'
own, as torchgeo's tests do), AID from a local tree (its only form)."""

import dataclasses

import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio", reason="rasterio is not installed (the GPU acceptance image has none); `pip install -e .[dev]` brings it")

from ackd_bench.cli import main
from ackd_bench.data.dataset import ShardDataset
from ackd_bench.data.manifest import MANIFEST, read_manifest
from ackd_bench.data.shards import SampleRef
from ackd_bench.data.sources import RESISC45, BigEarthNetV2
from ackd_bench.data.sources.fetch import MIRROR_ENV, md5_file

from .conftest import REALDATA
from .data.aid import data as aid_data
from .data.bigearthnet import data as ben_data
from .data.resisc45 import data as resisc45_data

RESISC45_CLASSES = ("forest", "terrace", "chaparral", "meadow", "lake", "island", "industrial_area", "river",
                    "rectangular_farmland", "circular_farmland", "baseball_diamond", "basketball_court", "golf_course",
                    "ground_track_field", "stadium", "tennis_court", "freeway", "railway", "overpass", "beach",
                    "airport", "runway", "harbor")
MS_BANDS = ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"]
KEPT = [p for p in ben_data.PATCHES if p.categories]


def pin_checksums(monkeypatch, files):
    def pinned(published):
        if published.filename not in files:
            return published
        return dataclasses.replace(published, md5=md5_file(files[published.filename]))

    monkeypatch.setattr(BigEarthNetV2, "metadata", pinned(BigEarthNetV2.metadata))
    monkeypatch.setattr(BigEarthNetV2, "s2_parts", tuple(pinned(p) for p in BigEarthNetV2.s2_parts))
    monkeypatch.setattr(BigEarthNetV2, "map_parts", tuple(pinned(p) for p in BigEarthNetV2.map_parts))


@pytest.fixture
def served(http_server, monkeypatch, tmp_path):
    served, url = http_server
    files = ben_data.make_archives(served)
    pin_checksums(monkeypatch, files)
    archive = resisc45_data.make_archive(served, per_class=2, classes=RESISC45_CLASSES)
    monkeypatch.setattr(RESISC45, "archive", dataclasses.replace(RESISC45.archive, md5=md5_file(archive)))
    monkeypatch.setenv(MIRROR_ENV, url)
    aid_dir = tmp_path / "aid"
    aid_data.make_tree(aid_dir, per_class=2, size=200)
    return served, aid_dir


def test_m2s_gl_streams_the_parts_and_builds(served, tmp_path):
    served_dir, aid_dir = served
    out = tmp_path / "m2s-gl"
    assert main(["build", "m2s-gl", "--out", str(out), "--source-dir", str(aid_dir), "--quiet", "--no-mi"]) == 0
    manifest = read_manifest(out)
    classes = manifest.classes
    assert len(classes) == 15 and manifest.modalities["ms"].multilabel is True
    assert list(manifest.modalities["ms"].bands) == MS_BANDS
    assert manifest.sources["ms"]["excluded_snow_cloud_shadow"] == 2
    # labels: every kept patch carries exactly its categories, in reBEN's official split
    expected = {f"bigearthnet/{p.patch_id}": p for p in KEPT}
    seen = {}
    for split in ("train", "val", "test"):
        ms = ShardDataset(out, "ms", split, normalize=False)
        for i, source_id in enumerate(ms.source_ids()):
            vector = ms.reader.read(i, "multilabels")
            seen[source_id] = (split, tuple(c for c, on in zip(classes, vector) if on))
    assert seen == {sid: ({"validation": "val"}.get(p.split, p.split), p.categories) for sid, p in expected.items()}
    assert manifest.counts["ms"]["train"]["forest"] == 3  # patches 10, 11 and 21 all carry forest
    assert manifest.splits.from_source == ("ms",)
    # pixels: 10 m bands copied, 20 m bands resampled from 60 to 120 px, in recipe band order
    ms = ShardDataset(out, "ms", "train", normalize=False)
    patch_id = ms.source_ids()[0].split("/", 1)[1]
    image = ms.reader.read(0)
    assert image.shape == (10, 120, 120) and image.dtype == np.uint16
    with rasterio.open(served_dir / "bigearthnet-staging" / "BigEarthNet-S2" / ben_data.TILE / patch_id /
                       f"{patch_id}_B08.tif") as src:
        np.testing.assert_array_equal(image[MS_BANDS.index("B08")], src.read(1))
    for band in ("B05", "B8A", "B12"):
        assert (image[MS_BANDS.index(band)] == ben_data.band_constant(band)).all()
    # only the chosen patches' recipe bands were written out of the stream
    extracted = sorted(p.name for p in (out / ".sources" / "bigearthnet" / "BigEarthNet-S2").rglob("*.tif"))
    assert extracted == sorted(f"{p.patch_id}_{b}.tif" for p in KEPT for b in MS_BANDS)
    # RGB: RESISC45 and AID merged per category
    rgb_totals = {c: sum(manifest.counts["rgb"][s][c] for s in ("train", "val", "test")) for c in classes}
    assert rgb_totals["sport"] == 6 * 2 + 3 * 2 and rgb_totals["grassland"] == 2 and rgb_totals["shrub"] == 2
    assert manifest.sources["rgb"]["name"] == "resisc45+aid"
    card = (out / "DATASET.md").read_text()
    assert "| airport | Airports | resisc45:airport; resisc45:runway; aid:Airport |" in card
    assert "reBEN" in card and "AID: A Benchmark" in card
    assert main(["info", str(out)]) == 0
    # nothing is downloaded or decoded twice: a forced rebuild works with the mirror gone
    for path in served_dir.glob("*.*"):
        path.unlink()
    assert main(["build", "m2s-gl", "--out", str(out), "--source-dir", str(aid_dir), "--force", "--quiet",
                 "--no-mi"]) == 0
    assert read_manifest(out).dataset_version == manifest.dataset_version


def test_m2s_gl_from_extracted_trees(tmp_path, monkeypatch, capsys):
    source_dir = tmp_path / "sources"
    ben_data.make_tree(source_dir / "BigEarthNet")  # the reBEN release's layout: one BigEarthNet/ folder
    (source_dir / "BigEarthNet" / "metadata.parquet").replace(source_dir / "metadata.parquet")
    out = tmp_path / "m2s-gl"
    assert main(["build", "m2s-gl", "--out", str(out), "--source-dir", str(source_dir), "--no-download", "--quiet"]) == 2
    err = capsys.readouterr().err  # the user's own file is checked against the published checksum, and left alone
    assert f"metadata.parquet: md5 mismatch for {source_dir / 'metadata.parquet'}: expected 55687065" in err
    assert "kept aside" not in err and (source_dir / "metadata.parquet").is_file()
    pin_checksums(monkeypatch, {"metadata.parquet": source_dir / "metadata.parquet"})
    resisc45_data.make_tree(source_dir, per_class=1, classes=RESISC45_CLASSES, size=128)
    aid_data.make_tree(source_dir, per_class=1, size=150)
    assert main(["build", "m2s-gl", "--out", str(out), "--source-dir", str(source_dir), "--no-download", "--quiet"]) == 0
    # several categories have no MS train patch in this tiny fixture: the dataset is built, MI says why it is not
    assert "within-class MI skipped: class agriculture has 0 MS train samples" in capsys.readouterr().out
    manifest = read_manifest(out)
    assert manifest.sources["ms"]["archive_verified"] is False
    assert sum(e.samples for e in manifest.shards if e.modality == "ms") == len(KEPT)
    assert not (out / ".downloads").exists() and not (out / ".sources" / "bigearthnet" / "BigEarthNet-S2").exists()

    bad = source_dir / "BigEarthNet" / "BigEarthNet-S2" / ben_data.TILE / KEPT[0].patch_id / f"{KEPT[0].patch_id}_B11.tif"
    ben_data.write_raster(bad, np.zeros((120, 120)))
    assert main(["build", "m2s-gl", "--out", str(tmp_path / "b"), "--source-dir", str(source_dir), "--no-download",
                 "--quiet"]) == 2
    assert f"{bad}: 1 band of 120x120, expected 1 band of 60x60" in capsys.readouterr().err
    assert not (tmp_path / "b" / MANIFEST).exists()


def test_m2s_gl_from_published_files_in_source_dir(tmp_path, monkeypatch):
    source_dir = tmp_path / "sources"
    source_dir.mkdir()
    pin_checksums(monkeypatch, ben_data.make_archives(source_dir))  # the parts as published, not extracted
    resisc45_data.make_tree(source_dir, per_class=1, classes=RESISC45_CLASSES, size=128)
    aid_data.make_tree(source_dir, per_class=1, size=150)
    out = tmp_path / "m2s-gl"
    assert main(["build", "m2s-gl", "--out", str(out), "--source-dir", str(source_dir), "--no-download", "--quiet",
                 "--no-mi"]) == 0
    record = read_manifest(out).sources["ms"]
    assert record["archive_verified"] is True and str(source_dir / "BigEarthNet-S2.tar.gzaa") in record["from"]
    assert not (out / ".downloads").exists()
    assert (out / ".sources" / "verified" / "BigEarthNet-S2.tar.gzab.md5-ok").is_file()  # hashed once, not per rebuild
    assert not list(source_dir.glob("*.md5-ok"))  # nothing written into the user's folder


def test_m2s_gl_bad_parts(served, tmp_path, capsys):
    served_dir, aid_dir = served
    part = served_dir / "Reference_Maps.tar.gzaa"
    expected_md5 = BigEarthNetV2.map_parts[0].md5
    part.write_bytes(part.read_bytes()[:-100] + b"x" * 100)
    out = tmp_path / "a"
    assert main(["build", "m2s-gl", "--out", str(out), "--source-dir", str(aid_dir), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "Reference_Maps.tar.gzaa: md5 mismatch for http://127.0.0.1" in err and f"expected {expected_md5}" in err
    assert (out / ".downloads" / "Reference_Maps.tar.gzaa.corrupt").exists() and not (out / MANIFEST).exists()


def test_truncated_s2_part_is_a_clean_error(served, monkeypatch, tmp_path, capsys):
    served_dir, aid_dir = served
    part = served_dir / "BigEarthNet-S2.tar.gzab"
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    pin_checksums(monkeypatch, {p.name: p for p in served_dir.glob("*.*")})  # a published archive that is short
    out = tmp_path / "a"
    assert main(["build", "m2s-gl", "--out", str(out), "--source-dir", str(aid_dir), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    # where the cut falls decides whether gzip/tar notice it or the stream just ends early: both are named
    assert err.startswith("ackd-bench: error: BigEarthNet-S2.tar.gzaa + BigEarthNet-S2.tar.gzab: ")
    assert ("damaged or truncated archive" in err or "not in the archive (truncated?)" in err) and len(err.splitlines()) == 1
    assert not (out / MANIFEST).exists() and not list(out.glob("*.h5"))
    assert not list((out / ".sources").rglob(".*.partial"))


@pytest.mark.skipif(not (REALDATA / "bigearthnet_v2").is_dir(), reason="../shared/realdata/bigearthnet_v2 is absent")
def test_reader_on_real_bigearthnet_v2_patches():
    source = BigEarthNetV2.__new__(BigEarthNetV2)
    source.s2_root = REALDATA / "bigearthnet_v2" / "BigEarthNet" / "BigEarthNet-S2"
    source.bands, source.size = MS_BANDS, 120
    patch = next(source.s2_root.glob("*/*")).name
    image = source.load(SampleRef(f"bigearthnet/{patch}", 0))
    assert image.shape == (10, 120, 120) and image.dtype == np.uint16
    with rasterio.open(source.band_path(patch, "B02")) as src:
        np.testing.assert_array_equal(image[0], src.read(1))
    with rasterio.open(source.band_path(patch, "B05")) as src:
        assert (src.height, src.width) == (60, 60)
        native = src.read(1).astype(float)
    # bilinear upsampling keeps the band's level: block means of the 120 px band match the 60 px band
    upsampled = image[3].astype(float).reshape(60, 2, 60, 2).mean(axis=(1, 3))
    assert abs(upsampled.mean() - native.mean()) < 0.01 * native.mean()


@pytest.mark.skipif(not (REALDATA / "aid_150px").is_dir(), reason="../shared/realdata/aid_150px is absent")
def test_aid_reader_on_real_files(tmp_path):
    from ackd_bench.data.sources import AID

    source = AID({"bands": ["R", "G", "B"], "class_map": {"airport": ["Airport"], "port": ["Port"]}},
                 ["airport", "port"], 120, root=tmp_path, source_dir=REALDATA / "aid_150px", download=False)
    refs = source.refs()
    assert len(refs) == 40 and {r.label for r in refs} == {0, 1}
    assert refs[0].source_id.startswith("aid/Airport/") and source.provenance()["archive_verified"] is False
    image = source.load(refs[0])
    assert image.shape == (3, 120, 120) and image.dtype == np.uint8 and image.std() > 5
