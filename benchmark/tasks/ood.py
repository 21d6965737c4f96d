"""Task `ood`: out-of-distribution detection, ID positive (ODIN / Lee et al. / CutMix Table 12).

For each scorer (`msp`, `maxlogit`, `energy`, `odin`, ...) and each OOD set, rows (percent)
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

Groups and full spectrum (OpenOOD v1.5): a set's spec may name its ``group`` (OpenOOD's
``near`` / ``far``); per group, rows ``ood_set = "mean"`` with condition ``ood_group`` hold the
unweighted mean over that group's sets (intervals as for "mean": the replicates' means over the
group), beside the mean over all OOD sets. A set with ``role = "csid"`` (covariate-shifted ID,
e.g. ImageNet-V2, -C, -R) is scored like the others but is no OOD set: the rows above ignore it,
and every row (per set, "mean", group means) is repeated with condition ``spectrum = "full"``
where the csid images join the ID images as ID (OpenOOD's full-spectrum / FSOOD evaluation; its
bootstrap resamples the pooled ID scores as one set). Suites without groups or csid sets get
exactly the rows they always had.

Rows ``score_hist`` (descriptive, no direction; the report's score histograms): per scorer, for
each OOD set and for the ID scores (``ood_set = "in_distribution"``, reserved like "mean"), the
percent of that set's samples in each of ``histogram_bins`` bins (default 30; 0 = no such rows),
with condition ``bin`` (0-based); ``n`` = the set's size; rows ``score_hist_centre`` (scorer,
bin) hold each bin's centre. The bins are equal-width over [min, max] of all that scorer's
scores (ID and every set together, so the sets share edges); the last bin holds the max; if all
scores are equal, one bin holds them. Keying bins by index, not by centre, keeps a baseline's
rows matched when the score range drifts.

Parameters:

- ``scorers``: any of msp, maxlogit, energy (``energy_temperature``, default 1), odin, a
  logit scorer registered in `registry("scorer")` with `needs="logits"` (see the README), or
  a scorer of the penultimate features (`ood.detectors`, which defines each): mahalanobis,
  knn (``knn_k``, default 50), vim (``vim_dim``, 0 = `default_vim_dim`'s rule), react
  (``react_percentile``, default 90), ash_b / ash_p / ash_s (``ash_b_percentile`` 65,
  ``ash_p_percentile`` 90, ``ash_s_percentile`` 90, on the pooled features). Features are the
  input of the final linear layer (`feature_layer`: the checkpoint's `feature_layer`
  metadata, else the last linear layer producing the logits); ID features take one more pass
  over the evaluated data, OOD sets give logits and features in one pass. Mahalanobis, KNN,
  ViM and ReAct fit on the features of ``train_split`` (default "train") of the suite's data
  set, at most ``train_limit`` images (a seeded class-stratified subset; 0 = all), refused if
  that split holds the evaluated images; the fit is a typed input (`FeatureFit`) cached per
  run under the model's weights and the training data's identity.
- ``sets``: table name -> spec. A spec string is a built-in (``uniform`` / ``gaussian``: ODIN's
  noise; ``natural_crops``: crops of photographs shipped with scikit-image / scikit-learn;
  ``cifar10`` / ``cifar100``: that test set, from its default folder under --data-root) or a path
  (absolute, or under --data-root) read by what it holds: a CIFAR pickle folder, a folder of
  images (the ODIN layout), an SVHN ``.mat`` file, an OpenOOD list ``.txt`` whose paths are
  relative to --data-root. A spec table names its ``kind`` (uniform, gaussian, natural_crops,
  cifar10, cifar100, folder, list, svhn) with ``path``; ``root`` (list: the image root),
  ``split`` (cifar, default "test"), ``n`` (generated sets), ``levels`` (natural_crops, default
  256; 17 = the digits' 0..16 grey scale), ``resize`` (sets read from files: this set's resize
  mode instead of the task's, e.g. "none" for OpenOOD's 224x224 ImageNet-C), and for any kind
  ``group`` and ``role`` ("ood", the default, or "csid"; see above).
- ``resize``: how images reach the model's input size, see `ood.datasets` (default ``none``,
  like ODIN: a set of another size is an error); ``imagenet`` reads image files with the ID
  images' own resize and crop where they have one (a timm checkpoint's evaluation
  preprocessing), so ID and OOD images are never told apart by their resampling.
- ``bootstrap`` (resamples of the intervals, default 1000; 0 = none) and ``histogram_bins``
  (default 30; 0 = no histogram rows): see above.
- ``ood_limit``: at most this many images per OOD or csid set, a seeded subset (0 = all).
  Generated sets have ``n`` images, by default ``ood_limit``, or 10,000 (ODIN's size) when that
  is 0.
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
``correct``, ``pred`` and ``confidence``, and per OOD or csid set a table ``ood_set = <name>`` with
``index`` (the image's position in the source set, before ``ood_limit``'s subset) and
``score``; with ODIN, facts ``odin_temperature``, ``odin_eps`` and ``odin_tune_n`` (the tuning
images, 0 when fixed); with feature scorers, facts ``feature_layer`` (as the network names it),
``train_split`` and ``train_n`` (the fit's images), and the settings and fitted values of the
scorers used: ``knn_k``, ``vim_dim`` and ``vim_alpha``, ``react_percentile`` and
``react_threshold``, ``ash_*_percentile``.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from benchmark.checkpoints import NormalizedModel
from benchmark.data import EvalData, stratified_subset
from benchmark.errors import DataError, ModelOutputError, SuiteError
from benchmark.inputs import HeldoutSplit, InputRequest
from benchmark.names import ID_SET, MEAN_SET
from benchmark.params import NO_SPLIT, param
from benchmark.readers import read_cifar10, read_cifar100
from benchmark.records import Records
from benchmark.reductions.ood import CSID, ROLES, set_roles
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
from ood import detectors
from ood.features import FeatureHook, Head, extract, final_linear, linear_layer
from ood.scores import (
    ODIN_EPS,
    ODIN_EPS_GRID,
    ODIN_TEMPERATURE,
    ODIN_TEMPERATURES,
    energy,
    odin,
    tune_odin,
)

SCORERS = ("msp", "maxlogit", "energy", "odin")  # the default ones (`registry("scorer")`)
# Scorers of the penultimate features (`ood.detectors`); the first four fit on training data.
FEATURE_SCORERS = {
    "mahalanobis": (detectors.mahalanobis_scores,
                    "Mahalanobis distance to the closest class mean, tied covariance (MDS)"),
    "knn": (detectors.knn_scores, "distance to the k-th nearest normalized training feature"),
    "vim": (detectors.vim_scores, "ViM: energy minus the scaled residual norm (virtual logit)"),
    "react": (detectors.react_scores, "ReAct: energy after clipping features at a percentile"),
    "ash_b": (detectors.ash_scores, "ASH-B: energy of pruned, binarized features"),
    "ash_p": (detectors.ash_scores, "ASH-P: energy of pruned features"),
    "ash_s": (detectors.ash_scores, "ASH-S: energy of pruned, exp-scaled features"),
}
FITTED = ("mahalanobis", "knn", "vim", "react")
for _name, (_fn, _description) in FEATURE_SCORERS.items():
    registry("scorer").add(_name, _fn, _description, needs="features")
GENERATED = ("uniform", "gaussian", "natural_crops")
CIFAR = {"cifar10": (read_cifar10, "cifar-10-batches-py"),
         "cifar100": (read_cifar100, "cifar-100-python")}
SPEC_KEYS = {
    "uniform": {"n"}, "gaussian": {"n"}, "natural_crops": {"n", "levels"},
    "cifar10": {"path", "split", "resize"}, "cifar100": {"path", "split", "resize"},
    "folder": {"path", "resize"}, "list": {"path", "root", "resize"}, "svhn": {"path", "resize"},
}
ROLE_KEYS = ("group", "role")  # how a set is evaluated, not what it holds: any kind takes them
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
    unknown = sorted(set(spec) - SPEC_KEYS[kind] - {"kind", *ROLE_KEYS})
    if unknown:
        raise _bad(where, f"unknown key(s) {', '.join(unknown)} for kind {kind!r}; allowed: "
                          f"{', '.join(sorted(SPEC_KEYS[kind] | set(ROLE_KEYS)))}")
    if kind in ("folder", "list", "svhn") and "path" not in spec:
        raise _bad(where, f"kind {kind!r} needs a path")
    if kind == "list" and "root" not in spec:
        raise _bad(where, "kind 'list' needs root, the folder its relative paths start from")
    for key in ("path", "root", "split", "group"):
        if key in spec and (not isinstance(spec[key], str) or not spec[key]):
            raise _bad(where, f"{key} must be a non-empty string, got {spec[key]!r}")
    if spec.get("role", ROLES[0]) not in ROLES:
        raise _bad(where, f"role must be one of {', '.join(ROLES)}, got {spec['role']!r}")
    if spec.get("role") == CSID and "group" in spec:
        raise _bad(where, "a csid set (covariate-shifted ID) counts as ID: it takes no group")
    if spec.get("resize", oodsets.RESIZE_MODES[0]) not in oodsets.RESIZE_MODES:
        raise _bad(where, f"resize must be one of {', '.join(oodsets.RESIZE_MODES)}, got "
                          f"{spec['resize']!r}")
    for key in ("n", "levels"):
        if key in spec and (not isinstance(spec[key], int) or isinstance(spec[key], bool)
                            or spec[key] < (1 if key == "n" else 2)):
            raise _bad(where, f"{key} must be an integer >= {1 if key == 'n' else 2}")
    return dict(spec)


def data_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """A normalized spec without its evaluation keys (group, role, resize): what identifies the
    images, so one set read under two roles or groups is the same input."""
    return {key: value for key, value in spec.items() if key not in (*ROLE_KEYS, "resize")}


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
    train_split: str = param("train")
    train_limit: int = param(0, ge=0)
    knn_k: int = param(detectors.KNN_K, ge=1)
    react_percentile: float = param(detectors.REACT_PERCENTILE, gt=0, le=100)
    vim_dim: int = param(0, ge=0)
    ash_b_percentile: float = param(detectors.ASH_PERCENTILES["b"], ge=0, le=100)
    ash_p_percentile: float = param(detectors.ASH_PERCENTILES["p"], ge=0, le=100)
    ash_s_percentile: float = param(detectors.ASH_PERCENTILES["s"], ge=0, le=100)

    def __post_init__(self) -> None:
        scorers = registry("scorer")
        for scorer in self.scorers:
            if scorer not in scorers:
                raise _bad("scorers", f"unknown scorer {scorer!r}{scorers.hint(scorer)}; "
                                      f"registered: {', '.join(scorers.names())}")
            if scorer != "odin" and scorer not in FEATURE_SCORERS \
                    and scorers.entry(scorer).info.get("needs") != "logits":
                raise _bad("scorers", f"scorer {scorer!r} does not score logits")
        for reserved, meaning in ((MEAN_SET, "the average over sets"),
                                  (ID_SET, "the ID scores' histogram rows")):
            if reserved in self.sets:
                raise _bad("sets", f"{reserved!r} is reserved for {meaning}")
        for name, spec in self.sets.items():
            normalize_spec(name, spec)
        if set(normalize_spec("odin_tune_ood", self.odin_tune_ood)) & set(ROLE_KEYS):
            raise _bad("odin_tune_ood", "a tuning source takes no group or role")


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


def _build(name: str, spec: dict[str, Any], ctx: TaskContext, resize: str | oodsets.ResizeCrop,
           limit: int, stream: int) -> LoadedSet:
    """Read or generate one OOD set at the ID images' shape; with the `imagenet` resize, image
    files are read with the ID images' own preprocessing (a timm checkpoint's included)."""
    channels, height, width = ctx.data.image_shape()
    size = (height, width)
    if resize == "imagenet" and ctx.data.preprocessing is not None:
        own = ctx.data.preprocessing
        resize = oodsets.ResizeCrop(own.resize, own.interpolation, own.squash)
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
    tune_spec = data_spec(normalize_spec("odin_tune_ood", params["odin_tune_ood"]))
    if tune_spec["kind"] not in GENERATED:
        clash = [name for name, spec in specs.items() if data_spec(spec) == tune_spec]
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


def feature_layer(ctx: TaskContext) -> str:
    """The module (of `ctx.model`) whose input is the penultimate feature vector: the
    checkpoint's `feature_layer` (a module of its network, e.g. "fc"), else the last linear
    layer producing the logits on one evaluated image (`ood.features.final_linear`)."""
    prefix = "net." if isinstance(ctx.model, NormalizedModel) else ""
    try:
        if ctx.meta.get("feature_layer"):
            layer = prefix + ctx.meta["feature_layer"]
            linear_layer(ctx.model, layer)
            return layer
        return final_linear(ctx.model, next(iter(ctx.data.batches(1, ctx.device)))[0])
    except ValueError as exc:
        raise SuiteError(f"ood feature scorers: {exc} (`feature_layer = \"...\"` in the "
                         "checkpoint's sidecar TOML names the layer)") from exc


def _shown(layer: str, ctx: TaskContext) -> str:
    """A layer's name as the checkpoint's network spells it (what `feature_layer` takes)."""
    return layer.removeprefix("net.") if isinstance(ctx.model, NormalizedModel) else layer


def _model_digest(model: torch.nn.Module) -> str:
    """A content hash of a model's parameters and buffers (names, dtypes, shapes, bytes): the
    checkpoint's identity, normalization included, whatever file it came from."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in model.state_dict().items():
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{flat.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _features(hook: FeatureHook, ctx: TaskContext, data: EvalData, desc: str
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, features) of every image of `data` from one pass, float32 on the CPU."""
    batches = (images for images, _ in tqdm(
        data.batches(ctx.batch_size, ctx.device, ctx.num_workers), desc=desc,
        total=-(-len(data) // ctx.batch_size), leave=False, disable=not ctx.progress))
    logits, features = extract(hook, ctx.inference_model, batches)
    require_finite(logits, f"({desc})")
    require_finite(features, f"at the feature layer ({desc})")
    return logits, features


@dataclass(frozen=True)
class FittedFeatures:
    """Feature detectors fitted on `n` training images: per scorer its state, and the facts
    (settings and fitted values) they add to the records."""

    states: dict[str, Any]
    n: int
    facts: dict[str, Any]


@dataclass(frozen=True)
class FeatureFit(InputRequest):
    """The `scorers` (of FITTED) fitted on the checkpoint's penultimate features of a seeded
    stratified subset of `limit` images (0 = all) of the evaluated data set's `split`. Cached
    under the checkpoint's weights and the training data's identity (data set, split, subset,
    seed), so tasks and suites of one run sharing them fit once."""

    split: str
    limit: int
    scorers: tuple[str, ...]
    vim_dim: int
    react_percentile: float

    def key(self, ctx: TaskContext) -> str:
        return json.dumps([super().key(ctx), _model_digest(ctx.model), ctx.precision,
                           ctx.meta.get("feature_layer")])

    def load(self, ctx: TaskContext) -> FittedFeatures:
        heldout = HeldoutSplit(self.split, "ood: train_split")
        train = ctx.cache.get(heldout.key(ctx), lambda: heldout.load(ctx))
        if self.limit:
            train = train.subset(stratified_subset(train.labels, self.limit, ctx.seed))
        with FeatureHook(ctx.model, feature_layer(ctx)) as hook:
            _, features = _features(hook, ctx, train, f"features {self.split}")
            head = hook.head()
        labels = torch.from_numpy(train.labels)
        states, facts = {}, {"train_split": self.split, "train_n": len(train)}
        try:
            for scorer in self.scorers:
                if scorer == "mahalanobis":
                    states[scorer] = detectors.fit_mahalanobis(features, labels,
                                                               ctx.data.num_classes)
                elif scorer == "knn":
                    states[scorer] = detectors.fit_knn(features)
                elif scorer == "vim":
                    states[scorer] = detectors.fit_vim(features, head, self.vim_dim or None)
                    facts.update(vim_dim=states[scorer].dim, vim_alpha=states[scorer].alpha)
                else:
                    states[scorer] = detectors.react_threshold(features, self.react_percentile)
                    facts.update(react_percentile=self.react_percentile,
                                 react_threshold=states[scorer])
        except ValueError as exc:
            raise SuiteError(f"ood: fitting {scorer} on {len(train)} {self.split} images "
                             f"(train_limit = {self.limit}): {exc}") from exc
        return FittedFeatures(states, len(train), facts)


def feature_scores(scorer: str, features: torch.Tensor, head: Head,
                   fitted: FittedFeatures | None, params: dict[str, Any]) -> np.ndarray:
    """A feature scorer's scores (higher = more in-distribution) at the task's settings."""
    if scorer == "mahalanobis":
        return detectors.mahalanobis_scores(fitted.states[scorer], features)
    if scorer == "knn":
        return detectors.knn_scores(fitted.states[scorer], features, params["knn_k"])
    if scorer == "vim":
        return detectors.vim_scores(fitted.states[scorer], features, head)
    if scorer == "react":
        return detectors.react_scores(features, head, fitted.states[scorer])
    return detectors.ash_scores(features, head, scorer.removeprefix("ash_"),
                                params[f"{scorer}_percentile"])


def _scored(scorer: str, features: torch.Tensor, head: Head, fitted: FittedFeatures | None,
            params: dict[str, Any], where: str) -> np.ndarray:
    """`feature_scores` of the images of `where`: a setting that does not fit the features (k
    above the training images, a percentile that prunes every feature) is a SuiteError, a
    NaN or infinite score a ModelOutputError."""
    try:
        scores = feature_scores(scorer, features, head, fitted, params)
    except ValueError as exc:
        raise SuiteError(f"ood: scorer {scorer!r}: {exc}") from exc
    bad = int((~np.isfinite(scores)).sum())
    if bad:
        raise ModelOutputError(f"scorer {scorer!r} gave NaN or infinite scores to {bad} of "
                               f"{len(scores)} images ({where})")
    return scores


def _feature_facts(scorers: list[str], layer: str, fitted: FittedFeatures | None,
                   params: dict[str, Any]) -> dict[str, Any]:
    """The feature scorers' layer, settings and fitted values, as record facts."""
    facts: dict[str, Any] = {"feature_layer": layer, **(fitted.facts if fitted else {})}
    if "knn" in scorers:
        facts["knn_k"] = params["knn_k"]
    for scorer in scorers:
        if scorer.startswith("ash_"):
            facts[f"{scorer}_percentile"] = float(params[f"{scorer}_percentile"])
    return facts


def _inputs(params: dict[str, Any], places: TaskPlaces) -> dict[str, InputRequest]:
    """The OOD and csid sets (`set:NAME`) and, when ODIN is tuned, the held-out ID split and
    OOD source it is tuned on."""
    def request(name: str, spec: Any, limit: int, stream: int) -> OODSetInput:
        spec = normalize_spec(name, spec)
        return OODSetInput(name, json.dumps(data_spec(spec), sort_keys=True),
                           spec.get("resize", params["resize"]), limit, stream)

    inputs: dict[str, InputRequest] = {
        f"set:{name}": request(name, spec, params["ood_limit"], TEST_STREAM)
        for name, spec in params["sets"].items()}
    fitted = tuple(s for s in params["scorers"] if s in FITTED)
    if fitted:
        inputs["feature_fit"] = FeatureFit(params["train_split"], params["train_limit"],
                                           fitted, params["vim_dim"],
                                           float(params["react_percentile"]))
    if "odin" in params["scorers"] and params["odin_tune_split"] != NO_SPLIT:
        inputs["odin_heldout"] = HeldoutSplit(params["odin_tune_split"],
                                              "ood: odin_tune_split")
        inputs["odin_tune_ood"] = request("odin_tune_ood", params["odin_tune_ood"],
                                          params["odin_tune_n"], TUNE_STREAM)
    return inputs


@register_task("ood", params=OodParams, version=4, inputs=_inputs)
def ood_detection(ctx: TaskContext, params: dict[str, Any]) -> Records:
    """OOD detection per scorer x set (ID positive): TNR@TPR95, AUROC, AUPR-In/Out, Det. acc."""
    if not set_roles(params["sets"])[0]:
        raise _bad("sets", "no OOD sets; name them in the suite ([tasks.ood] sets = {name = "
                           "\"path-or-builtin\"}) or with --ood NAME=PATH")
    scorers = params["scorers"]
    specs = {name: normalize_spec(name, spec) for name, spec in params["sets"].items()}
    tuned = "odin" in scorers and params["odin_tune_split"] != NO_SPLIT
    if tuned:
        _check_tuning_source(params, specs)
    sets = {name: ctx.input(f"set:{name}") for name in specs}
    id_logits = ctx.clean_logits().double().numpy()
    by_logits = [s for s in scorers if s != "odin" and s not in FEATURE_SCORERS]
    id_scores = {s: logit_scores(s, id_logits, params) for s in by_logits}
    ood_scores: dict[str, dict[str, np.ndarray]] = {}
    records = Records()
    by_features = [s for s in scorers if s in FEATURE_SCORERS]
    fitted = ctx.input("feature_fit") if any(s in FITTED for s in scorers) else None
    with FeatureHook(ctx.model, feature_layer(ctx)) if by_features else nullcontext() as hook:
        if hook is not None:  # feature scorers: one more pass over the ID data, for features
            head = hook.head()
            _, features = _features(hook, ctx, ctx.data, "features ID")
            id_scores.update({s: _scored(s, features, head, fitted, params, "ID")
                              for s in by_features})
            records.facts.update(_feature_facts(by_features, _shown(hook.layer, ctx), fitted,
                                                params))
        for name, loaded in sets.items():
            data = _as_data(loaded.made, ctx.data.num_classes)
            if hook is None:
                logits = predict(ctx.inference_model, data, ctx.device, ctx.batch_size,
                                 ctx.num_workers, ctx.progress)
            else:  # logits and features from one pass
                logits, features = _features(hook, ctx, data, f"features {name}")
            ood_scores[name] = {s: logit_scores(s, logits.double().numpy(), params)
                                for s in by_logits}
            ood_scores[name].update({s: _scored(s, features, head, fitted, params, name)
                                     for s in by_features})
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
