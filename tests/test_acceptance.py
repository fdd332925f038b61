"""The GPU acceptance run (bench/gpu_accept.sh), proven on the CPU before a GPU visit: with rasterio,
torchgeo and submitit unimportable, as on the GPU machine, `pytest -m cuda` collects every test
module cleanly (what needs those packages skips with its reason) and the script runs end to end
with bench/gpu.py at tiny sizes on the CPU stand-in for CUDA."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO

ABSENT_ON_GPU = ("rasterio", "torchgeo", "submitit")
BLOCKER = f"""import sys

class _AbsentOnTheGpuMachine:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {ABSENT_ON_GPU!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (absent on the GPU machine)", name=name)
        return None

sys.meta_path.insert(0, _AbsentOnTheGpuMachine())
"""


@pytest.fixture
def gpu_machine_env(tmp_path) -> dict[str, str]:
    """The environment of a process (and its children) that cannot import rasterio, torchgeo, submitit."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    probe = subprocess.run([sys.executable, "-c", "import rasterio"], env=env, capture_output=True, text=True)
    assert probe.returncode == 1 and "absent on the GPU machine" in probe.stderr  # the blocker works
    return env


def test_the_cuda_tests_collect_cleanly_without_the_geo_and_cluster_packages(gpu_machine_env):
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "cuda", "-p",
                           "no:cacheprovider", "-rs", str(REPO / "tests")], cwd=REPO, env=gpu_machine_env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "error" not in done.stdout.lower().split("short test summary")[-1]
    collected = [line for line in done.stdout.splitlines() if "::" in line]
    assert len(collected) >= 8 and all("[cuda]" in line or "cuda" in line for line in collected[:1])
    # what needs a package the GPU machine lacks says so
    assert "rasterio is not installed (the GPU acceptance image has none)" in done.stdout
    assert "torchgeo is not installed (the GPU acceptance image has none)" in done.stdout


def test_the_acceptance_script_runs_end_to_end_on_the_standin(gpu_machine_env, tmp_path):
    out = tmp_path / "accept"
    env = {**gpu_machine_env, "PYTHON": sys.executable, "ACCEPT_DEVICE": "standin", "ACCEPT_INSTALL": "0",
           "ACCEPT_BENCH_ARGS": "--size 32 --batch-size 16 --ms-per-class 16 --rgb-per-class 12 --epochs 2 "
                                "--archs S --ks 2 --k-epochs 1 --pure-steps 1 --projection-batch 2 --build-workers 0"}
    done = subprocess.run(["bash", str(REPO / "bench" / "gpu_accept.sh"), str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    summary = (out / "summary.txt").read_text().splitlines()
    assert [line.split(":")[0] for line in summary] == ["versions", "cuda-tests", "gpu-bench"]
    assert summary[1].startswith("cuda-tests: exit 0 ") and summary[2].startswith("gpu-bench: exit 0 "), summary
    bench = (out / "gpu-bench.log").read_text()
    for line in ("real runs (paper profile) against pure compute of the same model in the same precision (fp32)",
                 "S/S: SemBridge step / KD step = ", "S: pure student step, paper profile: ", "projected device-hours",
                 "bench wall time"):
        assert line in bench, bench[-2000:]
    assert "failed" not in bench and "Traceback" not in bench
    assert "torch" in (out / "versions.log").read_text()
