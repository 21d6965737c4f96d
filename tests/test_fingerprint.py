"""Input fingerprints: what re-keys stored results (a changed, added or removed input file) and
what does not (moving the folder); end to end through a task that declares its inputs."""

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from test_runner import evaluate, make_zoo

from benchmark.fingerprint import fingerprint
from benchmark.inputs import InputRequest
from benchmark.records import Records
from benchmark.reductions import register_metric
from benchmark.stats import Metric
from benchmark.tasks import TaskPlaces, get_task, register_task


def test_changes_that_matter_change_the_fingerprint(tmp_path):
    folder = tmp_path / "set"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.png").write_bytes(b"1234")
    (folder / "sub" / "b.png").write_bytes(b"56")
    first = fingerprint([folder])
    assert fingerprint([folder]) == first
    os.utime(folder / "sub" / "b.png", ns=(1, 1))  # same size, new modification time
    touched = fingerprint([folder])
    assert touched != first
    (folder / "c.png").write_bytes(b"")
    added = fingerprint([folder])
    assert added != touched
    (folder / "c.png").unlink()
    assert fingerprint([folder]) == touched
    moved = tmp_path / "elsewhere"
    shutil.move(folder, moved)
    assert fingerprint([moved]) == touched  # the location is not part of it
    assert fingerprint([folder]) != touched  # now missing
    assert fingerprint([moved, moved / "a.png"]) != fingerprint([moved])
    os.symlink(moved / "nowhere", moved / "broken")  # unreadable: marked, not fatal
    os.symlink(moved, moved / "sub" / "loop")  # a cycle: walked once
    assert fingerprint([moved]) != touched


READS: list[str] = []


@dataclass(frozen=True)
class _TextFile(InputRequest):
    """Test input: a text file under --data-root, read by the harness."""

    file: str

    def paths(self, places):
        return [places.data_root / self.file]

    def load(self, ctx):
        text = (ctx.data_root / self.file).read_text()
        READS.append(text)
        return text


def _declared(params, places):
    return {"table": _TextFile(params["file"])}


@dataclass(frozen=True)
class _ReadsAFileParams:
    file: str = "table.txt"


@register_metric("reads_a_file", "length")
def _length(records, params, seed):
    return [Metric("length", float(records.facts["length"]), int(records.facts["n"]), None)]


@register_task("reads_a_file", params=_ReadsAFileParams, inputs=_declared)
def _reads_a_file(ctx, params):
    """Test task: reports the length of a file under --data-root."""
    records = Records(facts={"length": len(ctx.input("table")), "n": len(ctx.data)})
    records.add(index=np.arange(len(ctx.data)))
    return records


def test_a_task_is_recomputed_when_its_declared_input_changes(tmp_path, capsys):
    zoo, root = tmp_path / "zoo", tmp_path / "root"
    make_zoo(zoo, seeds=(0,))
    root.mkdir()
    (root / "table.txt").write_text("abc")
    suite = tmp_path / "suite.toml"
    suite.write_text('name = "t"\nversion = "1"\n[dataset]\nname = "digits"\n'
                     "[model_defaults]\nnum_classes = 10\n[tasks.reads_a_file]\n")
    run = ["--suite", str(suite), "--data-root", str(root)]
    assert evaluate(zoo, tmp_path / "out", *run) == 0
    assert evaluate(zoo, tmp_path / "out", *run) == 0
    assert "0 task result(s) computed, 1 reused" in capsys.readouterr().out
    (root / "table.txt").write_text("abcdef")  # replaced in place: same path, new content
    assert evaluate(zoo, tmp_path / "out", *run) == 0
    assert "1 task result(s) computed, 0 reused" in capsys.readouterr().out
    assert pd.read_csv(tmp_path / "out" / "results.csv")["value"].tolist() == [6.0]
    assert READS == ["abc", "abcdef"]


def test_tasks_declare_the_files_they_read(tmp_path):
    root, ckpts = tmp_path / "data", tmp_path / "ckpts"
    ckpts.mkdir()
    places = TaskPlaces("cifar10", root, ckpts)

    class Declared:  # a task's declared inputs, as the files they read
        def __init__(self, task):
            self.task = task

        def inputs(self, params, places):
            declared = self.task.inputs(params, places)
            return [path for request in declared.values() for path in request.paths(places)]

    ood = Declared(get_task("ood"))
    sets = {"noise": "uniform", "svhn": "svhn/test_32x32.mat", "c100": "cifar100",
            "listed": {"kind": "list", "path": "lists/a.txt", "root": "images"}}
    params = {**get_task("ood").defaults, "sets": sets}
    (root / "lists").mkdir(parents=True)
    (root / "lists/a.txt").write_text("x/1.png -1\n\ny/2.png -1\n")
    # a list: itself and the images it names, not its whole (often shared) image root
    assert ood.inputs(params, places) == [root / "svhn/test_32x32.mat",
                                          root / "cifar-100-python", root / "lists/a.txt",
                                          root / "images/x/1.png", root / "images/y/2.png"]
    # a user set named like ODIN's tuning source does not hide it, nor the reverse
    tuned = {**params, "sets": {"odin_tune_ood": "a.mat"}, "odin_tune_split": "val",
             "odin_tune_ood": "b.mat"}
    assert ood.inputs(tuned, places) == [root / "a.mat", root / "b.mat"]
    transfer = Declared(get_task("transfer"))
    defaults = get_task("transfer").defaults
    assert transfer.inputs({**defaults, "surrogate": "erm.pth"}, places) == [
        ckpts / "erm.pth"]
    assert transfer.inputs(defaults, places) == []  # reported when the task runs
    corruptions = Declared(get_task("corruptions"))
    defaults = get_task("corruptions").defaults
    assert corruptions.inputs(defaults, places) == [root / "CIFAR-10-C"]
    assert corruptions.inputs({**defaults, "path": "/abs/C", "wnids": "w.txt"},
                              places) == [Path("/abs/C"), root / "w.txt"]
    # a set the task generates: not an input (its content follows from the key), so the
    # first run, before it exists, and the next, after, share their key
    generating = {**defaults, "generate": True}
    assert corruptions.inputs(generating, places) == []
    (root / "CIFAR-10-C").mkdir()
    (root / "CIFAR-10-C" / "GENERATED.json").write_text("{}")
    assert corruptions.inputs(generating, places) == []
    (root / "CIFAR-10-C" / "GENERATED.json").unlink()  # a released set under that name
    assert corruptions.inputs(generating, places) == [root / "CIFAR-10-C"]
