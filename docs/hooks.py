"""MkDocs hook: the pages generated from the code at build time, so that they cannot drift from it.

- `cli.md` (a generated file): every subcommand of `ackd_bench.cli.build_parser()`, with its usage
  and each argument's help, default and choices.
- `datasets.md`: its hand-written text, then one subsection per recipe in `recipes/` (sources, bands,
  class maps, splits, licences), rendered with the dataset card's own helpers (`data/card.py`), so
  the site says what a build's `DATASET.md` says.
- `leaderboard.md`: at its `TOY_GRID_MARK`, the toy's Tables 3-6 and their paired comparisons from
  the project's board (`leaderboard/leaderboard.csv` and its `predictions/`), and the plot of OA by
  method and pair (`toy_oa.png`, generated), so the page shows what the board holds.
"""

from __future__ import annotations

import argparse
import html
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "recipes"  # this checkout's recipes, not $ACKD_BENCH_RECIPES: the site documents the repository
BOARD = ROOT / "leaderboard" / "leaderboard.csv"  # the project's published board
TOY_GRID_MARK = "<!-- the toy grid's tables, generated from the board -->"
TOY_PLOT = "toy_oa.png"
USAGE_WIDTH = 100  # argparse wraps to the terminal otherwise, and the page would depend on who built it


def on_files(files, config):
    files.append(File.generated(config, "cli.md", content=cli_page()))
    plot = toy_plot()
    if plot is not None:
        files.append(File.generated(config, TOY_PLOT, content=plot))
    return files


def on_page_markdown(markdown, page, config, files):
    if page.file.src_uri == "datasets.md":
        return markdown.rstrip("\n") + "\n\n" + recipes_markdown()
    if page.file.src_uri == "leaderboard.md":
        return markdown.replace(TOY_GRID_MARK, toy_grid_markdown())
    return markdown


# --- the toy grid on the board --------------------------------------------------------------------

def _toy_runs() -> list:
    from ackd_bench.leaderboard.board import read_board

    return [r for r in read_board(BOARD) if r.dataset == "toy"]


def toy_plot() -> bytes | None:
    import tempfile

    from ackd_bench.errors import AckdError
    from ackd_bench.leaderboard.plot import plot_oa

    with tempfile.TemporaryDirectory() as tmp:
        try:
            return plot_oa(_toy_runs(), Path(tmp) / TOY_PLOT).read_bytes()
        except AckdError:  # no toy student on the board
            return None


def toy_grid_markdown() -> str:
    from ackd_bench.leaderboard.board import predictions_store
    from ackd_bench.leaderboard.summary import tables_markdown

    runs = _toy_runs()
    if not runs:
        return "The project's board holds no toy run yet."
    return (f"![Test OA of each method on each pair of toy, with 95% t-intervals over seeds]({TOY_PLOT})\n\n"
            + tables_markdown(runs, predictions_store(BOARD), datasets=["toy"], with_paper=False))


# --- CLI reference --------------------------------------------------------------------------------

def _text(value: str) -> str:
    """Help text as Markdown text: HTML-escaped, and `*` kept literal (globs such as `teacher-R-s0-*`)."""
    return html.escape(" ".join(value.split()), quote=False).replace("*", r"\*")


def _usage(parser: argparse.ArgumentParser) -> str:
    parser.formatter_class = lambda prog: argparse.HelpFormatter(prog, width=USAGE_WIDTH)
    return parser.format_usage().strip()


def _argument(action: argparse.Action) -> str:
    if action.option_strings:
        takes_value = action.nargs != 0
        metavar = action.metavar or action.dest.upper()
        name = ", ".join(f"{o} {metavar}" if takes_value else o for o in action.option_strings)
    else:
        name = action.metavar or action.dest
        if action.nargs in ("?", "*"):
            name = f"[{name}]"
    notes = []
    if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
        notes.append("one of " + ", ".join(f"`{c}`" for c in action.choices))
    default = action.default
    if (default not in (None, False, argparse.SUPPRESS, []) and action.nargs != 0
            and "default" not in (action.help or "")):
        shown = " ".join(map(str, default)) if isinstance(default, list) else default
        notes.append(f"default `{shown}`")
    if action.required and action.option_strings:
        notes.append("required")
    help_text = _text(action.help or "")
    if notes:
        help_text = f"{help_text} ({'; '.join(notes)})" if help_text else "; ".join(notes).capitalize()
    return f"- `{name}`" + (f": {help_text}" if help_text else "")


def documented(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The arguments `--help` shows (not those whose help is argparse.SUPPRESS)."""
    return [a for a in parser._actions if a.help != argparse.SUPPRESS]


def cli_page() -> str:
    from ackd_bench.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    summaries = {choice.dest: choice.help for choice in commands._choices_actions}
    lines = ["# CLI reference", "",
             "Generated from the parser (`ackd_bench.cli.build_parser()`) when this site is built. "
             "`ackd-bench COMMAND --help` prints the same.", "",
             "```text", _usage(parser), "```", ""]
    lines += [_argument(a) for a in documented(parser) if a is not commands] + [""]
    for name, sub in commands.choices.items():
        lines += [f"## {name}", "", _text(summaries.get(name) or ""), "", "```text", _usage(sub), "```", ""]
        lines += [_argument(a) for a in documented(sub)] + [""]
    return "\n".join(lines)


# --- datasets -------------------------------------------------------------------------------------

def _demote(lines: list[str]) -> list[str]:
    """The card's sections (`## ...`) as subsections of a recipe's section (`### name`)."""
    return ["##" + line if line.startswith("## ") else line for line in lines]


def _source_lines(name: str, source: Any, what: str) -> list[str]:
    lines = [f"- **{name}** ({what}): licence {source.licence}"]
    archive = getattr(source, "archive", None)
    if archive is not None and archive.url:
        lines.append(f"    - download: `{archive.filename}` ({archive.size}, md5 `{archive.md5}`) from <{archive.url}>")
    elif archive is not None:
        url, _, about = archive.page.partition(" ")  # "URL (who publishes it)"
        lines.append(f"    - local copy only (`--source-dir`), from <{url}> {_text(about)}; it holds "
                     f"`{archive.layout.split(' (')[0]}` ({_text(archive.size)})")
    else:  # streamed sources list their published files themselves (BigEarthNet)
        for part in (source.metadata, *source.s2_parts, *source.map_parts):
            lines.append(f"    - download: `{part.filename}` ({part.size}, md5 `{part.md5}`) from "
                         f"<{source.url.format(part.filename)}>")
    lines.append(f"    - cite: {_text(source.citation)}")
    return lines


def recipe_section(path: Path) -> list[str]:
    from ackd_bench.data.card import band_set_lines, class_map_lines, selection_lines
    from ackd_bench.data.recipe import Recipe
    from ackd_bench.data.sources import PAIRED_SOURCES, SOURCES
    from ackd_bench.untrusted import load_yaml

    text = path.read_text()
    recipe = Recipe.from_dict(load_yaml(text, str(path)), str(path))
    splits = recipe.splits
    fractions = " / ".join(f"{split} {share:g}" for split, share in splits.fractions.items())
    lines = [f"### {recipe.name}" + (" (SYNTHETIC)" if recipe.synthetic else ""), ""]
    if recipe.description:
        lines += [recipe.description.strip(), ""]
    lines += [f"- recipe: `recipes/{path.name}` (version {recipe.version})",
              f"- classes ({len(recipe.classes)}): " + ", ".join(f"`{c}`" for c in recipe.classes),
              f"- image size: {recipe.image_size} px",
              f"- splits: {fractions}, by sha256(salt `{splits.salt}`, source id)"
              + "".join(f"; {m.upper()} keeps its source's official split"
                        for m, side in recipe.modalities.items() if side.official_split),
              f"- shards: at most {recipe.shards.max_samples} samples each, "
              f"`{recipe.shards.compression}` compression",
              "", "#### Sides", "", "| side | sources | bands | pseudo-RGB | labels | paired control |",
              "|---|---|---|---|---|---|"]
    sources = []
    for modality, side in recipe.modalities.items():
        names = list(side.sources) or ["generated"]
        paired = side.paired_rgb
        lines.append(f"| {modality.upper()} | {', '.join(names)} | {' '.join(side.bands)} | "
                     f"{' '.join(side.rgb_bands or ()) or '–'} | "
                     f"{'multi-label' if side.multilabel else 'single-label'} | {paired or '–'} |")
        sources += [(n, SOURCES[n], f"{modality.upper()} side") for n in names if n in SOURCES]
        if paired in PAIRED_SOURCES:
            sources.append((paired, PAIRED_SOURCES[paired], "paired control"))
    lines += _demote(band_set_lines(recipe.modalities["ms"].band_sets))
    lines += _demote(selection_lines(recipe)) + _demote(class_map_lines(recipe, recipe.classes))
    if sources:
        lines += ["", "#### Sources and licences", ""]
        for source_name, source, what in sources:
            lines += _source_lines(source_name, source, what)
    else:
        lines += ["", "#### Sources and licences", "", "Generated on the spot by `ackd_bench/data/toy.py`; no download."]
    lines += ["", "#### Recipe file", "", "The reasons for choices the paper does not state are the file's comments.", "",
              "```yaml", text.rstrip("\n"), "```", ""]
    return lines


def recipes_markdown() -> str:
    lines = []
    for path in sorted(RECIPES.glob("*.yaml")):
        lines += recipe_section(path)
    return "\n".join(lines)
