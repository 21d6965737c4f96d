"""Checkpoint discovery, metadata resolution and safe loading into a [0, 1]-input model.

Metadata precedence, highest first (each key resolved on its own):
1. the sidecar TOML beside the checkpoint (`mixup.pth` -> `mixup.toml`,
   `best.pth.tar` -> `best.toml`);
2. `rubench.toml` in the checkpoint's directory, else in the nearest parent up to the root;
3. CLI flags (`--arch`, `--num-classes`, `--mean`, `--std`, `--input-size`);
4. keys stored inside the checkpoint (`arch`, ... in a dict; `__metadata__` of a safetensors file);
5. the suite's data set defaults (`num_classes`, `mean`, `std`, `input_size`; never `arch`).
Files the user wrote about one checkpoint beat blanket flags; flags beat what training code
stored, which is often ambiguous (CutMix-PyTorch stores only `arch = 'resnet'`).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import numbers
import pickle
import re
import struct
import tomllib
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from benchmark.archs import build_arch
from benchmark.archs.timm_models import is_timm, timm_config
from benchmark.errors import CheckpointError

SUFFIXES = (".pth.tar", ".safetensors", ".ckpt", ".pth", ".pt")
# `feature_layer`: the module (as the network names it, e.g. "fc") whose input is the penultimate
# feature vector the `ood` task's feature scorers use, where the automatic choice is wrong.
META_KEYS = ("arch", "num_classes", "mean", "std", "input_size", "name", "feature_layer")
DIR_SIDECAR = "rubench.toml"
# where training code keeps the weights: CutMix / PatchUp / Lightning `state_dict`, PyTorch's
# tutorial `model_state_dict`, torchvision's references `model`, kuangliu/pytorch-cifar `net`
_STATE_KEYS = ("state_dict", "model_state_dict", "model", "net")
_PREFIXES = ("module.", "model.")


def strip_suffix(path: Path) -> str:
    """File name without its checkpoint extension (`best.pth.tar` -> `best`)."""
    name = path.name
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def discover(root: Path) -> list[Path]:
    """Checkpoint files under `root` (recursive, sorted); `root` may also be a single file."""
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise CheckpointError(f"{root}: no such checkpoint file or directory")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name.endswith(SUFFIXES))


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise CheckpointError(f"{path}: invalid TOML: {exc}") from exc
    unknown = sorted(set(data) - set(META_KEYS))
    if unknown:
        raise CheckpointError(
            f"{path}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(META_KEYS)}"
        )
    return {key: check_meta(key, value, str(path)) for key, value in data.items()}


def check_meta(key: str, value: Any, where: str) -> Any:
    """Validate and normalize one metadata value; `where` names its source for errors."""
    try:
        if key in ("arch", "name", "feature_layer"):
            if not isinstance(value, str) or not value:
                raise TypeError("expected a non-empty string")
            return value
        if key == "num_classes":
            if isinstance(value, bool) or not isinstance(value, numbers.Real) \
                    or int(value) != value or int(value) < 1:
                raise TypeError("expected a positive integer")
            return int(value)
        if key in ("mean", "std"):
            if isinstance(value, str | bytes) or any(isinstance(v, bool | str) for v in value):
                raise TypeError("expected a list of numbers")
            floats = [float(v) for v in value]
            if not floats or not all(math.isfinite(v) for v in floats) \
                    or (key == "std" and min(floats) <= 0):
                raise TypeError("expected a non-empty list of finite numbers (std > 0)")
            return floats
        if key == "input_size":
            values = [value] if isinstance(value, numbers.Integral) else value
            if isinstance(values, str | bytes) or any(
                    isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in values):
                raise TypeError("expected integers")
            sizes = [int(v) for v in values]
            if len(sizes) == 3 and sizes[0] in (1, 3):  # timm's [channels, height, width]
                sizes = sizes[1:]
            sizes = sizes * 2 if len(sizes) == 1 else sizes
            if len(sizes) != 2 or min(sizes) < 1:
                raise TypeError("expected an int, [height, width] or [channels, height, width]")
            return sizes
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: bad value for {key!r} ({value!r}): {exc}") from exc
    raise CheckpointError(f"{where}: unknown metadata key {key!r}")


def sidecar_meta(path: Path, root: Path) -> list[tuple[str, dict[str, Any]]]:
    """The user-written metadata sources for `path`, highest precedence first, as (source, keys)."""
    sources = []
    sidecar = path.with_name(strip_suffix(path) + ".toml")
    if sidecar.is_file():
        sources.append((str(sidecar), _read_toml(sidecar)))
    root = Path(root).resolve() if Path(root).is_dir() else path.parent.resolve()
    folder = path.parent.resolve()
    while True:
        candidate = folder / DIR_SIDECAR
        if candidate.is_file():
            sources.append((str(candidate), _read_toml(candidate)))
            break
        if folder == root or folder.parent == folder:
            break
        folder = folder.parent
    return sources


@dataclass(frozen=True)
class CheckpointRef:
    """A discovered checkpoint: plain data, picklable, enough to key results before loading."""

    path: Path
    name: str
    sha256: str
    external_meta: tuple[tuple[str, Any, str], ...]  # (key, value, source) from files/flags/suite

    def external(self) -> dict[str, tuple[Any, str]]:
        """Metadata from outside the checkpoint: key -> (value, source)."""
        return {key: (value, source) for key, value, source in self.external_meta}


def make_ref(
    path: Path, root: Path, cli_meta: Mapping[str, Any], suite_defaults: Mapping[str, Any]
) -> CheckpointRef:
    """Describe one checkpoint: its display name, file hash and non-embedded metadata."""
    layers = [*sidecar_meta(path, root),
              ("command line", {k: check_meta(k, v, "command line") for k, v in cli_meta.items()
                                if v is not None}),
              ("suite defaults", dict(suite_defaults))]
    resolved: dict[str, tuple[Any, str]] = {}
    for source, keys in reversed(layers):  # lowest first; higher layers overwrite
        for key, value in keys.items():
            resolved[key] = (value, source)
    if "name" in resolved:
        name = resolved.pop("name")[0]
    elif Path(root).is_dir():
        relative = path.relative_to(root)
        name = str(relative.with_name(strip_suffix(relative)).as_posix())
    else:
        name = strip_suffix(path)
    meta = tuple((key, value, source) for key, (value, source) in sorted(resolved.items()))
    return CheckpointRef(path=path, name=name, sha256=sha256_file(path), external_meta=meta)


class NormalizedModel(nn.Module):
    """[0, 1] images in, logits out: normalization inside, so perturbations act in pixel space."""

    def __init__(self, net: nn.Module, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net((images - self.mean) / self.std)


@dataclass(frozen=True)
class LoadedModel:
    """A ready-to-evaluate model, the metadata it was built with and where each key came from."""

    model: NormalizedModel
    meta: dict[str, Any]
    meta_sources: dict[str, str]


def is_torchscript(raw: bytes) -> bool:
    """True for a TorchScript archive (a zip with a `code/` folder), not a `torch.save` file."""
    if not zipfile.is_zipfile(io.BytesIO(raw)):
        return False
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        return any("/code/" in name or name.startswith("code/") for name in archive.namelist())


def _safetensors_metadata(raw: bytes) -> dict[str, str]:
    """The `__metadata__` of a safetensors file's JSON header (8-byte little-endian length)."""
    size = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + size])
    stored = header.get("__metadata__") or {}
    return {str(k): str(v) for k, v in stored.items()}


class _Placeholder:
    """Stand-in for a pickled class whose code is not importable (e.g. PatchUp's `recorder`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _LenientUnpickler(pickle.Unpickler):
    """Full unpickler (trusted files only) that tolerates classes missing from this environment."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            return type(name, (_Placeholder,), {"__module__": module})


class _LenientPickle:
    """A `pickle_module` for torch.load that uses `_LenientUnpickler`."""

    Unpickler = _LenientUnpickler
    load = staticmethod(pickle.load)
    __name__ = "pickle"


def _refusal(path: Path, exc: Exception) -> CheckpointError:
    """Explain why safe loading failed: a refused pickled global, or an unreadable file."""
    found = re.search(r"GLOBAL ([\w.]+)", str(exc))
    if not found:
        detail = re.search(r"WeightsUnpickler error: (.+?)\n\n", str(exc) + "\n\n", re.S)
        reason = detail.group(1).strip() if detail else str(exc).splitlines()[0]
        return CheckpointError(
            f"{path}: cannot read checkpoint: not a valid torch checkpoint for safe loading "
            f"({reason}). If it is a trusted file in an old pickle format, "
            "--trust-checkpoints loads it with full unpickling."
        )
    return CheckpointError(
        f"{path}: refused to load the pickled global `{found.group(1)}`: safe loading "
        "accepts only tensors and plain "
        "containers, and unpickling anything else can run code stored in the file. "
        "Manifold-Mixup / PatchUp checkpoints hit this because of their pickled `recorder`. "
        "If you trust the file, re-run with --trust-checkpoints; or re-save just its weights "
        "(e.g. torch.save(ckpt['state_dict'], 'weights.pth')) outside the checkpoint directory "
        "and evaluate that."
    )


def read_checkpoint(path: Path, trust: bool, sha256: str | None = None
                    ) -> tuple[Any, dict[str, Any]]:
    """Load a checkpoint file: (weights or scripted module, metadata stored inside it).

    Safe by default: safetensors, or `torch.load(weights_only=True)`. TorchScript archives
    carry their own code and full pickles may run code, so both need `trust`. The file is read
    once and loaded from those bytes; with `sha256` (the hash its results are stored under) the
    bytes must have that hash, so a file rewritten after it was hashed (a training job updating
    `last.pth`) never has its numbers stored under the old file's hash.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint: {exc}") from exc
    if sha256 is not None and hashlib.sha256(raw).hexdigest() != sha256:
        raise CheckpointError(
            f"{path}: the file changed after rubench hashed it (sha256 {sha256[:12]}... when "
            f"found, {hashlib.sha256(raw).hexdigest()[:12]}... when loaded); nothing was "
            "evaluated. Re-run once the file is no longer being written."
        )
    try:
        if path.name.endswith(".safetensors"):
            from safetensors.torch import load as load_safetensors

            return load_safetensors(raw), _parse_string_meta(_safetensors_metadata(raw), path)
        if is_torchscript(raw):
            if not trust:
                raise CheckpointError(
                    f"{path}: is a TorchScript archive, which carries its own code; "
                    "re-run with --trust-checkpoints if you trust it"
                )
            return torch.jit.load(io.BytesIO(raw), map_location="cpu"), {}
        if trust:
            obj = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=False,
                             pickle_module=_LenientPickle)
        else:
            try:
                obj = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
            except pickle.UnpicklingError as exc:
                raise _refusal(path, exc) from None
    except CheckpointError:
        raise
    except Exception as exc:  # corrupt zip, truncated file, safetensors header errors, ...
        raise CheckpointError(f"{path}: cannot read checkpoint: {type(exc).__name__}: {exc}") \
            from exc
    inner = {}
    if isinstance(obj, Mapping):
        for key in META_KEYS:
            if key in obj and not isinstance(obj[key], torch.Tensor):
                inner[key] = obj[key]
    return obj, inner


def _parse_string_meta(stored: dict[str, str], path: Path) -> dict[str, Any]:
    """safetensors metadata is str -> str; decode JSON values (lists, ints) where they parse."""
    meta = {}
    for key in META_KEYS:
        if key in stored:
            try:
                meta[key] = json.loads(stored[key])
            except json.JSONDecodeError:
                meta[key] = stored[key]
    return meta


def extract_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The tensor dict in a checkpoint: bare, or under one of `_STATE_KEYS`."""
    if isinstance(obj, nn.Module):
        return obj.state_dict()
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return dict(obj)
    for key in _STATE_KEYS:
        if key in obj:
            return extract_state_dict(obj[key], path)
    raise CheckpointError(
        f"{path}: no weights found: neither a bare state_dict nor one under "
        f"{', '.join(repr(k) for k in _STATE_KEYS)} (top-level keys: {', '.join(map(str, obj))})"
    )


def _prefix_variants(state: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    """The state dict with shared `module.` / `model.` prefixes stripped, one layer at a time."""
    variants = [state]
    current = state
    for _ in range(len(_PREFIXES)):
        for prefix in _PREFIXES:
            if current and all(k.startswith(prefix) for k in current):
                current = {k[len(prefix):]: v for k, v in current.items()}
                variants.append(current)
                break
        else:
            break
    return variants


def load_weights(net: nn.Module, state: dict[str, torch.Tensor], path: Path, arch: str) -> None:
    """Strict load after stripping wrapper prefixes; a mismatch names missing/unexpected keys."""
    expected = net.state_dict()
    best = max(_prefix_variants(state), key=lambda s: len(expected.keys() & s.keys()))
    missing = [k for k in expected if k not in best and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in best if k not in expected]
    wrong_shape = [f"{k} {tuple(best[k].shape)} vs {tuple(v.shape)}"
                   for k, v in expected.items() if k in best and best[k].shape != v.shape]
    if missing or unexpected or wrong_shape:
        def show(keys: list[str]) -> str:
            return ", ".join(keys[:8]) + (f" ... ({len(keys)} in all)" if len(keys) > 8 else "")

        parts = [f"{label}: {show(keys)}" for label, keys in
                 (("missing keys", missing), ("unexpected keys", unexpected),
                  ("shape mismatch (checkpoint vs model)", wrong_shape)) if keys]
        raise CheckpointError(
            f"{path}: weights do not fit architecture {arch!r}; " + "; ".join(parts)
        )
    net.load_state_dict(best, strict=False)  # exact key match verified above


def _timm_defaults(meta: dict[str, Any], sources: dict[str, str], path: Path) -> None:
    """A timm architecture's configuration fills `input_size`, `mean` and `std` where only the
    suite's defaults (or nothing) gave them, and records timm's evaluation preprocessing."""
    try:
        config = timm_config(meta["arch"])
    except ValueError as exc:
        raise CheckpointError(f"{path}: architecture {meta['arch']!r}: {exc}") from exc
    for key in ("input_size", "mean", "std"):
        if sources.get(key, "suite defaults") == "suite defaults":
            meta[key], sources[key] = config[key], "timm config"
    meta["timm_preprocessing"] = {k: config[k]
                                  for k in ("interpolation", "crop_pct", "crop_mode")}


def load_model(ref: CheckpointRef, trust: bool = False) -> LoadedModel:
    """Read, describe and build the evaluation model of one checkpoint (eval mode, on CPU)."""
    obj, inner = read_checkpoint(ref.path, trust, ref.sha256)
    external = ref.external()
    meta: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key in META_KEYS:
        if key == "name":
            continue
        if key in external and external[key][1] != "suite defaults":
            meta[key], sources[key] = external[key]
        elif key in inner:
            meta[key] = check_meta(key, inner[key], f"{ref.path} (key {key!r})")
            sources[key] = "checkpoint"
        elif key in external:
            meta[key], sources[key] = external[key]
    if is_timm(str(meta.get("arch", ""))):
        _timm_defaults(meta, sources, ref.path)
    for key in ("num_classes", "mean", "std"):
        if key not in meta:
            flag = key.replace("_", "-")
            raise CheckpointError(f"{ref.path}: no {key} given: set it in a sidecar TOML "
                                  f"({DIR_SIDECAR} or <checkpoint>.toml) or pass --{flag}")
    if isinstance(obj, torch.jit.ScriptModule):
        net, meta["arch"], sources["arch"] = obj, "torchscript", "checkpoint"
    else:
        if "arch" not in meta:
            raise CheckpointError(
                f"{ref.path}: no architecture given: add `arch = \"...\"` to "
                f"{ref.path.with_name(strip_suffix(ref.path) + '.toml')} or {DIR_SIDECAR}, or "
                "pass --arch (`rubench list` shows the names)"
            )
        if sources["arch"] == "checkpoint" and ":" in str(meta["arch"]) \
                and not is_timm(str(meta["arch"])) and not trust:
            raise CheckpointError(
                f"{ref.path}: the checkpoint itself names the importable architecture "
                f"{meta['arch']!r}; rubench imports code a checkpoint chooses only with "
                "--trust-checkpoints. Name the architecture yourself instead: `arch = ...` in a "
                f"sidecar TOML ({DIR_SIDECAR} or <checkpoint>.toml) or --arch."
            )
        try:
            net = build_arch(meta["arch"], num_classes=meta["num_classes"])
        except ValueError as exc:
            raise CheckpointError(
                f"{ref.path}: architecture {meta['arch']!r} (from {sources['arch']}): {exc}"
            ) from exc
        load_weights(net, extract_state_dict(obj, ref.path), ref.path, meta["arch"])
    if len(meta["mean"]) != len(meta["std"]):
        raise CheckpointError(f"{ref.path}: mean and std have different lengths")
    model = NormalizedModel(net, meta["mean"], meta["std"]).eval()
    return LoadedModel(model=model, meta=meta, meta_sources=sources)
