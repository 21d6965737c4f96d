"""Paired comparison of two evaluations on the same images, from their per-sample records.

Two checkpoints (or two runs of one) evaluated on the same images differ image by image; a
paired test sees that, where comparing two intervals cannot. Which per-sample quantity a
metric row reduces, by the column conventions of `benchmark.records`:

- `top1_err` / `top5_err`: the 0/1 errors (`correct` / `correct_top5`) of the table measured
  under the row's conditions; minimal-perturbation tasks: `perturbation_norm <= eps` for each
  `eps` of the unit's parameters. Exact McNemar test on the discordant images.
- `nll` (a mean over images): paired bootstrap of the difference of means.
- OOD rows (`auroc`, `aupr_in`, `aupr_out`, `tnr_at_tpr95`, `detection_acc`,
  `fpr_at_tpr95_ood_positive`, per scorer and OOD set): paired stratified bootstrap — the same
  resample of ID images and of the set's images for both evaluations.
- `ece`, `mce`, `adaptive_ece`, `brier` (calibration): both recomputed on the same resamples.
- Means over cells on the same images (`corruption_err`, `category_err`, `severity_err`,
  `mean_corruption_err` and their sums; `mean_err` and `occlusion_err` of occlusion and affine):
  paired bootstrap of the difference of each image's share of wrong cells.

A pair is made only where both evaluations hold the same sample indices; anything else has no
paired test (`Pairing.test` returns None) and the caller keeps its unpaired rule.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.errors import RubenchError
from benchmark.names import BENCHMARK_GROUP, ID_SET, MEAN_SET
from benchmark.records import Records, SampleTable, condition_key
from benchmark.stats import (
    detectable_difference,
    mcnemar_exact,
    metric_stream,
    paired_bootstrap_interval,
)
from benchmark.store import Store, StoredUnit
from corruptions.catalog import BENCHMARK, C_BAR, C_BAR_CATEGORY, CATEGORIES
from ood import metrics as ood
from ood.calibration import resampled_calibration_errors
from reports.check import Paired
from reports.files import write_atomic

ALPHA = 0.05
OOD_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "auroc": ood.auroc, "aupr_in": ood.aupr_in, "aupr_out": ood.aupr_out,
    "tnr_at_tpr95": ood.tnr_at_tpr95, "detection_acc": ood.detection_acc,
    "fpr_at_tpr95_ood_positive": ood.fpr_at_tpr95_ood_positive,
}
RATE_COLUMNS = {"top1_err": "correct", "top5_err": "correct_top5"}

Unit = tuple[StoredUnit, Records]
Units = dict[tuple[str, str], Unit]  # (checkpoint, task) -> its stored unit and records


def store_units(out_dir: Path) -> Units:
    """The per-sample records of every current unit of `out_dir`'s store."""
    if not (Path(out_dir) / "results.sqlite").is_file():
        return {}
    store = Store(out_dir)
    try:
        return {(key[0], key[2]): (unit, records)
                for key, unit, records in store.records(store.shown_keys())}
    finally:
        store.close()


def samples_path(baseline: Path) -> Path:
    """Where a baseline's per-sample records live: beside it, `NAME.samples.zip`."""
    return Path(baseline).with_suffix(".samples.zip")


def write_samples(units: Units, target: Path) -> str:
    """Store `units` in one zip archive: a manifest and one encoded record set per unit;
    returns the archive's sha256."""
    def write(path: Path) -> None:
        manifest = []
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:  # npz is compressed
            for i, ((checkpoint, task), (unit, records)) in enumerate(sorted(units.items())):
                manifest.append({"checkpoint": checkpoint, "task": task, "file": f"{i}.npz",
                                 "task_type": unit.task_type, "params": unit.params,
                                 "seed": unit.seed, "identity": unit.identity})
                archive.writestr(f"{i}.npz", records.encode())
            archive.writestr("manifest.json", json.dumps(manifest, sort_keys=True))

    write_atomic(target, write)
    return hashlib.sha256(Path(target).read_bytes()).hexdigest()


def read_samples(path: Path) -> Units:
    """The units of a `write_samples` archive; a damaged archive is a RubenchError."""
    try:
        with zipfile.ZipFile(path) as archive:
            manifest = json.loads(archive.read("manifest.json"))
            return {(entry["checkpoint"], entry["task"]): (
                StoredUnit(entry["task_type"], entry["params"], entry["seed"],
                           entry["identity"]),
                Records.decode(archive.read(entry["file"]))) for entry in manifest}
    except Exception as exc:  # damaged in any way: name the file, never a traceback
        raise RubenchError(f"{path}: unreadable per-sample records ({type(exc).__name__}: "
                           f"{exc})") from exc


@dataclass(frozen=True)
class _Pair:
    """The same condition's table in both evaluations, on the same samples."""

    base: SampleTable
    now: SampleTable


def _row_key(unit: StoredUnit, table: SampleTable) -> str:
    """The conditions of the metric rows a table reduces to: an iterative attack's own table
    carries `attack` beside its FGSM comparison, its rows do not."""
    conditions = dict(table.conditions)
    if unit.task_type in ("ifgsm", "pgd") and conditions.get("attack") == unit.task_type:
        del conditions["attack"]
    return condition_key(conditions)


class Pairing:
    """Paired tests between a baseline's units and the current ones, computed on demand
    (bootstraps are only worth running for the few metrics that got worse)."""

    def __init__(self, base: Units, now: Units, seed: int = 0) -> None:
        self.seed = seed
        self.tables: dict[tuple[str, str, str], _Pair] = {}
        # (checkpoint, task) -> its unit and, per table of the current records, its pair
        # (None where the baseline's table is missing or on other samples)
        self.units: dict[tuple[str, str], tuple[StoredUnit, list[_Pair | None]]] = {}
        for name, (unit, records) in now.items():
            if name not in base or not unit.identity or base[name][0].identity != unit.identity:
                continue  # not the same samples (another subset, seed, data or input files)
            before = {_row_key(unit, t): t for t in base[name][1]}
            pairs: list[_Pair | None] = []
            for table in records:
                key = _row_key(unit, table)
                pairs.append(None)
                if key in before and np.array_equal(before[key]["index"], table["index"]):
                    self.tables[(*name, key)] = pairs[-1] = _Pair(before[key], table)
            self.units[name] = (unit, pairs)

    def test(self, key: tuple[str, str, str, str]) -> Paired | None:
        """The paired test of one metric row (checkpoint, task, metric, condition key), or
        None where the records do not pair it."""
        checkpoint, task, metric, conditions = key
        wanted = json.loads(conditions)
        if metric in RATE_COLUMNS:
            return self._rate(checkpoint, task, RATE_COLUMNS[metric], wanted)
        pair = self.tables.get((checkpoint, task, conditions))
        if metric == "nll" and pair is not None and "nll" in pair.now.columns \
                and "nll" in pair.base.columns:
            return self._mean(pair, "nll", conditions)
        if (checkpoint, task) in self.units:
            unit, pairs = self.units[checkpoint, task]
            if metric in CALIBRATION_ERRORS and pair is not None \
                    and unit.task_type == "calibration":
                return self._calibration(metric, pair, unit.params.get("bins", 15), conditions)
            cells = image_mean_cells(unit, metric, wanted, pairs)
            if cells:
                return self._share(metric, cells, conditions)
        if metric in OOD_METRICS and wanted.get("ood_set") not in (None, MEAN_SET, ID_SET):
            reference = self.tables.get((checkpoint, task, condition_key(
                {**wanted, "ood_set": ID_SET})))
            if pair is not None and reference is not None \
                    and all("score" in t.columns for t in (pair.now, pair.base, reference.now,
                                                            reference.base)):
                return self._ood(metric, reference, pair, conditions)
        return None

    def _rate(self, checkpoint: str, task: str, column: str, wanted: dict[str, Any]
              ) -> Paired | None:
        pair = self.tables.get((checkpoint, task, condition_key(wanted)))
        if pair is not None and column in pair.now.columns and column in pair.base.columns:
            base_wrong, now_wrong = ~pair.base[column].astype(bool), ~pair.now[column].astype(bool)
        else:  # minimal-perturbation tasks: broken within eps
            pair = self.tables.get((checkpoint, task, condition_key(
                {k: v for k, v in wanted.items() if k != "eps"})))
            eps = wanted.get("eps")
            if pair is None or eps is None or column != "correct" \
                    or not {"perturbation_norm"} <= set(pair.now.columns) & set(pair.base.columns):
                return None
            base_wrong = pair.base["perturbation_norm"] <= eps
            now_wrong = pair.now["perturbation_norm"] <= eps
        n = len(now_wrong)
        worse, better = int((now_wrong & ~base_wrong).sum()), int((base_wrong & ~now_wrong).sum())
        found = detectable_difference(worse + better, ALPHA)
        return Paired("McNemar", n, mcnemar_exact(worse, better), None, None,
                      None if found is None else 100.0 * found / n)

    def _mean(self, pair: _Pair, column: str, conditions: str) -> Paired:
        base, now = pair.base[column].astype(np.float64), pair.now[column].astype(np.float64)
        diff = now - base
        low, high = paired_bootstrap_interval(
            lambda rows: diff[rows].mean(axis=1), len(diff),
            metric_stream(self.seed, f"paired:{column}", {"conditions": conditions}))
        return Paired("paired bootstrap", len(diff), None, low, high, None)

    def _share(self, metric: str, cells: list[_Pair], conditions: str) -> Paired:
        """A mean over cells on the same images: paired bootstrap of the difference of the
        mean per-image share of wrong cells (times the cells for a `_sum` metric)."""
        factor = len(cells) if metric.endswith("_sum") else 1

        def share(side: str) -> np.ndarray:
            return np.mean([~getattr(cell, side)["correct"].astype(bool) for cell in cells],
                           axis=0)

        diff = 100.0 * factor * (share("now") - share("base"))
        low, high = paired_bootstrap_interval(
            lambda rows: diff[rows].mean(axis=1), len(diff),
            metric_stream(self.seed, f"paired:{metric}", {"conditions": conditions}))
        return Paired("paired bootstrap", len(diff), None, low, high, None)

    def _calibration(self, metric: str, pair: _Pair, bins: int, conditions: str) -> Paired:
        """ECE-type errors and Brier: both evaluations recomputed on the same resamples."""
        rng = metric_stream(self.seed, f"paired:{metric}", {"conditions": conditions})

        def errors(table: SampleTable, rows: np.ndarray) -> np.ndarray:
            if metric == "brier":
                return table["brier"][rows].mean(axis=1)
            return 100.0 * resampled_calibration_errors(table["confidence"], table["correct"],
                                                        rows, bins)[metric]

        low, high = paired_bootstrap_interval(
            lambda rows: errors(pair.now, rows) - errors(pair.base, rows), len(pair.now), rng)
        return Paired("paired bootstrap", len(pair.now), None, low, high, None)

    def _ood(self, metric: str, reference: _Pair, pair: _Pair, conditions: str) -> Paired:
        score = OOD_METRICS[metric]
        base_id, now_id = reference.base["score"], reference.now["score"]
        base_ood, now_ood = pair.base["score"], pair.now["score"]
        rng = metric_stream(self.seed, f"paired:{metric}", {"conditions": conditions})
        n_id, n_ood = len(now_id), len(now_ood)

        def replicates(rows: np.ndarray) -> np.ndarray:
            out = np.empty(len(rows))
            for i, id_rows in enumerate(rows):  # the set is resampled alongside, same stream
                ood_rows = rng.integers(0, n_ood, n_ood)
                out[i] = 100.0 * (score(now_id[id_rows], now_ood[ood_rows])
                                  - score(base_id[id_rows], base_ood[ood_rows]))
            return out

        low, high = paired_bootstrap_interval(replicates, n_id, rng)
        return Paired("paired bootstrap", n_id + n_ood, None, low, high, None)


CALIBRATION_ERRORS = ("ece", "mce", "adaptive_ece", "brier")
SHARE_METRICS = ("corruption_err", "corruption_err_sum", "category_err", "severity_err",
                 "mean_corruption_err", "mean_corruption_err_sum", "mean_err", "occlusion_err")


def image_mean_cells(unit: StoredUnit, metric: str, wanted: dict[str, Any],
                     pairs: list[_Pair | None]) -> list[_Pair]:
    """The cells (tables) a mean-over-cells row averages, as the task's reduction does, when
    every one pairs with the baseline's and they all hold the same images; [] for any other
    row. `pairs`: per table of the unit's current records, its pair or None."""
    if metric not in SHARE_METRICS or (metric == "occlusion_err" and "hole_frac" in wanted):
        return []

    def member(conditions: dict[str, Any]) -> bool:
        corruption = conditions.get("corruption")
        if unit.task_type == "corruptions":
            if corruption in (None, "clean") or conditions.get("source") != wanted.get("source"):
                return False
            if metric.startswith("corruption_err"):
                return corruption == wanted["corruption"]
            if metric.startswith("mean_corruption_err"):
                return corruption in BENCHMARK
            group = wanted.get("category")
            inside = corruption in (BENCHMARK if group == BENCHMARK_GROUP
                                    else C_BAR if group == C_BAR_CATEGORY
                                    else CATEGORIES.get(group, ()))
            return inside and (metric == "category_err"
                               or conditions.get("severity") == wanted.get("severity"))
        if unit.task_type == "occlusion":
            return all(conditions.get(k) == wanted.get(k) for k in ("mode", "fill"))
        return unit.task_type == "affine"

    def images(table: SampleTable) -> np.ndarray:  # JPEG trees name their images
        return table["image_id"] if "image_id" in table.columns else table["index"]

    if any(pair is None for pair in pairs):  # a table the baseline does not pair
        return []
    cells = [pair for pair in pairs if member(pair.now.conditions)]
    same = all(np.array_equal(images(cell.now), images(cells[0].now))
               and np.array_equal(images(cell.base), images(cell.now)) for cell in cells)
    return cells if cells and same else []


def pairing_for(out_dir: Path, baseline: Path) -> tuple[Pairing | None, str]:
    """The pairing of `out_dir`'s records with the baseline's (`samples_path`), and a line
    saying which rule the check applies."""
    archive = samples_path(baseline)
    try:
        expected = json.loads(Path(baseline).read_text()).get("samples_sha256")
    except (OSError, ValueError, AttributeError):
        expected = None
    if expected is None or not archive.is_file():
        return None, (f"unpaired rule: the baseline keeps no per-sample records ({archive}; "
                      "written with --no-samples, or by an older rubench)")
    if hashlib.sha256(archive.read_bytes()).hexdigest() != expected:
        return None, f"unpaired rule: {archive} is not the archive written with this baseline"
    now = store_units(out_dir)
    if not now:
        return None, f"unpaired rule: {out_dir} holds no per-sample records"
    return Pairing(read_samples(archive), now), (
        f"paired tests on the same images (records: {archive})")


def between_checkpoints(out_dir: Path) -> Callable[[tuple, tuple], bool | None] | None:
    """For `rubench report --baseline`: whether a checkpoint's row differs from the baseline
    checkpoint's same row beyond noise, by a paired test on the images both were evaluated on
    (None where no paired test applies); None when the store holds no records."""
    units = store_units(out_dir)
    if not units:
        return None
    pairings: dict[tuple[str, str, str], Pairing] = {}

    def significant(row: tuple, baseline: tuple) -> bool | None:
        checkpoint, task, _, conditions = row
        if baseline[1:2] + baseline[3:] != (task, conditions) or (checkpoint, task) not in units \
                or (baseline[0], task) not in units:
            return None
        key = (checkpoint, baseline[0], task)
        if key not in pairings:
            pairings[key] = Pairing({(checkpoint, task): units[baseline[0], task]},
                                    {(checkpoint, task): units[checkpoint, task]})
        test = pairings[key].test(row)
        return None if test is None else test.significant

    return significant
