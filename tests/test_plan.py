"""`rubench evaluate --dry-run`: units, stored ones, shards and counted passes; nothing stored."""

from __future__ import annotations

import torch
from test_executors import split_suite
from test_runner import evaluate, make_zoo
from torch import nn

from benchmark.plan import counting


def test_counting_sees_forward_and_gradient_passes():
    net = nn.Linear(4, 2)
    x = torch.rand(6, 4, requires_grad=True)
    with counting(net) as counts:
        with torch.no_grad():
            net(x[:5])
        net(x).sum().backward()
    assert counts == {"forward": 11, "backward": 6}


def test_dry_run_lists_units_counts_passes_and_stores_nothing(tmp_path, capsys, one_thread):
    zoo = tmp_path / "zoo"
    make_zoo(zoo, seeds=(0, 1))
    suite = str(split_suite(tmp_path))
    out = tmp_path / "out"
    flags = ("--suite", suite, "--tasks", "clean,calibration,pgd,deepfool",
             "--shard-size", "200")
    assert evaluate(zoo, out, *flags, "--dry-run") == 0
    assert not (out / "results.sqlite").exists()
    rows = {tuple(line.split()[:2]): line.split() for line in
            capsys.readouterr().out.splitlines() if line.startswith(("m0 ", "m1 "))}
    assert len(rows) == 8
    clean = rows[("m0", "clean")]
    # 600 digits images in 3 shards of 200 (whole batches of 32: 224); measured on 100 images,
    # scaled to 600: one forward pass each, no gradient
    assert clean[2:7] == ["3", "no", "600", "0", clean[6]]
    assert rows[("m0", "calibration")][2] == "1"  # runs whole
    pgd = rows[("m0", "pgd")]
    assert pgd[2] == "1" and int(pgd[5].replace(",", "")) > 0  # 150 points: one shard
    assert int(rows[("m1", "deepfool")][5].replace(",", "")) > 0
    # stored units show as stored, and cost nothing
    assert evaluate(zoo, out, "--suite", suite, "--tasks", "clean") == 0
    capsys.readouterr()
    assert evaluate(zoo, out, *flags, "--dry-run") == 0
    lines = capsys.readouterr().out.splitlines()
    stored = [line.split() for line in lines if line.split()[1:2] == ["clean"]]
    assert all(row[3] == "yes" and row[4] == "-" for row in stored)
    assert any(line.startswith("8 unit(s), 6 to compute") for line in lines)
