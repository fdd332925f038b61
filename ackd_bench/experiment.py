"""The experiment, declared once: architectures, teacher/student pairs, methods and the layouts of
the paper's Tables 3-6. The CLI, the grid, sweeps, eval, result records and the leaderboard all
read them from here.

A method is parsed from its name into a `Method`: its distillation loss (a built-in baseline or an
outside distiller, see `methods/registry.py`), whether SemBridge runs on top of it, and what it
needs. A built-in loss is its module `ackd_bench/methods/<name>.py` and its YAML
`baselines/<name>.yaml`, which gives its display name and its place in the
tables; adding one touches nothing else. An outside one touches nothing here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Protocol

import yaml

from .errors import AckdError
from .resources import resource_dirs


class TableEntry(Protocol):
    """What a table row matches on: a result record (`results.Record`) or a row of the paper's results
    (`leaderboard.render.PaperResult`), which both import this module."""

    method: str
    ablation: str
    teacher: str | None
    student: str | None

ARCH_NAMES = {"R": "ResNet34", "M": "MobileNetV2", "S": "ShuffleNetV2"}
ARCHS = tuple(ARCH_NAMES)
PAIRS = ("R/R", "M/M", "S/S", "R/M", "R/S", "M/S")
ABLATIONS = ("ssm", "dynm", "ot1", "ot2")
ABLATION_NAMES = {"ssm": "SSM", "dynm": "DynM", "ot1": "L_ot1", "ot2": "L_ot2"}
SEMBRIDGE = "sembridge"

LOSS_NAME = re.compile(r"[a-z][a-z0-9_-]{0,39}")


@cache
def _builtin_specs() -> tuple[tuple[str, str, bool], ...]:
    """(name, display name, cross-modal) of each built-in loss, in Table 4's order, from the packaged
    YAMLs that carry a `table_order` (SemBridge's, a plug-in on top of a loss, does not). A user's
    $ACKD_BENCH_METHODS folder changes defaults, not which methods are built in."""
    found = {}
    for path in resource_dirs("methods")[-1].glob("*.yaml"):
        spec = yaml.safe_load(path.read_text())
        if isinstance(spec, dict) and "table_order" in spec:
            found[path.stem] = (int(spec["table_order"]), str(spec.get("display", path.stem)),
                                bool(spec.get("cross_modal", False)))
    return tuple((name, display, cross) for name, (_, display, cross) in sorted(found.items(), key=lambda i: i[1][0]))


# name -> display name of the built-in losses, in Table 4's order
BUILTIN_LOSSES: dict[str, str] = {name: display for name, display, _ in _builtin_specs()}


def cross_modal_losses() -> tuple[str, ...]:
    """Losses Table 5 leaves out: SemBridge is applied to the uni-modal ones only."""
    return tuple(name for name, _, cross in _builtin_specs() if cross)


@dataclass(frozen=True)
class Method:
    """`teacher`, `none` (the student alone), a loss (`kd`, an outside `mykd`) or SemBridge on a loss."""

    loss: str | None
    sembridge: bool = False
    teacher_run: bool = False

    @property
    def name(self) -> str:
        if self.teacher_run:
            return "teacher"
        if self.loss is None:
            return "none"
        if self.sembridge:
            return SEMBRIDGE if self.loss == "kd" else f"{SEMBRIDGE}+{self.loss}"
        return self.loss

    @property
    def needs_teacher(self) -> bool:
        return self.loss is not None

    def needs_matcher(self, ablation: tuple[str, ...] | list[str] = ()) -> bool:
        return self.sembridge and "ssm" not in ablation

    @property
    def builtin(self) -> bool:
        return self.loss is None or self.loss in BUILTIN_LOSSES

    @property
    def display(self) -> str:
        if self.teacher_run:
            return "teacher"
        if self.loss is None:
            return "student alone"
        base = BUILTIN_LOSSES.get(self.loss, self.loss)
        return f"+SemBridge ({base})" if self.sembridge else base


def parse_method(text: str) -> Method:
    """A method name -> Method, by syntax: `teacher`, `none`, LOSS, `sembridge`, `sembridge+LOSS`
    (`sembridge+kd` is `sembridge`). Whether LOSS can be built is the registry's question."""
    name = text.strip()
    if name == "teacher":
        return Method(None, teacher_run=True)
    if name == "none":
        return Method(None)
    sembridge = name == SEMBRIDGE or name.startswith(f"{SEMBRIDGE}+")
    loss = "kd" if name == SEMBRIDGE else name.split("+", 1)[1] if sembridge else name
    if not LOSS_NAME.fullmatch(loss) or loss in ("teacher", "none", SEMBRIDGE):
        raise AckdError(f"method {text!r}: expected teacher, none, LOSS, sembridge or sembridge+LOSS, where LOSS is "
                        f"a lower-case name (built in: {', '.join(BUILTIN_LOSSES)})")
    return Method(loss, sembridge)


def canonical_method(text: str) -> str:
    """One name per experiment: `sembridge+kd` is `sembridge`."""
    return parse_method(text).name


def parse_ablation(ablate: str | list[str] | tuple[str, ...] | None) -> list[str]:
    items = [a.strip() for a in (ablate.split(",") if isinstance(ablate, str) else ablate or []) if a.strip()]
    unknown = [a for a in items if a not in ABLATIONS]
    if unknown:
        raise AckdError(f"--ablate {','.join(unknown)}: unknown component(s); expected some of {', '.join(ABLATIONS)}")
    return [a for a in ABLATIONS if a in items]


def parse_pairs(pair: str | list[str] | None) -> list[str]:
    items = [pair] if isinstance(pair, str) else list(pair or ["all"])
    items = [p.strip().upper() for item in items for p in item.split(",") if p.strip()]
    if items in (["ALL"], []):
        return list(PAIRS)
    bad = [p for p in items if p not in PAIRS]
    if bad:
        raise AckdError(f"pair {','.join(bad)}: expected 'all' or some of {', '.join(PAIRS)}")
    return items


# ---- the paper's tables -------------------------------------------------------------------------

TABLES = (3, 4, 5, 6)


@dataclass(frozen=True)
class Row:
    """One row of a table layout: what runs fill it, and where the paper's number for it is."""

    label: str
    method: str
    pairs: tuple[str, ...]  # the pairs it runs on (Table 4: one column per pair)
    ablation: str = ""

    def runs(self) -> list[tuple[str, str, str]]:
        """(method, teacher arch, student arch) of each run the row needs."""
        out = []
        for pair in self.pairs:
            teacher, student = pair.split("/")
            if self.method == "teacher":
                out.append((self.method, teacher, ""))
            elif self.method == "none":
                out.append((self.method, "", student))
            else:
                out.append((self.method, teacher, student))
        return out

    def matches(self, record: TableEntry, pair: str | None = None) -> bool:
        """Whether a result record (or a row of the paper's results) belongs to this row."""
        if canonical_method(record.method) != self.method:
            return False
        if record.ablation != self.ablation:
            return False
        wanted = [pair] if pair else self.pairs
        return any(_in_pair(record, self.method, p) for p in wanted)


def _in_pair(record: TableEntry, method: str, pair: str) -> bool:
    teacher, student = pair.split("/")
    if method == "teacher":
        return record.teacher == teacher
    if method == "none":
        return record.student == student
    return record.teacher == teacher and record.student == student


def table_rows(table: int, pairs: tuple[str, ...] | list[str] = PAIRS, extra_losses: tuple[str, ...] = ()) -> list[Row]:
    """The rows of a table layout over `pairs`. `extra_losses` (outside methods on a board) get
    their own rows in Tables 4 and 5, after the built-in ones."""
    pairs = tuple(pairs)
    rows: list[Row] = []
    if table == 3:
        for pair in pairs:
            t, s = pair.split("/")
            rows += [Row(f"{pair}  T:{ARCH_NAMES[t]}", "teacher", (pair,)),
                     Row(f"{pair}  S:{ARCH_NAMES[s]}", "none", (pair,)),
                     Row(f"{pair}  +SemBridge", SEMBRIDGE, (pair,))]
    elif table == 4:
        rows = [Row(Method(loss).display, loss, pairs) for loss in (*BUILTIN_LOSSES, *extra_losses)]
        rows.append(Row("+SemBridge", SEMBRIDGE, pairs))
    elif table == 5:
        if "R/R" not in pairs:
            return []
        unimodal = ["kd", *[m for m in BUILTIN_LOSSES if m not in (*cross_modal_losses(), "kd")]]  # the paper's
        for loss in (*unimodal, *extra_losses):
            rows += [Row(Method(loss).display, loss, ("R/R",)),
                     Row(f"  + SemBridge ({Method(loss).display})", Method(loss, True).name, ("R/R",))]
    elif table == 6:
        if "R/R" not in pairs:
            return []
        rows = [Row(f"SemBridge without {ABLATION_NAMES[off]}", SEMBRIDGE, ("R/R",), off) for off in ABLATIONS]
        rows.append(Row("SemBridge (all four)", SEMBRIDGE, ("R/R",)))
    else:
        raise AckdError(f"table {table}: expected one of {', '.join(map(str, TABLES))}")
    return rows


def sub_columns(table: int, pairs: tuple[str, ...] | list[str] = PAIRS) -> list[str]:
    return {3: ["OA", "F1"], 4: [*pairs, "Avg."], 5: ["OA", "F1"], 6: ["OA"]}[table]
