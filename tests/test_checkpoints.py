"""Checkpoint discovery, metadata precedence, wrapper formats, strictness and safe loading."""

import sys
import textwrap
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from benchmark.archs import build_arch
from benchmark.checkpoints import (
    NormalizedModel,
    discover,
    load_model,
    make_ref,
    strip_suffix,
)
from benchmark.errors import CheckpointError

TINY = "tinynets:tiny_cnn"
META = {"arch": TINY, "num_classes": 10, "mean": [0.3], "std": [0.2], "input_size": [8, 8]}


def tiny_state(seed: int = 0) -> OrderedDict:
    torch.manual_seed(seed)
    return build_arch(TINY, num_classes=10).state_dict()


def reference_logits(state, images, mean=0.3, std=0.2):
    net = build_arch(TINY, num_classes=10)
    net.load_state_dict(state)
    return net.eval()((images - mean) / std)


def write_sidecar(path: Path, **keys) -> None:
    lines = [f"{k} = {v!r}" if not isinstance(v, str) else f'{k} = "{v}"' for k, v in keys.items()]
    path.write_text("\n".join(lines) + "\n")


def load(path: Path, root: Path | None = None, cli=None, defaults=None, trust=False):
    ref = make_ref(path, root or path.parent, cli or {}, defaults or {})
    return load_model(ref, trust=trust)


def test_discover_finds_every_format_recursively_and_sorted(tmp_path):
    names = ["a.pt", "b.pth", "c.pth.tar", "sub/d.ckpt", "sub/deeper/e.safetensors"]
    for name in [*names, "notes.txt", "a.toml", "rubench.toml", "weights.npy"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert [p.relative_to(tmp_path).as_posix() for p in discover(tmp_path)] == names
    assert strip_suffix(Path("best.pth.tar")) == "best"
    with pytest.raises(CheckpointError, match="no such"):
        discover(tmp_path / "missing")


def test_name_is_relative_path_without_extension_unless_sidecar_names_it(tmp_path):
    (tmp_path / "runs" / "seed1").mkdir(parents=True)
    first, second = tmp_path / "runs" / "seed1" / "best.pth.tar", tmp_path / "mixup.pth"
    for path in (first, second):
        torch.save(tiny_state(), path)
    assert make_ref(first, tmp_path, {}, {}).name == "runs/seed1/best"
    write_sidecar(tmp_path / "mixup.toml", name="Mixup (alpha 1)")
    ref = make_ref(second, tmp_path, {}, {})
    assert ref.name == "Mixup (alpha 1)"
    assert len(ref.sha256) == 64


def test_metadata_precedence_sidecar_dir_cli_checkpoint_suite(tmp_path):
    """Each key comes from the highest source that sets it: sidecar > dir > CLI > inside > suite."""
    folder = tmp_path / "zoo"
    folder.mkdir()
    path = folder / "m.pth"
    torch.save({"state_dict": tiny_state(), "arch": "not-used", "num_classes": 10,
                "mean": [0.9], "std": [0.9], "input_size": [8, 8]}, path)
    write_sidecar(folder / "m.toml", mean=[0.31])
    write_sidecar(tmp_path / "rubench.toml", mean=[0.5], std=[0.21])  # parent dir: applies too
    cli = {"arch": TINY, "mean": [0.7], "std": [0.7], "num_classes": None}
    suite = {"num_classes": 99, "input_size": [8, 8]}
    loaded = load(path, root=tmp_path, cli=cli, defaults=suite)
    assert loaded.meta == {"arch": TINY, "mean": [0.31], "std": [0.21], "num_classes": 10,
                           "input_size": [8, 8]}
    sources = loaded.meta_sources
    assert sources["mean"] == str(folder / "m.toml")
    assert sources["std"] == str(tmp_path / "rubench.toml")
    assert sources["arch"] == "command line"
    assert sources["num_classes"] == "checkpoint"  # beats the suite's default of 99
    assert sources["input_size"] == "checkpoint"


def test_nearest_directory_sidecar_wins(tmp_path):
    (tmp_path / "inner").mkdir()
    path = tmp_path / "inner" / "m.pt"
    torch.save(tiny_state(), path)
    write_sidecar(tmp_path / "rubench.toml", arch="wrong", num_classes=10, mean=[0.3], std=[0.2])
    write_sidecar(tmp_path / "inner" / "rubench.toml", arch=TINY, num_classes=10, mean=[0.3],
                  std=[0.2])
    assert load(path, root=tmp_path).meta["arch"] == TINY


@pytest.mark.parametrize("wrap", ["bare", "state_dict", "model", "model_state_dict",
                                  "module_prefix", "lightning", "lightning_module"])
def test_wrappers_and_prefixes_load_to_identical_logits(tmp_path, wrap):
    state = tiny_state(seed=3)
    prefixed = {
        "module_prefix": {f"module.{k}": v for k, v in state.items()},
        "lightning": {f"model.{k}": v for k, v in state.items()},
        "lightning_module": {f"module.model.{k}": v for k, v in state.items()},
    }
    payload = {
        "bare": state, "state_dict": {"state_dict": state, "epoch": 3},
        "model": {"model": state}, "model_state_dict": {"model_state_dict": state, "step": 1},
    }.get(wrap) or {"state_dict": prefixed[wrap], "epoch": 1}
    path = tmp_path / "m.ckpt"
    torch.save(payload, path)
    loaded = load(path, cli=META)
    images = torch.rand(5, 1, 8, 8)
    assert torch.equal(loaded.model(images), reference_logits(state, images))


def test_strict_loading_names_missing_unexpected_and_misshapen_keys(tmp_path):
    state = tiny_state()
    state.pop("0.bias")
    state["extra.weight"] = torch.zeros(1)
    state["4.weight"] = torch.zeros(3, 64)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as info:
        load(path, cli=META)
    message = str(info.value)
    assert str(path) in message
    assert "missing keys: 0.bias" in message
    assert "unexpected keys: extra.weight" in message
    assert "4.weight (3, 64) vs (10, 64)" in message


def test_missing_architecture_and_unregistered_checkpoint_arch_explain_the_fix(tmp_path):
    path = tmp_path / "m.pth"
    torch.save(tiny_state(), path)
    with pytest.raises(CheckpointError, match=r"no architecture given.*--arch"):
        load(path, cli={k: v for k, v in META.items() if k != "arch"})
    torch.save({"arch": "pyramidnet", "state_dict": tiny_state()}, path)
    with pytest.raises(CheckpointError, match="'pyramidnet' \\(from checkpoint\\)"):
        load(path, cli={k: v for k, v in META.items() if k != "arch"})
    with pytest.raises(CheckpointError, match="no mean given"):
        load(path, cli={"arch": TINY, "num_classes": 10, "std": [1.0]})


class Exploit:
    """Pickles to a call of os.system: what a hostile checkpoint would contain."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": tiny_state(), "payload": Exploit(marker)}, path)
    with pytest.raises(CheckpointError) as info:
        load(path, cli=META)
    assert not marker.exists()
    message = str(info.value)
    assert "posix.system" in message or "os.system" in message
    assert "--trust-checkpoints" in message


def _patchup_checkpoint(tmp_path: Path, arch: str, state) -> Path:
    """A Manifold-Mixup / PatchUp style dict whose `recorder` class lives in a module of theirs."""
    module_dir = tmp_path / "their_code"
    module_dir.mkdir()
    (module_dir / "recorder_utils.py").write_text(textwrap.dedent("""
        class RecorderMeter:
            def __init__(self, total_epoch):
                self.total_epoch = total_epoch
                self.epoch_losses = [[0.0, 0.0]] * total_epoch
    """))
    sys.path.insert(0, str(module_dir))
    try:
        import recorder_utils

        path = tmp_path / "checkpoint.pth.tar"
        torch.save({"epoch": 200, "arch": arch, "state_dict": state,
                    "recorder": recorder_utils.RecorderMeter(200),
                    "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]}}, path)
    finally:
        sys.path.remove(str(module_dir))
        sys.modules.pop("recorder_utils", None)
    return path


def test_patchup_checkpoint_refused_safely_then_loads_with_trust(tmp_path):
    torch.manual_seed(0)
    net = build_arch("preactresnet18", num_classes=100)
    path = _patchup_checkpoint(tmp_path, "preactresnet18", net.state_dict())
    cifar100 = {"num_classes": 100, "mean": [0.507, 0.487, 0.441], "std": [0.267, 0.256, 0.276]}
    with pytest.raises(CheckpointError, match=r"recorder_utils.RecorderMeter.*recorder"):
        load(path, cli=cifar100)
    # With trust, the class's module is not importable here, yet the weights load (arch read
    # from the checkpoint's own 'arch' key) and the recorder becomes an inert placeholder.
    loaded = load(path, cli=cifar100, trust=True)
    assert loaded.meta_sources["arch"] == "checkpoint"
    images = torch.rand(2, 3, 32, 32)
    mean, std = torch.tensor(cifar100["mean"]).view(1, 3, 1, 1), torch.tensor(
        cifar100["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(loaded.model(images), net.eval()((images - mean) / std))


def test_cutmix_imagenet_checkpoint_loads_into_torchvision_resnet50(tmp_path):
    torch.manual_seed(0)
    net = torchvision.models.resnet50(num_classes=1000)
    wrapped = torch.nn.DataParallel(net)
    path = tmp_path / "model_best.pth.tar"
    torch.save({"epoch": 300, "arch": "resnet", "state_dict": wrapped.state_dict(),
                "best_err1": 21.4, "best_err5": 5.92, "optimizer": {"state": {},
                                                                    "param_groups": []}}, path)
    imagenet = {"num_classes": 1000, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    with pytest.raises(CheckpointError, match="'resnet'"):
        load(path, cli=imagenet)  # CutMix stores only 'resnet': ambiguous, so not guessed
    loaded = load(path, cli={**imagenet, "arch": "resnet50"})
    images = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = net.eval()((images - torch.tensor(imagenet["mean"]).view(1, 3, 1, 1))
                              / torch.tensor(imagenet["std"]).view(1, 3, 1, 1))
        assert torch.allclose(loaded.model(images), expected, atol=1e-5)


def test_safetensors_metadata_counts_as_checkpoint_keys(tmp_path):
    path = tmp_path / "m.safetensors"
    torch.manual_seed(0)
    state = build_arch("digits_cnn", num_classes=10).state_dict()
    save_file(dict(state), str(path), metadata={"arch": "digits_cnn", "num_classes": "10",
                                                "mean": "[0.3]", "std": "[0.2]"})
    loaded = load(path)
    assert loaded.meta["mean"] == [0.3] and loaded.meta_sources["arch"] == "checkpoint"


def _save_with_arch(path: Path, arch: str) -> None:
    if path.suffix == ".safetensors":
        save_file(dict(tiny_state()), str(path), metadata={"arch": arch, "num_classes": "10",
                                                           "mean": "[0.3]", "std": "[0.2]"})
    else:
        torch.save({"arch": arch, "num_classes": 10, "mean": [0.3], "std": [0.2],
                    "state_dict": tiny_state()}, path)


@pytest.mark.parametrize("arch", [TINY, "os:system", "builtins:exec", "subprocess:call",
                                  "shutil:rmtree"])
@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_code_named_inside_a_checkpoint_is_never_imported_without_consent(tmp_path, monkeypatch,
                                                                          arch, suffix):
    """A checkpoint choosing `module:callable` would make rubench import and call that code."""
    path = tmp_path / f"m{suffix}"
    _save_with_arch(path, arch)
    with monkeypatch.context() as patch:
        def no_import(name, *args, **kwargs):
            raise AssertionError(f"imported {name}")

        patch.setattr("benchmark.archs.registry.importlib.import_module", no_import)
        with pytest.raises(CheckpointError, match=r"names the importable architecture.*"
                                                  r"--trust-checkpoints"):
            load(path)
    if arch == TINY:  # the user's consent: a sidecar, a flag, or trust
        assert load(path, cli={"arch": TINY}).meta_sources["arch"] == "command line"
        write_sidecar(tmp_path / "m.toml", arch=TINY)
        assert load(path).meta_sources["arch"] == str(tmp_path / "m.toml")
        (tmp_path / "m.toml").unlink()
        assert load(path, trust=True).meta_sources["arch"] == "checkpoint"


@pytest.mark.parametrize("factory, message", [
    ("tinynets:raises", "raised RuntimeError: broken factory"),
    ("tinynets:not_a_module", "returned a dict, not a torch.nn.Module"),
    ("os:getcwd", "raised TypeError"),
])
def test_a_factory_that_fails_fails_its_checkpoint_with_a_message(tmp_path, factory, message):
    path = tmp_path / "m.pth"
    torch.save(tiny_state(), path)
    with pytest.raises(CheckpointError, match=message):
        load(path, cli={**META, "arch": factory})


def test_a_file_rewritten_after_hashing_is_refused_not_stored_under_the_old_hash(tmp_path):
    """Hash and load must see the same bytes (a training job rewriting `last.pth` in place)."""
    for suffix, save in ((".pth", lambda state, path: torch.save(state, path)),
                         (".safetensors", lambda state, path: save_file(dict(state), str(path)))):
        path = tmp_path / f"last{suffix}"
        save(tiny_state(0), path)
        ref = make_ref(path, tmp_path, META, {})
        save(tiny_state(1), path)
        with pytest.raises(CheckpointError, match="changed after rubench hashed it"):
            load_model(ref)
        fresh = make_ref(path, tmp_path, META, {})
        assert fresh.sha256 != ref.sha256
        images = torch.rand(3, 1, 8, 8)
        with torch.no_grad():
            assert torch.allclose(load_model(fresh).model(images),
                                  reference_logits(tiny_state(1), images))


def test_torchscript_needs_trust_and_then_matches_eager(tmp_path):
    state = tiny_state(seed=5)
    net = build_arch(TINY, num_classes=10)
    net.load_state_dict(state)
    path = tmp_path / "scripted.pt"
    torch.jit.script(net.eval()).save(str(path))
    meta = {k: v for k, v in META.items() if k != "arch"}
    with pytest.raises(CheckpointError, match=r"TorchScript.*--trust-checkpoints"):
        load(path, cli=meta)
    loaded = load(path, cli=meta, trust=True)
    images = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(loaded.model(images), reference_logits(state, images))


def test_corrupt_file_gives_error_naming_it(tmp_path):
    path = tmp_path / "truncated.pth"
    torch.save(tiny_state(), path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"truncated\.pth: cannot read checkpoint"):
        load(path, cli=META)


def test_bad_sidecar_values_are_reported_with_the_file(tmp_path):
    path = tmp_path / "m.pth"
    torch.save(tiny_state(), path)
    (tmp_path / "m.toml").write_text('num_classes = "ten"\n')
    with pytest.raises(CheckpointError, match=r"m\.toml: bad value for 'num_classes'"):
        make_ref(path, tmp_path, {}, {})
    (tmp_path / "m.toml").write_text('arch = "x"\nlr = 0.1\n')
    with pytest.raises(CheckpointError, match="unknown key\\(s\\) lr"):
        make_ref(path, tmp_path, {}, {})


def test_normalized_model_normalizes_inside():
    net = torch.nn.Identity()
    model = NormalizedModel(net, [0.5, 0.25, 0.0], [0.5, 0.25, 2.0])
    images = torch.ones(1, 3, 2, 2)
    assert torch.equal(model(images)[0, :, 0, 0], torch.tensor([1.0, 3.0, 0.5]))


@pytest.mark.parametrize("key", ["state_dict", "model_state_dict", "model", "net"])
def test_weights_under_each_common_key_load(tmp_path, key):
    """`net` is kuangliu/pytorch-cifar's {'net': state_dict, 'acc': ..., 'epoch': ...}."""
    path = tmp_path / "ckpt.pth"
    torch.save({key: tiny_state(3), "acc": 93.1, "epoch": 199}, path)
    images = torch.rand(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(load(path, cli=META).model(images),
                              reference_logits(tiny_state(3), images))


@pytest.mark.parametrize(("size", "expected"), [([3, 224, 224], [224, 224]), ([1, 8, 8], [8, 8]),
                                                ([32, 32], [32, 32]), (64, [64, 64])])
def test_input_size_in_timm_and_plain_forms(tmp_path, size, expected):
    path = tmp_path / "m.pth"
    torch.save(tiny_state(), path)
    write_sidecar(tmp_path / "m.toml", input_size=size)
    assert load(path, cli=META).meta["input_size"] == expected


@pytest.mark.parametrize("size", [[3, 3, 224, 224], [0, 8], [2, 8, 8], "8x8", [8.5, 8]])
def test_bad_input_size_is_refused(tmp_path, size):
    path = tmp_path / "m.pth"
    torch.save(tiny_state(), path)
    write_sidecar(tmp_path / "m.toml", input_size=size)
    with pytest.raises(CheckpointError, match="bad value for 'input_size'"):
        load(path, cli=META)


def test_a_wrongly_cased_architecture_gets_a_did_you_mean(tmp_path):
    path = tmp_path / "m.pth"
    torch.save(tiny_state(), path)
    with pytest.raises(CheckpointError, match="did you mean 'resnet18'"):
        load(path, cli={**META, "arch": "ResNet18"})
