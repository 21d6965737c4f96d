"""The README's "Extending rubench" example, run as written: a scorer plugin, a suite that
uses it, evaluation and export; its AUROC checked against scikit-learn on the exported scores."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from test_runner import make_zoo

from benchmark.cli import main

README = Path(__file__).resolve().parent.parent / "README.md"


def _blocks() -> dict[str, str]:
    """The section's code blocks by language (python, toml, bash)."""
    text = README.read_text()
    section = text[text.index("## Extending rubench"):]
    section = section[:section.index("\n## ", 5)]
    return dict(re.findall(r"```(\w+)\n(.*?)```", section, re.S))


def test_the_readme_scorer_example_runs_as_written(tmp_path, monkeypatch):
    blocks = _blocks()
    for language in ("python", "toml"):
        name = blocks[language].splitlines()[0].lstrip("# ").strip()
        (tmp_path / name).write_text(blocks[language])
    make_zoo(tmp_path / "rubench-demo" / "zoo", seeds=(0,))
    monkeypatch.chdir(tmp_path)
    for line in blocks["bash"].splitlines():
        command = shlex.split(line, comments=True)
        assert command[0] == "rubench"
        assert main([*command[1:], "--no-progress"] if command[1] == "evaluate"
                    else command[1:]) == 0, line
    results = pd.read_csv(tmp_path / "top2" / "results.csv")
    samples = pd.read_csv(tmp_path / "top2-samples.csv")
    scores = samples[samples.scorer == "top2_gap"]
    in_dist = scores[scores.ood_set == "in_distribution"].score
    for ood_set in ("uniform", "crops"):
        out = scores[scores.ood_set == ood_set].score
        expected = roc_auc_score([1] * len(in_dist) + [0] * len(out), [*in_dist, *out])
        row = results[(results.scorer == "top2_gap") & (results.ood_set == ood_set)
                      & (results.metric == "auroc")]
        assert row.value.item() == pytest.approx(100 * expected)


def test_an_unregistered_scorer_is_refused_before_any_checkpoint_loads(tmp_path, capsys):
    suite = tmp_path / "suite.toml"
    suite.write_text(_blocks()["toml"].replace("top2_gap", "top3_gap"))  # never registered
    make_zoo(tmp_path / "zoo", seeds=(0,))
    assert main(["evaluate", str(tmp_path / "zoo"), "--suite", str(suite), "--out",
                 str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "unknown scorer 'top3_gap'" in err
    assert str(suite) in err
    assert not (tmp_path / "out" / "results.sqlite").exists()
