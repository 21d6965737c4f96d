"""The contract every registered task keeps: its defaults validate, it declares its inputs as
typed requests, it runs from a suite, its stored per-sample records reduce to its stored
metrics, and the same seed gives the same numbers (another seed changes the random ones)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pandas as pd
import pytest
from test_runner import make_zoo

from benchmark.cli import main
from benchmark.inputs import InputRequest
from benchmark.params import validate
from benchmark.store import Store
from benchmark.tasks import TaskPlaces, get_task, list_tasks, resolve_params

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
    "selective": 'scorers = ["msp", "energy"]\nbootstrap = 200',
    "shift": 'sets = {val = {kind = "split", split = "val"}}',
    "fgsm": "eps = [0.1]",
    "ifgsm": "eps = [0.1]\nsteps = 3",
    "pgd": "eps = [0.1]\nsteps = 3",
    "deepfool": "eps = [0.5]\nsteps = 10\nlimit = 30",
    "cw": "eps = [0.5]\nbinary_search_steps = 2\nsteps = 20\nlimit = 20",
    "ddn": "eps = [0.5]\nsteps = 20\nlimit = 20",
    "transfer": 'surrogate = "m0.pth"\neps = [0.1]',
    "attack": 'attack = "pgd"\neps = [0.1]\noptions = {steps = 3}',
    "autoattack": 'version = "custom"\nattacks = ["apgd-ce", "apgd-t"]\neps = [0.1]\nlimit = 30',
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

    def run(out: str, seed: int, *extra: str) -> pd.DataFrame:
        assert main(["evaluate", str(tmp_path / "zoo"), "--suite", str(suite), "--data-root",
                     str(tmp_path / "data"), "--limit", "100", "--seed", str(seed),
                     "--out", str(tmp_path / out), "--no-progress", *extra]) == 0
        return pd.read_csv(tmp_path / out / "results.csv")

    first, again, other = run("a", 0), run("b", 0), run("c", 1)
    assert set(first.task) - {"worst_case"} == set(FAST)
    pd.testing.assert_frame_equal(first, again)
    # every task split into shards (those that can be) stores the same numbers
    pd.testing.assert_frame_equal(run("d", 0, "--batch-size", "20"),
                                  run("e", 0, "--batch-size", "20", "--shard-size", "30"))
    numbers = ["value", "ci_low", "ci_high"]
    assert not first[numbers].equals(other[numbers])
    reduced = _re_reduced(tmp_path / "a")
    assert {task for _, task in reduced} == set(FAST)
    for (checkpoint, task), (stored, again) in reduced.items():
        assert again == stored, f"{checkpoint} / {task}: its records do not reduce to its rows"


def _re_reduced(out: Path) -> dict[tuple[str, str], tuple[list, list]]:
    """Per unit: (its stored metric rows, the rows its stored records reduce to), as tuples."""
    store = Store(out)
    try:
        units = {}
        for key, unit, records in store.records(store.current_keys()):
            assert records.tables, f"{key}: no per-sample records"
            for table in records:
                assert table["index"].dtype.kind == "i" and len(table) > 0
            rows = store.conn.execute(
                "SELECT metric, conditions, value, n, higher_is_better, ci_low, ci_high "
                "FROM results WHERE checkpoint_sha256=? AND task=? AND config_hash=? "
                "ORDER BY rowid", key[1:]).fetchall()
            metrics = get_task(unit.task_type).reduce(records, unit.params, unit.seed)
            again = [(m.metric, json.dumps(m.conditions, sort_keys=True), m.value, m.n,
                      None if m.higher_is_better is None else int(m.higher_is_better),
                      m.ci_low, m.ci_high) for m in metrics]
            units[key[0], key[2]] = (rows, again)
        return units
    finally:
        store.close()


def test_every_task_declares_typed_inputs(tmp_path: Path):
    """A task that reads anything besides the evaluated data declares it: a request per input,
    each naming the files that key its results."""
    places = TaskPlaces("digits", tmp_path, tmp_path)
    (tmp_path / "m0.pth").write_bytes(b"")
    params = {name: tomllib.loads(body) for name, body in FAST.items()}
    for task in (get_task(name) for name in builtin_tasks()):
        if task.inputs is None:
            continue
        declared = task.inputs(resolve_params(task, params[task.name], "contract"), places)
        assert isinstance(declared, dict), task.name
        for request in declared.values():
            assert isinstance(request, InputRequest)
            assert all(isinstance(path, Path) for path in request.paths(places))
    readers = {t.name for t in map(get_task, builtin_tasks()) if t.inputs is not None}
    assert {"transfer", "ood", "calibration", "corruptions"} <= readers
