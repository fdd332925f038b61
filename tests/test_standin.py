"""The GPU path under CUDA's rules: on the CPU stand-in (`pytest -m standin`, in every CI run) and
on a real GPU (`pytest -m cuda`, step loop under `torch.cuda.set_sync_debug_mode("error")`).

Each run asserts zero host syncs inside its step loop (the periodic non-finite check aside) and no
channels-last input reaching a contiguous convolution."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ackd_bench.experiment import BUILTIN_LOSSES
from ackd_bench.train import standin
from ackd_bench.train.api import RunOptions, train_classifier, train_matcher, train_student
from ackd_bench.train.device import place_module
from ackd_bench.train.request import RunRequest, SemBridgeSettings

from .conftest import REPO

DEVICES = [pytest.param("standin", marks=pytest.mark.standin), pytest.param("cuda", marks=pytest.mark.cuda)]


@pytest.fixture(params=DEVICES)
def on_device(request):
    """(device name, the host syncs seen while the test runs)."""
    if request.param == "standin":
        with standin.standin() as device, standin.checking_host_syncs(device) as syncs:
            yield request.param, syncs
    else:
        with standin.checking_host_syncs(torch.device("cuda")) as syncs:
            yield request.param, syncs


def assert_clean(syncs: standin.HostSyncs, steps_before: int = 0) -> None:
    assert syncs.steps > steps_before, "no training step ran"
    assert syncs.in_steps == [], f"host syncs inside the step loop: {syncs.in_steps[:5]}"
    assert syncs.layout_mismatches == [], syncs.layout_mismatches[:3]


# --- the stand-in itself -------------------------------------------------------------------------

@pytest.mark.standin
def test_standin_tensors_follow_cudas_rules_towards_the_host():
    with standin.standin() as device, standin.checking_host_syncs(device) as syncs:
        x = torch.arange(6.0).to(device)
        assert isinstance(x, standin.DeviceTensor) and x.device == device and x.device != torch.device("cpu")
        with pytest.raises(TypeError, match="can't convert cuda:0 device type tensor to numpy"):
            np.asarray(x)
        with pytest.raises(TypeError, match="can't convert cuda:0"):
            x.numpy()
        with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
            x + torch.ones(6)  # a host tensor of one dimension
        with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
            torch.cat([x, torch.ones(2)])
        # CUDA's stack and cat take no host scalar either (elementwise kernels do, below)
        with pytest.raises(RuntimeError, match=r"stack got a host tensor of shape \(\)"):
            torch.stack([x[0], torch.tensor(1.0)])
        with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
            torch.cat([x[:1], torch.tensor([1.0]).reshape(1)])
        with pytest.raises(RuntimeError, match="indices should be either on cpu or on the same device"):
            torch.ones(6)[x.long()]
        assert isinstance(x * torch.tensor(2.0), standin.DeviceTensor)  # a 0-dim host tensor is a CPU scalar
        assert isinstance(torch.zeros(2, device=x.device), standin.DeviceTensor)  # factories follow device=
        assert isinstance(x[torch.tensor([0, 1])], standin.DeviceTensor)  # host indices into a device tensor
        host = x.cpu()
        assert type(host) is torch.Tensor and host.numpy().tolist() == [0, 1, 2, 3, 4, 5]
        assert type(x.to("cpu")) is torch.Tensor
        assert syncs.total == {"to host": 2}
        x.item() if x.numel() == 1 else x[0].item()
        x.tolist(), float(x[1]), bool(x[2] > 1), x[x > 2], x.nonzero(), torch.unique(x), torch.masked_select(x, x > 1)
        assert syncs.total == {"to host": 2, "item": 1, "tolist": 1, "float": 1, "bool": 1, "boolean mask": 1,
                               "nonzero": 1, "unique": 1, "masked_select": 1}
        with standin.step_loop(device):
            x.sum().item()
            with standin.allowed_sync(device):
                x.sum().item()
        assert len(syncs.in_steps) == 1 and syncs.in_steps[0].startswith("item at ")


@pytest.mark.standin
def test_standin_modules_saved_checkpoints_and_layouts(tmp_path):
    from ackd_bench.models import build_backbone
    from ackd_bench.train.checkpoint import load_checkpoint, save_checkpoint

    with standin.standin() as device, standin.checking_host_syncs(device) as syncs:
        model = place_module(build_backbone("S", 3, 4), device)
        assert all(isinstance(p, standin.DeviceTensor) and isinstance(p, torch.nn.Parameter) for p in model.parameters())
        images = torch.randn(2, 3, 32, 32).to(device).contiguous(memory_format=torch.channels_last)
        loss = model(images)["logits"].sum()
        loss.backward()
        assert all(isinstance(p.grad, standin.DeviceTensor) for p in model.parameters())
        save_checkpoint(tmp_path / "m.pt", {"module": model.state_dict()})
        weights = load_checkpoint(tmp_path / "m.pt")["module"]  # weights-only: plain tensors
        assert all(type(v) is torch.Tensor for v in weights.values())
        assert syncs.layout_mismatches == []
        contiguous = build_backbone("S", 3, 4)  # a module that was never placed: its weights are contiguous
        F.conv2d(images, standin.adopt(contiguous).body[0][0].weight, padding=1)
        assert syncs.layout_mismatches and syncs.layout_mismatches[0].startswith("conv2d: channels-last input")


@pytest.mark.standin
@pytest.mark.parametrize("arch", ["R", "M", "S"])
def test_each_backbone_computes_in_one_layout_whatever_layout_its_input_comes_in(arch):
    """Finding 8 of the acceptance review: ShuffleNetV2's channel shuffle returns NCHW activations to
    channels-last weights, and the matcher's pseudo-RGB (an index_select) is NCHW: the stand-in now
    records a mismatch either way round, and each backbone is placed in, and fed, its own layout."""
    from ackd_bench.models import build_backbone
    from ackd_bench.models.backbones import COMPUTE_LAYOUT

    with standin.standin() as device, standin.checking_host_syncs(device) as syncs:
        model = place_module(build_backbone(arch, 3, 4), device)
        layout = COMPUTE_LAYOUT[model.arch]
        assert model.body[0].weight.is_contiguous(memory_format=layout) if arch == "R" else True
        ms = torch.randn(2, 10, 32, 32).to(device).contiguous(memory_format=torch.channels_last)
        for images in (ms[:, :3].contiguous(memory_format=torch.channels_last),
                       torch.index_select(ms, 1, torch.tensor([2, 1, 0]).to(device)).contiguous()):
            model(images)["logits"].sum().backward()
        assert syncs.layout_mismatches == [], syncs.layout_mismatches[:3]
    if arch == "S":  # the whole ShuffleNetV2 in channels-last, as before: its shuffled activations are NCHW
        with standin.standin() as device, standin.checking_host_syncs(device) as syncs:
            whole = standin.adopt(build_backbone("S", 3, 4).to(memory_format=torch.channels_last))
            whole(torch.randn(2, 3, 32, 32).to(device).contiguous(memory_format=torch.channels_last))
            assert any(m.startswith("conv2d: contiguous input, channels-last weight") for m in syncs.layout_mismatches)


# --- findings of the GPU-path review, each failing on the code before it -------------------------

@pytest.mark.standin
def test_ssm_pairs_a_resident_student_split(mini_toy, mini_matcher):
    """Finding 1: the resident RGB split's labels are a device tensor, which SSM read with numpy."""
    from ackd_bench.data.dataset import ShardDataset, class_galleries
    from ackd_bench.train.engine import Runtime
    from ackd_bench.train.feed import ResidentSplit
    from ackd_bench.train.matcher import load_matcher
    from ackd_bench.train.pairing import ssm_pairs
    from ackd_bench.train.runs import load_dataset

    manifest = load_dataset(mini_toy).manifest
    with standin.standin() as device:
        rt = Runtime(device=device, progress=False)
        rgb = ShardDataset(mini_toy, "rgb", "train", manifest=manifest)
        ms = ShardDataset(mini_toy, "ms", "train", manifest=manifest)
        galleries = class_galleries(ms)
        pairs = ssm_pairs(load_matcher(mini_matcher, manifest), ResidentSplit(rgb, rt), ms, galleries, rt, 16)
    assert pairs.shape == (len(rgb),) and isinstance(pairs, np.ndarray)
    ms_labels = ms.labels
    assert (ms_labels[pairs] == rgb.labels).all()  # every partner is of the student's class


@pytest.mark.standin
@pytest.mark.parametrize("loss", ["rkd", "vpr"])
def test_relational_losses_never_wait_for_the_device(loss):
    """Finding 3: RKD's distance normalisation indexed with a boolean mask (a sync per call)."""
    from ackd_bench.methods import build_distiller
    from ackd_bench.methods.base import mean_normalised

    torch.manual_seed(0)
    student = {"pooled": torch.randn(8, 512), "logits": torch.randn(8, 4)}
    teacher = {"pooled": torch.randn(8, 512), "logits": torch.randn(8, 4)}
    targets = torch.randint(0, 4, (8,))
    expected = build_distiller(loss, 4)(student, teacher, targets, 0)
    with standin.standin() as device, standin.checking_host_syncs(device) as syncs:
        on = {k: v.to(device) for k, v in student.items()}, {k: v.to(device) for k, v in teacher.items()}
        with standin.step_loop(device):
            terms = place_module(build_distiller(loss, 4), device)(*on, targets.to(device), 0)
        assert syncs.in_steps == []
    for key, value in expected.items():
        torch.testing.assert_close(terms[key].cpu(), value)
    d = torch.tensor([[0.0, 2.0], [4.0, 0.0]])
    torch.testing.assert_close(mean_normalised(d), d / 3)  # mean of the positive entries: (2 + 4) / 2
    torch.testing.assert_close(mean_normalised(torch.zeros(2, 2)), torch.zeros(2, 2))


@pytest.mark.standin
def test_a_streamed_run_keeps_its_teacher_cache_on_the_device(mini_toy, mini_teacher, tmp_path):
    """Finding 4: with streamed images the cache stayed on the host: a round trip on every step."""
    with standin.standin() as device, standin.checking_host_syncs(device) as syncs:
        train_student(RunRequest.student_run(mini_toy, "S", "kd", teacher=mini_teacher, profile="smoke",
                                             overrides={"epochs": 1}),
                      RunOptions(run_dir=tmp_path / "kd", device="standin", progress=False, resident="off"))
    assert_clean(syncs)


def test_the_torch_floor_has_the_checkpoint_apis_it_uses():
    """Finding 5: checkpoint loading uses torch.serialization.safe_globals (torch >= 2.5)."""
    import tomllib

    from packaging.requirements import Requirement

    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    torch_requirement = next(Requirement(d) for d in dependencies if Requirement(d).name == "torch")
    assert not torch_requirement.specifier.contains("2.4.1") and torch_requirement.specifier.contains("2.5.0")
    assert hasattr(torch.serialization, "safe_globals") and hasattr(torch.serialization, "get_unsafe_globals_in_checkpoint")


# --- the pipeline on the device --------------------------------------------------------------------

@pytest.mark.parametrize("resident", ["on", "off"])
def test_the_demo_pipeline_makes_no_host_sync_in_its_steps(on_device, mini_toy, tmp_path, resident):
    """Teacher, matcher, student alone, KD and SemBridge (SSM and DynM on), with the teacher cache and
    the live teacher, resident and streamed, as `ackd-bench demo` runs them."""
    device, syncs = on_device

    def options(name):
        return RunOptions(run_dir=tmp_path / name, device=device, progress=False, resident=resident)

    steps = syncs.steps
    teacher = train_classifier(RunRequest.teacher_run(mini_toy, "S", profile="smoke", overrides={"epochs": 1}),
                               options("teacher"))
    assert_clean(syncs, steps)
    teacher_ckpt = Path(teacher["run_dir"]) / "checkpoints" / "best.pt"
    steps = syncs.steps
    matcher = train_matcher(RunRequest.matcher_run(mini_toy, "S", profile="smoke", overrides={"epochs": 1}),
                            options("matcher"))
    assert_clean(syncs, steps)
    matcher_ckpt = Path(matcher["run_dir"]) / "checkpoints" / "best.pt"
    for method, teacher_mode in [("none", "cache"), ("kd", "cache"), ("sembridge", "cache"), ("kd", "live"),
                                 ("sembridge", "live")]:
        steps = syncs.steps
        result = train_student(RunRequest.student_run(mini_toy, "S", method,
                                                      teacher=teacher_ckpt if method != "none" else None,
                                                      matcher=matcher_ckpt, profile="smoke", overrides={"epochs": 1},
                                                      sembridge=SemBridgeSettings(dynm=(0, 1, 0))),
                               replace(options(f"student-{method}-{teacher_mode}"), teacher_mode=teacher_mode))
        assert_clean(syncs, steps)
        assert 0 <= result["oa"] <= 1
        if method == "sembridge":
            state = torch.load(Path(result["run_dir"]) / "checkpoints" / "last.pt", weights_only=False)
            assert state["task_state"]["pairing"]["rematched"] == [0]  # DynM re-matched on the device


def test_every_baseline_alone_and_under_sembridge(on_device, mini_toy, mini_teacher, mini_matcher, tmp_path):
    device, syncs = on_device
    for loss in BUILTIN_LOSSES:
        for method in (loss, f"sembridge+{loss}" if loss != "kd" else "sembridge"):
            steps = syncs.steps
            train_student(RunRequest.student_run(mini_toy, "S", method, teacher=mini_teacher, matcher=mini_matcher,
                                                 profile="smoke", overrides={"epochs": 1},
                                                 sembridge=SemBridgeSettings(dynm=(0, 1, 0))),
                          RunOptions(run_dir=tmp_path / method, device=device, progress=False))
            assert_clean(syncs, steps)


def test_transport_cost_on_the_device(on_device, mini_toy, mini_teacher, tmp_path):
    from ackd_bench.train.transport import transport_cost_from_checkpoints

    device, syncs = on_device
    result = train_student(RunRequest.student_run(mini_toy, "S", "kd", teacher=mini_teacher, profile="smoke",
                                                  overrides={"epochs": 1}),
                           RunOptions(run_dir=tmp_path / "kd", device=device, progress=False, log_transport_cost=True))
    assert_clean(syncs)
    cost = transport_cost_from_checkpoints(mini_toy, mini_teacher, Path(result["run_dir"]) / "checkpoints" / "best.pt",
                                           device=device)
    assert cost["asymmetric"] > 0 and cost["n"] > 1


@pytest.mark.cuda
def test_bench_gpu_code_paths_on_a_tiny_configuration(monkeypatch, capsys):
    """On a GPU, in this process, under the sync checks; on the stand-in it runs as bench/gpu_accept.sh
    runs it, in tests/test_acceptance.py."""
    monkeypatch.syspath_prepend(str(REPO / "bench"))  # spawned K-run children import it too
    import gpu
    with standin.checking_host_syncs(torch.device("cuda")) as syncs:
        gpu.main(["--device", "cuda", "--size", "32", "--batch-size", "16", "--ms-per-class", "16", "--rgb-per-class",
                  "12", "--epochs", "2", "--archs", "S", "--ks", "2", "--k-epochs", "1", "--pure-steps", "1",
                  "--projection-batch", "2", "--build-workers", "0"])
    assert_clean(syncs)
    report = capsys.readouterr().out
    assert "S/S: SemBridge step / KD step = " in report and "projected device-hours" in report
    assert "failed" not in report, report
