"""`ackd-bench sweep --runs-per-gpu K`: K runs at once, each in its own spawned process."""

import json
import os
import signal
from pathlib import Path

import pytest

from ackd_bench.cli import main
from ackd_bench.harness import runner, sweep
from ackd_bench.harness.grid import GridRun, expand_grid
from ackd_bench.harness.plan import RunPlan
from ackd_bench.harness.runner import (GiB, Ledger, fit_runs_per_gpu, guarded, largest_footprint_bytes,
                                       run_footprint_bytes, run_group, run_overhead_bytes, runs_that_fit)
from ackd_bench.harness.sweep import run_sweep
from ackd_bench.train.api import RunOptions


def _config(tmp_path: Path, **kwargs) -> RunPlan:
    return RunPlan(profile="smoke", student_overrides={"epochs": 1},
                       options=RunOptions(runs_root=tmp_path / "runs", device="cpu"), **kwargs)


def _student(dataset, arch: str = "S", seed: int = 0) -> GridRun:
    return GridRun(1, str(dataset), "student", "none", "", arch, "", seed)


def killed_for_seed_7(request: GridRun, config: RunPlan) -> dict:
    """Test-only job (importable by the spawned child): the seed-7 run dies as if the OOM killer
    took it; the others run as the sweep runs them."""
    if request.seed == 7:
        os.kill(os.getpid(), signal.SIGKILL)
    return guarded(request, config)


def test_local_sweep_runs_two_students_at_once(mini_toy, tmp_path):
    requests = [r for r in expand_grid([str(mini_toy)], methods=["none"], pairs=["S/S", "M/M"], tables=[3])
                if r.kind == "student"]
    assert sorted(r.student for r in requests) == ["M", "S"]
    ledger = run_sweep(requests, _config(tmp_path, runs_per_gpu=2), name="k2", progress=False)

    entries = Ledger(ledger.path).entries  # as written to disk, one record per finished run
    assert [entries[r.key]["status"] for r in requests] == ["done", "done"], entries
    # each entry says what its run cost in its own process: the grid's cost per stage is their sum
    assert all(0 < entries[r.key]["cpu_seconds"] and 0 < entries[r.key]["wall_seconds"] for r in requests)
    run_dirs = [Path(entries[r.key]["run_dir"]) for r in requests]
    assert run_dirs[0] != run_dirs[1]
    for request, run_dir in zip(requests, run_dirs):
        result = json.loads((run_dir / "result.json").read_text())
        assert (result["student"], result["seed"], result["method"]) == (request.student, request.seed, "none")
    # in flight together: each run started (config.json) before the other finished (result.json)
    started = [(d / "config.json").stat().st_mtime for d in run_dirs]
    finished = [(d / "result.json").stat().st_mtime for d in run_dirs]
    assert started[0] < finished[1] and started[1] < finished[0]


def test_group_records_failed_and_dead_runs_while_sibling_finishes(mini_toy, tmp_path):
    group = [_student(mini_toy), _student(tmp_path / "not-built"), _student(mini_toy, seed=7)]
    outcomes = run_group(group, _config(tmp_path), job=killed_for_seed_7)

    done, failed, dead = outcomes
    assert done["status"] == "done", done
    assert json.loads(Path(done["run_dir"], "result.json").read_text())["seed"] == 0
    assert failed["status"] == "failed" and "not a directory" in failed["error"]
    assert dead == {"status": "failed",
                    "error": "run process was killed by SIGKILL (out of memory?) before reporting a result"}


def test_footprint_of_the_toy_dataset(toy_dir, tmp_path):
    # toy: 6 classes; MS 120 samples per class, 10 bands, uint16; RGB 60 + 100 + 500 per class, 3 bands,
    # uint8; 48x48 px
    pixels = 6 * 120 * 10 * 48 * 48 * 2 + 6 * 660 * 3 * 48 * 48 * 1
    assert pixels == 60_549_120
    # the run's own needs at 48 px, batch 256, fp32, by hand: 1 GiB of context, 21.3M x 16 bytes of model
    # state, 1.25 x 6.4 MiB x (48 / 64)^2 x 256 of activations
    overhead = int(GiB + 21_300_000 * 16 + 1.25 * int(6.4 * 2**20) * (48 / 64) ** 2 * 256)
    assert run_overhead_bytes(48) == overhead and round(overhead / GiB, 2) == 2.44
    assert run_overhead_bytes(128) > 9 * GiB  # a fixed 3 GiB undercounted fp32 MobileNetV2 at 128 px
    assert run_overhead_bytes(64, precision="bf16") < run_overhead_bytes(64)
    assert run_footprint_bytes(toy_dir) == pixels + overhead
    assert largest_footprint_bytes([str(toy_dir), str(tmp_path / "not-built")]) == pixels + overhead


@pytest.mark.parametrize("arch, per_image_mib", [("M", 6.4), ("R", 2.7), ("S", 1.7)])
def test_the_activation_estimate_is_what_autograd_saves(arch, per_image_mib):
    """The per-image activations run_overhead_bytes assumes (MobileNetV2's, the largest), measured again
    with saved-tensor hooks at 64 px (parameters excluded)."""
    import torch

    from ackd_bench.harness.runner import ACTIVATION_BYTES_PER_IMAGE_64PX
    from ackd_bench.models import build_backbone

    model = build_backbone(arch, 10, 10)
    weights = {p.data_ptr() for p in model.parameters()}
    saved = {}

    def pack(tensor):
        if tensor.data_ptr() not in weights:
            saved[(tensor.data_ptr(), tensor.numel())] = tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(torch.randn(2, 10, 64, 64))
    per_image = sum(saved.values()) / 2
    assert per_image == pytest.approx(per_image_mib * 2**20, rel=0.03)
    assert per_image <= ACTIVATION_BYTES_PER_IMAGE_64PX


def test_runs_per_gpu_is_lowered_to_what_fits(toy_dir, monkeypatch, capsys):
    assert runs_that_fit(8, 10 * GiB, 3 * GiB) == 3
    assert runs_that_fit(8, 1 * GiB, 3 * GiB) == 1  # at least one
    assert runs_that_fit(2, 80 * GiB, 3 * GiB) == 2
    assert fit_runs_per_gpu(8, "cpu", [str(toy_dir)]) == 8  # no check on the CPU

    monkeypatch.setattr(runner, "_probe_cuda_free_bytes", lambda device: 10 * GiB)
    assert fit_runs_per_gpu(8, "cuda", [str(toy_dir)]) == 4  # 10 GiB / 2.5 GiB
    assert capsys.readouterr().out == "sweep: --runs-per-gpu 8 lowered to 4: 10.0 GiB free, ~2.5 GiB per run\n"
    assert fit_runs_per_gpu(2, "cuda", [str(toy_dir)]) == 2
    assert capsys.readouterr().out == ""


def test_reusing_keeps_how_to_run_and_sets_only_the_reuse_or_resume_policy():
    given = RunOptions(resident="on", checkpoint_every=30.0, compile=True, device="cpu", resume=True, force=True,
                       run_dir=Path("x"))
    options = given.reusing()
    assert (options.resident, options.checkpoint_every, options.compile) == ("on", 30.0, True)
    assert (options.reuse_finished, options.resume, options.force, options.run_dir) == (True, "auto", False, None)
    assert given.reusing(Path("y"), keep_resume=True).resume is True  # eval's students keep a --resume given
    assert RunOptions(resume="auto").reusing(keep_resume=True).resume == "auto"


def test_cli_runs_per_gpu(tmp_path, monkeypatch, capsys, mini_toy):
    assert main(["sweep", "--datasets", "d", "--runs-per-gpu", "0"]) == 2
    assert capsys.readouterr().err == "ackd-bench: error: --runs-per-gpu 0: expected a positive integer\n"

    seen = {}

    def fake_run_sweep(requests, config, **kwargs):
        seen["config"] = config
        return Ledger(tmp_path / "ledger.json")

    monkeypatch.setattr(sweep, "run_sweep", fake_run_sweep)
    assert main(["sweep", "--datasets", str(mini_toy), "--runs-per-gpu", "4", "--resident", "off", "--checkpoint-every", "30",
                 "--compile", "--quiet"]) == 0
    config = seen["config"]
    assert (config.runs_per_gpu, config.options.resident, config.options.checkpoint_every,
            config.options.compile) == (4, "off", 30.0, True)
    assert main(["sweep", "--datasets", str(mini_toy)]) == 0
    config = seen["config"]
    assert (config.runs_per_gpu, config.options.resident, config.options.checkpoint_every,
            config.options.compile) == (1, "auto", 600.0, False)


def test_submitit_local_submits_one_task_per_group(mini_toy, tmp_path):
    # three pending runs, K=2: two array tasks, each running its group at once; ledger per run
    requests = [_student(mini_toy, seed=0), _student(mini_toy, seed=1), _student(tmp_path / "not-built")]
    ledger = run_sweep(requests, _config(tmp_path, runs_per_gpu=2), launcher="submitit-local", name="g",
                       slurm={"timeout_min": 10}, progress=False)
    entries = Ledger(ledger.path).entries
    assert [entries[r.key]["status"] for r in requests] == ["done", "done", "failed"], entries
    assert [json.loads(Path(entries[r.key]["run_dir"], "result.json").read_text())["seed"]
            for r in requests[:2]] == [0, 1]
    folder = tmp_path / "runs" / "sweeps" / "g-submitit"
    assert len(list(folder.glob("*_result.pkl"))) == 2  # groups [seed 0, seed 1] and [not built]
