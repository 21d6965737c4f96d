"""CI regression gate: compare `results.csv` with a stored baseline, metric by metric.

A metric regresses when it got worse by more than the tolerance (absolute points) **and** by more
than the statistical noise: the combined half-width of the two 95 % intervals,
sqrt(h_base^2 + h_now^2), where both rows carry one (Wilson for rates). A metric without an
interval is judged by the tolerance alone. Metrics that vanished fail the check (a gate that
passes when its numbers disappear protects nothing) unless allowed; new metrics are reported.
Rows without a direction (a fitted temperature, a histogram bin) never fail: a change beyond
the tolerance is reported as "changed", a vanished one as "missing (allowed)".
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from reports.errors import ReportError
from reports.leaderboard import condition_columns, direction

BASELINE_FORMAT = 1
_KEY = ["checkpoint", "task", "metric", "conditions"]


def _conditions(row: pd.Series, columns: list[str]) -> str:
    present = {c: row[c] for c in columns if not pd.isna(row[c])}
    return ", ".join(f"{k}={v}" for k, v in sorted(present.items()))


def _records(results: pd.DataFrame) -> pd.DataFrame:
    """results.csv rows reduced to the comparison key and the numbers the gate needs."""
    columns = condition_columns(results)
    frame = results.assign(conditions=[_conditions(row, columns) for _, row in
                                       results.iterrows()])
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


def write_baseline(out_dir: Path, target: Path) -> int:
    """Store the current numbers of `out_dir` as a JSON baseline; returns the metric count."""
    records = read_results(out_dir)
    payload = {"format": BASELINE_FORMAT, "source": str(Path(out_dir) / "results.csv"),
               "metrics": json.loads(records.to_json(orient="records"))}
    Path(target).write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n")
    return len(records)


def read_baseline(path: Path) -> pd.DataFrame:
    """The records stored by `write_baseline`."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ReportError(f"{path}: baseline file not found") from exc
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path}: not JSON: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != BASELINE_FORMAT:
        raise ReportError(f"{path}: not a rubench baseline (format {BASELINE_FORMAT})")
    frame = pd.DataFrame(payload["metrics"])
    if frame.empty:
        raise ReportError(f"{path}: the baseline holds no metrics")
    return frame


@dataclass(frozen=True)
class Verdict:
    """The comparison of one metric."""

    key: tuple[str, str, str, str]
    baseline: float | None
    now: float | None
    noise: float
    tolerance: float
    verdict: str  # ok | improved | within-noise | changed | REGRESSED | MISSING | new

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


def compare(baseline: pd.DataFrame, current: pd.DataFrame, tolerance: float,
            per_metric: dict[str, float] | None = None, allow_missing: bool = False
            ) -> list[Verdict]:
    """One verdict per metric in either table (see the module docstring for the rule)."""
    per_metric = per_metric or {}
    base = {tuple(r[k] for k in _KEY): r for r in baseline.to_dict("records")}
    now = {tuple(r[k] for k in _KEY): r for r in current.to_dict("records")}
    verdicts = []
    for key in sorted(base.keys() | now.keys()):
        limit = per_metric.get(key[2], tolerance)
        if key not in now:
            descriptive = direction(base[key]["higher_is_better"]) is None
            verdicts.append(Verdict(key, base[key]["value"], None, 0.0, limit,
                                    "missing (allowed)" if allow_missing or descriptive
                                    else "MISSING"))
            continue
        if key not in base:
            verdicts.append(Verdict(key, None, now[key]["value"], 0.0, limit, "new"))
            continue
        old, new = base[key], now[key]
        widths = [w for w in (_half_width(old), _half_width(new)) if w is not None]
        noise = math.sqrt(sum(w * w for w in widths))
        higher = direction(new["higher_is_better"])
        worse = (old["value"] - new["value"]) if higher else (new["value"] - old["value"])
        if higher is None:
            verdict = "changed" if abs(worse) > limit else "ok"
        elif worse > limit and worse > noise:
            verdict = "REGRESSED"
        elif worse > limit:
            verdict = "within-noise"
        elif worse < -limit:
            verdict = "improved"
        else:
            verdict = "ok"
        verdicts.append(Verdict(key, float(old["value"]), float(new["value"]), noise, limit,
                                verdict))
    return verdicts


def failed(verdicts: list[Verdict]) -> bool:
    """True when any metric regressed or vanished."""
    return any(v.verdict in ("REGRESSED", "MISSING") for v in verdicts)


def format_table(verdicts: list[Verdict], everything: bool = False) -> str:
    """The diff table: metric, baseline, now, delta, noise, verdict (only notable rows unless
    `everything`)."""
    def number(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    rows = [v for v in verdicts if everything or v.verdict != "ok"]
    header = f"{'metric':<60} {'baseline':>10} {'now':>10} {'delta':>9} {'noise':>7}  verdict"
    lines = [header, "-" * len(header)]
    for v in rows:
        checkpoint, task, metric, conditions = v.key
        name = f"{checkpoint} {task}/{metric}" + (f" [{conditions}]" if conditions else "")
        lines.append(f"{name:<60} {number(v.baseline):>10} {number(v.now):>10} "
                     f"{number(v.delta):>9} {v.noise:>7.3f}  {v.verdict}")
    counts = pd.Series([v.verdict for v in verdicts]).value_counts().to_dict()
    summary = ", ".join(f"{n} {name}" for name, n in sorted(counts.items()))
    return "\n".join(lines) + f"\n{len(verdicts)} metrics: {summary}\n"
