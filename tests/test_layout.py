"""The design card's layout: `recipes/` and `baselines/` at the top of the repository, shipped inside
the package; `leaderboard/leaderboard.csv` committed and described by its README."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from ackd_bench.leaderboard.board import predictions_store, read_board
from ackd_bench.leaderboard.summary import readme
from ackd_bench.resources import resource_dirs
from ackd_bench.results import RESULT_FIELDS

REPO = Path(__file__).resolve().parents[1]


def _source_tree(dest: Path) -> Path:
    """The checkout's files as a clean clone would have them (tracked, plus new files not ignored)."""
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout: the source tree cannot be told from build outputs")
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    return dest


def test_the_card_folders_are_at_the_top():
    for folder in ("ackd_bench", "recipes", "recipes/profiles", "baselines", "leaderboard", "tests"):
        assert (REPO / folder).is_dir(), folder
    assert (REPO / "pyproject.toml").is_file()
    assert {p.name for p in (REPO / "recipes").glob("*.yaml")} == {"toy.yaml", "s2s-eu.yaml", "s2s-cn.yaml",
                                                                    "m2s-gl.yaml"}
    assert {"paper.yaml", "bench.yaml", "demo.yaml", "smoke.yaml"} <= {p.name for p in (REPO / "recipes/profiles").iterdir()}
    assert (REPO / "baselines" / "paper_results.csv").is_file() and (REPO / "baselines" / "kd.yaml").is_file()
    # an editable install reads them where they are
    assert resource_dirs("recipes")[-1].resolve() == REPO / "recipes"
    assert resource_dirs("profiles")[-1].resolve() == REPO / "recipes" / "profiles"
    assert resource_dirs("methods")[-1].resolve() == REPO / "baselines"


def test_the_wheel_carries_recipes_profiles_methods_and_paper_results(tmp_path):
    tree = _source_tree(tmp_path / "src")
    build = subprocess.run([sys.executable, "-c", "from setuptools import build_meta as b; "
                            "print(b.build_wheel('dist'))"], cwd=tree, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = tree / "dist" / build.stdout.strip().splitlines()[-1]
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("ackd_bench/recipes/toy.yaml", "ackd_bench/recipes/s2s-cn.yaml", "ackd_bench/recipes/profiles/demo.yaml",
                 "ackd_bench/recipes/profiles/paper.yaml", "ackd_bench/baselines/kd.yaml",
                 "ackd_bench/baselines/sembridge.yaml", "ackd_bench/baselines/paper_results.csv",
                 "ackd_bench/resources/leaderboard/dataset_versions.csv"):
        assert name in names, name
    assert not any(n.startswith(("baselines/", "recipes/")) for n in names)  # never a top-level import of ours
    packages = {str(p.parent.relative_to(REPO)) for p in (REPO / "ackd_bench").rglob("__init__.py")}
    assert {p for p in packages if f"{p}/__init__.py" not in names} == set()  # pyproject's list is complete

    # installed from the wheel alone (no editable finder: -S), the resources are found inside the package
    target = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); from ackd_bench.resources import resource_file as f; "
             "print(f('recipes', 'toy.yaml')); print(f('profiles', 'demo.yaml')); print(f('methods', 'paper_results.csv'))")
    found = subprocess.run([sys.executable, "-S", "-c", probe, str(target)], capture_output=True, text=True)
    assert found.returncode == 0, found.stderr
    assert found.stdout.split() == [str(target / "ackd_bench" / p) for p in
                                    ("recipes/toy.yaml", "recipes/profiles/demo.yaml", "baselines/paper_results.csv")]


def test_the_published_board_is_committed_and_its_readme_shows_it():
    board = REPO / "leaderboard" / "leaderboard.csv"
    assert board.read_text().split("\n", 1)[0] == ",".join(RESULT_FIELDS)
    assert (REPO / "leaderboard" / "README.md").read_text() == readme(read_board(board), predictions_store(board)) + "\n"


def test_the_published_board_holds_every_run_of_the_committed_toy_grid():
    """The toy grid's plan and ledger are committed beside the board: every run the plan asked for is
    done, each teacher and student is a board row, and its cost adds up per stage."""
    grid = REPO / "leaderboard" / "toy-grid"
    plan = json.loads((grid / "sweeps" / "toy-grid.sweep.json").read_text())
    ledger = json.loads((grid / "sweeps" / "toy-grid.json").read_text())
    assert len(plan["runs"]) == len(ledger) == 192 and {e["status"] for e in ledger.values()} == {"done"}
    assert sorted({r["seed"] for r in plan["runs"]}) == [0, 1, 2] and plan["config"]["profile"]["name"] == "demo"

    def key(method, teacher, student, ablation, seed):
        return method, teacher or "", student or "", ablation or "", seed

    on_board = {key(r.method, r.teacher, r.student, r.ablation, r.seed)
                for r in read_board(REPO / "leaderboard" / "leaderboard.csv") if r.dataset == "toy"}
    asked = {key(e["method"], e["teacher"], e["student"], e["ablation"], e["seed"])
             for e in ledger.values() if e["kind"] != "matcher"}
    assert len(asked) == 189 and asked <= on_board
    printed = subprocess.run([sys.executable, str(REPO / "bench" / "grid_cost.py"), str(grid / "sweeps" / "toy-grid.json")],
                             capture_output=True, text=True, check=True).stdout
    for stage in (0, 1):
        entries = [e for e in ledger.values() if e["stage"] == stage]
        row = next(line.split() for line in printed.splitlines() if line.split()[:2] == ["stage", str(stage)]
                   and len(line.split()) == 7)
        assert row[2:5] == [str(len(entries)), f"{sum(e['wall_seconds'] for e in entries):.0f}",
                            f"{sum(e['cpu_seconds'] for e in entries):.0f}"]


def test_code_version_names_this_checkouts_commit_and_never_an_enclosing_repositorys(tmp_path):
    from ackd_bench.provenance import code_version

    if (REPO / ".git").exists():
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        assert f"+g{head}" in code_version()
    # the package installed into a virtual environment that lives inside a user's own repository
    project = tmp_path / "my-project"
    site = project / ".venv" / "site-packages"
    shutil.copytree(REPO / "ackd_bench", site / "ackd_bench", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    (project / "pyproject.toml").write_text('[project]\nname = "my-project"\n')
    subprocess.run(["git", "-C", str(project), "-c", "user.name=u", "-c", "user.email=u@example.org", "commit", "-q",
                    "--allow-empty", "-m", "the user's own history"], check=True)
    probe = "import sys; sys.path.insert(0, sys.argv[1]); from ackd_bench.provenance import code_version; print(code_version())"
    found = subprocess.run([sys.executable, "-S", "-c", probe, str(site)], capture_output=True, text=True)
    assert found.returncode == 0, found.stderr
    assert "+g" not in found.stdout and found.stdout.strip()
