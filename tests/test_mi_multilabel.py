"""Within-class MI on a multi-label MS side (BigEarthNet in M2S-GL): a patch belongs to every class
it carries, not only to the first one its `labels` column holds."""

import math

import numpy as np
import pytest

from ackd_bench.data.dataset import ShardDataset
from ackd_bench.data.manifest import FORMAT, ShardEntry, dataset_version, write_sealed
from ackd_bench.provenance import sha256_file
from ackd_bench.data.mi import within_class_mi
from ackd_bench.data.shards import SampleRef, band_statistics, content_digest, finalize, write_partial
from ackd_bench.data.dataset import class_galleries

CLASSES = ["forest", "water", "urban"]
# patch -> classes it carries; `labels` keeps only the first, so urban (2) has one first-label patch
# (patch 2) but two members (patches 0 and 2), and water (1) one first-label patch but two members
MS_CLASSES = [(0, 2), (1,), (2,), (0, 1)]
SIZE, BINS = 8, 4


def shard(root, modality, refs, images, **kwargs):
    """Write one finished train shard; return its manifest entry and its modality spec."""
    first = images[0][0] if "paired_shape" in kwargs else images[0]  # (image, paired view) pairs
    partial = write_partial(root / f"{modality}-train-00000.h5", refs, iter(images), modality=modality,
                            shape=first.shape, attrs={"class_names": CLASSES}, compression="gzip", **kwargs)
    mean, std = band_statistics([partial])
    path = finalize(partial, mean, std)
    entry = {"file": path.name, "modality": modality, "split": "train", "samples": len(refs),
             "bytes": path.stat().st_size, "sha256": sha256_file(path), "content_sha256": content_digest(path)}
    spec = {"bands": ["R", "G", "B"], "image_size": [SIZE, SIZE], "mean": mean.tolist(), "std": std.tolist(),
            "dtype": first.dtype.name}
    return entry, spec


@pytest.fixture(scope="module")
def multilabel_dir(tmp_path_factory):
    """4 multi-label MS patches, each with a paired RGB view that copies its pixels (MI = ln BINS)
    except patch 1's, which is unrelated: drawing patch 1 for a class lowers that class's paired MI."""
    root = tmp_path_factory.mktemp("multilabel")
    rng = np.random.default_rng(0)
    scenes = [rng.permutation(SIZE * SIZE).reshape(SIZE, SIZE) for _ in MS_CLASSES]
    paired = [rng.permutation(SIZE * SIZE).reshape(SIZE, SIZE) if i == 1 else s for i, s in enumerate(scenes)]
    ms_refs = [SampleRef(f"ms/{i}", labels[0], labels) for i, labels in enumerate(MS_CLASSES)]
    ms_images = [(np.stack([s] * 3).astype(np.uint16), np.stack([p] * 3).astype(np.uint8))
                 for s, p in zip(scenes, paired)]
    ms_entry, ms_spec = shard(root, "ms", ms_refs, ms_images, num_multilabels=len(CLASSES),
                              paired_shape=(3, SIZE, SIZE))
    rgb_labels = [0, 0, 1, 1, 2, 2]
    rgb_refs = [SampleRef(f"rgb/{i}", c) for i, c in enumerate(rgb_labels)]
    rgb_images = [rng.integers(0, 256, (3, SIZE, SIZE), dtype=np.uint8) for _ in rgb_refs]
    rgb_entry, rgb_spec = shard(root, "rgb", rgb_refs, rgb_images)
    ms_spec.update(multilabel=True, rgb_bands=["R", "G", "B"], paired_rgb={"status": "present"})
    counts = {m: {s: {c: 0 for c in CLASSES} for s in ("train", "val", "test")} for m in ("ms", "rgb")}
    for labels in MS_CLASSES:
        for label in labels:
            counts["ms"]["train"][CLASSES[label]] += 1
    for label in rgb_labels:
        counts["rgb"]["train"][CLASSES[label]] += 1
    shards = [ms_entry, rgb_entry]
    manifest = {"format": FORMAT, "dataset": "multilabel-mi", 
                "dataset_version": dataset_version(ShardEntry(**e) for e in shards),
                "classes": CLASSES, "modalities": {"ms": ms_spec, "rgb": rgb_spec}, "shards": shards, "counts": counts}
    write_sealed(root, manifest)
    return root


def test_a_multilabel_patch_is_a_member_of_every_class_it_carries(multilabel_dir):
    ms = ShardDataset(multilabel_dir, "ms", "train", normalize=False)
    assert ms.labels.tolist() == [0, 1, 2, 0]  # first class only: what the old `labels == c` selected
    members = [g.tolist() for g in class_galleries(ms)]
    assert members == [[0, 3], [1, 3], [0, 2]]  # urban from patches 0 and 2, never patch 1


def test_within_class_mi_draws_each_class_from_its_multilabel_members(multilabel_dir):
    # pairs = 2 draws every member: first-label membership has one water and one urban patch and
    # would refuse with "fewer than --pairs"
    rows = {r["class"]: r for r in within_class_mi(multilabel_dir, pairs=2, bins=BINS)}
    # patches 0, 2, 3 copy their paired view exactly: ln BINS; patch 1 (water only) does not
    assert rows["urban"]["mi_paired"] == pytest.approx(math.log(BINS))
    assert rows["forest"]["mi_paired"] == pytest.approx(math.log(BINS))
    assert rows["water"]["mi_paired"] < math.log(BINS) - 0.1
