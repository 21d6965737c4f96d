"""Task `ood`: out-of-distribution detection, ID positive (ODIN / Lee et al. / CutMix Table 12).

For each scorer (`msp`, `maxlogit`, `energy`, `odin`) and each OOD set, rows (percent)
``tnr_at_tpr95``, ``auroc``, ``aupr_in``, ``aupr_out``, ``detection_acc`` and OpenOOD's OOD-positive
``fpr_at_tpr95_ood_positive`` (definitions in `ood.metrics`), with conditions ``scorer`` and
``ood_set``; ``ood_set = "mean"`` is the unweighted mean of the per-set values (every set weighs
the same whatever its size: CutMix Table 12's "average over the 7 OOD sets"). ``n`` = ID + OOD
samples. Every one of these rows carries a 95 % stratified percentile-bootstrap interval
(``ci_low`` / ``ci_high``, percent) from ``bootstrap`` resamples (default 1000; 0 = none): the ID
scores and each OOD set are resampled separately with replacement, and a replicate uses one ID
resample for every set, so the "mean" row's interval comes from the replicates' means over sets
(the sets share the ID data, so they are not independent). Resamples are seeded by the run's
seed, the same for every scorer. The two shares (TNR at TPR 95 %: of the set's OOD images;
OpenOOD's FPR at TPR 95 %: of the ID images) take the hull of that interval and the Wilson
interval of the share (for "mean", the mean of the
sets' Wilson bounds, as the value is their unweighted mean): the percentile interval collapses
to a point at 0 % and 100 %. ID scores come from the shared
clean forward pass; ODIN needs its own forward and backward passes over the ID data.

Rows ``score_hist`` (descriptive, no direction; the report's score histograms): per scorer, for
each OOD set and for the ID scores (``ood_set = "in_distribution"``, reserved like "mean"), the
percent of that set's samples in each of ``histogram_bins`` bins (default 30; 0 = no such rows),
with condition ``bin`` (0-based); ``n`` = the set's size; rows ``score_hist_centre`` (scorer,
bin) hold each bin's centre. The bins are equal-width over [min, max] of all that scorer's
scores (ID and every set together, so the sets share edges); the last bin holds the max; if all
scores are equal, one bin holds them. Keying bins by index, not by centre, keeps a baseline's
rows matched when the score range drifts.

Parameters:

- ``scorers``: any of msp, maxlogit, energy (``energy_temperature``, default 1), odin, or a
  logit scorer registered in `registry("scorer")` with `needs="logits"` (see the README).
- ``sets``: table name -> spec. A spec string is a built-in (``uniform`` / ``gaussian``: ODIN's
  noise; ``natural_crops``: crops of photographs shipped with scikit-image / scikit-learn;
  ``cifar10`` / ``cifar100``: that test set, from its default folder under --data-root) or a path
  (absolute, or under --data-root) read by what it holds: a CIFAR pickle folder, a folder of
  images (the ODIN layout), an SVHN ``.mat`` file, an OpenOOD list ``.txt`` whose paths are
  relative to --data-root. A spec table names its ``kind`` (uniform, gaussian, natural_crops,
  cifar10, cifar100, folder, list, svhn) with ``path``; ``root`` (list: the image root),
  ``split`` (cifar, default "test"), ``n`` (generated sets), ``levels`` (natural_crops, default
  256; 17 = the digits' 0..16 grey scale).
- ``resize``: how images reach the model's input size, see `ood.datasets` (default ``none``,
  like ODIN: a set of another size is an error).
- ``bootstrap`` (resamples of the intervals, default 1000; 0 = none) and ``histogram_bins``
  (default 30; 0 = no histogram rows): see above.
- ``ood_limit``: at most this many images per OOD set, a seeded subset (0 = all). Generated sets
  have ``n`` images, by default ``ood_limit``, or 10,000 (ODIN's size) when that is 0.
- ODIN: fixed ``odin_temperature`` = 1000 and ``odin_eps`` = 0.0014 (the ODIN paper's CIFAR
  setting; eps in [0, 1] pixel units) unless ``odin_tune_split`` names a held-out split of the
  suite's data set (e.g. "val" for digits; default "none"): then (T, eps) maximize TNR@TPR95 over
  ``odin_temperatures`` x ``odin_eps_grid`` (ODIN's grid) on ``odin_tune_n`` images of that split
  against ``odin_tune_n`` images of ``odin_tune_ood`` (default ``natural_crops``), drawn from a
  separate random stream, never from a file-based test set. Rows ``odin_temperature`` and
  ``odin_eps`` record the values used (parameters, not scores).

The task measures per-sample records and the rows are their reduction
(`benchmark.reductions.ood`): per scorer, a table ``ood_set = "in_distribution"`` with
columns ``index`` (position in the evaluated data), ``score`` (float64) and the clean pass's
``correct``, ``pred`` and ``confidence``, and per OOD set a table ``ood_set = <name>`` with
``index`` (the image's position in the source set, before ``ood_limit``'s subset) and
``score``; with ODIN, facts ``odin_temperature``, ``odin_eps`` and ``odin_tune_n`` (the tuning
images, 0 when fixed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from benchmark.data import EvalData, stratified_subset
from benchmark.errors import DataError, SuiteError
from benchmark.inputs import HeldoutSplit, InputRequest
from benchmark.names import ID_SET, MEAN_SET
from benchmark.params import NO_SPLIT, param
from benchmark.readers import read_cifar10, read_cifar100
from benchmark.records import Records
from benchmark.registry import registry
from benchmark.tasks.registry import (
    TaskContext,
    TaskPlaces,
    classification_columns,
    predict,
    register_task,
    require_finite,
)
from ood import datasets as oodsets
from ood.scores import (
    ODIN_EPS,
    ODIN_EPS_GRID,
    ODIN_TEMPERATURE,
    ODIN_TEMPERATURES,
    energy,
    odin,
    tune_odin,
)

SCORERS = ("msp", "maxlogit", "energy", "odin")  # the built-in ones (`registry("scorer")`)
GENERATED = ("uniform", "gaussian", "natural_crops")
CIFAR = {"cifar10": (read_cifar10, "cifar-10-batches-py"),
         "cifar100": (read_cifar100, "cifar-100-python")}
SPEC_KEYS = {
    "uniform": {"n"}, "gaussian": {"n"}, "natural_crops": {"n", "levels"},
    "cifar10": {"path", "split"}, "cifar100": {"path", "split"},
    "folder": {"path"}, "list": {"path", "root"}, "svhn": {"path"},
}
DEFAULT_GENERATED_N = 10_000  # ODIN's noise sets
TEST_STREAM, TUNE_STREAM = 0, 1  # random streams of generated sets: test sets vs ODIN tuning
_MATERIALIZE_BYTES = 256 * 2**20  # sets up to this size are decoded / generated once, in memory

def _bad(param: str, problem: str) -> SuiteError:
    return SuiteError(f"parameter {param!r}: {problem}")


def normalize_spec(name: str, spec: Any) -> dict[str, Any]:
    """A set's spec as a table with `kind` (``auto`` for a path string to inspect later)."""
    where = f"sets.{name}"
    if isinstance(spec, str):
        if not spec:
            raise _bad(where, "empty spec")
        return {"kind": spec} if spec in GENERATED or spec in CIFAR else {"kind": "auto",
                                                                          "path": spec}
    if not isinstance(spec, dict):
        raise _bad(where, f"expected a string or a table, got {type(spec).__name__}")
    kind = spec.get("kind")
    if kind not in SPEC_KEYS:
        raise _bad(where, f"kind {kind!r} is not one of {', '.join(SPEC_KEYS)}")
    unknown = sorted(set(spec) - SPEC_KEYS[kind] - {"kind"})
    if unknown:
        raise _bad(where, f"unknown key(s) {', '.join(unknown)} for kind {kind!r}; allowed: "
                          f"{', '.join(sorted(SPEC_KEYS[kind]))}")
    if kind in ("folder", "list", "svhn") and "path" not in spec:
        raise _bad(where, f"kind {kind!r} needs a path")
    if kind == "list" and "root" not in spec:
        raise _bad(where, "kind 'list' needs root, the folder its relative paths start from")
    for key in ("path", "root", "split"):
        if key in spec and (not isinstance(spec[key], str) or not spec[key]):
            raise _bad(where, f"{key} must be a non-empty string, got {spec[key]!r}")
    for key in ("n", "levels"):
        if key in spec and (not isinstance(spec[key], int) or isinstance(spec[key], bool)
                            or spec[key] < (1 if key == "n" else 2)):
            raise _bad(where, f"{key} must be an integer >= {1 if key == 'n' else 2}")
    return dict(spec)


@dataclass(frozen=True)
class OodParams:
    """See the module docstring. `sets` may be empty in a suite that expects `--ood`."""

    scorers: list[str] = param(list(SCORERS), nonempty=True, distinct=True)
    sets: dict[str, Any] = param({})
    resize: str = param("none", choices=oodsets.RESIZE_MODES)
    ood_limit: int = param(0, ge=0)
    energy_temperature: float = param(1.0, gt=0)
    odin_temperature: float = param(ODIN_TEMPERATURE, gt=0)
    odin_eps: float = param(ODIN_EPS, ge=0)
    odin_tune_split: str = param(NO_SPLIT)
    odin_tune_ood: str | dict[str, Any] = param("natural_crops")
    odin_tune_n: int = param(1000, ge=1)
    odin_temperatures: list[float] = param(list(ODIN_TEMPERATURES), gt=0, nonempty=True)
    odin_eps_grid: list[float] = param(list(ODIN_EPS_GRID), ge=0, nonempty=True)
    bootstrap: int = param(1000, ge=0, le=100_000)
    histogram_bins: int = param(30, ge=0, le=10_000)

    def __post_init__(self) -> None:
        scorers = registry("scorer")
        for scorer in self.scorers:
            if scorer not in scorers:
                raise _bad("scorers", f"unknown scorer {scorer!r}{scorers.hint(scorer)}; "
                                      f"registered: {', '.join(scorers.names())}")
            if scorer != "odin" and scorers.entry(scorer).info.get("needs") != "logits":
                raise _bad("scorers", f"scorer {scorer!r} does not score logits")
        for reserved, meaning in ((MEAN_SET, "the average over sets"),
                                  (ID_SET, "the ID scores' histogram rows")):
            if reserved in self.sets:
                raise _bad("sets", f"{reserved!r} is reserved for {meaning}")
        for name, spec in self.sets.items():
            normalize_spec(name, spec)
        normalize_spec("odin_tune_ood", self.odin_tune_ood)


def _resolve(path: str, data_root: Path | None) -> Path:
    """An absolute path as given; a relative one under --data-root (else the working dir)."""
    location = Path(path).expanduser()
    if location.is_absolute():
        return location
    return (Path(data_root) if data_root is not None else Path.cwd()) / location


def _detect(path: Path) -> str:
    """The kind of set a path holds, from its content."""
    if path.is_dir():
        if (path / "test_batch").is_file():
            return "cifar10"
        if (path / "test").is_file() and (path / "meta").is_file():
            return "cifar100"
        return "folder"
    if path.suffix.lower() == ".mat":
        return "svhn"
    if path.suffix.lower() == ".txt":
        return "list"
    if not path.exists():
        raise DataError(f"{path}: OOD set not found")
    raise DataError(f"{path}: not an OOD set rubench can read (a folder of images or CIFAR "
                    "batches, an SVHN .mat file, an OpenOOD .txt list)")


@dataclass(frozen=True)
class LoadedSet:
    """An OOD set as evaluated, and each image's position in the set it was drawn from."""

    made: oodsets.OODSet
    positions: np.ndarray


def _build(name: str, spec: dict[str, Any], ctx: TaskContext, resize: str, limit: int,
           stream: int) -> LoadedSet:
    """Read or generate one OOD set at the ID images' shape."""
    channels, height, width = ctx.data.image_shape()
    size = (height, width)
    kind = spec["kind"]
    path = _resolve(spec["path"], ctx.data_root) if "path" in spec else None
    if kind == "auto":
        kind = _detect(path)
    if kind in GENERATED:
        n = spec.get("n", limit or DEFAULT_GENERATED_N)
        lazy = n * channels * height * width * 4 > _MATERIALIZE_BYTES  # float32
        options = {"levels": spec.get("levels", 256)} if kind == "natural_crops" else {}
        made = getattr(oodsets, kind)(n, channels, size, ctx.seed, stream, lazy=lazy, **options)
        return LoadedSet(oodsets.OODSet(name, made.source, images=made.images,
                                        dataset=made.dataset), np.arange(n, dtype=np.int64))
    if kind in CIFAR:
        if ctx.data.name == kind:
            raise SuiteError(f"sets.{name}: {kind} is the data set under evaluation")
        reader, folder = CIFAR[kind]
        data = reader(path or _resolve(folder, ctx.data_root), split=spec.get("split", "test"))
        made = oodsets.from_array(name, data.images, data.source, channels, size, resize)
    elif kind == "svhn":
        made = oodsets.svhn_mat(path, channels, size, resize, name)
    elif kind == "folder":
        made = oodsets.image_folder(path, channels, size, resize, name)
    else:
        root = _resolve(spec["root"], ctx.data_root) if "root" in spec else _resolve(
            ".", ctx.data_root)
        made = oodsets.image_list(path, root, channels, size, resize, name)
    positions = np.arange(len(made), dtype=np.int64)
    if limit and limit < len(made):
        chosen = np.random.default_rng([ctx.seed, stream]).permutation(len(made))[:limit]
        positions = np.sort(chosen)
        made = made.subset(positions)
    return LoadedSet(_materialize(made, ctx.num_workers), positions)


def _materialize(made: oodsets.OODSet, workers: int) -> oodsets.OODSet:
    """Decode a small lazy set once into a uint8 tensor (large ones stay lazy)."""
    if made.dataset is None:
        return made
    channels, height, width = made.dataset[0][0].shape
    if len(made) * channels * height * width > _MATERIALIZE_BYTES:
        return made
    loader = DataLoader(made.dataset, batch_size=256, shuffle=False, num_workers=workers)
    images = torch.cat([batch for batch, _ in loader])
    return oodsets.OODSet(made.name, made.source, images=images)


@dataclass(frozen=True)
class OODSetInput(InputRequest):
    """One OOD set (its normalized spec as JSON), read or generated at the evaluated images'
    shape, at most `limit` images (0 = all) drawn by the random stream `stream`."""

    name: str
    spec: str
    resize: str
    limit: int
    stream: int = TEST_STREAM

    def paths(self, places: TaskPlaces) -> list[Path]:
        """The files the set is read from (an OpenOOD list: itself and the images it names,
        not its whole image root, often a large shared folder); generated sets have none."""
        spec = json.loads(self.spec)
        if "path" in spec:
            paths = [_resolve(spec["path"], places.data_root)]
        elif spec["kind"] in CIFAR:
            paths = [_resolve(CIFAR[spec["kind"]][1], places.data_root)]
        else:
            return []
        listed = spec["kind"] == "list" or (spec["kind"] == "auto"
                                            and paths[0].suffix.lower() == ".txt")
        if listed and paths[0].is_file():
            root = _resolve(spec.get("root", "."), places.data_root)
            paths += [root / line.strip().rsplit(maxsplit=1)[0]
                      for line in paths[0].read_text().splitlines() if line.strip()]
        return paths

    def load(self, ctx: TaskContext) -> LoadedSet:
        try:
            return _build(self.name, json.loads(self.spec), ctx, self.resize, self.limit,
                          self.stream)
        except ValueError as exc:  # library errors name the file and the problem
            raise DataError(f"OOD set {self.name!r}: {exc}") from exc


def _as_data(made: oodsets.OODSet, num_classes: int) -> EvalData:
    """An OOD set as harness data (label -1), to reuse its batching."""
    return EvalData(name=made.name, labels=np.full(len(made), -1, dtype=np.int64),
                    num_classes=num_classes, source=made.source, images=made.images,
                    dataset=made.dataset)


def _odin_scores(ctx: TaskContext, data: EvalData, temperature: float, eps: float,
                 desc: str) -> np.ndarray:
    """ODIN scores of every image of `data`, in order."""
    chunks = [odin(ctx.model, images, temperature, eps)
              for images, _ in tqdm(data.batches(ctx.batch_size, ctx.device, ctx.num_workers),
                                    desc=desc, total=-(-len(data) // ctx.batch_size),
                                    leave=False, disable=not ctx.progress)]
    scores = np.concatenate(chunks)
    require_finite(torch.from_numpy(scores), "under ODIN's input perturbation")
    return scores


def _all_images(data: EvalData, ctx: TaskContext) -> torch.Tensor:
    """Every image of `data` as one float [0, 1] tensor on the CPU."""
    return torch.cat([images for images, _ in data.batches(ctx.batch_size, "cpu",
                                                           ctx.num_workers)])


def _check_tuning_source(params: dict[str, Any], specs: dict[str, dict[str, Any]]) -> None:
    """Refuse ODIN's tuning OOD source when it is one of the file-based test sets."""
    tune_spec = normalize_spec("odin_tune_ood", params["odin_tune_ood"])
    if tune_spec["kind"] not in GENERATED:
        clash = [name for name, spec in specs.items() if spec == tune_spec]
        if clash:
            raise _bad("odin_tune_ood", f"it is the test OOD set {clash[0]!r}; tune on a "
                                        "held-out source")


def _tune_odin(ctx: TaskContext, params: dict[str, Any]) -> tuple[float, float, int]:
    """(T, eps, samples used) tuned on the held-out ID split and held-out OOD images."""
    n = params["odin_tune_n"]
    heldout = ctx.input("odin_heldout")
    heldout = heldout.subset(stratified_subset(heldout.labels, n, ctx.seed))
    tune_set = ctx.input("odin_tune_ood").made
    id_images = _all_images(heldout, ctx)
    ood_images = _all_images(_as_data(tune_set, ctx.data.num_classes), ctx)
    temperature, eps, _ = tune_odin(ctx.model, id_images, ood_images, ctx.batch_size,
                                    ctx.device, params["odin_temperatures"],
                                    params["odin_eps_grid"])
    return temperature, eps, len(id_images) + len(ood_images)


def logit_scores(scorer: str, logits: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """A logit-based scorer's scores (higher = more in-distribution): energy at the task's
    `energy_temperature`, any other from `registry("scorer")` as `fn(logits)`."""
    if scorer == "energy":
        return energy(logits, params["energy_temperature"])
    return registry("scorer").get(scorer)(logits)


def _inputs(params: dict[str, Any], places: TaskPlaces) -> dict[str, InputRequest]:
    """The OOD sets (`set:NAME`) and, when ODIN is tuned, the held-out ID split and OOD
    source it is tuned on."""
    def request(name: str, spec: Any, limit: int, stream: int) -> OODSetInput:
        return OODSetInput(name, json.dumps(normalize_spec(name, spec), sort_keys=True),
                           params["resize"], limit, stream)

    inputs: dict[str, InputRequest] = {
        f"set:{name}": request(name, spec, params["ood_limit"], TEST_STREAM)
        for name, spec in params["sets"].items()}
    if "odin" in params["scorers"] and params["odin_tune_split"] != NO_SPLIT:
        inputs["odin_heldout"] = HeldoutSplit(params["odin_tune_split"],
                                              "ood: odin_tune_split")
        inputs["odin_tune_ood"] = request("odin_tune_ood", params["odin_tune_ood"],
                                          params["odin_tune_n"], TUNE_STREAM)
    return inputs


@register_task("ood", params=OodParams, version=4, inputs=_inputs)
def ood_detection(ctx: TaskContext, params: dict[str, Any]) -> Records:
    """OOD detection per scorer x set (ID positive): TNR@TPR95, AUROC, AUPR-In/Out, Det. acc."""
    if not params["sets"]:
        raise _bad("sets", "no OOD sets; name them in the suite ([tasks.ood] sets = {name = "
                           "\"path-or-builtin\"}) or with --ood NAME=PATH")
    scorers = params["scorers"]
    specs = {name: normalize_spec(name, spec) for name, spec in params["sets"].items()}
    tuned = "odin" in scorers and params["odin_tune_split"] != NO_SPLIT
    if tuned:
        _check_tuning_source(params, specs)
    sets = {name: ctx.input(f"set:{name}") for name in specs}
    id_logits = ctx.clean_logits().double().numpy()
    id_scores = {s: logit_scores(s, id_logits, params) for s in scorers if s != "odin"}
    ood_scores: dict[str, dict[str, np.ndarray]] = {}
    for name, loaded in sets.items():
        data = _as_data(loaded.made, ctx.data.num_classes)
        logits = predict(ctx.inference_model, data, ctx.device, ctx.batch_size, ctx.num_workers,
                         ctx.progress).double().numpy()
        ood_scores[name] = {s: logit_scores(s, logits, params) for s in id_scores}
    records = Records()
    if "odin" in scorers:
        if tuned:
            temperature, eps, n_tune = _tune_odin(ctx, params)
        else:
            temperature, eps, n_tune = params["odin_temperature"], params["odin_eps"], 0
        id_scores["odin"] = _odin_scores(ctx, ctx.data, temperature, eps, "odin ID")
        for name, loaded in sets.items():
            ood_scores[name]["odin"] = _odin_scores(
                ctx, _as_data(loaded.made, ctx.data.num_classes), temperature, eps,
                f"odin {name}")
        records.facts.update(odin_temperature=float(temperature), odin_eps=float(eps),
                             odin_tune_n=int(n_tune))
    clean = classification_columns(ctx.clean_logits(), ctx.labels(), topk=())
    for scorer in scorers:
        records.add({"scorer": scorer, "ood_set": ID_SET},
                    index=np.arange(len(id_logits), dtype=np.int64),
                    score=np.asarray(id_scores[scorer], dtype=np.float64), **clean)
        for name in sets:
            scores = np.asarray(ood_scores[name][scorer], dtype=np.float64)
            records.add({"scorer": scorer, "ood_set": name}, index=sets[name].positions,
                        score=scores)
    return records
