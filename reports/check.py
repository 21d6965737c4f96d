"""CI regression gate: compare `results.csv` with a stored baseline, metric by metric.

A metric regresses when it got worse by more than its tolerance (in the metric's own unit:
points for rates, nats for NLL, ...) **and** beyond the statistical noise. Where both runs kept
per-sample records of the same images, a paired test decides (exact McNemar for error rates, a
paired bootstrap for means and OOD metrics: `benchmark.paired`); elsewhere the noise is the
combined half-width of the two 95 % intervals, sqrt(h_base^2 + h_now^2), where the rows carry one. A
metric without an interval (a sanity flag: a decision, not an estimate) is judged by the
tolerance alone. A NaN now, where the baseline has a number, always fails. Metrics that vanished
fail the check (a gate that passes when its numbers disappear protects nothing) unless allowed;
new metrics are reported. Rows without a direction (a fitted temperature, a histogram bin) are
descriptive: they are neither stored in a baseline nor gated.
"""

from __future__ import annotations

import fnmatch
import json
import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.records import condition_key
from reports.errors import ReportError
from reports.files import write_atomic, write_text_atomic
from reports.leaderboard import condition_columns, direction

BASELINE_FORMAT = 2  # 2: conditions as a JSON object (1: as "eps=0.5, norm=l2" text)
DEFAULT_TOLERANCE = 0.5
_KEY = ["checkpoint", "task", "metric", "conditions"]
FAILING = ("REGRESSED", "MISSING", "INVALID")


def _legacy_conditions(text: str) -> dict[str, Any]:
    """The conditions of a format-1 baseline, written as "eps=0.5, norm=l2", as a mapping."""
    conditions: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(", "))):
        name, _, value = item.partition("=")
        try:
            conditions[name] = int(value)
        except ValueError:
            try:
                conditions[name] = float(value)
            except ValueError:
                conditions[name] = value
    return conditions


def _records(results: pd.DataFrame) -> pd.DataFrame:
    """results.csv rows with a direction, reduced to the comparison key (conditions as their
    canonical `condition_key`, so a severity read back as 3.0 matches a task's 3) and the
    numbers the gate needs."""
    gated = results[[direction(v) is not None for v in results["higher_is_better"]]]
    columns = condition_columns(results)
    frame = gated.assign(conditions=[condition_key({c: row[c] for c in columns})
                                     for row in gated.to_dict("records")])
    for column in ("ci_low", "ci_high"):
        if column not in frame:
            frame[column] = float("nan")
    return frame[[*_KEY, "value", "n", "higher_is_better", "ci_low", "ci_high"]]


def read_results(out_dir: Path) -> pd.DataFrame:
    """The comparison records of `out_dir/results.csv`."""
    path = Path(out_dir) / "results.csv"
    if not path.is_file():
        raise ReportError(f"{path}: no results.csv; run `rubench evaluate` first")
    try:
        results = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ReportError(f"{path}: unreadable CSV: {exc}") from exc
    missing = {"checkpoint", "task", "metric", "value", "n", "higher_is_better"} - set(results)
    if missing:
        raise ReportError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    return _records(results)


def write_baseline(out_dir: Path, target: Path, samples_sha256: str | None = None) -> int:
    """Store the current gated numbers of `out_dir` as a JSON baseline; returns their count.
    `samples_sha256` names the per-sample records archive written beside it (if any), so a
    stale archive is never paired with this baseline.

    A NaN is refused: a baseline must hold numbers a later run can be compared with. An
    infinite value (a median perturbation norm when most attacks fail) is kept as `Infinity`.
    """
    records = read_results(out_dir)
    invalid = records[records["value"].isna()]
    if len(invalid):
        names = ", ".join(_name(tuple(r[k] for k in _KEY)) for _, r in invalid.head(5).iterrows())
        raise ReportError(f"{Path(out_dir) / 'results.csv'}: {len(invalid)} metric(s) are NaN "
                          f"({names}); fix the evaluation before storing a baseline")
    metrics = json.loads(records.to_json(orient="records"))  # JSON has no inf: it wrote null
    for metric, value in zip(metrics, records["value"], strict=True):
        metric["value"] = float(value)
        metric["conditions"] = json.loads(metric["conditions"])
    payload = {"format": BASELINE_FORMAT, "source": str(Path(out_dir) / "results.csv"),
               "metrics": metrics, "samples_sha256": samples_sha256}
    try:
        write_text_atomic(target, json.dumps(payload, indent=1, sort_keys=True) + "\n")
    except OSError as exc:
        raise ReportError(f"{target}: cannot write the baseline: {exc}") from exc
    return len(records)


def _parsed(path: Path, what: str, parse: Callable[[str], Any], syntax: type[Exception],
            language: str) -> Any:
    """`parse` of the text of `path`; every way that can fail is a ReportError naming it."""
    try:
        return parse(path.read_text())
    except FileNotFoundError as exc:
        raise ReportError(f"{path}: {what} not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path}: unreadable {what}: {exc}") from exc
    except syntax as exc:
        raise ReportError(f"{path}: not {language}: {exc}") from exc


def read_baseline(path: Path) -> pd.DataFrame:
    """The gated records stored by `write_baseline` (rows without a direction are dropped).

    Anything else — a missing or unreadable file, another format, malformed records — is a
    ReportError naming the file (exit 2, never the exit 1 of a regression).
    """
    path = Path(path)
    payload = _parsed(path, "baseline file", json.loads, json.JSONDecodeError, "JSON")
    if not isinstance(payload, dict) or payload.get("format") not in (1, BASELINE_FORMAT):
        raise ReportError(f"{path}: not a rubench baseline (format 1 or {BASELINE_FORMAT})")
    records = payload.get("metrics")
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise ReportError(f"{path}: `metrics` must be a list of metric records")
    if not records:
        raise ReportError(f"{path}: the baseline holds no metrics")
    frame = pd.DataFrame(records)
    missing = {*_KEY, "value", "higher_is_better"} - set(frame)
    if missing:
        raise ReportError(f"{path}: metric records lack {', '.join(sorted(missing))}")
    frame = frame[[direction(v) is not None for v in frame["higher_is_better"]]]
    parse = _legacy_conditions if payload["format"] == 1 else dict
    try:
        conditions = [condition_key(parse(c)) for c in frame["conditions"]]
    except (TypeError, ValueError, AttributeError) as exc:
        raise ReportError(f"{path}: malformed `conditions` in a metric record: {exc}") from exc
    frame = frame.assign(conditions=conditions)
    values = pd.to_numeric(frame["value"], errors="coerce")
    if values.isna().any():
        raise ReportError(f"{path}: {int(values.isna().sum())} baseline value(s) are NaN, "
                          "missing or not numbers; a baseline must hold numbers")
    return frame.assign(value=values)


def _tolerance(value: object, where: str) -> float:
    """A tolerance: a finite number >= 0 (NaN or infinity would let any regression through)."""
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not math.isfinite(value) or value < 0:
        raise ReportError(f"{where}: a tolerance must be a finite number >= 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Tolerances:
    """How much worse each metric may get: `per_metric` keys are a metric name (`ece`) or
    `task/metric` (`calibration/mce`, the more specific wins); `reasons` say why.

    `sampling_noise` false judges by the tolerances alone: right when the baseline and the run
    evaluated the same weights on the same images (a CI gate on committed checkpoints and a
    fixed subset), where the sampling noise of the intervals does not vary between runs and
    would hide real regressions of several points.
    """

    default: float = DEFAULT_TOLERANCE
    per_metric: dict[str, float] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    sampling_noise: bool = True

    def __post_init__(self) -> None:
        _tolerance(self.default, "default tolerance")
        for name, value in self.per_metric.items():
            _tolerance(value, f"tolerance of {name}")

    def for_metric(self, task: str, metric: str) -> float:
        """The tolerance of `metric` of task `task`: `task/metric`, else `metric`, else the
        first shell-style pattern (`flag_*`) matching the metric, else the default."""
        for key in (f"{task}/{metric}", metric):
            if key in self.per_metric:
                return self.per_metric[key]
        for key, value in self.per_metric.items():
            if any(c in key for c in "*?[") and fnmatch.fnmatchcase(metric, key):
                return value
        return self.default

    def overridden(self, default: float | None = None,
                   per_metric: dict[str, float] | None = None) -> Tolerances:
        """These tolerances with a new default and/or some per-metric values replaced."""
        return Tolerances(self.default if default is None else default,
                          {**self.per_metric, **(per_metric or {})}, self.reasons,
                          self.sampling_noise)


def read_tolerances(path: Path) -> Tolerances:
    """A gate's tolerance file (TOML): a `[default]` table and `[metrics."NAME"]` tables, each
    with `tolerance` and the `reason` for it (required: a tolerance nobody can explain is a
    hole in the gate); `[default]` may also set `sampling_noise = false` (see `Tolerances`)."""
    path = Path(path)
    data = _parsed(path, "tolerance file", tomllib.loads, tomllib.TOMLDecodeError, "TOML")
    unknown = set(data) - {"default", "metrics"}
    if unknown:
        raise ReportError(f"{path}: unknown table(s) {', '.join(sorted(unknown))} "
                          "(expected [default] and [metrics.\"NAME\"])")

    def entry(table: object, where: str) -> tuple[float, str]:
        if not isinstance(table, dict) or set(table) != {"tolerance", "reason"} \
                or not isinstance(table["reason"], str) or not table["reason"].strip():
            raise ReportError(f"{path}: {where} needs exactly `tolerance` (a number) and "
                              "`reason` (why that much)")
        return _tolerance(table["tolerance"], f"{path}: {where}"), table["reason"]

    defaults = dict(data.get("default", {"tolerance": DEFAULT_TOLERANCE,
                                         "reason": "rubench's default"}))
    sampling_noise = defaults.pop("sampling_noise", True)
    if not isinstance(sampling_noise, bool):
        raise ReportError(f"{path}: [default] sampling_noise must be true or false")
    default, default_reason = entry(defaults, "[default]")
    metrics = data.get("metrics", {})
    if not isinstance(metrics, dict):
        raise ReportError(f"{path}: [metrics] must be a table of tables")
    per_metric, reasons = {}, {"default": default_reason}
    for name, table in metrics.items():
        per_metric[name], reasons[name] = entry(table, f'[metrics."{name}"]')
    return Tolerances(default, per_metric, reasons, sampling_noise)


@dataclass(frozen=True)
class Paired:
    """A paired test of one metric between two evaluations of the same samples (see
    `benchmark.paired`): an exact McNemar `p_value` for error rates, else a bootstrap interval
    of the difference now - baseline; `detectable` is the smallest difference (metric units)
    the McNemar test could flag with this many discordant samples (None: none could)."""

    test: str
    n: int
    p_value: float | None
    ci_low: float | None
    ci_high: float | None
    detectable: float | None
    alpha: float = 0.05

    @property
    def significant(self) -> bool:
        """Whether the difference is beyond noise at level `alpha`."""
        if self.p_value is not None:
            return self.p_value < self.alpha
        return self.ci_low is not None and self.ci_high is not None \
            and not self.ci_low <= 0.0 <= self.ci_high

    def describe(self) -> str:
        """One short phrase: the test and its outcome."""
        if self.p_value is not None:
            found = "none" if self.detectable is None else f"{self.detectable:.2g}"
            return f"{self.test} p={self.p_value:.3g}, n={self.n}, detectable {found}"
        return f"{self.test} diff in [{self.ci_low:.3g}, {self.ci_high:.3g}], n={self.n}"


Pairing = Callable[[tuple[str, str, str, str]], Paired | None]


@dataclass(frozen=True)
class Verdict:
    """The comparison of one metric; `paired` where a paired test judged it."""

    key: tuple[str, str, str, str]
    baseline: float | None
    now: float | None
    noise: float
    tolerance: float
    verdict: str  # ok | improved | within-noise | REGRESSED | INVALID | MISSING | new | ...
    paired: Paired | None = None

    @property
    def delta(self) -> float | None:
        """now - baseline, where both exist."""
        if self.baseline is None or self.now is None:
            return None
        return self.now - self.baseline


def _half_width(row: Any) -> float | None:
    low, high = row.get("ci_low"), row.get("ci_high")
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return None
    return (float(high) - float(low)) / 2


def _judge(old: dict[str, Any], new: dict[str, Any], limit: float, sampling_noise: bool,
           paired: Callable[[], Paired | None]) -> tuple[float, str, Paired | None]:
    """(noise, verdict, paired test) of one metric present in both tables. Past its tolerance,
    a paired test decides where the records allow one, else the intervals' combined width."""
    widths = [w for w in (_half_width(old), _half_width(new)) if w is not None]
    noise = math.sqrt(sum(w * w for w in widths)) if sampling_noise else 0.0
    if pd.isna(new["value"]):
        return noise, "INVALID", None
    worse = 0.0 if new["value"] == old["value"] else new["value"] - old["value"]  # inf == inf
    if direction(old["higher_is_better"]):
        worse = -worse
    if worse <= limit:
        return noise, "improved" if worse < -limit else "ok", None
    test = paired() if sampling_noise else None
    if test is not None:
        return noise, "REGRESSED" if test.significant else "within-noise", test
    return noise, "REGRESSED" if worse > noise else "within-noise", None


def compare(baseline: pd.DataFrame, current: pd.DataFrame, tolerances: Tolerances,
            allow_missing: bool = False, pairing: Pairing | None = None) -> list[Verdict]:
    """One verdict per gated metric in either table (see the module docstring for the rule);
    `pairing` gives a metric's paired test where per-sample records allow one."""
    base = {tuple(r[k] for k in _KEY): r for r in baseline.to_dict("records")}
    now = {tuple(r[k] for k in _KEY): r for r in current.to_dict("records")}
    verdicts = []
    for key in sorted(base.keys() | now.keys()):
        limit = tolerances.for_metric(key[1], key[2])
        if key not in now:
            verdicts.append(Verdict(key, base[key]["value"], None, 0.0, limit,
                                    "missing (allowed)" if allow_missing else "MISSING"))
        elif key not in base:
            verdicts.append(Verdict(key, None, now[key]["value"], 0.0, limit,
                                    "INVALID" if pd.isna(now[key]["value"]) else "new"))
        else:
            noise, verdict, test = _judge(
                base[key], now[key], limit, tolerances.sampling_noise,
                lambda key=key: pairing(key) if pairing is not None else None)
            verdicts.append(Verdict(key, float(base[key]["value"]), float(now[key]["value"]),
                                    noise, limit, verdict, test))
    return verdicts


def unmatched(tolerances: Tolerances, *tables: pd.DataFrame) -> list[str]:
    """Per-metric tolerance keys that match no metric of `tables` (a typo would otherwise
    leave that metric at the default without a word)."""
    names = {name for table in tables for name in table["metric"]}
    names |= {f"{task}/{metric}" for table in tables
              for task, metric in zip(table["task"], table["metric"], strict=True)}
    return [key for key in tolerances.per_metric
            if key not in names and not fnmatch.filter(names, key)]


def failed(verdicts: list[Verdict]) -> bool:
    """True when any metric regressed, vanished or became NaN."""
    return any(v.verdict in FAILING for v in verdicts)


def summary_line(verdicts: list[Verdict]) -> str:
    """One line: passed or failed, and how many metrics got each verdict."""
    counts = pd.Series([v.verdict for v in verdicts], dtype=object).value_counts().to_dict()
    bad = sum(counts.get(name, 0) for name in FAILING)
    tally = ", ".join(f"{n} {name}" for name, n in sorted(counts.items()))
    head = f"FAILED: {bad} of {len(verdicts)} metrics" if bad else \
        f"passed: {len(verdicts)} metrics"
    return f"rubench check {head} ({tally})"


def _name(key: tuple[str, str, str, str]) -> str:
    checkpoint, task, metric, conditions = key
    text = ", ".join(f"{k}={v}" for k, v in json.loads(conditions).items())
    return f"{checkpoint} {task}/{metric}" + (f" [{text}]" if text else "")


def format_table(verdicts: list[Verdict]) -> str:
    """The diff table: metric, baseline, now, delta, noise, tolerance, verdict."""
    def number(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    header = (f"{'metric':<60} {'baseline':>10} {'now':>10} {'delta':>9} {'noise':>7} "
              f"{'tol':>6}  verdict")
    lines = [header, "-" * len(header)]
    lines += [f"{_name(v.key):<60} {number(v.baseline):>10} {number(v.now):>10} "
              f"{number(v.delta):>9} {v.noise:>7.3f} {v.tolerance:>6.3g}  {v.verdict}"
              + (f" ({v.paired.describe()})" if v.paired is not None else "")
              for v in verdicts]
    return "\n".join(lines) + "\n"


def write_table(verdicts: list[Verdict], path: Path) -> None:
    """Every verdict to `path`: CSV when it ends in `.csv`, else the aligned text table."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".csv":
            frame = pd.DataFrame([{**dict(zip(_KEY, v.key, strict=True)),
                                   "baseline": v.baseline, "now": v.now, "delta": v.delta,
                                   "noise": v.noise, "tolerance": v.tolerance,
                                   "verdict": v.verdict,
                                   "paired_test": v.paired.describe() if v.paired else ""}
                                  for v in verdicts])
            write_atomic(path, lambda temporary: frame.to_csv(temporary, index=False))
        else:
            write_text_atomic(path, format_table(verdicts) + summary_line(verdicts) + "\n")
    except OSError as exc:
        raise ReportError(f"{path}: cannot write the verdicts: {exc}") from exc


def report(verdicts: list[Verdict], output: Path | None = None) -> str:
    """What `rubench check` prints: the summary line first, then only the failing metrics;
    the full table goes to `output` when given."""
    lines = [summary_line(verdicts)]
    failures = [v for v in verdicts if v.verdict in FAILING]
    if failures:
        lines.append(format_table(failures).rstrip("\n"))
    if output is not None:
        write_table(verdicts, output)
        lines.append(f"full table ({len(verdicts)} metrics): {output}")
    elif failures:
        lines.append("(--output FILE writes the full table)")
    return "\n".join(lines) + "\n"
