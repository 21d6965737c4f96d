"""The demo zoo (benchmark/zoo.py): training regularizers, deterministic training, reuse."""

from __future__ import annotations

import hashlib
import json
import struct
import tomllib
from dataclasses import asdict, replace

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load as safetensors_load
from safetensors.torch import load_file

from benchmark import zoo
from benchmark.archs import build_arch
from benchmark.datasets import read_digits
from benchmark.zoo import Recipe, build_zoo, regularized_batch, train

N, C, H, W = 6, 3, 8, 8
SEEDS = range(40)

ERM = Recipe("erm", "erm")
MIXUP = Recipe("mixup", "mixup", strength=1.0)
CUTMIX = Recipe("cutmix", "cutmix", strength=1.0, prob=1.0)
CUTOUT = Recipe("cutout", "cutout", strength=4.0)
SMOOTH = Recipe("ls", "label_smoothing", strength=0.1)


def distinct_images(n: int = N) -> torch.Tensor:
    """Images no pixel of which equals the same pixel of another image, and none of which is 0:
    image i is (i + 1) plus a small ramp over (channel, row, column)."""
    ramp = torch.arange(C * H * W, dtype=torch.float32).reshape(C, H, W) / (2 * C * H * W)
    return torch.stack([ramp + (i + 1) for i in range(n)])


def own_labels(n: int = N) -> torch.Tensor:
    """Every sample its own class, so a target row tells which samples were mixed into it."""
    return torch.arange(n)


def recover_mix(targets: torch.Tensor) -> tuple[list[int], list[float]]:
    """From soft targets over `own_labels`: the partner of each row and the row's own weight."""
    partners, weights = [], []
    for i, row in enumerate(targets):
        others = [j for j in torch.nonzero(row > 0).flatten().tolist() if j != i]
        assert len(others) <= 1, row
        partners.append(others[0] if others else i)
        weights.append(float(row[i]))
    return partners, weights


@pytest.mark.parametrize("recipe", [ERM, MIXUP, CUTMIX, CUTOUT, SMOOTH,
                                    Recipe("cm", "cutmix", strength=0.5, prob=0.5),
                                    Recipe("mx", "mixup", strength=0.2)],
                         ids=lambda r: r.name)
def test_soft_targets_are_distributions(recipe):
    images = distinct_images()
    labels = torch.tensor([0, 1, 1, 3, 9, 3])
    for seed in SEEDS:
        inputs, targets = regularized_batch(recipe, images, labels, 10, np.random.default_rng(seed))
        assert inputs.shape == images.shape and targets.shape == (N, 10)
        assert targets.dtype == torch.float32
        assert torch.all(targets >= 0)
        assert torch.allclose(targets.sum(dim=1), torch.ones(N), atol=1e-6)
    assert torch.equal(images, distinct_images())  # the caller's batch is never modified


def test_erm_is_identity():
    images, labels = distinct_images(), torch.tensor([2, 0, 1, 2, 4, 3])
    inputs, targets = regularized_batch(ERM, images, labels, 5, np.random.default_rng(0))
    assert torch.equal(inputs, images)
    expected = np.zeros((N, 5), dtype=np.float32)
    expected[np.arange(N), labels.numpy()] = 1
    assert torch.equal(targets, torch.from_numpy(expected))


@pytest.mark.parametrize("eps", [0.1, 0.25])
def test_label_smoothing_targets(eps):
    images, labels, k = distinct_images(), torch.tensor([2, 0, 1, 2, 4, 3]), 7
    recipe = replace(SMOOTH, strength=eps)
    inputs, targets = regularized_batch(recipe, images, labels, k, np.random.default_rng(0))
    onehot = np.eye(k)[labels.numpy()]
    expected = (1 - eps) * onehot + eps / k
    assert np.allclose(targets.numpy(), expected, rtol=0, atol=1e-7)
    assert torch.equal(inputs, images)


def test_mixup_inputs_match_targets():
    """Recover lam and the permutation from the targets, then check x' = lam x + (1-lam) x[perm]."""
    images = distinct_images()
    mixed_batches, lams = 0, set()
    for seed in SEEDS:
        inputs, targets = regularized_batch(MIXUP, images, own_labels(), N,
                                            np.random.default_rng(seed))
        partners, weights = recover_mix(targets)
        assert sorted(partners) == list(range(N))  # a permutation
        moved = [i for i in range(N) if partners[i] != i]
        if not moved:
            assert torch.allclose(inputs, images, atol=1e-6)
            continue
        lam = weights[moved[0]]
        assert all(weights[i] == pytest.approx(lam, abs=1e-6) for i in moved)  # one lam per batch
        for i in range(N):
            expected = lam * images[i] + (1 - lam) * images[partners[i]]
            assert torch.allclose(inputs[i], expected, rtol=0, atol=1e-5)
            if i in moved:
                assert targets[i, partners[i]] == pytest.approx(1 - lam, abs=1e-6)
        mixed_batches += 1
        lams.add(round(lam, 6))
    assert mixed_batches >= 30 and len(lams) >= 30  # lam varies from batch to batch


def _bounding_box(mask: torch.Tensor) -> tuple[int, int, int, int]:
    rows = torch.nonzero(mask.any(dim=1)).flatten()
    cols = torch.nonzero(mask.any(dim=0)).flatten()
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def test_cutmix_pasted_area_matches_label_weight():
    images = distinct_images()
    sizes, pasted = set(), 0
    for seed in SEEDS:
        inputs, targets = regularized_batch(CUTMIX, images, own_labels(), N,
                                            np.random.default_rng(seed))
        partners, weights = recover_mix(targets)
        assert sorted(partners) == list(range(N))
        changed = inputs != images  # (N, C, H, W)
        assert torch.equal(changed, changed[:, :1].expand_as(changed))  # all channels alike
        boxes = set()
        for i in range(N):
            mask = changed[i, 0]
            share = float(mask.double().mean())
            if partners[i] == i:
                assert share == 0 and weights[i] == 1
                continue
            assert 1 - weights[i] == pytest.approx(share, abs=1e-6)
            assert targets[i, partners[i]] == pytest.approx(share, abs=1e-6)
            if share == 0:
                continue
            y0, y1, x0, x1 = _bounding_box(mask)
            assert mask[y0:y1, x0:x1].all() and int(mask.sum()) == (y1 - y0) * (x1 - x0)
            boxes.add((y0, y1, x0, x1))
            assert torch.equal(inputs[i][:, mask], images[partners[i]][:, mask])
            assert torch.equal(inputs[i][:, ~mask], images[i][:, ~mask])
            pasted += 1
        assert len(boxes) <= 1  # one box per batch, as in CutMix
        sizes |= boxes
    assert pasted >= 60 and len(sizes) >= 10


def test_cutmix_probability():
    images, labels = distinct_images(), own_labels()
    never = replace(CUTMIX, prob=0.0)
    for seed in range(10):
        inputs, targets = regularized_batch(never, images, labels, N, np.random.default_rng(seed))
        assert torch.equal(inputs, images) and torch.equal(targets, torch.eye(N))
    half = replace(CUTMIX, prob=0.5)
    applied = 0
    rng = np.random.default_rng(0)
    for _ in range(400):
        _, targets = regularized_batch(half, images, labels, N, rng)
        applied += not torch.equal(targets, torch.eye(N))
    assert 140 <= applied <= 260  # ~half (minus the batches whose mix happens to be a no-op)


def test_cutout_zeroes_one_clipped_box_per_image():
    images = distinct_images()
    labels = torch.tensor([0, 1, 2, 3, 4, 5])
    clipped = full = 0
    for seed in SEEDS:
        inputs, targets = regularized_batch(CUTOUT, images, labels, N,
                                            np.random.default_rng(seed))
        assert torch.equal(targets, torch.eye(N))
        for i in range(N):
            zero = inputs[i] == 0
            assert torch.equal(zero, zero[:1].expand_as(zero))  # all channels alike
            mask = zero[0]
            assert torch.equal(inputs[i][:, ~mask], images[i][:, ~mask])  # others untouched
            assert mask.any()  # a 4-pixel hole on 8x8 images always leaves something
            y0, y1, x0, x1 = _bounding_box(mask)
            assert mask[y0:y1, x0:x1].all() and int(mask.sum()) == (y1 - y0) * (x1 - x0)
            for lo, hi, size in ((y0, y1, H), (x0, x1, W)):
                assert hi - lo <= 4
                assert hi - lo == 4 or lo == 0 or hi == size  # shorter only at a border
            if (y1 - y0, x1 - x0) == (4, 4):
                full += 1
            else:
                clipped += 1
    assert full > 0 and clipped > 0


@pytest.mark.parametrize("strength", [0.0, 1.0])
def test_an_unknown_regularizer_is_refused_when_the_recipe_is_made(strength):
    with pytest.raises(ValueError, match="unknown regularizer 'dropblock'; choose one of erm, "
                                         "mixup, cutmix, cutout, label_smoothing"):
        Recipe("x", "dropblock", strength=strength)


def test_regularized_batch_refuses_a_regularizer_it_does_not_handle():
    """The batch function's own guard, reached by bypassing the recipe's check (as a new
    regularizer added to REGULARIZERS but not to `regularized_batch` would)."""
    recipe = Recipe("x", "mixup", strength=1.0)
    object.__setattr__(recipe, "regularizer", "dropblock")
    with pytest.raises(AssertionError, match="unhandled regularizer 'dropblock'"):
        regularized_batch(recipe, distinct_images(), own_labels(), N, np.random.default_rng(0))


# ---------------------------------------------------------------------------------------------
# training and the zoo folder

FAST = Recipe("tiny", "cutmix", strength=1.0, prob=0.5, epochs=1, batch_size=500)


def _state(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def test_train_is_deterministic():
    """Same recipe -> bit-identical weights; another seed -> different ones."""
    first, second = _state(train(FAST, progress=False)), _state(train(FAST, progress=False))
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    reference = build_arch("digits_cnn", num_classes=10).state_dict()
    assert first.keys() == reference.keys()
    assert any(not torch.equal(first[k], reference[k].to(first[k].dtype)) for k in first
               if first[k].is_floating_point())
    other = _state(train(replace(FAST, seed=1), progress=False))
    assert any(not torch.equal(first[k], other[k]) for k in first)


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _assert_same_checkpoint(got: bytes, want: bytes) -> None:
    """Same tensors bit for bit and the same metadata (the header's key order aside)."""
    got_state, want_state = safetensors_load(got), safetensors_load(want)
    assert got_state.keys() == want_state.keys()
    assert all(torch.equal(got_state[k], want_state[k]) for k in got_state)
    assert _header(got) == _header(want)


def _header(raw: bytes) -> dict:
    size = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8:8 + size])


def test_build_zoo_writes_reuses_and_retrains(tmp_path, monkeypatch):
    recipe = replace(FAST, regularizer="erm", prob=1.0, strength=0.0)
    logs: list[str] = []
    paths = build_zoo(tmp_path, (recipe,), progress=False, log=logs.append)
    ckpt = tmp_path / "tiny.safetensors"
    assert paths == [ckpt]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rubench.toml", "tiny.safetensors",
                                                           "zoo.json"]
    assert len(logs) == 1 and "trained" in logs[0].replace(str(tmp_path), "")

    meta = tomllib.loads((tmp_path / "rubench.toml").read_text())
    train_pixels = read_digits(split="train").images.numpy().astype(np.float64)
    assert meta["arch"] == "digits_cnn" and meta["num_classes"] == 10
    assert meta["input_size"] == [8, 8]
    assert meta["mean"] == [pytest.approx(train_pixels.mean(), rel=1e-5)]
    assert meta["std"] == [pytest.approx(train_pixels.std(ddof=1), rel=1e-4)]

    state = load_file(str(ckpt))
    assert state.keys() == build_arch("digits_cnn", num_classes=10).state_dict().keys()
    with safe_open(str(ckpt), "pt") as handle:
        header = handle.metadata()
    assert json.loads(header["recipe"]) == asdict(recipe)
    manifest = json.loads((tmp_path / "zoo.json").read_text())
    assert set(manifest) == {"tiny"} and manifest["tiny"]["sha256"] == _sha256(ckpt)

    original, mtime = ckpt.read_bytes(), ckpt.stat().st_mtime_ns

    # Unchanged file and recipe: reused, without training.
    def no_training(*args, **kwargs):
        raise AssertionError("build_zoo retrained an unchanged checkpoint")

    with monkeypatch.context() as patch:
        patch.setattr(zoo, "train", no_training)
        logs.clear()
        assert build_zoo(tmp_path, (recipe,), progress=False, log=logs.append) == [ckpt]
    assert len(logs) == 1 and "reusing" in logs[0].replace(str(tmp_path), "")
    assert ckpt.read_bytes() == original and ckpt.stat().st_mtime_ns == mtime

    # Changed bytes: retrained, and (training being deterministic) the same file comes back.
    damaged = bytearray(original)
    damaged[-1] ^= 0xFF
    ckpt.write_bytes(bytes(damaged))
    logs.clear()
    build_zoo(tmp_path, (recipe,), progress=False, log=logs.append)
    assert len(logs) == 1 and "trained" in logs[0].replace(str(tmp_path), "")
    assert ckpt.read_bytes() != bytes(damaged)
    _assert_same_checkpoint(ckpt.read_bytes(), original)
    assert json.loads((tmp_path / "zoo.json").read_text())["tiny"]["sha256"] == _sha256(ckpt)

    # Changed recipe under the same name: retrained, new weights, manifest updated.
    changed = replace(recipe, lr=0.02)
    logs.clear()
    build_zoo(tmp_path, (changed,), progress=False, log=logs.append)
    assert len(logs) == 1 and "trained" in logs[0].replace(str(tmp_path), "")
    assert ckpt.read_bytes() != original
    manifest_after = json.loads((tmp_path / "zoo.json").read_text())
    assert manifest_after["tiny"]["recipe"] != manifest["tiny"]["recipe"]
    assert manifest_after["tiny"]["sha256"] == _sha256(ckpt)


def test_rebuilt_checkpoint_file_is_byte_identical(tmp_path, monkeypatch):
    """A checkpoint rebuilt from the same weights has the same sha256 (the results store's key).

    Training is replaced by a fixed network, so only the file writing is under test; 16
    rebuilds make a pass by luck (all header orders equal) about 1 in 30,000.
    """
    torch.manual_seed(0)
    net = build_arch("digits_cnn", num_classes=10).eval()
    monkeypatch.setattr(zoo, "train", lambda recipe, progress=True: net)
    digests = set()
    for _ in range(16):
        (tmp_path / "zoo.json").unlink(missing_ok=True)
        build_zoo(tmp_path, (FAST,), progress=False, log=lambda message: None)
        digests.add(_sha256(tmp_path / "tiny.safetensors"))
    assert len(digests) == 1
