"""Where a run's per-epoch rows go besides its own `log.csv` (always written: it is the run's record).

`--logger tensorboard` writes RUN_DIR/tensorboard; `wandb` and `mlflow` (optional extras:
`pip install 'ackd-bench[wandb]'`, `'ackd-bench[mlflow]'`) log to the service their own
environment names (WANDB_MODE=offline, MLFLOW_TRACKING_URI), or, without one, to files in the run
directory: wandb in offline mode under RUN_DIR/wandb, mlflow to the file store RUN_DIR/mlruns.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from ..errors import AckdError

LOGGERS = ("csv", "tensorboard", "wandb", "mlflow")  # each one's package and install extra have its name


def parse_loggers(names: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    items = [n.strip() for part in ([names] if isinstance(names, str) else names or []) for n in part.split(",")]
    unknown = [n for n in items if n and n not in LOGGERS]
    if unknown:
        raise AckdError(f"--logger {','.join(unknown)}: expected some of {', '.join(LOGGERS)}")
    return tuple(dict.fromkeys(["csv", *[n for n in items if n]]))


def check_loggers(names: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """The loggers, parsed, after checking that their packages are installed."""
    import importlib.util

    loggers = parse_loggers(names)
    for name in loggers:
        if name != "csv" and importlib.util.find_spec(name) is None:
            raise _missing(name)
    return loggers


def _missing(name: str) -> AckdError:
    return AckdError(f"--logger {name}: the {name} package is not installed (pip install 'ackd-bench[{name}]')")


class TensorBoardLogger:
    def __init__(self, run_dir: Path, run_name: str, config: dict[str, Any]):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise _missing("tensorboard") from None
        self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    def log(self, row: dict[str, float], epoch: int) -> None:
        for key, value in row.items():
            self.writer.add_scalar(key, value, epoch)
        self.writer.flush()

    def close(self, status: str) -> None:
        self.writer.close()


class WandbLogger:
    def __init__(self, run_dir: Path, run_name: str, config: dict[str, Any]):
        try:
            import wandb
        except ImportError:
            raise _missing("wandb") from None
        mode = os.environ.get("WANDB_MODE") or "offline"
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "ackd-bench"), name=run_name, config=config,
                              dir=str(run_dir), mode=mode, reinit="create_new")

    def log(self, row: dict[str, float], epoch: int) -> None:
        self.run.log(row, step=epoch)

    def close(self, status: str) -> None:
        self.run.finish(exit_code=0 if status == "finished" else 1)


MLFLOW_STATUS = {"finished": "FINISHED", "failed": "FAILED", "stopped": "KILLED"}


class MlflowLogger:
    def __init__(self, run_dir: Path, run_name: str, config: dict[str, Any]):
        try:
            import mlflow
        except ImportError:
            raise _missing("mlflow") from None
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:  # no server named: mlflow's file store in the run directory, which it still reads and writes
            uri = (run_dir / "mlruns").as_uri()
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = mlflow.MlflowClient(uri)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "ackd-bench")
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(name)
        self.run_id = self.client.create_run(experiment_id, run_name=run_name).info.run_id
        for key, value in _flat(config).items():
            self.client.log_param(self.run_id, key, str(value)[:500])

    def log(self, row: dict[str, float], epoch: int) -> None:
        for key, value in row.items():
            self.client.log_metric(self.run_id, key, value, step=epoch)

    def close(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status=MLFLOW_STATUS[status])


def _flat(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


CLASSES = {"tensorboard": TensorBoardLogger, "wandb": WandbLogger, "mlflow": MlflowLogger}


class MetricLoggers:
    """The chosen loggers other than csv, fed every epoch's numeric values."""

    def __init__(self, names: tuple[str, ...], run_dir: Path, run_name: str, config: dict[str, Any]):
        self.loggers = [CLASSES[n](run_dir, run_name, config) for n in names if n != "csv"]

    def log(self, row: dict[str, Any]) -> None:
        values = {k: float(v) for k, v in row.items() if k != "epoch" and isinstance(v, (int, float))}
        for logger in self.loggers:
            logger.log(values, int(row["epoch"]))

    def close(self, status: str = "finished") -> None:
        """End every logger's run as `status` (finished, failed or stopped), whatever the others do:
        a logger that fails to close must not hide why the run ended."""
        for logger in self.loggers:
            try:
                logger.close(status)
            except Exception as exc:  # noqa: BLE001 - reported, then the next logger is closed
                print(f"ackd-bench: closing the {type(logger).__name__} failed: {exc}", file=sys.stderr)
