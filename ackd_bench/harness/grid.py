"""The experiment grid of the paper's Tables 3-6, as grid runs (a method, pair, ablation and seed on one
dataset), which the sweep turns into run requests (train/request.py).

Table 3: teachers, students without KD, and SemBridge (+KD) for every pair.
Table 4: the seven baselines and SemBridge (+KD) for every pair.
Table 5: R/R, the six uni-modal baselines with and without SemBridge.
Table 6: R/R, SemBridge with each of its four components switched off.
Teachers and matchers that students need are added as dependencies (stage 0), students are stage 1.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import AckdError
from ..experiment import BUILTIN_LOSSES, PAIRS, TABLES, parse_ablation, parse_method, parse_pairs, table_rows
from ..methods.registry import distiller_class
from ..provenance import config_hash


@dataclass(frozen=True, order=True)
class GridRun:
    stage: int
    dataset: str      # dataset directory
    kind: str         # teacher | matcher | student
    method: str       # teacher | matcher | none | kd | ... | sembridge[+LOSS]
    teacher: str      # teacher arch (R/M/S) or "" (students alone, matchers)
    student: str      # student arch or ""
    ablation: str     # comma-separated, canonical order
    seed: int

    @property
    def key(self) -> str:
        return config_hash(asdict(self))[:16]

    @property
    def label(self) -> str:
        pair = f"{self.teacher}/{self.student}" if self.teacher and self.student else (self.teacher or self.student or "-")
        return f"{self.kind}:{self.method}{'-no-' + self.ablation if self.ablation else ''} {pair} seed {self.seed}"


def _runs(table: int, pairs: list[str], extra_losses: tuple[str, ...] = ()) -> list[tuple[str, str, str, str]]:
    """(method, teacher, student, ablation) of every run a table's layout needs."""
    return [(method, teacher, student, row.ablation) for row in table_rows(table, pairs, extra_losses)
            for method, teacher, student in row.runs()]


def expand_grid(datasets: list[str], *, methods: list[str] | None = None, pairs: list[str] | None = None,
                seeds: list[int] = (0,), tables: list[int] = TABLES) -> list[GridRun]:
    wanted = {parse_method(m).name for m in methods or ()}
    extra = tuple(sorted({parse_method(m).loss for m in wanted} - {None, *BUILTIN_LOSSES}))
    installed = tuple(loss for loss in extra if _installed(loss))  # an outside method runs once installed
    known = {m for t in TABLES for m, *_ in _runs(t, list(PAIRS), installed)}
    unknown = sorted(wanted - known)
    if unknown:
        builtin = sorted(m for t in TABLES for m, *_ in _runs(t, list(PAIRS)))
        raise AckdError(f"--methods {' '.join(unknown)}: not in Tables 3-6; expected some of {' '.join(sorted(set(builtin)))} "
                        "or an installed outside method (entry point `ackd_bench.methods`)")
    extra = installed
    pairs = parse_pairs(pairs)
    requests: set[GridRun] = set()
    for dataset in datasets:
        for seed in seeds:
            for table in tables:
                for method, teacher, student, ablation in _runs(table, pairs, extra):
                    if wanted and method not in wanted:
                        continue
                    kind = "teacher" if method == "teacher" else "student"
                    requests.add(GridRun(0 if kind == "teacher" else 1, dataset, kind, method, teacher, student,
                                            ablation, seed))
    for r in list(requests):  # dependencies
        method = parse_method(r.method)
        if r.kind == "student" and method.needs_teacher:
            requests.add(GridRun(0, r.dataset, "teacher", "teacher", r.teacher, "", "", r.seed))
        if method.needs_matcher(parse_ablation(r.ablation)):
            requests.add(GridRun(0, r.dataset, "matcher", "matcher", "", "", "", r.seed))
    return sorted(requests)


def _installed(loss: str) -> bool:
    try:
        distiller_class(loss)
    except AckdError:
        return False
    return True


def count_by_table(pairs: list[str] | None = None) -> dict[int, int]:
    """Student runs per table for one dataset and seed (the tables overlap)."""
    pairs = parse_pairs(pairs)
    return {t: sum(1 for m, *_ in _runs(t, pairs) if m != "teacher") for t in TABLES}
