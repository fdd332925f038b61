"""A built benchmark in torchgeo: datasets per side, a data module that normalises once, and one
step of torchgeo's own ClassificationTask on toy."""

import numpy as np
import pytest
import torch

lightning = pytest.importorskip("lightning", reason="lightning is not installed (the GPU acceptance image has none)")
trainers = pytest.importorskip("torchgeo.trainers", reason="torchgeo is not installed (the GPU acceptance image has none)")
ClassificationTask = trainers.ClassificationTask

from ackd_bench.data.dataset import ShardDataset
from ackd_bench.data.mi import paired_view
from ackd_bench.data.nongeo import BenchmarkDataModule, BenchmarkDataset
from ackd_bench.errors import DatasetError


def test_each_side_yields_stored_values_and_labels(toy_dir):
    for side, modality in (("rgb", "rgb"), ("ms", "ms")):
        dataset, shards = BenchmarkDataset(toy_dir, "val", side), ShardDataset(toy_dir, modality, "val", normalize=False)
        sample = dataset[3]
        assert torch.equal(sample["image"], shards[3]["image"]) and sample["image"].dtype == torch.float32
        assert int(sample["label"]) == shards.labels[3] and len(dataset) == len(shards)
    paired = BenchmarkDataset(toy_dir, "val", "paired")
    ms = ShardDataset(toy_dir, "ms", "val", normalize=False)
    assert paired[2]["image"].numpy() == pytest.approx(paired_view(ms)(2).astype(np.float32))
    assert int(paired[2]["label"]) == ms.labels[2] and paired.bands == ["R", "G", "B"]
    with pytest.raises(DatasetError, match="side 'sar': expected one of ms, rgb, paired"):
        BenchmarkDataset(toy_dir, "val", "sar")


def test_plot_titles_the_class_and_the_prediction(toy_dir):
    dataset = BenchmarkDataset(toy_dir, "val", "ms")
    sample = dataset[0]
    figure = dataset.plot({**sample, "prediction": torch.tensor(1)}, suptitle="toy")
    title = figure.axes[0].get_title()
    assert f"Label: {dataset.classes[int(sample['label'])]}" in title and f"Prediction: {dataset.classes[1]}" in title
    assert figure.texts[0].get_text() == "toy"


def test_the_data_module_normalises_exactly_once(toy_dir):
    datamodule = BenchmarkDataModule(toy_dir, side="rgb", batch_size=4)
    dataset = BenchmarkDataset(toy_dir, "train", "rgb")
    batch = {"image": torch.stack([dataset[i]["image"] for i in range(4)]),
             "label": torch.stack([dataset[i]["label"] for i in range(4)])}
    normalised = datamodule.aug(batch)["image"]
    expected = torch.stack([ShardDataset(toy_dir, "rgb", "train")[i]["image"] for i in range(4)])  # ackd-bench's own
    assert torch.allclose(normalised, expected, atol=1e-5)


def test_torchgeos_classification_task_fits_a_step_on_a_built_directory(toy_dir, tmp_path):
    datamodule = BenchmarkDataModule(toy_dir, side="rgb", batch_size=8)
    classes = BenchmarkDataset(toy_dir, "train", "rgb").classes
    task = ClassificationTask(model="resnet18", weights=None, in_channels=3, num_classes=len(classes))
    seen = []
    original = task.training_step

    def recording_step(batch, *args, **kwargs):
        seen.append(batch["image"].detach().clone())
        return original(batch, *args, **kwargs)

    task.training_step = recording_step
    before = [p.detach().clone() for p in task.parameters()]
    trainer = lightning.Trainer(max_steps=1, limit_val_batches=1, num_sanity_val_steps=0, logger=False,
                                enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                                accelerator="cpu", default_root_dir=tmp_path)
    trainer.fit(task, datamodule=datamodule)
    assert trainer.global_step == 1 and len(seen) == 1
    assert abs(float(seen[0].mean())) < 3 and 0.2 < float(seen[0].std()) < 5  # standardised once, not /255 again
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, task.parameters()))

