"""timm models as architectures (`timm:NAME`): built from timm, defaults from timm's
configuration below the user's own metadata, numbers equal to an independent forward pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from fixtures import write_cifar10
from fixtures_corruptions import cifar_test_images
from safetensors.torch import save_file

from benchmark.archs import build_arch
from benchmark.archs.timm_models import timm_config, timm_eval_preprocessing
from benchmark.cli import main

timm = pytest.importorskip("timm")
NAME = "timm:test_resnet"  # timm's own small test network: input 160 px, mean = std = 0.5


def _zoo(folder: Path, sidecar: str, metadata: dict[str, str] | None = None) -> dict:
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    state = timm.create_model("test_resnet", num_classes=10).state_dict()
    save_file(state, folder / "net.safetensors", metadata=metadata)
    (folder / "rubench.toml").write_text(sidecar)
    return state


def _suite(path: Path) -> Path:
    path.write_text('name = "t"\nversion = "1"\n[dataset]\nname = "cifar10"\nsplit = "test"\n'
                    "[model_defaults]\nnum_classes = 10\nmean = [0.49, 0.48, 0.45]\n"
                    "std = [0.25, 0.24, 0.26]\n[run]\nbatch_size = 16\n[tasks.clean]\n")
    return path


def _evaluate(tmp_path: Path) -> int:
    data = tmp_path / "data"
    if not data.exists():
        write_cifar10(data, n_train_per_batch=2, n_test=24, seed=1)
    return main(["evaluate", str(tmp_path / "zoo"), "--suite", str(_suite(tmp_path / "s.toml")),
                 "--data-root", str(data), "--out", str(tmp_path / "out"), "--no-progress"])


def test_a_timm_name_builds_timms_model_and_reads_its_configuration():
    net = build_arch(NAME, num_classes=7)
    assert type(net).__name__ == "ResNet" and net.eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 7)
    config = timm_config("timm:resnet18.tv_in1k")  # a tag chooses the configuration
    assert config == {"input_size": [224, 224], "mean": pytest.approx([0.485, 0.456, 0.406]),
                      "std": pytest.approx([0.229, 0.224, 0.225]),
                      "interpolation": "bilinear", "crop_pct": 0.875, "crop_mode": "center"}
    suites = timm_eval_preprocessing(config, config["input_size"])[0]
    assert suites.describe() == "Resize(256, bilinear) -> CenterCrop(224)"
    assert timm_eval_preprocessing(timm_config("timm:resnet18"), [224, 224])[0].describe() \
        == "Resize(235, bicubic) -> CenterCrop(224)"  # floor(224 / 0.95), as timm computes it
    with pytest.raises(ValueError, match="did you mean timm:test_resnet"):
        build_arch("timm:test_resnett", num_classes=10)


def test_timm_defaults_fill_in_below_the_users_metadata_and_numbers_match(tmp_path, capsys):
    state = _zoo(tmp_path / "zoo", f'arch = "{NAME}"\nnum_classes = 10\ninput_size = [32, 32]\n')
    assert _evaluate(tmp_path) == 0
    assert "mean=[0.5, 0.5, 0.5] std=[0.5, 0.5, 0.5] (timm config)" in capsys.readouterr().out
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    row = results[results.metric == "top1_err"].iloc[0]
    assert "timm config" in row.normalization
    images, labels = cifar_test_images(tmp_path / "data" / "cifar-10-batches-py")
    net = timm.create_model("test_resnet", num_classes=10)
    net.load_state_dict(state)
    x = torch.from_numpy(images.transpose(0, 3, 1, 2).astype(np.float32) / 255)
    with torch.no_grad():
        predicted = net.eval()((x - 0.5) / 0.5).argmax(1).numpy()
    assert row.value == pytest.approx(100 * np.mean(predicted != labels))


def test_timms_input_size_is_checked_and_a_stored_timm_name_needs_no_trust(tmp_path, capsys):
    _zoo(tmp_path / "zoo", "num_classes = 10\n", metadata={"arch": NAME})  # arch: the file's
    assert _evaluate(tmp_path) == 1
    err = capsys.readouterr().err
    assert "model input size [160, 160] does not match the data's 32x32 images" in err
    assert "set `input_size` in a sidecar" in err and "--trust-checkpoints" not in err
