import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from ackd_bench.data.dataset import ShardDataset
from ackd_bench.data.manifest import MANIFEST, read_manifest
from ackd_bench.data.shards import SampleRef, band_statistics, finalize, read_text, write_partial
from ackd_bench.errors import DatasetError


def _write(tmp_path, name, images, refs, modality="ms", num_multilabels=None):
    partial = write_partial(
        tmp_path / name, refs, iter(images), modality=modality, shape=images[0].shape,
        attrs={"band_names": ["a", "b"], "class_names": ["x", "y", "z"]}, compression="gzip",
        num_multilabels=num_multilabels,
    )
    return partial


def test_round_trip_values_dtypes_labels_multilabels_ids(tmp_path):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 65535, size=(2, 5, 4), dtype=np.uint16) for _ in range(3)]
    refs = [SampleRef("src/a.tif", 0, (0, 2)), SampleRef("src/b.tif", 2, (1,)), SampleRef("src/ü.tif", 1, ())]
    partial = _write(tmp_path, "ms-train-00000.h5", images, refs, num_multilabels=3)
    assert partial.name == "ms-train-00000.h5.partial"
    assert not (tmp_path / "ms-train-00000.h5").exists()
    mean, std = band_statistics([partial])
    stacked = np.stack(images).astype(np.float64)
    np.testing.assert_allclose(mean, stacked.mean(axis=(0, 2, 3)))
    np.testing.assert_allclose(std, stacked.std(axis=(0, 2, 3)))
    final = finalize(partial, mean, std)
    assert not partial.exists()
    with h5py.File(final, "r") as handle:
        assert handle["images"].dtype == np.uint16
        assert handle["images"].chunks == (1, 2, 5, 4)
        assert handle["images"].compression == "gzip" and handle["images"].shuffle
        assert read_text(handle.attrs["compression"]) == "gzip"
        np.testing.assert_array_equal(handle["images"][()], np.stack(images))
        assert handle["labels"].dtype == np.int16
        assert list(handle["labels"][()]) == [0, 2, 1]
        assert list(handle["source_ids"].asstr("utf-8")[()]) == ["src/a.tif", "src/b.tif", "src/ü.tif"]
        np.testing.assert_array_equal(handle["multilabels"][()], [[1, 0, 1], [0, 1, 0], [0, 0, 0]])
        assert handle["multilabels"].dtype == np.uint8
        np.testing.assert_allclose(handle.attrs["mean"], mean)
        assert read_text(handle.attrs["band_names"]) == ["a", "b"]


def test_wrong_image_shape_leaves_no_file(tmp_path):
    images = [np.zeros((2, 4, 4), np.uint8), np.zeros((3, 4, 4), np.uint8)]
    refs = [SampleRef("one", 0), SampleRef("two", 0)]
    with pytest.raises(DatasetError, match=r"two: image has shape \(3, 4, 4\), expected \(2, 4, 4\)"):
        _write(tmp_path, "rgb-val-00000.h5", images, refs, modality="rgb")
    assert list(tmp_path.iterdir()) == []


def test_dataset_normalises_with_train_statistics(toy_dir):
    manifest = read_manifest(toy_dir)
    ds = ShardDataset(toy_dir, "ms", "val")
    raw = ShardDataset(toy_dir, "ms", "val", normalize=False)
    sample, raw_sample = ds[3], raw[3]
    assert sample["image"].dtype == torch.float32
    assert sample["image"].shape == (10, 48, 48)
    mean = torch.tensor(manifest.modalities["ms"].mean).view(-1, 1, 1)
    std = torch.tensor(manifest.modalities["ms"].std).view(-1, 1, 1)
    torch.testing.assert_close(sample["image"], ((raw_sample["image"] - mean) / std).float())
    assert sample["label"] == ds.labels[3]
    batch = ds.__getitems__([3, 0])
    torch.testing.assert_close(batch[0]["image"], sample["image"])
    assert [b["index"] for b in batch] == [3, 0]
    # over the train split the normalised bands are centred with unit spread
    train = ShardDataset(toy_dir, "ms", "train")
    stack = torch.stack([train[i]["image"] for i in range(len(train))])
    torch.testing.assert_close(stack.mean(dim=(0, 2, 3)), torch.zeros(10), atol=1e-3, rtol=0)
    torch.testing.assert_close(stack.std(dim=(0, 2, 3)), torch.ones(10), atol=1e-3, rtol=0)


def test_counts_and_labels_match_manifest(toy_dir):
    manifest = read_manifest(toy_dir)
    for modality in ("ms", "rgb"):
        for split in ("train", "val", "test"):
            ds = ShardDataset(toy_dir, modality, split)
            expected = manifest.counts[modality][split]
            assert len(ds) == sum(expected.values())
            counts = np.bincount(ds.labels, minlength=len(manifest.classes))
            assert dict(zip(manifest.classes, counts.tolist())) == expected


def test_lazy_reader_under_two_worker_dataloader(toy_dir):
    ds = ShardDataset(toy_dir, "rgb", "train")
    assert len(ds.reader.paths) == 2  # the train split spans more than one shard
    loader = DataLoader(ds, batch_size=32, num_workers=2, shuffle=False)
    batches = list(loader)
    assert ds.reader._handles == {}  # the parent never opened a file: workers did
    images = torch.cat([b["image"] for b in batches])
    indices = torch.cat([b["index"] for b in batches])
    assert images.shape == (len(ds), 3, 48, 48)
    assert indices.tolist() == list(range(len(ds)))
    for i in (0, 255, 256, len(ds) - 1):  # either side of the shard boundary
        torch.testing.assert_close(images[i], ds[i]["image"])


def test_dataset_rejects_unknown_modality_and_split(toy_dir):
    with pytest.raises(DatasetError, match="unknown modality 'sar'"):
        ShardDataset(toy_dir, "sar", "train")
    with pytest.raises(DatasetError, match="unknown split 'dev'"):
        ShardDataset(toy_dir, "ms", "dev")


def test_manifest_records_provenance(toy_dir):
    manifest = read_manifest(toy_dir)
    assert (toy_dir / MANIFEST).exists()
    assert manifest.synthetic is True
    assert len(manifest.recipe_hash) == 64 and len(manifest.dataset_version) == 64
    assert manifest.code_version.startswith("0.")
    assert manifest.sources["ms"]["seed"] == 0
    assert {e.file for e in manifest.shards} == {p.name for p in toy_dir.glob("*.h5")}
