"""How a run is set up from outside: precision, profiles from a file with --set, and loggers."""

import csv
import hashlib
import json

import pytest
import torch

from ackd_bench.cli import main
from ackd_bench.errors import AckdError
from ackd_bench.train.api import RunOptions, train_classifier
from ackd_bench.train.engine import Engine, OptimConfig, Runtime, Task, resolve_precision
from ackd_bench.train.profiles import load_profile
from ackd_bench.train.request import RunRequest


ONE_EPOCH = {"epochs": 1, "batch_size": 128}


def test_auto_precision_follows_the_gpu(monkeypatch):
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    for native, expected in ((True, "bf16"), (False, "fp16")):  # Ampere and later / V100, T4
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True, n=native: n)
        assert resolve_precision("auto", torch.device("cuda", 0)) == expected
    assert resolve_precision("fp16", torch.device("cpu")) == "fp16"
    with pytest.raises(AckdError, match="--precision fp8: expected one of auto, bf16, fp16, fp32"):
        resolve_precision("fp8", torch.device("cpu"))


def test_a_run_trains_in_the_precision_it_records(mini_toy, tmp_path):
    run = tmp_path / "bf16"
    result = train_classifier(RunRequest.teacher_run(mini_toy, "S", profile="smoke", overrides=ONE_EPOCH),
                              RunOptions(run_dir=run, progress=False, precision="bf16"))
    assert result["precision"] == "bf16" and json.loads((run / "result.json").read_text())["precision"] == "bf16"
    assert not torch.load(run / "checkpoints" / "last.pt", weights_only=True)["scaler"]  # bf16 needs no loss scale
    with open(run / "log.csv") as handle:
        assert torch.isfinite(torch.tensor(float(next(csv.DictReader(handle))["train_loss"])))


class Regression(Task):
    """y = 3x on the CPU, for the engine's fp16 path (CPU convolutions in fp16 are too slow for a test)."""

    def __init__(self):
        self.module = RegressionModule()
        self.x = torch.linspace(-1, 1, 64).unsqueeze(1)

    def train_batches(self, epoch):
        return [{"x": self.x[i:i + 16]} for i in range(0, 64, 16)]

    def prepare(self, batch, epoch, step):
        return batch

    def validate(self):
        with torch.no_grad():
            return {"score": -float(((self.module.linear(self.x) - 3 * self.x) ** 2).mean())}


class RegressionModule(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(1, 1)

    def forward(self, x):
        loss = ((self.linear(x).float() - 3 * x) ** 2).mean()
        return {"loss": loss, "mse": loss.detach()}


def test_fp16_scales_the_loss_and_saves_the_scale_for_resume(tmp_path):
    rt = Runtime(device=torch.device("cpu"), progress=False, precision="fp16")
    torch.manual_seed(0)
    engine = Engine(Regression(), OptimConfig(epochs=3, batch_size=16, lr=0.1), rt, tmp_path,
                    {"config": {}, "dataset_version": "v", "config_hash": "h"})
    engine.fit()
    scaler = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["scaler"]
    assert scaler["scale"] > 0 and "_growth_tracker" in scaler  # the GradScaler's state, saved with the weights
    with open(tmp_path / "log.csv") as handle:
        losses = [float(row["train_mse"]) for row in csv.DictReader(handle)]
    assert losses[-1] < losses[0]  # scaled, unscaled and stepped: it learns


def test_profile_from_a_file_and_set_enter_the_config(mini_toy, tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("extends: smoke\nteacher: {lr: 1.0e-3}\noptions: {shufflenet_width: 0.5}\n")
    profile = load_profile(str(mine), sets=["teacher.epochs=1", "teacher.batch_size=32", "seed=5"])
    digest = hashlib.sha256(mine.read_bytes()).hexdigest()[:8]  # a file profile is named by its content too
    assert profile["name"].startswith(f"mine@{digest}+set-") and profile["teacher"]["lr"] == 1.0e-3
    assert profile["seed"] == 5
    result = train_classifier(RunRequest.teacher_run(mini_toy, "S", profile=profile),
                              RunOptions(runs_root=tmp_path / "runs", progress=False))
    config = json.loads((tmp_path / "runs" / "toy").glob("teacher-S-s5-*/config.json").__next__().read_text())
    assert config["profile"] == result["profile"] == profile["name"] and config["width"] == 0.5
    assert config["profile_set"] == ["teacher.epochs=1", "teacher.batch_size=32", "seed=5"]
    assert config["optim"]["epochs"] == 1 and config["optim"]["lr"] == 1.0e-3
    plain = train_classifier(RunRequest.teacher_run(mini_toy, "S", profile=str(mine), overrides=ONE_EPOCH, seed=5),
                             RunOptions(runs_root=tmp_path / "runs", progress=False))
    assert plain["profile"].startswith(f"mine@{digest}+set-")  # ONE_EPOCH changes the batch size too
    assert plain["config_hash"] != result["config_hash"]


def test_bad_profile_settings_are_one_line_and_leave_nothing(mini_toy, tmp_path, capsys):
    out = tmp_path / "never"
    for args, message in ((["--set", "teacher.epoch=3"], "has no teacher.epoch (expected one of teacher.optimizer"),
                          (["--set", "options.matcher_loss=cosine"], "options.matcher_loss is 'cosine': expected one of"),
                          (["--profile", str(tmp_path / "missing.yaml")], "missing.yaml: no such file"),
                          (["--logger", "neptune"], "--logger neptune: expected some of csv, tensorboard, wandb, mlflow")):
        assert main(["train-teacher", str(mini_toy), "--arch", "S", "--out", str(out), *args]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], lines
        assert not out.exists()


def test_loggers_receive_every_epoch_offline(mini_toy, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # reading the store back here
    run = tmp_path / "logged"
    train_classifier(RunRequest.teacher_run(mini_toy, "S", profile="smoke", overrides={"epochs": 2, "batch_size": 32}),
                     RunOptions(run_dir=run, progress=False, loggers=("tensorboard", "wandb", "mlflow")))
    with open(run / "log.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert list((run / "wandb").glob("offline-run-*/run-*.wandb"))
    import mlflow

    client = mlflow.MlflowClient((run / "mlruns").as_uri())
    [logged] = client.search_runs([client.get_experiment_by_name("ackd-bench").experiment_id])
    history = client.get_metric_history(logged.info.run_id, "val_f1")
    assert [(m.step, round(m.value, 6)) for m in history] == [(int(r["epoch"]), round(float(r["val_f1"]), 6)) for r in rows]
    assert logged.data.params["optim.epochs"] == "2"


def test_a_run_that_fails_ends_its_logger_runs_as_failed(mini_toy, tmp_path, monkeypatch):
    from ackd_bench.train.engine import TrainingError

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    run = tmp_path / "diverged"
    with pytest.raises(TrainingError, match="non-finite"):
        train_classifier(RunRequest.teacher_run(mini_toy, "S", profile="smoke", overrides={"epochs": 2, "lr": 1e30}),
                         RunOptions(run_dir=run, device="cpu", progress=False, loggers=("mlflow",)))
    import mlflow

    client = mlflow.MlflowClient((run / "mlruns").as_uri())
    [logged] = client.search_runs([client.get_experiment_by_name("ackd-bench").experiment_id])
    assert logged.info.status == "FAILED"  # not left RUNNING for ever in the tracking server
