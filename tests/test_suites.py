"""Suite files (benchmark/suites.py and the built-in benchmark/suites/*.toml)."""

from __future__ import annotations

import dataclasses
import math
import tomllib
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch

import benchmark
from benchmark.data import EvalData
from benchmark.datasets import DATASETS
from benchmark.errors import SuiteError
from benchmark.suites import TaskSpec, builtin_suites, load_suite
from benchmark.tasks import TaskContext, get_task

SUITE_DIR = Path(benchmark.__file__).parent / "suites"
BUILTIN = sorted(p.stem for p in SUITE_DIR.glob("*.toml"))

# PROTOCOLS.md §1
CIFAR10_MEAN = [v / 255 for v in (125.3, 123.0, 113.9)]
CIFAR10_STD = [v / 255 for v in (63.0, 62.1, 66.7)]
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]

MINIMAL = """\
name = "mine"
version = "3"

[dataset]
name = "cifar10"

[tasks.clean]
"""


def write(tmp_path: Path, text: str, name: str = "suite.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_builtin_suite_names():
    assert BUILTIN == ["cifar10", "cifar100", "digits", "imagenet", "openood-cifar10",
                       "openood-cifar100", "openood-imagenet", "robustbench-cifar10-l2",
                       "robustbench-cifar10-linf", "robustbench-cifar100-linf",
                       "robustbench-imagenet-linf", "tinyimagenet"]
    assert builtin_suites() == BUILTIN


@pytest.mark.parametrize("name", BUILTIN)
def test_every_builtin_suite_parses(name):
    suite = load_suite(name)
    assert suite.name == name
    assert suite.source == f"built-in suite {name}"
    assert suite.dataset["name"] in DATASETS
    assert suite.dataset["split"] in DATASETS[suite.dataset["name"]].splits
    assert isinstance(suite.model_defaults["num_classes"], int)
    assert len(suite.model_defaults["input_size"]) == 2
    protocol = ["clean", "autoattack"] if name.startswith("robustbench-") \
        else ["clean", "ood"] if name.startswith("openood-") else ["clean", "calibration"]
    assert [t.name for t in suite.tasks][:2] == protocol
    raw = tomllib.loads((resources.files("benchmark") / "suites" / f"{name}.toml").read_text())
    for task in suite.tasks:
        assert task.name.startswith(task.task)  # aliases like occlusion_mean keep the prefix
        # each parameter is the file's value where the file sets it, else the task's default
        written = {k: v for k, v in raw["tasks"][task.name].items() if k != "task"}
        defaults = get_task(task.task).defaults
        assert task.params == {**defaults, **written}
        assert all(task.params[k] == defaults[k] for k in defaults if k not in written)
    assert {"seed", "batch_size", "limit"} <= set(suite.run)


def test_builtin_suite_values():
    expected = {  # name: (num_classes, input_size, split)
        "digits": (10, [8, 8], "test"),
        "cifar10": (10, [32, 32], "test"),
        "cifar100": (100, [32, 32], "test"),
        "tinyimagenet": (200, [64, 64], "val"),
        "imagenet": (1000, [224, 224], "val"),
    }
    for name, (classes, size, split) in expected.items():
        suite = load_suite(name)
        assert suite.model_defaults["num_classes"] == classes
        assert list(suite.model_defaults["input_size"]) == size
        assert suite.dataset["split"] == split
        assert suite.tasks[1].params["bins"] == 15
    assert load_suite("digits").tasks[0].params == {"topk": [1, 5]}
    # the demo fits a temperature on digits' held-out val split; no other set has one
    assert load_suite("digits").tasks[1].params["temperature_split"] == "val"
    assert load_suite("cifar100").tasks[1].params["temperature_split"] == "none"


def _close(values, reference):
    return len(values) == len(reference) and all(
        math.isclose(a, b, rel_tol=0, abs_tol=1e-12) for a, b in zip(values, reference, strict=True)
    )


def test_cifar10_and_imagenet_normalization_follow_protocols():
    cifar = load_suite("cifar10").model_defaults
    assert _close(cifar["mean"], CIFAR10_MEAN) and _close(cifar["std"], CIFAR10_STD)
    imagenet = load_suite("imagenet").model_defaults
    assert _close(imagenet["mean"], IMAGENET_MEAN) and _close(imagenet["std"], IMAGENET_STD)


@pytest.mark.parametrize("name", ["cifar100", "tinyimagenet", "digits"])
def test_suites_without_agreed_statistics_have_no_default_mean_std(name):
    """CIFAR-100 and Tiny-ImageNet: the seed papers disagree, so the user must state them."""
    defaults = load_suite(name).model_defaults
    assert "mean" not in defaults and "std" not in defaults


@pytest.mark.parametrize("name", BUILTIN)
def test_user_suite_file_works_like_builtin(tmp_path, name):
    path = write(tmp_path, (SUITE_DIR / f"{name}.toml").read_text(), f"copy_{name}.toml")
    user, builtin = load_suite(str(path)), load_suite(name)
    assert user.source == str(path)
    assert dataclasses.replace(user, source=builtin.source) == builtin


def test_user_suite_file_without_toml_suffix(tmp_path):
    path = write(tmp_path, MINIMAL, "my_suite.cfg")
    suite = load_suite(str(path))
    assert suite.name == "mine" and suite.version == "3"
    assert suite.dataset == {"name": "cifar10", "split": "test", "path": None, "subset": None}
    assert suite.run == {"seed": 0, "batch_size": 256, "limit": 0}
    assert suite.model_defaults == {}
    assert suite.tasks == (TaskSpec("clean", "clean", {"topk": [1, 5]}),)


def test_builtin_name_not_shadowed_by_folder_in_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "imagenet" / "val").mkdir(parents=True)  # the default ImageNet data location
    assert load_suite("imagenet").name == "imagenet"


def test_missing_suite_file_and_unknown_name(tmp_path):
    missing = tmp_path / "nope.toml"
    with pytest.raises(SuiteError, match=r"nope\.toml: suite file not found"):
        load_suite(str(missing))
    with pytest.raises(SuiteError, match="no_such_suite"):
        load_suite("no_such_suite")


@pytest.mark.parametrize(
    ("text", "keys"),
    [
        (MINIMAL + "colour = 1\n", ["colour"]),  # lands in [tasks.clean]: a task parameter
        ("colour = 1\n" + MINIMAL, ["colour"]),  # a top-level key
        (MINIMAL.replace("[tasks.clean]", "[tasks.nonesuch]"), ["tasks.nonesuch", "nonesuch"]),
        (MINIMAL + "bins = 3\n", ["tasks.clean", "bins"]),
        (MINIMAL + "[tasks.alias]\ntask = \"nonesuch\"\n", ["tasks.alias", "nonesuch"]),
        (MINIMAL.replace('name = "cifar10"', 'split = "test"'), ["[dataset]", "'name'"]),
        (MINIMAL.replace('name = "cifar10"', 'name = "cifar10"\nroot = "x"'),
         ["[dataset]", "root"]),
        (MINIMAL + "[run]\nlimt = 5\n", ["[run]", "limt"]),
        (MINIMAL + "[model_defaults]\nmeans = [0.5]\n", ["[model_defaults]", "means"]),
        (MINIMAL.replace('version = "3"\n', ""), ["'version'"]),
        (MINIMAL.replace("[tasks.clean]\n", ""), ["'tasks'"]),
        ("tasks = {}\n" + MINIMAL.replace("[tasks.clean]\n", ""), ["no tasks"]),
        (MINIMAL + "[tasks.calibration\nbins = 3\n", ["invalid TOML"]),
        ('name = "x\n', ["invalid TOML"]),
    ],
)
def test_suite_errors_name_file_and_key(tmp_path, text, keys):
    path = write(tmp_path, text)
    with pytest.raises(SuiteError) as info:
        load_suite(str(path))
    message = str(info.value)
    assert str(path) in message
    for key in keys:
        assert key in message, message


def test_invalid_toml_reports_line(tmp_path):
    path = write(tmp_path, MINIMAL + "[tasks.calibration\n")
    with pytest.raises(SuiteError, match=r"line \d+"):
        load_suite(str(path))


ALIASED = MINIMAL + """\
[tasks.clean_top1]
task = "clean"
topk = [1]

[tasks.calibration]
bins = 4
"""


def test_task_table_can_run_a_registered_task_under_another_name(tmp_path):
    suite = load_suite(str(write(tmp_path, ALIASED)))
    assert suite.tasks == (
        TaskSpec("clean", "clean", {"topk": [1, 5]}),
        TaskSpec("clean_top1", "clean", {"topk": [1]}),
        TaskSpec("calibration", "calibration", {"bins": 4, "reliability": False,
                                                 "temperature_split": "none"}),
    )
    # Run it: the registered `clean` task with the alias's parameters.
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [1.0, 0.0, 4.0], [5.0, 0.0, 1.0]])
    labels = np.array([0, 2, 2, 1])  # top-1 right for items 0 and 2 -> 50 % error

    class Fixed(torch.nn.Module):
        def forward(self, x):
            return logits[x[:, 0, 0, 0].long()]

    data = EvalData("t", labels, 3, "mem", images=torch.arange(4.0).reshape(4, 1, 1, 1))
    ctx = TaskContext(model=Fixed(), data=data, seed=0, device=torch.device("cpu"),
                      batch_size=3, progress=False)
    spec = suite.tasks[1]
    metrics = get_task(spec.task).run(ctx, spec.params)[1]
    by_name = {m.metric: m.value for m in metrics}
    assert set(by_name) == {"top1_err", "nll"}  # topk = [1] only: no top5_err
    assert by_name["top1_err"] == pytest.approx(50.0)
    log_probs = torch.log_softmax(logits.double(), dim=1)
    assert by_name["nll"] == pytest.approx(-log_probs[torch.arange(4), labels].mean().item())


def test_select_keeps_suite_order_and_rejects_unknown(tmp_path):
    suite = load_suite(str(write(tmp_path, ALIASED)))
    picked = suite.select(["calibration", "clean"])
    assert [t.name for t in picked.tasks] == ["clean", "calibration"]
    assert picked.dataset == suite.dataset and picked.source == suite.source
    assert [t.name for t in suite.tasks] == ["clean", "clean_top1", "calibration"]  # unchanged
    assert [t.name for t in suite.select(["clean_top1"]).tasks] == ["clean_top1"]
    with pytest.raises(SuiteError, match="fgsm") as info:
        suite.select(["clean", "fgsm"])
    assert str(tmp_path / "suite.toml") in str(info.value)
