"""Device faults a stand-in for one GPU cannot show (the acceptance review's findings 4-7): each test
fails on the code before its fix, on the CPU stand-in, on two gloo ranks, or, where only CUDA or NCCL
could show the fault, as the decision the run makes (which settings, in which order)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from ackd_bench.errors import AckdError
from ackd_bench.train import distributed, standin
from ackd_bench.train.checkpoint import cuda_state_for, rank_rng_state, rng_state, set_rng_state
from ackd_bench.train.distributed import DistContext, group_settings
from ackd_bench.train.engine import TermSums, TrainingError, for_ranks, snapshot
from ackd_bench.train.feed import RESIDENT_SHARE, memory_budget, reusable_bytes

GiB = 1024**3


# --- finding 4: a device-side snapshot, copied to the host only when written ---------------------

@pytest.mark.standin
def test_an_epoch_that_does_not_save_keeps_its_state_on_the_device():
    with standin.standin() as device, standin.checking_host_syncs(device) as syncs:
        model = nn.Linear(4, 2)
        standin.adopt(model)
        optimizer = torch.optim.Adam(model.parameters())
        model(torch.randn(3, 4).to(device)).sum().backward()
        optimizer.step()
        kept = snapshot({"module": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 3})
        assert syncs.total["to host"] == 0  # the old host_copy moved every tensor: 260 MB for ResNet34 + Adam
        tensors = [*kept["module"].values(), *kept["optimizer"]["state"][0].values()]
        assert all(isinstance(t, standin.DeviceTensor) for t in tensors if t.dim() > 0)
        before = model.weight.detach().cpu().clone()
        with torch.no_grad():
            model.weight.add_(1.0)  # training goes on: the snapshot does not move with it
        assert torch.equal(kept["module"]["weight"].cpu(), before) and kept["epoch"] == 3


# --- finding 5: each rank's own generators, only its own device's CUDA state ------------------------

def test_a_checkpoints_cuda_state_is_its_own_devices_and_older_ones_never_index_past_the_gpus():
    mine, theirs = torch.zeros(16, dtype=torch.uint8), torch.ones(16, dtype=torch.uint8)
    assert cuda_state_for(mine, torch.device("cuda", 1)) is mine  # one device's state, whichever index
    older = [theirs, mine]  # get_rng_state_all() of a 2-GPU run
    assert cuda_state_for(older, torch.device("cuda", 1)) is mine
    assert cuda_state_for(older, torch.device("cuda", 3)) is None  # was older[3]: IndexError
    assert cuda_state_for(older, torch.device("cpu")) is None and cuda_state_for(None, torch.device("cuda", 0)) is None
    assert "cuda" not in rng_state(torch.device("cpu"))


def test_a_rank_resumes_with_its_own_generators_or_the_main_ranks_on_another_layout():
    payload = {"rng": "rank 0's", "rng_ranks": ["rank 0's", "rank 1's"]}
    assert rank_rng_state(payload, 1, 2) == "rank 1's"
    assert rank_rng_state(payload, 1, 4) == "rank 0's"  # written by 2 ranks, resumed by 4
    assert rank_rng_state({"rng": "rank 0's"}, 1, 2) == "rank 0's"  # a checkpoint older than rng_ranks


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _on_two_ranks(rank: int, port: int, check: str, results: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    ctx = DistContext(rank, 2, rank)
    try:
        results[rank] = CHECKS[check](ctx)
    except Exception as exc:  # noqa: BLE001 - the parent compares what each rank saw
        results[rank] = f"{type(exc).__name__}: {exc}"
    finally:
        dist.destroy_process_group()


def _rank_generators(ctx: DistContext):
    """Each rank draws with its own generators (data-order or augmentation draws differ by rank), saves
    as the engine does, draws on, then restores and draws again: a resumed run must draw the same."""
    from ackd_bench.train.engine import Engine

    torch.manual_seed(100 + ctx.rank)
    engine = Engine.__new__(Engine)
    engine.rt = type("Runtime", (), {"device": torch.device("cpu"), "ctx": ctx})()
    written = [engine._rng()]  # the main rank writes its own and every rank's; every rank reads that file
    dist.broadcast_object_list(written, src=0)
    payload = written[0]
    expected = torch.rand(3).tolist()
    torch.rand(5)  # the run went on before it stopped
    set_rng_state(rank_rng_state(payload, ctx.rank, ctx.world_size), torch.device("cpu"))
    return torch.rand(3).tolist() == expected


def _non_finite_on_one_rank(ctx: DistContext):
    """Rank 1 alone sees a NaN loss: both ranks must stop, each with one line."""
    sums = TermSums(ctx, torch.device("cpu"))
    loss = torch.tensor(float("nan") if ctx.rank == 1 else 0.5)
    sums.add(0, {"loss": loss, "task": loss})
    try:
        sums.check(0, "last.pt")
    except TrainingError as exc:
        return str(exc)
    return "went on"


CHECKS = {"generators": _rank_generators, "non-finite": _non_finite_on_one_rank}


def _two_ranks(check: str) -> dict:
    results = mp.Manager().dict()
    mp.start_processes(_on_two_ranks, args=(_free_port(), check, results), nprocs=2, join=True, start_method="spawn")
    return dict(results)


def test_every_rank_restores_its_own_generators_on_two_gloo_ranks():
    assert _two_ranks("generators") == {0: True, 1: True}  # rank 1 restored rank 0's before


def test_a_non_finite_loss_on_one_rank_stops_every_rank_in_one_line():
    seen = _two_ranks("non-finite")
    assert seen[1].startswith("non-finite loss at epoch 1, step 1 (loss=nan, task=nan); last good checkpoint: last.pt")
    assert seen[0] == "non-finite loss on another rank at epoch 1; this rank stops with it; last good checkpoint: last.pt"


# --- finding 6: NCCL bound to the rank's GPU, set first; SyncBatchNorm on request ---------------------

def test_a_gpu_rank_sets_its_device_then_joins_bound_to_it(monkeypatch):
    calls = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: calls.append(("set_device", device)))
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda **kw: calls.append(("init_process_group", kw)))
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    gpu = torch.device("cuda", 1)
    assert distributed.init_from_env(gpu) == DistContext(1, 2, 1)
    assert calls == [("set_device", gpu), ("init_process_group", {"backend": "nccl", "device_id": gpu})]
    assert group_settings(torch.device("cpu")) == {"backend": "gloo"}


def test_sync_batchnorm_is_opt_in_and_needs_gpus(tmp_path):
    from ackd_bench.models import build_backbone
    from ackd_bench.train.api import RunOptions, make_runtime

    def norms(module):
        return {type(m).__name__ for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}

    assert norms(for_ranks(build_backbone("S", 3, 4), sync_batchnorm=False)) == {"BatchNorm2d"}
    assert norms(for_ranks(build_backbone("S", 3, 4), sync_batchnorm=True)) == {"SyncBatchNorm"}
    with pytest.raises(AckdError, match="--sync-batchnorm: needs CUDA GPUs under torchrun"):
        make_runtime(RunOptions(device="cpu", sync_batchnorm=True))


# --- finding 7: the allocator's cache counts as free; an out-of-memory error is one line -------------

def test_the_resident_budget_counts_what_the_allocator_holds_unused(monkeypatch):
    assert reusable_bytes(1 * GiB, 10 * GiB, 2 * GiB) == 9 * GiB
    assert reusable_bytes(1 * GiB, 2 * GiB, 2 * GiB) == 1 * GiB
    gpu = torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (1 * GiB, 80 * GiB))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device: 10 * GiB)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device: 2 * GiB)
    assert memory_budget(gpu) == int(9 * GiB * RESIDENT_SHARE)  # an earlier run's cached blocks: 8 GiB more


def test_running_out_of_device_memory_is_one_line_naming_what_to_change(mini_toy, tmp_path, cli, monkeypatch):
    from ackd_bench.models.backbones import Backbone

    def out_of_memory(self, x):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.1 GiB total)")

    monkeypatch.setattr(Backbone, "forward", out_of_memory)
    done = cli("train-teacher", str(mini_toy), "--arch", "S", "--profile", "smoke", "--epochs", "1", "--batch-size", "8",
               "--out", str(tmp_path / "run"), "--quiet", "--device", "cpu")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    line = done.stderr.strip()
    assert line.startswith(f"ackd-bench: error: {tmp_path / 'run'}: out of device memory (CUDA out of memory) at batch "
                           "size 8, --resident auto, 1 run(s) at once on this device: lower --batch-size, pass "
                           "--resident off, or run fewer at once (--runs-per-gpu)")
    assert Path(tmp_path / "run").is_dir()  # resumable: its folder stays
