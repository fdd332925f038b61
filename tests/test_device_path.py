"""The GPU path, checked on the CPU: device resolution, the device-resident data path against the
streamed one, deferred finite-loss checks, time- and signal-triggered checkpoints."""

import csv
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from torch import nn

from ackd_bench.data.dataset import ShardDataset
from ackd_bench.errors import AckdError
from ackd_bench.train.api import RunOptions, train_student
from ackd_bench.train.device import resolve_device
from ackd_bench.train.engine import FINITE_CHECK_STEPS, Engine, OptimConfig, Preempted, Runtime, Task, TrainingError
from ackd_bench.train.feed import ResidentSplit, StreamedSplit, TrainFeed, decide_resident, plan_epoch
from ackd_bench.train.request import RunRequest, SemBridgeSettings

CPU = Runtime(device=torch.device("cpu"), progress=False)


# --- device resolution -------------------------------------------------------------------------

@pytest.fixture
def gpus(monkeypatch):
    """Pretend this machine has N visible GPUs (only CUDA's availability and count are stubbed)."""
    def set_count(count: int):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return set_count


def test_device_names_resolve_to_an_indexed_device(gpus, monkeypatch):
    gpus(0)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    gpus(2)
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("CUDA") == torch.device("cuda", 0)
    assert resolve_device("cpu") == torch.device("cpu")  # an explicit CPU stays on the CPU
    monkeypatch.setenv("LOCAL_RANK", "1")  # torchrun: each process takes its own GPU
    assert resolve_device("auto") == torch.device("cuda", 1)
    assert resolve_device("cuda") == torch.device("cuda", 1)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)  # an explicit index wins


def test_device_errors_are_one_line_and_name_the_visible_gpus(gpus, monkeypatch):
    gpus(0)
    with pytest.raises(AckdError, match=r"^--device cuda: CUDA is not available on this machine$"):
        resolve_device("cuda")
    gpus(1)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    with pytest.raises(AckdError, match=r"cuda:2: only 1 GPU\(s\) are visible \(CUDA_VISIBLE_DEVICES=3\): expected cuda:0 to cuda:0"):
        resolve_device("cuda:2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(AckdError, match=r"LOCAL_RANK=1 but only 1 GPU\(s\) are visible"):
        resolve_device("auto")
    for bad in ("gpu", "cuda:x", "mps0"):
        with pytest.raises(AckdError, match=f"--device {bad}: expected auto, cpu, cuda or cuda:N"):
            resolve_device(bad)


# --- resident and streamed data paths ----------------------------------------------------------

def test_epoch_plan_drops_a_partial_last_batch_and_splits_ranks():
    from ackd_bench.train.distributed import DistContext

    plan = plan_epoch(10, 4, seed=1, epoch=0, ctx=DistContext(), augment=["hflip"], stream=2)
    assert plan.bounds == [(0, 4), (4, 8)]
    assert sorted(plan.order.tolist()) == list(range(10))
    assert not plan.flips[:, :, 1].any() and plan.flips[:, :, 0].any()  # vflip not asked for
    assert plan_epoch(3, 4, 1, 0, DistContext(), [], 2).bounds == [(0, 3)]  # a lone batch is kept
    ranks = [plan_epoch(10, 4, 1, 0, DistContext(rank=r, world_size=2), [], 2) for r in (0, 1)]
    assert [p.bounds for p in ranks] == [[(0, 2), (2, 4)]] * 2
    assert set(ranks[0].order.tolist()) | set(ranks[1].order.tolist()) == set(range(10))
    assert plan_epoch(10, 4, 1, 1, DistContext(), [], 2).order.tolist() != plan.order.tolist()


@pytest.mark.parametrize("modality,workers", [("rgb", 0), ("ms", 2)])
def test_resident_and_streamed_feeds_give_identical_batches(mini_toy, modality, workers):
    dataset = ShardDataset(mini_toy, modality, "train")
    rt = Runtime(device=torch.device("cpu"), progress=False, workers=workers)
    resident = TrainFeed(ResidentSplit(dataset, rt), 32, seed=5, augment=["hflip", "vflip"], rt=rt)
    streamed = TrainFeed(StreamedSplit(dataset, rt), 32, seed=5, augment=["hflip", "vflip"], rt=rt)
    assert resident.loader is None and streamed.loader.persistent_workers == (workers > 0)
    if modality == "ms":
        assert ResidentSplit(dataset, rt).images_raw.dtype == torch.int16  # uint16 stored as its bits
    for epoch in (0, 1):  # the second epoch reuses the persistent workers with a new order
        pairs = list(zip(resident.epoch(epoch), streamed.epoch(epoch), strict=True))
        assert len(pairs) == len(dataset) // 32
        for a, b in pairs:
            assert a.keys() == b.keys()
            for key in a:
                assert torch.equal(a[key], b[key]), (epoch, key)
    raw = dataset.reader.read(7).astype("float32")
    image = ResidentSplit(dataset, rt).images(torch.tensor([7]))[0]
    expected = (torch.from_numpy(raw) - dataset.mean) * dataset.inv_std
    torch.testing.assert_close(image, expected)  # hand-normalised, unflipped


def test_resident_auto_follows_the_memory_budget():
    cpu = torch.device("cpu")
    assert decide_resident("auto", 1, cpu) and not decide_resident("auto", 1 << 60, cpu)
    assert decide_resident("on", 1 << 60, cpu) and not decide_resident("off", 1, cpu)
    with pytest.raises(AckdError, match="--resident sometimes: expected one of auto, on, off"):
        decide_resident("sometimes", 1, cpu)


def _log_rows(run_dir):
    with open(run_dir / "log.csv", newline="") as handle:
        return [{k: v for k, v in row.items() if "seconds" not in k} for row in csv.DictReader(handle)]


@pytest.mark.parametrize("method,teacher_mode,ablate", [("sembridge", "cache", "ssm"), ("kd", "live", None)])
def test_resident_and_streamed_runs_give_identical_pairings_losses_and_weights(
        mini_teacher, mini_toy, tmp_path, method, teacher_mode, ablate):
    runs = {}
    for mode in ("on", "off"):
        run_dir = tmp_path / mode
        train_student(RunRequest.student_run(mini_toy, "S", method, teacher=mini_teacher, ablation=ablate or (),
                                             profile="smoke", overrides={"epochs": 3},
                                             sembridge=SemBridgeSettings(dynm=(1, 1, 0))),
                      RunOptions(run_dir=run_dir, progress=False, resident=mode, checkpoint_every=0,
                                 teacher_mode=teacher_mode))
        runs[mode] = torch.load(run_dir / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    assert _log_rows(tmp_path / "on") == _log_rows(tmp_path / "off")
    on, off = runs["on"], runs["off"]
    if method == "sembridge":  # DynM re-matched at epochs 1 and 2, on the resident student's logits too
        assert on["task_state"]["pairing"]["rematched"] == [1, 2]
        assert (on["task_state"]["pairing"]["pairs"] == off["task_state"]["pairing"]["pairs"]).all()
    for key, value in on["module"].items():
        assert torch.equal(value, off["module"][key]), key


# --- the engine: deferred finite check, checkpoints by time and by signal ------------------------

class TinyModule(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 1)
        self.dropout = nn.Dropout(0.5)  # draws from the global RNG, which a resume must restore

    def forward(self, x: torch.Tensor, poison: bool) -> dict[str, torch.Tensor]:
        loss = self.dropout(self.linear(x)).pow(2).mean()
        if poison:
            loss = loss * float("nan")
        return {"loss": loss, "task": loss.detach()}


class TinyTask(Task):
    """Steps of random data from (epoch, step); hooks to poison a step or send a signal."""

    def __init__(self, steps: int = 4, poison_at=None, signal_at=None, on_epoch=None):
        torch.manual_seed(0)
        self.module = TinyModule()
        self.steps, self.poison_at, self.signal_at, self.on_epoch = steps, poison_at, signal_at, on_epoch
        self.prepared: list[tuple[int, int]] = []

    def on_epoch_start(self, epoch: int) -> None:
        if self.on_epoch:
            self.on_epoch(epoch)

    def train_batches(self, epoch: int):
        return [torch.randn(4, 3, generator=torch.Generator().manual_seed(epoch * 1000 + s)) for s in range(self.steps)]

    def prepare(self, batch, epoch: int, step: int):
        self.prepared.append((epoch, step))
        if self.signal_at == (epoch, step):
            os.kill(os.getpid(), self.signal_number)
        return {"x": batch, "poison": self.poison_at == (epoch, step)}

    def validate(self):
        return {"score": -float(self.module.linear.weight.detach().abs().sum())}


def _engine(task, run_dir, every=0.0, epochs=3):
    rt = Runtime(device=torch.device("cpu"), progress=False, checkpoint_every=every)
    return Engine(task, OptimConfig(epochs=epochs, batch_size=4, lr=0.05), rt, run_dir, {"config_hash": "h"})


def _epoch_of(path):
    return torch.load(path, map_location="cpu", weights_only=False)["epoch"] if path.exists() else None


def test_a_non_finite_loss_stops_the_run_at_the_next_check(tmp_path):
    task = TinyTask(steps=2 * FINITE_CHECK_STEPS + 10, poison_at=(1, 2))
    with pytest.raises(TrainingError) as caught:
        _engine(task, tmp_path).fit()
    message = str(caught.value)
    assert message.startswith("non-finite loss at epoch 2, step 3 (loss=nan, task=nan); last good checkpoint: ")
    assert message.endswith(str(tmp_path / "checkpoints" / "last.pt"))
    assert task.prepared[-1] == (1, FINITE_CHECK_STEPS - 1)  # read back at step 50, not at every step
    assert _epoch_of(tmp_path / "checkpoints" / "last.pt") == 0
    saved = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=False)["module"]
    assert all(torch.isfinite(v).all() for v in saved.values())

    with pytest.raises(TrainingError, match=r"epoch 1, step 1 \(loss=nan, task=nan\); last good checkpoint: none$"):
        _engine(TinyTask(poison_at=(0, 0)), tmp_path / "first").fit()


def test_last_checkpoint_is_written_by_time_and_at_the_end(tmp_path):
    seen = []
    task = TinyTask(on_epoch=lambda e: seen.append(_epoch_of(tmp_path / "checkpoints" / "last.pt")))
    _engine(task, tmp_path, every=3600).fit()
    assert seen == [None, None, None]  # an hour between saves: only the end wrote it
    assert _epoch_of(tmp_path / "checkpoints" / "last.pt") == 2
    best = torch.load(tmp_path / "checkpoints" / "best.pt", weights_only=False)
    assert set(best) == {"config_hash", "epoch", "module", "val"}  # weights only: no optimiser state

    seen.clear()
    _engine(TinyTask(on_epoch=lambda e: seen.append(_epoch_of(tmp_path / "every" / "checkpoints" / "last.pt"))),
            tmp_path / "every", every=0).fit()
    assert seen == [None, 0, 1]


def _straight_weights(tmp_path, epochs=4):
    _engine(TinyTask(), tmp_path / "straight", epochs=epochs).fit()
    return torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=False)["module"]


def _assert_same_as_straight(tmp_path, run_dir):
    """The run's last weights are those of a run never interrupted, bit for bit."""
    final = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)["module"]
    for key, value in _straight_weights(tmp_path).items():
        assert torch.equal(value, final[key]), key


def test_sigusr1_saves_after_the_epoch_and_training_goes_on(tmp_path):
    seen = []
    task = TinyTask(signal_at=(1, 0), on_epoch=lambda e: seen.append(_epoch_of(tmp_path / "checkpoints" / "last.pt")))
    task.signal_number = signal.SIGUSR1
    result = _engine(task, tmp_path, every=3600, epochs=4).fit()
    assert seen == [None, None, 1, 1] and result.epochs_run == 4
    _assert_same_as_straight(tmp_path, tmp_path)


def test_sigterm_saves_stops_and_resumes_bit_exact(tmp_path):
    task = TinyTask(signal_at=(1, 1))
    task.signal_number = signal.SIGTERM
    with pytest.raises(Preempted, match=r"stopped by SIGTERM after epoch 2/4; .*last.pt holds it: continue with --resume"):
        _engine(task, tmp_path / "run", every=3600, epochs=4).fit()
    assert _epoch_of(tmp_path / "run" / "checkpoints" / "last.pt") == 1
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handlers are restored
    resumed = TinyTask()
    result = _engine(resumed, tmp_path / "run", every=3600, epochs=4).fit(resume=True)
    assert result.epochs_run == 2 and resumed.prepared[0] == (2, 0)
    final = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=False)["module"]
    for key, value in _straight_weights(tmp_path).items():
        assert torch.equal(value, final[key]), key


def test_sigterm_to_a_training_command_saves_and_resume_completes_it(mini_toy, tmp_path, cli):
    # enough epochs that the signal lands while it trains, however late this process polls; one thread
    # each, as the default follows the load average and CPU kernels sum in another order on another count
    args = ["train-student", str(mini_toy), "--arch", "S", "--profile", "smoke", "--epochs", "20", "--quiet",
            "--threads", "1"]
    straight = cli(*args, "--out", str(tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr
    run_dir = tmp_path / "stopped"
    proc = subprocess.Popen([sys.executable, "-m", "ackd_bench.cli", *args, "--out", str(run_dir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (run_dir / "log.csv").exists():  # epoch 1 done, no last.pt yet (600 s)
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be stopped"
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2, stderr
    assert "stopped by SIGTERM after epoch" in stderr and len(stderr.strip().splitlines()) == 1
    resumed = cli(*args, "--out", str(run_dir), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    a = torch.load(tmp_path / "straight/checkpoints/last.pt", weights_only=False)["module"]
    b = torch.load(run_dir / "checkpoints/last.pt", weights_only=False)["module"]
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert [row["epoch"] for row in _log_rows(run_dir)] == [str(e) for e in range(20)]


# --- on a GPU (skipped with the reason on CPU machines) ------------------------------------------

@pytest.mark.cuda
def test_cuda_resident_and_streamed_feeds_agree(mini_toy):
    dataset = ShardDataset(mini_toy, "ms", "train")
    rt = Runtime(device=resolve_device("cuda"), progress=False, workers=2)
    resident = TrainFeed(ResidentSplit(dataset, rt), 64, 3, ["hflip", "vflip"], rt)
    streamed = TrainFeed(StreamedSplit(dataset, rt), 64, 3, ["hflip", "vflip"], rt)
    for a, b in zip(resident.epoch(0), streamed.epoch(0), strict=True):
        assert a["image"].is_cuda and a["image"].is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(a["image"], b["image"], rtol=0, atol=1e-6)
        assert torch.equal(a["label"], b["label"]) and torch.equal(a["index"], b["index"])


@pytest.mark.cuda
def test_cuda_teacher_cache_lives_on_the_gpu_and_matches_the_live_teacher(mini_teacher, mini_toy):
    from ackd_bench.train.runs import predict
    from ackd_bench.train.teacher_cache import build_or_load_cache, load_teacher

    rt = Runtime(device=resolve_device("cuda"), progress=False)
    ms = ShardDataset(mini_toy, "ms", "train")
    cache = build_or_load_cache(mini_teacher, ms, rt).to(rt.device)
    looked_up = cache.lookup(torch.tensor([0, 5, 9], device=rt.device), rt.device)
    assert all(v.is_cuda for v in looked_up.values())
    teacher = load_teacher(mini_teacher, ms.manifest)[0].to(rt.device)
    live = predict(teacher, ms, rt, 64, indices=[0, 5, 9])
    torch.testing.assert_close(looked_up["logits"].cpu(), live["logits"], rtol=2e-2, atol=2e-2)


@pytest.mark.cuda
def test_cuda_sembridge_student_crosses_a_dynm_rematch(mini_teacher, mini_toy, tmp_path):
    for mode in ("on", "off"):
        result = train_student(RunRequest.student_run(mini_toy, "S", "sembridge", teacher=mini_teacher, ablation="ssm",
                                                      profile="smoke", overrides={"epochs": 3},
                                                      sembridge=SemBridgeSettings(dynm=(1, 1, 0))),
                               RunOptions(run_dir=tmp_path / mode, device="cuda", progress=False, resident=mode))
        state = torch.load(tmp_path / mode / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
        assert state["task_state"]["pairing"]["rematched"] == [1, 2] and 0 <= result["oa"] <= 1


def test_compile_keeps_checkpoint_keys():
    from ackd_bench.methods import build_distiller
    from ackd_bench.models import build_backbone
    from ackd_bench.train.engine import compile_backbones
    from ackd_bench.train.student import StudentModule

    module = StudentModule(build_backbone("S", 3, 4), build_distiller("kd", 4), {"task": 0.3, "kd": 0.4})
    keys = list(module.state_dict())
    compile_backbones(module)
    assert list(module.state_dict()) == keys  # checkpoints of compiled runs load into plain models
    assert module.backbone._compiled_call_impl is not None


def test_threads_follow_the_cores_the_runs_at_once_and_other_load(monkeypatch):
    from ackd_bench import threads

    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # leave this process's threads alone
    monkeypatch.setattr(threads, "_own_threads", 0)  # and its record of them (restored after the test)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    monkeypatch.setattr(threads, "usable_cores", lambda: 8)
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (0.2, 0.0, 0.0))
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # whoever started the processes said how many: that
    assert threads.default_threads() == 3
    for unset in ("", "0", "many"):
        monkeypatch.setenv("OMP_NUM_THREADS", unset)
        assert threads.default_threads() == 8
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert threads.threads_for(1) == 8 and threads.threads_for(3) == 2 and threads.threads_for(16) == 1
    assert threads.default_threads() == 8
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (5.6, 0.0, 0.0))  # another job keeps ~6 cores busy
    assert threads.default_threads() == 2 and threads.default_threads(4) == 2
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (30.0, 0.0, 0.0))
    assert threads.default_threads() == 1
    assert threads.set_threads(3) == 3 and threads.set_threads(None, 4) == 1
    with pytest.raises(AckdError, match="--threads 0: expected a positive integer"):
        threads.set_threads(0)
    # a pipeline in one process: its own earlier run's threads are in the load average, not another's
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (0.1, 0.0, 0.0))
    assert threads.set_threads(None) == 2
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (2.1, 0.0, 0.0))  # that run kept both cores busy
    assert threads.set_threads(None) == 2
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (3.0, 0.0, 0.0))  # and another process one more
    assert threads.set_threads(None) == 1


def _interrupt_when(proc, path, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline and not path.exists():
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    return proc.communicate(timeout=120)[1]


def test_ctrl_c_during_training_says_how_to_resume_and_resume_finishes(mini_toy, tmp_path, cli):
    args = ["train-student", str(mini_toy), "--arch", "S", "--profile", "smoke", "--epochs", "4", "--quiet",
            "--checkpoint-every", "0"]
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "ackd_bench.cli", *args, "--out", str(run_dir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stderr = _interrupt_when(proc, run_dir / "checkpoints" / "last.pt")
    assert proc.returncode == 130, stderr
    from ackd_bench.cli import TRAIN_RESUME_HINT

    assert stderr.strip() == f"ackd-bench: interrupted; {TRAIN_RESUME_HINT}"
    resumed = cli(*args, "--out", str(run_dir), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert [row["epoch"] for row in _log_rows(run_dir)] == ["0", "1", "2", "3"]


def test_ctrl_c_during_a_build_then_a_rerun_finishes_it(tmp_path, cli):
    from ackd_bench.data.manifest import verify_manifest

    out = tmp_path / "toy"
    proc = subprocess.Popen([sys.executable, "-m", "ackd_bench.cli", "build", "toy", "--out", str(out), "--quiet",
                             "--no-mi"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (list(out.glob("*.partial")) or list(out.glob(".*.writing"))):
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    stderr = proc.communicate(timeout=120)[1]
    assert proc.returncode in (0, 130), stderr  # 0: it finished before the signal landed
    if proc.returncode == 130:
        assert stderr.strip() == "ackd-bench: interrupted; rerun the same command to resume"
        assert not (out / "manifest.json").exists()
    rerun = cli("build", "toy", "--out", str(out), "--quiet", "--no-mi")
    assert rerun.returncode == 0, rerun.stderr
    assert verify_manifest(out).dataset_version.startswith("fe42a0804ce174e7")  # toy v3
