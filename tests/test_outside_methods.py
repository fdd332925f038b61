"""Outside distillation methods: a package that publishes one (installed here with pip) and a local
`module:Class`, through train-student, eval, sweep, the board and the leaderboard site, by the CLI
alone; the site is rendered in headless Chromium."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from .conftest import run_cli

FIXTURE = Path(__file__).parent / "plugin_fixture"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True, capture_output=True, timeout=300)


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory):
    source = tmp_path_factory.mktemp("plugin") / "src"
    shutil.copytree(FIXTURE, source)  # pip builds in place: keep the checkout clean
    _pip("install", "--no-build-isolation", "--no-deps", "-q", str(source))
    yield "fixturekd"
    _pip("uninstall", "-y", "-q", "ackd-plugin-fixture")


def _chromium(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium: .ci/run installs Debian's `chromium` package")
def test_a_published_method_goes_from_pip_install_to_a_row_on_the_site(installed_plugin, toy_dir, teacher_ckpt,
                                                                       tmp_path, cli):
    runs, board = tmp_path / "runs", tmp_path / "board.csv"
    for seed in (0,):
        done = run_cli("eval", str(toy_dir), "--method", installed_plugin, "--pair", "S/S", "--teacher", str(teacher_ckpt),
                       "--profile", "smoke", "--epochs", "1", "--seed", str(seed), "--runs-root", str(runs), "--quiet")
        assert done.returncode == 0, done.stderr
    results = sorted(runs.glob("toy/student-S-fixturekd-*/result.json"))
    assert len(results) == 1
    record = json.loads(results[0].read_text())
    assert record["method"] == record["kd_loss"] == "fixturekd"
    assert record["paper_url"] == "https://example.org/fixturekd" and len(record["teacher_sha256"]) == 64
    config = json.loads((results[0].parent / "config.json").read_text())
    assert config["method_params"] == {"temperature": 2.0}  # from the YAML beside the plugin's module
    assert config["method_source"] == "ackd_plugin_fixture.losses:FixtureKD (ackd-plugin-fixture 0.1.0)"
    assert (config["loss_weights"]["task"], config["loss_weights"]["kd"]) == (0.3, 0.4)  # smoke shares the weights

    planned = run_cli("sweep", "--datasets", str(toy_dir), "--methods", installed_plugin, f"sembridge+{installed_plugin}",
                      "--pairs", "S/S", "R/R",
                      "--seeds", "0", "--dry-run", "--runs-root", str(runs))
    assert planned.returncode == 0, planned.stderr
    assert "student:fixturekd S/S seed 0" in planned.stdout and "student:sembridge+fixturekd R/R seed 0" in planned.stdout

    # submit loads the plugin (a row's method must be installed): a process of its own, as for eval and sweep, so
    # this one never imports a package that the fixture uninstalls; the site only reads the board
    submitted = run_cli("leaderboard", "submit", "--board", str(board), *map(str, results))
    assert submitted.returncode == 0, submitted.stderr
    built = cli("leaderboard", "site", "--board", str(board), "--out", str(tmp_path / "site"))
    assert built.returncode == 0, built.stderr
    page = tmp_path / "site" / "index.html"

    dom = _chromium("--dump-dom", f"{page.as_uri()}#sort=toy-table-4-incomplete:0")
    assert 'data-ready="1"' in dom.stdout  # the page's script ran to its end
    table = dom.stdout.split('id="toy-table-4-incomplete"', 1)[1].split("</table>", 1)[0]
    assert "fixturekd (smoke profile)" in table and 'data-sorted="0:desc"' in dom.stdout
    assert 'href="https://example.org/fixturekd"' in dom.stdout and "IQM" in dom.stdout

    shot = tmp_path / "site.png"
    done = _chromium("--window-size=1280,1600", f"--screenshot={shot}", page.as_uri())
    assert shot.is_file(), done.stderr
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (1600, 1280) and float(np.std(pixels[..., :3])) > 0.01  # drawn, not blank


def test_a_local_module_class_runs_and_names_itself(toy_dir, teacher_ckpt, tmp_path):
    package = tmp_path / "mylosses"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "half.py").write_text(
        "from ackd_bench.methods.kd import KD\n\n\nclass HalfKD(KD):\n    name = 'halfkd'\n")
    (package / "halfkd.yaml").write_text("params: {temperature: 3.0, t_squared: false}\n"
                                         "alone_weights: {task: 0.5, kd: 0.5}\n")
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "ackd_bench.cli", "train-student", str(toy_dir), "--arch", "S", "--method",
         "mylosses.half:HalfKD", "--teacher", str(teacher_ckpt), "--profile", "smoke", "--epochs", "1", "--out", str(out),
         "--quiet"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "result.json").read_text())["method"] == "halfkd"
    assert json.loads((out / "config.json").read_text())["method_source"] == "mylosses.half:HalfKD (local module)"
    bad = subprocess.run([sys.executable, "-m", "ackd_bench.cli", "train-student", str(toy_dir), "--method",
                          "mylosses.half:Nothing", "--teacher", str(teacher_ckpt), "--out", str(tmp_path / "x")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "expected a subclass of ackd_bench.methods.Distiller, got None" in bad.stderr
    assert not (tmp_path / "x").exists()
