"""The contract every registered task keeps: its defaults validate, it runs from a suite, and
the same seed gives the same numbers (another seed changes the random ones)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from test_runner import make_zoo

from benchmark.cli import main
from benchmark.params import validate
from benchmark.tasks import list_tasks

# One table per task type, with settings small enough for a few seconds each.
FAST = {
    "clean": "",
    "calibration": 'temperature_split = "val"\nreliability = true',
    "occlusion": "hole_fracs = [0.0, 0.5, 1.0]",
    "affine": "",
    "inbetween": "lams = [0.5]",
    "corruptions": 'generate = true\ncorruptions = ["gaussian_noise", "contrast"]\n'
                   "severities = [1, 3]",
    "ood": "ood_limit = 100\nbootstrap = 200\nsets = {uniform = \"uniform\"}",
    "fgsm": "eps = [0.1]",
    "ifgsm": "eps = [0.1]\nsteps = 3",
    "pgd": "eps = [0.1]\nsteps = 3",
    "deepfool": "eps = [0.5]\nsteps = 10\nlimit = 30",
    "cw": "eps = [0.5]\nbinary_search_steps = 2\nsteps = 20\nlimit = 20",
    "ddn": "eps = [0.5]\nsteps = 20\nlimit = 20",
    "transfer": 'surrogate = "m0.pth"\neps = [0.1]',
}


def builtin_tasks() -> list[str]:
    """rubench's own tasks (tests register a few of their own)."""
    return [t.name for t in list_tasks() if t.fn.__module__.startswith("benchmark.")]


def test_every_task_is_in_the_contract_and_its_defaults_validate():
    assert sorted(FAST) == sorted(builtin_tasks())
    for task in list_tasks():
        assert validate(task.params, task.defaults, "defaults") == task.defaults


@pytest.mark.slow
def test_same_seed_same_numbers_for_every_task(tmp_path: Path):
    make_zoo(tmp_path / "zoo", seeds=(0, 1))
    suite = tmp_path / "contract.toml"
    tables = "\n".join(f"[tasks.{name}]\n{body}\n" for name, body in FAST.items())
    suite.write_text('name = "contract"\nversion = "1"\n[dataset]\nname = "digits"\n'
                     "[model_defaults]\nnum_classes = 10\n[run]\nbatch_size = 100\n" + tables)

    def run(out: str, seed: int) -> pd.DataFrame:
        assert main(["evaluate", str(tmp_path / "zoo"), "--suite", str(suite), "--data-root",
                     str(tmp_path / "data"), "--limit", "100", "--seed", str(seed),
                     "--out", str(tmp_path / out), "--no-progress"]) == 0
        return pd.read_csv(tmp_path / out / "results.csv")

    first, again, other = run("a", 0), run("b", 0), run("c", 1)
    assert set(first.task) == set(FAST)
    pd.testing.assert_frame_equal(first, again)
    numbers = ["value", "ci_low", "ci_high"]
    assert not first[numbers].equals(other[numbers])
