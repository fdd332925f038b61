"""The experiment grid of the paper's Tables 3-6, as run requests.

Table 3: teachers, students without KD, and SemBridge (+KD) for every pair.
Table 4: the seven baselines and SemBridge (+KD) for every pair.
Table 5: R/R, the six uni-modal baselines with and without SemBridge.
Table 6: R/R, SemBridge with each of its four components switched off.
Teachers and matchers that students need are added as dependencies (stage 0), students are stage 1.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import AckdError
from ..provenance import config_hash
from ..results import ABLATIONS, BASELINE_LOSSES

PAIRS = ("R/R", "M/M", "S/S", "R/M", "R/S", "M/S")
TABLES = (3, 4, 5, 6)
UNIMODAL = ("kd", "rkd", "dkd", "logits", "ctkd", "lskd")  # Table 5 (VPR is cross-modal by design)


@dataclass(frozen=True, order=True)
class RunRequest:
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


def _students(table: int, pairs: list[str]) -> list[tuple[str, str, str, str]]:
    """(method, teacher, student, ablation) rows of one table."""
    out = []
    if table == 3:
        out += [("none", "", p.split("/")[1], "") for p in pairs]
        out += [("sembridge", *p.split("/"), "") for p in pairs]
    elif table == 4:
        out += [(m, *p.split("/"), "") for m in (*BASELINE_LOSSES, "sembridge") for p in pairs]
    elif table == 5:
        out += [(m, "R", "R", "") for m in UNIMODAL]
        out += [("sembridge" if m == "kd" else f"sembridge+{m}", "R", "R", "") for m in UNIMODAL]
    elif table == 6:
        out += [("sembridge", "R", "R", a) for a in ABLATIONS]
    else:
        raise AckdError(f"table {table}: expected one of {TABLES}")
    return out


def expand_grid(datasets: list[str], *, methods: list[str] | None = None, pairs: list[str] | None = None,
                seeds: list[int] = (0,), tables: list[int] = TABLES) -> list[RunRequest]:
    known = {"teacher", *(m for t in TABLES for m, *_ in _students(t, list(PAIRS)))}
    unknown = sorted(set(methods or ()) - known)
    if unknown:
        raise AckdError(f"--methods {' '.join(unknown)}: not in Tables 3-6; expected some of {' '.join(sorted(known))}")
    pairs = list(PAIRS if pairs in (None, ["all"], ("all",)) else pairs)
    bad = [p for p in pairs if p not in PAIRS]
    if bad:
        raise AckdError(f"--pairs {' '.join(bad)}: expected 'all' or some of {' '.join(PAIRS)}")
    requests: set[RunRequest] = set()
    for dataset in datasets:
        for seed in seeds:
            for table in tables:
                for method, teacher, student, ablation in _students(table, pairs):
                    if table in (5, 6) and "R/R" not in pairs:
                        continue
                    if methods and method not in methods:
                        continue
                    requests.add(RunRequest(1, dataset, "student", method, teacher, student, ablation, seed))
                if 3 in tables and (not methods or "teacher" in methods):
                    for pair in pairs:
                        requests.add(RunRequest(0, dataset, "teacher", "teacher", pair.split("/")[0], "", "", seed))
    for r in list(requests):  # dependencies
        if r.kind == "student" and r.method != "none":
            requests.add(RunRequest(0, r.dataset, "teacher", "teacher", r.teacher, "", "", r.seed))
        if r.method.startswith("sembridge") and "ssm" not in r.ablation.split(","):
            requests.add(RunRequest(0, r.dataset, "matcher", "matcher", "", "", "", r.seed))
    return sorted(requests)


def count_by_table(pairs: list[str] | None = None) -> dict[int, int]:
    """Student runs per table for one dataset and seed (the tables overlap)."""
    pairs = list(PAIRS if pairs is None else pairs)
    return {t: len(_students(t, pairs)) for t in TABLES}
