"""Paired comparisons of two methods that count both sources of noise: which seeds were trained and
which test items were drawn.

Two methods run on the same test split with the same seeds (a seed fixes a student's initialisation,
its data order and its teacher's MS partners) are compared seed by seed and item by item. For OA,
let d[s, i] = correct_A[s, i] - correct_B[s, i]; the estimate is its mean. Its sampling model is a
two-way crossed random-effects model, d[s, i] = mu + seed[s] + item[i] + e[s, i]: `seed` is the
training variance (initialisation, order, partners), `item` an item that one method gets right more
often than the other whatever the seed, `e` their interaction. Hence

    Var(estimate) = var_seed / S + var_item / n + var_e / (S n).

The interval is a two-level bootstrap, paired by seed and by item: each resample draws S seeds with
replacement (the same seeds for both methods) and n test items with replacement (the same items for
every seed and both methods), and recomputes the difference; the 95% interval is the percentile
interval of 2,000 resamples. It needs no model for macro-F1, which is not a mean over items, and it
keeps the pairing that makes the comparison sharp. Its known biases: with few seeds it
underestimates the seed term by (S-1)/S, and resampling both factors counts the interaction term
twice (Owen 2007, the pigeonhole bootstrap); tests/test_paired.py measures the resulting coverage
by simulation.

The minimum detectable difference (MDD) of a design is the true difference a two-sided 5% test
finds with 80% power: (z_0.975 + z_0.80) x SE = 2.80 x SE, with SE the bootstrap's standard error
(normal approximation: with very few seeds a t-quantile would be larger). `variance_components`
estimates the three variances by the ANOVA method of moments, and `design_mdd` projects the MDD to
other numbers of seeds and test items.

Runs without per-item predictions (older run folders, board rows without their file) fall back to
seeds only: a paired t-interval over the per-seed differences, which says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy import stats as scipy_stats

from ..errors import AckdError
from ..experiment import parse_ablation, parse_method
from ..predictions import FILE_NAME, Predictions, read_predictions
from ..results import Record, read_result_json

POWER_FACTOR = float(scipy_stats.norm.ppf(0.975) + scipy_stats.norm.ppf(0.80))  # 2.80: z_0.975 + z_0.80
RESAMPLES = 2000
METRICS = ("oa", "f1")


@dataclass(frozen=True)
class Estimate:
    """A difference A - B (fractions) with its 95% interval, standard error and the design's MDD."""

    difference: float
    low: float
    high: float
    se: float
    df: float = np.inf  # the interval's degrees of freedom (t); inf: normal

    @property
    def mdd(self) -> float:
        """The true difference a two-sided 5% test of this design finds with 80% power."""
        return detectable(self.se, self.df)

    @property
    def resolved(self) -> bool:
        """The interval excludes 0: the difference is real at the 5% level."""
        return self.low > 0 or self.high < 0

    def text(self) -> str:
        return (f"{100 * self.difference:+.1f} [{100 * self.low:+.1f}, {100 * self.high:+.1f}] "
                f"(detectable: {100 * self.mdd:.1f})")


@dataclass
class Comparison:
    """Method A against method B in one setting (dataset version, pair, profile, protocol, epochs)."""

    a: str
    b: str
    setting: dict[str, str]
    seeds: list[int]
    items: int | None  # None: seeds only (some run has no per-item predictions)
    estimates: dict[str, Estimate] = field(default_factory=dict)
    note: str = ""

    @property
    def paired_by_item(self) -> bool:
        return self.items is not None

    def lines(self) -> list[str]:
        where = ", ".join(f"{k} {v}" for k, v in self.setting.items())
        design = (f"{len(self.seeds)} seeds x {self.items} test items, paired by seed and item" if self.paired_by_item
                  else f"{len(self.seeds)} seeds, paired by seed only")
        design += f" ({self.note})" if self.note else ""
        out = [f"{self.a} - {self.b}  [{where}; {design}]"]
        for metric, estimate in self.estimates.items():
            verdict = "real (interval excludes 0)" if estimate.resolved else "not resolved (interval holds 0)"
            out.append(f"  {metric.upper():<3} {estimate.text()} points: {verdict}")
        return out


# -- the estimators ---------------------------------------------------------------------------------

def weighted_macro_f1(labels: np.ndarray, predicted: np.ndarray, weights: np.ndarray, classes: int) -> np.ndarray:
    """Macro-F1 of one run's predictions under each row of item `weights` (R, n) (bootstrap counts):
    scikit-learn's f1_score(labels, predicted, labels=range(classes), average='macro',
    zero_division=0, sample_weight=row), for all rows in three matrix products."""
    truth = np.eye(classes)[labels]
    guess = np.eye(classes)[predicted]
    hits = weights @ (truth * guess)
    denominator = weights @ truth + weights @ guess
    f1 = np.divide(2 * hits, denominator, out=np.zeros_like(hits), where=denominator > 0)
    return f1.mean(axis=1)


def _metric_matrix(runs: Sequence[Predictions], weights: np.ndarray, metric: str) -> np.ndarray:
    """(R, S): each run's metric under each row of item weights."""
    if metric == "oa":
        return (weights @ np.stack([r.correct() for r in runs]).T) / weights.sum(axis=1, keepdims=True)
    classes = runs[0].logits.shape[1]
    return np.stack([weighted_macro_f1(r.labels, r.predicted, weights, classes) for r in runs], axis=1)


def aligned(a: Sequence[Predictions], b: Sequence[Predictions], where: str = "") -> tuple[list[Predictions], list[Predictions]]:
    """Both methods' runs in the first run's item order; every run must hold the same test items."""
    runs = [*a, *b]
    if any(r.multilabel for r in runs):
        raise AckdError(f"{where}paired comparisons are for single-label students; these runs are multi-label")
    order = {item: k for k, item in enumerate(runs[0].item_ids.tolist())}
    out = []
    for run in runs:
        ids = run.item_ids.tolist()
        if len(ids) != len(order) or any(i not in order for i in ids):
            raise AckdError(f"{where}the runs were not tested on the same items ({len(ids)} against {len(order)}): "
                            "compare runs of one dataset version and split")
        index = np.argsort([order[i] for i in ids])
        out.append(Predictions(run.item_ids[index], run.logits[index], labels=run.labels[index]))
    return out[:len(a)], out[len(a):]


def paired_estimate(a: Sequence[Predictions], b: Sequence[Predictions], resamples: int = RESAMPLES,
                    seed: int = 0, level: float = 0.95, metrics: Sequence[str] = METRICS) -> dict[str, Estimate]:
    """A - B for OA and macro-F1 from per-item predictions; a[k] and b[k] share seed k (see the
    module's docstring for the variance it counts and how)."""
    if len(a) != len(b) or not a:
        raise AckdError(f"a paired comparison needs one run of each method per seed: {len(a)} against {len(b)}")
    a, b = aligned(a, b)
    items = len(a[0].item_ids)
    draws = _item_draws(items, resamples, seed)
    estimates = {}
    for metric in metrics:
        per_seed = (_metric_matrix(a, np.ones((1, items)), metric) - _metric_matrix(b, np.ones((1, items)), metric))[0]
        # (R, S): each seed's difference on each resample of the test items (the same items for all)
        drawn = np.concatenate([_metric_matrix(a, w, metric) - _metric_matrix(b, w, metric) for w in draws])
        estimates[metric] = _combine(per_seed, drawn, level)
    return estimates


@lru_cache(maxsize=2)
def _item_draws(items: int, resamples: int, seed: int) -> tuple[np.ndarray, ...]:
    """Bootstrap weights of `items` test items, in blocks of (250, items): the same for every
    comparison on one test split (a board's cells share it), so drawn once."""
    rng = np.random.default_rng(seed)
    draws = tuple(rng.multinomial(items, np.full(items, 1 / items), size=min(250, resamples - start)).astype(float)
                  for start in range(0, resamples, 250))
    for block in draws:
        block.setflags(write=False)
    return draws


def _combine(per_seed: np.ndarray, drawn: np.ndarray, level: float) -> Estimate:
    """The mean difference and its interval from the per-seed differences (training variance, with
    each seed's own item noise) and their item-bootstrap replicates (the shared test-set draw).

    Var(mean) = s_d^2 / S + item part, where s_d^2 is the spread of the per-seed differences and the
    item part, sigma_item^2 / n, is the bootstrap variance of the seed mean less what each seed's own
    item noise adds to it, rescaled: (Var*(mean) - mean_s Var*(d_s) / S) * S / (S - 1). The interval
    is t-based with Satterthwaite's degrees of freedom (the seed term has S - 1)."""
    seeds = len(per_seed)
    mean = float(per_seed.mean())
    boot_of_mean = float(drawn.mean(axis=1).var(ddof=1))
    if seeds < 2:  # no seed spread to measure: the test-set draw alone, said by the caller
        se = float(np.sqrt(boot_of_mean))
        return Estimate(mean, *_t_bounds(mean, se, np.inf, level), se, np.inf)
    seed_term = float(per_seed.var(ddof=1)) / seeds
    own_noise = float(drawn.var(axis=0, ddof=1).mean()) / seeds
    item_term = max(0.0, (boot_of_mean - own_noise) * seeds / (seeds - 1))
    se = float(np.sqrt(seed_term + item_term))
    df = np.inf if seed_term == 0 else (seed_term + item_term) ** 2 * (seeds - 1) / seed_term ** 2
    return Estimate(mean, *_t_bounds(mean, se, df, level), se, float(df))


def _t_bounds(mean: float, se: float, df: float, level: float) -> tuple[float, float]:
    half = float(scipy_stats.t.ppf(0.5 + level / 2, df)) * se
    return mean - half, mean + half


def detectable(se: float, df: float = np.inf) -> float:
    """(t_0.975 + t_0.80) x SE at `df` degrees of freedom: 2.80 x SE for many."""
    return float(scipy_stats.t.ppf(0.975, df) + scipy_stats.t.ppf(0.80, df)) * se


def seeds_only(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Estimate | None:
    """A - B from one score per seed and method (no per-item predictions): a paired t-interval; None
    with fewer than two seeds."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if len(d) < 2:
        return None
    se = float(d.std(ddof=1) / np.sqrt(len(d)))
    return Estimate(float(d.mean()), *_t_bounds(float(d.mean()), se, len(d) - 1, level), se, float(len(d) - 1))


@dataclass(frozen=True)
class VarianceComponents:
    """The variances of the model x[s, i] = mu + seed[s] + item[i] + e[s, i] (ANOVA estimates, each
    clipped at 0), for a matrix of per-item scores (one method's correctness, or a paired difference)."""

    seed: float
    item: float
    residual: float

    def variance(self, seeds: int, items: int) -> float:
        """Of the mean over `seeds` seeds and `items` test items drawn afresh."""
        return self.seed / seeds + self.item / items + self.residual / (seeds * items)

    def mdd(self, seeds: int, items: int) -> float:
        return POWER_FACTOR * float(np.sqrt(self.variance(seeds, items)))

    def seeds_for(self, target: float, items: int) -> int | None:
        """The fewest seeds whose MDD at `items` test items is at most `target`; None when no number
        of seeds reaches it (the test split itself is too small)."""
        room = (target / POWER_FACTOR) ** 2 - self.item / items
        if room <= 0:
            return None
        return max(2, int(np.ceil((self.seed + self.residual / items) / room)))


def variance_components(x: np.ndarray) -> VarianceComponents:
    """Method of moments for a two-way crossed design without replication (S seeds x n items)."""
    x = np.asarray(x, dtype=float)
    seeds, items = x.shape
    if seeds < 2 or items < 2:
        raise AckdError(f"variance components need at least 2 seeds and 2 items; got {seeds} x {items}")
    grand, rows, cols = x.mean(), x.mean(axis=1), x.mean(axis=0)
    ms_seed = items * ((rows - grand) ** 2).sum() / (seeds - 1)
    ms_item = seeds * ((cols - grand) ** 2).sum() / (items - 1)
    ms_residual = ((x - rows[:, None] - cols[None, :] + grand) ** 2).sum() / ((seeds - 1) * (items - 1))
    return VarianceComponents(max(0.0, (ms_seed - ms_residual) / items), max(0.0, (ms_item - ms_residual) / seeds),
                              float(ms_residual))


def correctness(runs: Sequence[Predictions]) -> np.ndarray:
    """(S, n) 0/1: each run's correctness per item, in the first run's item order."""
    first, _ = aligned(runs, [])
    return np.stack([r.correct() for r in first])


# -- runs on disk --------------------------------------------------------------------------------------

SETTING = ("dataset", "dataset_version", "teacher", "student", "profile", "protocol", "epochs")


@dataclass(frozen=True)
class MethodSpec:
    """`METHOD` or `METHOD:ABLATION` (`sembridge:dynm`: SemBridge without DynM)."""

    method: str
    ablation: str

    @classmethod
    def parse(cls, text: str) -> MethodSpec:
        name, _, ablated = text.partition(":")
        return cls(parse_method(name).name, ",".join(parse_ablation(ablated)))

    def __str__(self) -> str:
        return f"{self.method}:{self.ablation}" if self.ablation else self.method

    def matches(self, record: Record) -> bool:
        return record.method == self.method and record.ablation == self.ablation


@dataclass(frozen=True)
class Run:
    """A record and where its per-item predictions may be: its run folder's predictions.npz, or a
    board's store of them (`stored_predictions`)."""

    record: Record
    predictions_file: Path | None

    @classmethod
    def in_folder(cls, record: Record, run_dir: str | Path) -> Run:
        return cls(record, Path(run_dir) / FILE_NAME)

    def predictions(self) -> Predictions | None:
        """The run's per-item predictions, checked against the digest its record holds; None when the
        run has none (older than them, or a board row whose file was not kept)."""
        path = self.predictions_file
        if path is None or self.record.predictions_sha256 is None or not path.is_file():
            return None
        return read_predictions(path, self.record.predictions_sha256)


def stored_predictions(store: str | Path, record: Record) -> Run:
    """A board row with the predictions a board keeps beside it, named by their sha256."""
    digest = record.predictions_sha256
    return Run(record, Path(store) / f"{digest}.npz" if digest else None)


def find_runs(runs_root: str | Path) -> list[Run]:
    """Every finished teacher or student run under `runs_root` (its result.json)."""
    root = Path(runs_root)
    if not root.is_dir():
        raise AckdError(f"--runs-root {root}: not a folder")
    runs = []
    for path in sorted(root.rglob("result.json")):
        data = read_result_json(path.parent) if path.is_file() and not path.is_symlink() else None
        if isinstance(data, dict) and "method" in data:  # a matcher's result has no method: not a Record
            try:
                runs.append(Run.in_folder(Record.from_dict(data), path.parent))
            except ValueError as exc:
                raise AckdError(f"{path}: {exc}") from None
    return runs


def compare(a_runs: Sequence[Run], b_runs: Sequence[Run], a: str, b: str, setting: dict[str, str],
            resamples: int = RESAMPLES) -> Comparison | None:
    """A against B in one setting, paired by seed (only seeds both have); None when no seed is shared."""
    by_seed_a, by_seed_b = ({r.record.seed: r for r in runs} for runs in (a_runs, b_runs))
    seeds = sorted(set(by_seed_a) & set(by_seed_b))
    if not seeds:
        return None
    left, right = [by_seed_a[s] for s in seeds], [by_seed_b[s] for s in seeds]
    predictions = [run.predictions() for run in [*left, *right]]
    result = Comparison(a, b, setting, seeds, None)
    if all(p is not None for p in predictions):
        result.items = len(predictions[0].item_ids)
        result.estimates = paired_estimate(predictions[:len(seeds)], predictions[len(seeds):], resamples=resamples)
        if len(seeds) < 2:
            result.note = "one seed: the interval counts the test items drawn, not training, which one seed cannot measure"
        return result
    result.note = "some runs have no per-item predictions (older than them)"
    for metric in METRICS:
        estimate = seeds_only([getattr(r.record, metric) for r in left], [getattr(r.record, metric) for r in right])
        if estimate is not None:
            result.estimates[metric] = estimate
    if not result.estimates:
        result.note += "; one shared seed gives no interval"
    return result


def _setting(record: Record, **replaced: Any) -> tuple:
    return tuple(replaced.get(k, getattr(record, k)) for k in SETTING)


def compare_methods(runs: Sequence[Run], a: str, b: str, resamples: int = RESAMPLES) -> list[Comparison]:
    """A against B in every setting (dataset version, pair, profile, protocol, epochs) both were run in."""
    spec_a, spec_b = MethodSpec.parse(a), MethodSpec.parse(b)
    groups: dict[tuple, dict[str, list[Run]]] = {}
    alone: list[tuple[str, Run]] = []  # a student without a teacher (`none`) joins every pair of its student
    for run in runs:
        for side, spec in (("a", spec_a), ("b", spec_b)):
            if spec.matches(run.record) and run.record.student is not None:
                if run.record.teacher is None:
                    alone.append((side, run))
                else:
                    groups.setdefault(_setting(run.record), {"a": [], "b": []})[side].append(run)
    for side, run in alone:
        matching = [key for key in groups if key == _setting(run.record, teacher=key[SETTING.index("teacher")])]
        for key in matching or [_setting(run.record)]:
            groups.setdefault(key, {"a": [], "b": []})[side].append(run)
    out = []
    for key, sides in sorted(groups.items(), key=lambda item: tuple(str(v) for v in item[0])):
        setting = dict(zip(SETTING, map(str, key)))
        setting["dataset_version"] = setting["dataset_version"][:12]
        teacher = setting.pop("teacher")
        setting["pair"] = f"{'-' if teacher == 'None' else teacher}/{setting.pop('student')}"
        found = compare(sides["a"], sides["b"], str(spec_a), str(spec_b), setting, resamples)
        if found is not None:
            out.append(found)
    return out


def compare_report(runs_root: str | Path, a: str, b: str, resamples: int = RESAMPLES) -> str:
    """`ackd-bench compare`'s text: one block per setting both methods were run in."""
    found = compare_methods(find_runs(runs_root), a, b, resamples)
    if not found:
        raise AckdError(f"--runs-root {runs_root}: no setting (dataset version, pair, profile, protocol, epochs) has "
                        f"runs of both {a} and {b} with a shared seed")
    header = ("Paired differences A - B in points (95% two-level bootstrap interval over seeds and test items; "
              "detectable: the smallest difference this design finds with 80% power at the 5% level)")
    return "\n".join([header, *(line for c in found for line in c.lines())])
