"""The generic `attack` task runs any fixed-budget attack a plugin registers."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from test_runner import make_zoo

from benchmark.cli import main
from benchmark.registry import registry

PLUGIN = '''
import torch
from benchmark.registry import registry


@registry("attack").register("unchanged", budget="fixed", norms="linf")
def unchanged(model, x, y, eps, *, norm, bounds, loss, seed, index, grad=None):
    """Returns the input: its error under attack is the clean error."""
    return x.clone()


@registry("attack").register("sign_noise", budget="fixed", norms="linf")
def sign_noise(model, x, y, eps, *, norm, bounds, loss, seed, index, grad=None, scale=1.0):
    """Random signs of size scale * eps, seeded per image."""
    noise = torch.stack([torch.randint(0, 2, x.shape[1:], generator=torch.Generator()
                                       .manual_seed(seed * 100_003 + int(i))) for i in index])
    return (x + scale * eps * (2 * noise.to(x) - 1)).clamp(*bounds)
'''

SUITE = """name = "plugin-attacks"
version = "1"
[dataset]
name = "digits"
[model_defaults]
num_classes = 10
[tasks.clean]
[tasks.fgsm]
eps = [0.2]
[tasks.same]
task = "attack"
attack = "unchanged"
eps = [0.2]
[tasks.noise]
task = "attack"
attack = "sign_noise"
eps = [0.2]
options = {scale = 0.5}
"""


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("plugin")
    (root / "my_attacks.py").write_text(PLUGIN)
    (root / "suite.toml").write_text(SUITE)
    make_zoo(root / "zoo", seeds=(0,))
    assert main(["evaluate", str(root / "zoo"), "--suite", str(root / "suite.toml"),
                 "--plugin", str(root / "my_attacks.py"), "--limit", "120", "--out",
                 str(root / "out"), "--no-progress"]) == 0
    return root / "out"


def test_a_registered_attack_runs_in_the_generic_task(evaluated: Path):
    results = pd.read_csv(evaluated / "results.csv")
    top1 = results[results.metric == "top1_err"].set_index("task")
    assert top1.at["same", "value"] == top1.at["clean", "value"]  # the input, unchanged
    assert top1.at["same", "attack"] == "unchanged" and top1.at["noise", "attack"] == "sign_noise"
    assert top1.at["noise", "value"] >= top1.at["clean", "value"]
    worst = results[results.task == "worst_case"].iloc[0]
    assert worst.attacks == "fgsm, noise, same"
    assert worst.value >= max(top1.at[t, "value"] for t in ("fgsm", "noise", "same"))


@pytest.mark.parametrize(("body", "message"), [
    ('attack = "nothing"', "attack 'nothing': unknown"),
    ('attack = "cw"', "a minimal-perturbation attack"),
    ('attack = "ifgsm"\nnorm = "l2"', "supports norm linf, not 'l2'"),
    ('attack = "pgd"\noptions = {stepz = 3}', "pgd has no option(s) stepz"),
])
def test_the_suite_is_refused_before_any_checkpoint_loads(tmp_path, capsys, body, message):
    (tmp_path / "suite.toml").write_text(
        'name = "x"\nversion = "1"\n[dataset]\nname = "digits"\n[model_defaults]\n'
        f"num_classes = 10\n[tasks.attack]\n{body}\n")
    make_zoo(tmp_path / "zoo", seeds=(0,))
    assert main(["evaluate", str(tmp_path / "zoo"), "--suite", str(tmp_path / "suite.toml"),
                 "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    assert message in capsys.readouterr().err


def test_the_builtin_attacks_follow_the_convention():
    for name in ("fgsm", "ifgsm", "pgd"):
        entry = registry("attack").entry(name)
        assert entry.info["budget"] == "fixed"
        x = torch.rand(2, 1, 8, 8)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
        adv = entry.value(model, x, torch.tensor([1, 2]), 0.1, norm="linf", bounds=(0.0, 1.0),
                          loss="ce", seed=0, index=torch.tensor([0, 1]))
        assert (adv - x).abs().max() <= 0.1 + 1e-6
