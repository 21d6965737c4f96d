"""`--precision`: forward-only passes under autocast (bf16 runs on the CPU too), the guard on
top-1 agreement with float32, its provenance, the unit keys, and attacks kept in float32."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from test_attacks_tasks import MEAN, STD, context, train_net
from test_runner import evaluate, make_zoo
from tinynets import bf16_fragile

from benchmark.archs import build_arch
from benchmark.checkpoints import NormalizedModel
from benchmark.datasets import read_digits
from benchmark.tasks.registry import Autocast, predict

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_bf16_run_is_keyed_apart_named_and_close_to_fp32(tmp_path, capsys):
    make_zoo(tmp_path / "zoo", seeds=(0,))
    out = tmp_path / "out"
    assert evaluate(tmp_path / "zoo", out) == 0
    fp32 = pd.read_csv(out / "results.csv")
    assert "precision" not in fp32  # float32 runs keep their columns and keys
    capsys.readouterr()
    assert evaluate(tmp_path / "zoo", out, "--precision", "bf16", "--results", "run") == 0
    assert "0 reused" in capsys.readouterr().out  # another precision is another unit
    bf16 = pd.read_csv(out / "results.csv")
    assert set(bf16["precision"]) == {"bf16"}
    assert (bf16["precision_agreement"] >= 99.5).all()
    top1 = {name: frame.set_index(["task", "metric"]).loc[("clean", "top1_err"), "value"]
            for name, frame in (("fp32", fp32), ("bf16", bf16))}
    assert abs(top1["fp32"] - top1["bf16"]) <= 1.0
    assert evaluate(tmp_path / "zoo", out, "--results", "run") == 0
    assert "0 task result(s) computed" in capsys.readouterr().out  # fp32 units still stored


def test_a_precision_that_changes_predictions_is_refused_with_the_figure(tmp_path, capsys):
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    (zoo / "rubench.toml").write_text('arch = "tinynets:bf16_fragile"\nnum_classes = 10\n'
                                      "mean = [0.0]\nstd = [1.0]\n")
    torch.save(build_arch("tinynets:bf16_fragile", 10).state_dict(), zoo / "fragile.pth")
    assert evaluate(zoo, tmp_path / "out", "--precision", "bf16") == 1
    err = capsys.readouterr().err
    assert "--precision bf16 agrees with float32 on 0.00 %" in err and "fp32" in err
    assert evaluate(zoo, tmp_path / "out2", "--precision", "bf16", "--min-agreement", "0") == 0


def test_forward_passes_use_autocast_and_attacks_the_float32_model():
    digits = read_digits(split="test").subset(torch.arange(50).numpy())
    fragile = bf16_fragile().eval()
    ctx = context(fragile, digits, precision="bf16")
    assert isinstance(ctx.inference_model, Autocast)
    reduced, full = ctx.clean_logits(), ctx.clean_logits(full_precision=True)
    assert reduced.dtype == full.dtype == torch.float32
    assert (reduced.argmax(1) == 0).all() and (full.argmax(1) == 9).all()
    torch.testing.assert_close(full, predict(fragile, digits, torch.device("cpu"), 64))
    # the attack tasks judge clean mistakes by the float32 pass
    from benchmark.tasks.attacks import _select

    assert torch.equal(_select(ctx, "pgd", 0).clean_logits, full)
    model = NormalizedModel(train_net(0), MEAN, STD).eval()
    plain = context(model, digits)
    assert plain.inference_model is model and plain.clean_logits(full_precision=True) is \
        plain.clean_logits()
