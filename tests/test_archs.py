"""Seed-paper architectures: published sizes, original keys, block semantics, checkpoint loads."""

from __future__ import annotations

import functools
import pickle

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from benchmark.archs import build_arch, list_archs
from benchmark.archs.preact_resnet import PreActBlock
from benchmark.archs.pyramidnet import PyramidBottleneck, PyramidNet
from benchmark.archs.wide_resnet import WideBasic

SEED_ARCHS = [
    "preactresnet18",
    "preactresnet34",
    "preactresnet18_64",
    "preactresnet34_64",
    "wrn28_10",
    "wrn28_2",
    "wrn28_10_64",
    "wrn28_2_64",
    "pyramidnet200_240",
]


# Read-only tests share one instance per (name, num_classes); tests that mutate build their own.
_shared = functools.cache(build_arch)


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _randomize_bn_stats(model: nn.Module) -> None:
    """Give every BN non-default running stats so that a load or forward check can see them."""
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen))
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=gen))
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen))
            m.num_batches_tracked.fill_(1234)


def test_registered_names_are_the_seed_repos_arch_strings():
    # 'preactresnet18', 'preactresnet34', 'wrn28_10', 'wrn28_2' are the `--arch` choices of
    # manifold_mixup supervised/main.py and PatchUp main.py, stored as checkpoint['arch'].
    assert set(SEED_ARCHS) <= set(list_archs()["rubench"])


@pytest.mark.parametrize(
    ("name", "num_classes", "published_m", "exact"),
    [
        # ~11.17M for PreActResNet-18 on CIFAR-10 (figure quoted in the task brief).
        ("preactresnet18", 10, 11.2, 11_171_146),
        ("preactresnet34", 10, 21.3, 21_279_306),
        # WRN-28-10: 36.5M (Zagoruyko & Komodakis 2016); the seed repos add conv biases (+10,096).
        ("wrn28_10", 10, 36.5, 36_489_290),
        # PyramidNet-200, alpha 240, CIFAR-100: 26.8M (CutMix paper, Table 3).
        ("pyramidnet200_240", 100, 26.8, 26_844_952),
        # kuangliu/pytorch-cifar's ResNet18 / 50 on CIFAR-10: 11.2M / 23.5M, the counts its
        # users report (11,173,962 and 23,520,842: the 3x3 stem and `linear` head included).
        ("cifar_resnet18", 10, 11.2, 11_173_962),
        ("cifar_resnet50", 10, 23.5, 23_520_842),
    ],
)
def test_parameter_counts_match_published(name, num_classes, published_m, exact):
    n = _params(_shared(name, num_classes))
    assert round(n / 1e6, 1) == published_m
    assert n == exact


@pytest.mark.parametrize(
    ("name", "size", "num_classes"),
    [
        ("preactresnet18", 32, 10),
        ("preactresnet34", 32, 100),
        ("preactresnet18_64", 64, 200),
        ("wrn28_2", 32, 100),
        ("wrn28_2_64", 64, 200),
    ],
)
def test_output_shape(name, size, num_classes):
    model = _shared(name, num_classes).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, size, size)).shape == (1, num_classes)


def test_shallow_pyramidnet_output_shape():
    # Same code path as PyramidNet-200 with one block per stage: 32 -> 8x8 before the pool.
    model = PyramidNet(depth=11, alpha=12, num_classes=7).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 3, 32, 32)).shape == (2, 7)


@pytest.mark.slow
def test_pyramidnet200_240_output_shape():
    # Several seconds on two CPU cores (oneDNN builds a kernel per distinct width on first call).
    model = _shared("pyramidnet200_240", 100).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 32, 32)).shape == (1, 100)


@pytest.mark.parametrize("name", ["preactresnet18", "wrn28_2"])
def test_cifar_variant_rejects_64px_input(name):
    # The fixed pools of the originals make the wrong stem fail loudly instead of mis-pooling.
    model = _shared(name, 200).eval()
    with torch.no_grad(), pytest.raises(RuntimeError):
        model(torch.rand(1, 3, 64, 64))


def test_64px_variants_only_change_stem_stride():
    for base in ("preactresnet18", "wrn28_2"):
        small, large = _shared(base, 200), _shared(f"{base}_64", 200)
        assert small.conv1.stride == (1, 1) and large.conv1.stride == (2, 2)
        assert {k: v.shape for k, v in small.state_dict().items()} == {
            k: v.shape for k, v in large.state_dict().items()
        }


def _shapes(name: str, num_classes: int) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in _shared(name, num_classes).state_dict().items()}


def test_preactresnet18_keys():
    # Names from manifold_mixup supervised/models/preresnet.py == PatchUp models/preresnet.py.
    sd = _shapes("preactresnet18", 100)
    assert len(sd) == 102
    assert sd["conv1.weight"] == (64, 3, 3, 3)
    assert "layer1.0.shortcut.0.weight" not in sd
    assert sd["layer2.0.shortcut.0.weight"] == (128, 64, 1, 1)
    assert "layer2.0.shortcut.0.bias" not in sd
    assert sd["layer4.1.bn2.running_var"] == (512,)
    assert sd["layer4.1.bn2.num_batches_tracked"] == ()
    assert sd["linear.weight"] == (100, 512) and sd["linear.bias"] == (100,)
    # No BN after the last stage: only stem, stages and classifier at the top level.
    assert {k.split(".")[0] for k in sd} == {
        "conv1",
        "layer1",
        "layer2",
        "layer3",
        "layer4",
        "linear",
    }


def test_wrn28_10_keys():
    # Names from manifold_mixup supervised/models/wide_resnet.py == PatchUp models/wide_resnet.py.
    sd = _shapes("wrn28_10", 100)
    assert len(sd) == 183
    assert sd["conv1.weight"] == (16, 3, 3, 3) and sd["conv1.bias"] == (16,)
    assert sd["layer1.0.shortcut.0.weight"] == (160, 16, 1, 1)
    assert sd["layer1.0.shortcut.0.bias"] == (160,)
    assert "layer1.1.shortcut.0.weight" not in sd
    assert sd["layer2.0.conv1.weight"] == (320, 160, 3, 3)
    assert sd["layer3.3.conv2.bias"] == (640,)
    assert sd["bn1.running_mean"] == (640,)
    assert sd["linear.weight"] == (100, 640)
    model = _shared("wrn28_10", 100)
    assert model.bn1.momentum == 0.9
    assert model.layer2[0].conv1.stride == (1, 1) and model.layer2[0].conv2.stride == (2, 2)


def test_pyramidnet200_240_keys():
    # Names from CutMix-PyTorch pyramidnet.py (checkpoint keys carry an extra 'module.').
    model = _shared("pyramidnet200_240", 100)
    sd = _shapes("pyramidnet200_240", 100)
    assert [len(s) for s in (model.layer1, model.layer2, model.layer3)] == [22, 22, 22]
    assert sd["conv1.weight"] == (16, 3, 3, 3)
    assert sd["bn1.weight"] == (16,)
    # First block: width round(16 + 240/66) = 20, fed by the 16-channel stem.
    assert sd["layer1.0.conv1.weight"] == (20, 16, 1, 1)
    assert sd["layer1.0.bn4.running_mean"] == (80,)
    # Block 23 (first of stage 2): round(16 + 23 * 240/66) = round(99.6) = 100; stride 2.
    assert sd["layer2.0.conv2.weight"] == (100, 100, 3, 3)
    assert model.layer2[0].conv2.stride == (2, 2)
    assert sd["layer3.21.conv3.weight"] == (1024, 256, 1, 1)
    assert sd["bn_final.weight"] == (1024,)
    assert sd["fc.weight"] == (100, 1024)
    assert not any("downsample" in k for k in sd)


def test_preact_block_projection_reads_preactivated_input():
    block = PreActBlock(8, 16, stride=2).eval()
    _randomize_bn_stats(block)
    nn.init.zeros_(block.conv2.weight)
    x = torch.randn(2, 8, 8, 8)
    bn = block.bn1
    act = F.relu(F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias))
    expected = F.conv2d(act, block.shortcut[0].weight, stride=2)
    with torch.no_grad():
        torch.testing.assert_close(block(x), expected)


def test_preact_block_identity_shortcut_is_raw_input():
    block = PreActBlock(8, 8).eval()
    _randomize_bn_stats(block)
    nn.init.zeros_(block.conv2.weight)
    x = torch.randn(2, 8, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(block(x), x)


def test_wide_block_projection_reads_raw_input():
    block = WideBasic(8, 16, stride=2).eval()
    _randomize_bn_stats(block)
    nn.init.zeros_(block.conv2.weight)
    nn.init.zeros_(block.conv2.bias)
    x = torch.randn(2, 8, 8, 8)
    conv = block.shortcut[0]
    with torch.no_grad():
        torch.testing.assert_close(block(x), F.conv2d(x, conv.weight, conv.bias, stride=2))


def test_pyramid_block_shortcut_is_pooled_and_zero_padded():
    block = PyramidBottleneck(8, 5, stride=2).eval()
    nn.init.zeros_(block.bn4.weight)
    nn.init.zeros_(block.bn4.bias)
    x = torch.randn(2, 8, 7, 7)
    pooled = F.avg_pool2d(x, 2, ceil_mode=True)
    expected = torch.cat([pooled, torch.zeros(2, 12, 4, 4)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(block(x), expected)


class _Recorder:
    """Stand-in for the seed repos' pickled `RecorderMeter`: a custom class in the checkpoint."""

    def __init__(self) -> None:
        self.epoch_accuracy = [[0.0, 0.0]]


def _assert_same_state(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("arch", ["preactresnet18", "wrn28_2"])
def test_manifold_mixup_patchup_checkpoint_round_trip(tmp_path, arch):
    src = build_arch(arch, 100)
    _randomize_bn_stats(src)
    optimizer = torch.optim.SGD(src.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    path = tmp_path / "checkpoint.pth.tar"
    # Layout of save_checkpoint() in manifold_mixup supervised/main.py and PatchUp main.py.
    torch.save(
        {
            "epoch": 400,
            "arch": arch,
            "state_dict": src.state_dict(),
            "recorder": _Recorder(),
            "optimizer": optimizer.state_dict(),
        },
        path,
    )
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    ckpt = torch.load(path, weights_only=False)
    dst = build_arch(ckpt["arch"], 100)
    dst.load_state_dict(ckpt["state_dict"], strict=True)
    _assert_same_state(src, dst)


def test_cutmix_checkpoint_round_trip(tmp_path):
    src = build_arch("pyramidnet200_240", 100)
    _randomize_bn_stats(src)
    wrapped = nn.DataParallel(src)
    optimizer = torch.optim.SGD(wrapped.parameters(), lr=0.25, momentum=0.9)
    path = tmp_path / "model_best.pth.tar"
    # Layout of save_checkpoint() in CutMix-PyTorch train.py: DataParallel keys, arch='pyramidnet'.
    torch.save(
        {
            "epoch": 300,
            "arch": "pyramidnet",
            "state_dict": wrapped.state_dict(),
            "best_err1": 14.23,
            "best_err5": 2.75,
            "optimizer": optimizer.state_dict(),
        },
        path,
    )
    ckpt = torch.load(path, weights_only=True)
    assert all(k.startswith("module.") for k in ckpt["state_dict"])
    state = {k.removeprefix("module."): v for k, v in ckpt["state_dict"].items()}
    dst = build_arch("pyramidnet200_240", 100)
    dst.load_state_dict(state, strict=True)
    _assert_same_state(src, dst)


def test_kuangliu_checkpoint_layout_loads_into_cifar_resnet18(tmp_path):
    """kuangliu/pytorch-cifar saves {'net': DataParallel state_dict, 'acc', 'epoch'}: the keys
    (`module.layer2.0.shortcut.1.running_mean`, `module.linear.weight`, ...) load strictly."""
    from benchmark.checkpoints import load_model, make_ref

    torch.manual_seed(0)
    net = build_arch("cifar_resnet18", num_classes=10).eval()
    state = {f"module.{k}": v for k, v in net.state_dict().items()}
    assert "module.layer2.0.shortcut.0.weight" in state and "module.linear.bias" in state
    assert not any(k.startswith("module.layer1.0.shortcut") for k in state)  # identity
    torch.save({"net": state, "acc": 95.3, "epoch": 199}, tmp_path / "ckpt.pth")
    (tmp_path / "ckpt.toml").write_text('arch = "cifar_resnet18"\nnum_classes = 10\n'
                                        "mean = [0.4914, 0.4822, 0.4465]\n"
                                        "std = [0.2023, 0.1994, 0.2010]\n")
    loaded = load_model(make_ref(tmp_path / "ckpt.pth", tmp_path, {}, {}))
    images = torch.rand(2, 3, 32, 32)
    mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
    std = torch.tensor([0.2023, 0.1994, 0.2010]).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(loaded.model(images), net((images - mean) / std), atol=1e-5)
