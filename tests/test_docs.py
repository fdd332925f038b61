"""The documentation site: it builds in strict mode (as CI builds it), its generated pages cover the
parser and the recipes, and the README stays a short front page whose set-up commands do not move."""

from __future__ import annotations

import argparse
import html
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ackd_bench.cli import build_parser
from ackd_bench.results import RESULT_FIELDS

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
SETUP_COMMANDS = (
    "python3 -m venv .venv && .venv/bin/pip install -c constraints.txt -e . && .venv/bin/ackd-bench demo",
    "python3 -m venv .venv && .venv/bin/pip install -c constraints.txt -e '.[dev]' && .venv/bin/python -m pytest -q -n 2 --dist loadfile",
)
# text that describes who wrote a page or the machine it was written on, rather than the project
CIRCUMSTANTIAL = ("this machine", "this session", "the session that", "available to us", "we could verify")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-f", str(REPO / "mkdocs.yml"),
                           "-d", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def page_text(site: Path, page: str) -> str:
    """A page's main content as text (tags dropped, entities decoded)."""
    raw = (site / page / "index.html").read_text()
    main = raw.split('role="main"', 1)[1]
    return html.unescape(re.sub(r"<[^>]+>", " ", main))


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def test_cli_reference_lists_every_subcommand_and_option(site):
    raw = (site / "cli" / "index.html").read_text()
    for name, sub in subcommands().items():
        assert f'<h2 id="{name}">' in raw, f"no section for `ackd-bench {name}`"
        section = html.unescape(raw.split(f'<h2 id="{name}">', 1)[1].split("<h2 ", 1)[0])
        for action in sub._actions:
            if action.help == argparse.SUPPRESS:  # hidden from --help, and so from the reference
                continue
            for option in action.option_strings:
                assert option in section, f"`ackd-bench {name}`: {option} missing from the CLI reference"
            if not action.option_strings:
                assert (action.metavar or action.dest) in section


def test_datasets_page_covers_every_recipe(site):
    text = page_text(site, "datasets")
    recipes = sorted(path.stem for path in (REPO / "recipes").glob("*.yaml"))
    assert recipes
    for name in recipes:
        assert f"recipes/{name}.yaml" in text, f"recipe {name} missing from the datasets page"
    for fact in ("NaSC-TG2", "msadc.cn", "CDLA-Permissive-1.0", "research use (NWPU-RESISC45 terms)"):
        assert fact in text


def test_reference_pages(site):
    fidelity = (REPO / "docs" / "FIDELITY.md").read_text().splitlines()[0].lstrip("# ").strip()
    assert fidelity in page_text(site, "FIDELITY")
    formats = page_text(site, "formats")
    assert all(field in formats for field in RESULT_FIELDS)
    api = (site / "api" / "index.html").read_text()
    for module in ("ackd_bench.train.api", "ackd_bench.methods.base", "ackd_bench.data.build"):
        assert f'id="{module}"' in api, f"{module} not rendered by mkdocstrings"


def test_leaderboard_page_shows_the_toy_grid_of_the_projects_board(site):
    """The page shows what `leaderboard/leaderboard.csv` holds: the toy's tables (a cell checked
    by hand against the board's rows), each table's paired comparisons and the plot."""
    import numpy as np

    from ackd_bench.leaderboard.board import read_board

    runs = [r for r in read_board(REPO / "leaderboard" / "leaderboard.csv") if r.dataset == "toy"]
    sembridge = [100 * r.oa for r in runs if r.method == "sembridge" and (r.teacher, r.student) == ("R", "R")
                 and not r.ablation]
    assert len(sembridge) >= 3, "the project's board holds no 3-seed toy grid"
    text = page_text(site, "leaderboard")
    assert f"{np.mean(sembridge):.1f} ± {np.std(sembridge, ddof=1):.1f} (n={len(sembridge)})" in text
    for question in ("Table 3: SemBridge against the student alone", "Table 4: SemBridge against each distillation loss",
                     "Table 5: SemBridge + X against X", "Table 6: SemBridge against SemBridge without one part"):
        assert question in text
    assert "sembridge - sembridge:dynm" in text and text.count("These designs detect ") >= 3
    raw = (site / "leaderboard" / "index.html").read_text()
    assert 'src="../toy_oa.png"' in raw and "generated from the board -->" not in raw
    assert (site / "toy_oa.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_readme_is_a_short_front_page():
    text = README.read_text()
    assert len(text.splitlines()) <= 170
    lines = text.splitlines()
    for command in SETUP_COMMANDS:
        assert command in lines
    for link in re.findall(r"\]\((docs/[^)#]+)", text):
        assert (REPO / link).is_file(), f"README links to missing {link}"


@pytest.mark.parametrize("path", [README, *sorted((REPO / "docs").glob("*.md"))], ids=lambda p: p.name)
def test_no_text_about_its_circumstances(path):
    text = path.read_text().lower()
    assert not [phrase for phrase in CIRCUMSTANTIAL if phrase in text]
