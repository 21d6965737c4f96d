"""End-to-end `rubench evaluate`: numbers, resume, invalidation, failure isolation, kill -9."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import accuracy_score, log_loss, top_k_accuracy_score

from benchmark.archs import build_arch
from benchmark.cli import main
from benchmark.datasets import read_digits
from benchmark.records import Records
from benchmark.reductions import register_metric
from benchmark.stats import Metric
from benchmark.tasks import register_task

TINY = "tinynets:tiny_cnn"
TESTS = Path(__file__).parent


def make_zoo(folder: Path, seeds=(0, 1, 2)) -> dict[str, dict]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "rubench.toml").write_text(
        f'arch = "{TINY}"\nnum_classes = 10\nmean = [0.3]\nstd = [0.25]\n')
    states = {}
    for seed in seeds:
        torch.manual_seed(seed)
        states[f"m{seed}"] = build_arch(TINY, num_classes=10).state_dict()
        torch.save(states[f"m{seed}"], folder / f"m{seed}.pth")
    return states


def reference_logits(state, mean=0.3, std=0.25) -> np.ndarray:
    net = build_arch(TINY, num_classes=10)
    net.load_state_dict(state)
    images = read_digits(split="test").images
    with torch.no_grad():
        return net.eval()((images - mean) / std).double().numpy()


BASIC_SUITE = """name = "basic"
version = "1"
[dataset]
name = "digits"
[model_defaults]
num_classes = 10
[run]
batch_size = 600
[tasks.clean]
[tasks.calibration]
"""


def basic_suite(folder: Path) -> Path:
    """clean + calibration on the digits test split: the harness under test, not the tasks."""
    path = folder / "basic.toml"
    path.write_text(BASIC_SUITE)
    return path


def evaluate(zoo: Path, out: Path, *extra: str) -> int:
    if "--suite" not in extra:
        extra = (*extra, "--suite", str(basic_suite(zoo.parent)))
    return main(["evaluate", str(zoo), "--out", str(out), "--no-progress", *extra])


def test_numbers_match_sklearn_on_independently_computed_logits(tmp_path):
    states = make_zoo(tmp_path / "zoo")
    assert evaluate(tmp_path / "zoo", tmp_path / "out") == 0
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    labels = read_digits(split="test").labels
    for name, state in states.items():
        logits = reference_logits(state)
        probs = torch.softmax(torch.from_numpy(logits), 1).numpy()
        rows = results[results.checkpoint == name].set_index("metric")["value"]
        assert rows["top1_err"] == pytest.approx(100 * (1 - accuracy_score(labels,
                                                                           logits.argmax(1))))
        assert rows["top5_err"] == pytest.approx(
            100 * (1 - top_k_accuracy_score(labels, logits, k=5, labels=range(10))))
        assert rows["nll"] == pytest.approx(log_loss(labels, probs, labels=range(10)), rel=1e-5)
        assert set(rows.index) == {"top1_err", "top5_err", "nll", "ece", "mce", "adaptive_ece",
                                   "brier"}
    assert (results.n == 600).all()
    assert {"checkpoint", "task", "metric", "value", "n", "higher_is_better",
            "checkpoint_sha256", "seed", "rubench_version", "torch_version"} <= set(results)
    assert list(results.task.unique()) == ["clean", "calibration"]  # the suite's order


def test_rerun_resumes_and_same_seed_gives_identical_results(tmp_path, capsys):
    make_zoo(tmp_path / "zoo")
    assert evaluate(tmp_path / "zoo", tmp_path / "a") == 0
    first = (tmp_path / "a" / "results.csv").read_bytes()
    capsys.readouterr()
    assert evaluate(tmp_path / "zoo", tmp_path / "a") == 0
    assert "0 task result(s) computed, 6 reused" in capsys.readouterr().out
    assert (tmp_path / "a" / "results.csv").read_bytes() == first
    assert evaluate(tmp_path / "zoo", tmp_path / "b") == 0
    assert (tmp_path / "b" / "results.csv").read_bytes() == first


def test_changed_metadata_or_weights_never_reuse_stale_numbers(tmp_path, capsys):
    zoo = tmp_path / "zoo"
    states = make_zoo(zoo)
    out = tmp_path / "out"
    assert evaluate(zoo, out) == 0
    before = pd.read_csv(out / "results.csv")
    # a sidecar changing one checkpoint's normalization re-runs that checkpoint only
    (zoo / "m1.toml").write_text("mean = [0.5]\n")
    capsys.readouterr()
    assert evaluate(zoo, out) == 0
    assert "2 task result(s) computed, 4 reused" in capsys.readouterr().out
    after = pd.read_csv(out / "results.csv")
    nll = after[(after.checkpoint == "m1") & (after.metric == "nll")].value.item()
    probs = torch.softmax(torch.from_numpy(reference_logits(states["m1"], mean=0.5)), 1).numpy()
    assert nll == pytest.approx(log_loss(read_digits(split="test").labels, probs,
                                         labels=range(10)), rel=1e-5)
    # new weights under the same name: new sha256, recomputed, old rows gone from results.csv
    torch.save(states["m2"], zoo / "m0.pth")
    assert evaluate(zoo, out) == 0
    final = pd.read_csv(out / "results.csv")
    assert len(final) == len(before)
    m0 = final[final.checkpoint == "m0"].set_index("metric").value
    m2 = final[final.checkpoint == "m2"].set_index("metric").value
    assert m0.equals(m2)
    assert final[final.checkpoint == "m0"].checkpoint_sha256.nunique() == 1


def test_bad_checkpoint_does_not_stop_the_others(tmp_path, capsys):
    zoo = tmp_path / "zoo"
    make_zoo(zoo)
    (zoo / "broken.pth").write_bytes(b"not a checkpoint")
    code = evaluate(zoo, tmp_path / "out")
    err = capsys.readouterr().err
    assert code == 1
    assert "broken.pth: cannot read checkpoint" in err
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    assert sorted(results.checkpoint.unique()) == ["m0", "m1", "m2"]


@register_metric("explode_on_m1", "share_of_zeros")
def _zeros(records, params, seed):
    return [Metric("share_of_zeros", 0.0, len(records.one()), False)]


@register_task("explode_on_m1")
def _explode_on_m1(ctx, params):
    """Test task: fails for one model (recognised by its first weight), succeeds otherwise."""
    first = next(ctx.model.parameters()).flatten()[0].item()
    if abs(first - _M1_FIRST_WEIGHT) < 1e-12:
        raise RuntimeError("boom")
    records = Records()
    records.add(index=np.arange(len(ctx.data)))
    return records


torch.manual_seed(1)
_M1_FIRST_WEIGHT = next(build_arch(TINY, num_classes=10).parameters()).flatten()[0].item()


def test_failing_task_is_isolated_recorded_and_retried(tmp_path, capsys):
    zoo = tmp_path / "zoo"
    make_zoo(zoo)
    suite = tmp_path / "suite.toml"
    suite.write_text('name = "t"\nversion = "1"\n[dataset]\nname = "digits"\n'
                     "[model_defaults]\nnum_classes = 10\n"
                     "[tasks.clean]\n[tasks.explode_on_m1]\n[tasks.calibration]\n")
    code = evaluate(zoo, tmp_path / "out", "--suite", str(suite))
    captured = capsys.readouterr()
    assert code == 1
    assert "m1 / explode_on_m1" in captured.err and "boom" in captured.err
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    assert len(results[(results.checkpoint == "m1") & (results.task == "calibration")]) == 4
    assert len(results[results.task == "explode_on_m1"]) == 2
    with sqlite3.connect(tmp_path / "out" / "results.sqlite") as conn:
        assert conn.execute("SELECT COUNT(*) FROM failures WHERE task='explode_on_m1'"
                            ).fetchone() == (1,)
    evaluate(zoo, tmp_path / "out", "--suite", str(suite))
    assert "0 task result(s) computed, 8 reused" in capsys.readouterr().out  # only m1 retried


def test_limit_is_stratified_shared_and_cli_zero_overrides_suite(tmp_path):
    zoo = tmp_path / "zoo"
    make_zoo(zoo, seeds=(0,))
    assert evaluate(zoo, tmp_path / "a", "--limit", "100") == 0
    assert (pd.read_csv(tmp_path / "a" / "results.csv").n == 100).all()
    suite = tmp_path / "suite.toml"
    suite.write_text('name = "t"\nversion = "1"\n[dataset]\nname = "digits"\n'
                     "[model_defaults]\nnum_classes = 10\n[run]\nlimit = 50\n[tasks.clean]\n")
    assert evaluate(zoo, tmp_path / "b", "--suite", str(suite)) == 0
    assert (pd.read_csv(tmp_path / "b" / "results.csv").n == 50).all()
    assert evaluate(zoo, tmp_path / "c", "--suite", str(suite), "--limit", "0") == 0
    assert (pd.read_csv(tmp_path / "c" / "results.csv").n == 600).all()


def test_input_size_mismatch_is_a_clear_failure(tmp_path, capsys):
    zoo = tmp_path / "zoo"
    make_zoo(zoo, seeds=(0,))
    (zoo / "m0.toml").write_text("input_size = 32\n")
    assert evaluate(zoo, tmp_path / "out") == 1
    assert "model input size [32, 32] does not match the data's 8x8" in capsys.readouterr().err


def test_unusable_input_exits_2(tmp_path, capsys):
    assert evaluate(tmp_path / "nothing-here", tmp_path / "out") == 2
    assert "no such checkpoint" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path), "--suite", "nope", "--no-progress"]) == 2


def test_suite_is_required_and_version_is_printed(tmp_path, capsys):
    """Forgetting --suite says so (argparse, exit 2), not "no mean given ... pass --mean"."""
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "required: --suite" in err
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    assert "digits, imagenet" in capsys.readouterr().out.replace("\n", " ").replace("  ", " ")
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.startswith("rubench 0.")


def test_report_writes_one_row_per_checkpoint_with_the_stored_numbers(tmp_path):
    make_zoo(tmp_path / "zoo")
    evaluate(tmp_path / "zoo", tmp_path / "out")
    assert main(["report", str(tmp_path / "out")]) == 0
    results = pd.read_csv(tmp_path / "out" / "results.csv").set_index(["checkpoint", "metric"])
    board = pd.read_csv(tmp_path / "out" / "leaderboard.csv", index_col="checkpoint")
    assert list(board.index) == ["m0", "m1", "m2"]
    for name in board.index:
        six = {"rel": 5e-6}  # leaderboard.csv: six significant digits
        assert board.at[name, "Clean err"] == pytest.approx(
            results.at[(name, "top1_err"), "value"], **six)
        assert board.at[name, "ECE (no scaling)"] == pytest.approx(
            results.at[(name, "ece"), "value"], **six)
        assert board.at[name, "Clean err ci_low"] == pytest.approx(
            results.at[(name, "top1_err"), "ci_low"], **six)
    markdown = (tmp_path / "out" / "leaderboard.md").read_text()
    top1 = results.at[("m2", "top1_err"), "value"]
    assert f"| m2 | {top1:.2f}" in markdown or f"| m2 | **{top1:.2f}**" in markdown
    assert "Clean err ↓" in markdown and "Suite `basic` v1" in markdown


def test_kill_9_loses_nothing_and_rerun_matches_uninterrupted(tmp_path):
    zoo = tmp_path / "zoo"
    make_zoo(zoo, seeds=tuple(range(8)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get(
        "PYTHONPATH", "")])}
    command = [sys.executable, "-m", "benchmark.cli", "evaluate", str(zoo), "--no-progress",
               "--batch-size", "1", "--limit", "200", "--suite", str(basic_suite(tmp_path))]
    interrupted = tmp_path / "interrupted"
    process = subprocess.Popen([*command, "--out", str(interrupted)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    database = interrupted / "results.sqlite"
    deadline = time.time() + 120
    done = 0
    while time.time() < deadline and process.poll() is None:
        if database.exists():
            try:
                with sqlite3.connect(database) as conn:
                    done = conn.execute("SELECT COUNT(*) FROM completed").fetchone()[0]
            except sqlite3.OperationalError:
                done = 0
            if done >= 3:
                break
        time.sleep(0.01)
    assert process.poll() is None, "the run finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    with sqlite3.connect(database) as conn:
        stored = conn.execute("SELECT COUNT(*) FROM completed").fetchone()[0]
        rows = conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    assert 3 <= stored < 16
    assert rows == sum(3 if i % 2 == 0 else 4 for i in range(stored))  # whole units only
    subprocess.run([*command, "--out", str(interrupted)], env=env, check=True,
                   capture_output=True)
    subprocess.run([*command, "--out", str(tmp_path / "clean")], env=env, check=True,
                   capture_output=True)
    resumed = pd.read_csv(interrupted / "results.csv")
    uninterrupted = pd.read_csv(tmp_path / "clean" / "results.csv")
    pd.testing.assert_frame_equal(resumed, uninterrupted)


def test_two_files_with_the_same_name_are_not_mixed(tmp_path, capsys):
    zoo = tmp_path / "zoo"
    states = make_zoo(zoo, seeds=(0, 1))
    torch.save(states["m1"], zoo / "m0.pt")  # also named "m0"
    assert evaluate(zoo, tmp_path / "out") == 1
    assert "name 'm0' is already taken" in capsys.readouterr().err
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    assert results.groupby("checkpoint").checkpoint_sha256.nunique().max() == 1


def test_a_checkpoint_rewritten_mid_run_fails_alone_and_the_rerun_evaluates_it(tmp_path,
                                                                              monkeypatch, capsys):
    """Fault injection: the file changes between hashing and loading. Its numbers must not be
    stored under the first hash; the next run evaluates the new file under its own hash."""
    import benchmark.runner as runner

    states = make_zoo(tmp_path / "zoo", seeds=(0, 1))
    original = runner.make_ref

    def rewrite_m0_after_hashing(path, *args, **kwargs):
        ref = original(path, *args, **kwargs)
        if path.name == "m0.pth":
            torch.manual_seed(7)
            torch.save(build_arch(TINY, num_classes=10).state_dict(), path)
        return ref

    with monkeypatch.context() as patch:
        patch.setattr(runner, "make_ref", rewrite_m0_after_hashing)
        assert evaluate(tmp_path / "zoo", tmp_path / "out") == 1
    assert "changed after rubench hashed it" in capsys.readouterr().err
    first = pd.read_csv(tmp_path / "out" / "results.csv")
    assert set(first.checkpoint) == {"m1"}
    assert evaluate(tmp_path / "zoo", tmp_path / "out") == 0
    second = pd.read_csv(tmp_path / "out" / "results.csv")
    m0 = second[(second.checkpoint == "m0") & (second.metric == "nll")].value.item()
    torch.manual_seed(7)
    rewritten = build_arch(TINY, num_classes=10).state_dict()
    labels = read_digits(split="test").labels
    for state, expected in ((rewritten, True), (states["m0"], False)):
        logits = torch.from_numpy(reference_logits(state))
        nll = torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels)).item()
        assert (abs(m0 - nll) < 1e-6) is expected


def test_a_checkpoint_naming_code_fails_alone(tmp_path, capsys):
    """`arch = "os:system"` in a checkpoint's own metadata is refused; the others still run."""
    make_zoo(tmp_path / "zoo", seeds=(0,))
    (tmp_path / "zoo" / "rubench.toml").write_text("num_classes = 10\nmean = [0.3]\n"
                                                   "std = [0.25]\n")
    (tmp_path / "zoo" / "m0.toml").write_text(f'arch = "{TINY}"\n')
    torch.manual_seed(1)
    torch.save({"arch": "os:system", "state_dict": build_arch(TINY, num_classes=10).state_dict()},
               tmp_path / "zoo" / "evil.pth")
    assert evaluate(tmp_path / "zoo", tmp_path / "out") == 1
    assert "names the importable architecture 'os:system'" in capsys.readouterr().err
    assert set(pd.read_csv(tmp_path / "out" / "results.csv").checkpoint) == {"m0"}


@pytest.mark.parametrize("arch", ["tinynets:nan_cnn", "tinynets:inf_cnn"])
def test_non_finite_outputs_fail_every_task_alike_and_store_nothing(tmp_path, capsys, arch):
    """No task may turn NaN or infinite logits into numbers (an argmax still 'classifies')."""
    make_zoo(tmp_path / "zoo", seeds=(0, 1))
    (tmp_path / "zoo" / "m1.toml").write_text(f'arch = "{arch}"\n')
    tasks = "clean,calibration,occlusion,affine,inbetween,ood,fgsm,ifgsm,pgd,deepfool,cw,ddn"
    code = main(["evaluate", str(tmp_path / "zoo"), "--suite", "digits", "--tasks", tasks,
                 "--limit", "30", "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    failures = [line for line in err.splitlines() if line.startswith("- m1 / ")]
    assert len(failures) == len(tasks.split(","))
    assert all("hold NaN or infinite values" in line for line in failures), failures
    assert set(pd.read_csv(tmp_path / "out" / "results.csv").checkpoint) == {"m0"}


def test_dropout_left_on_raises_flag_randomized(tmp_path):
    """The runner reseeds before each task, which replays the clean pass's dropout masks: the
    randomness check must still see the outputs change."""
    make_zoo(tmp_path / "zoo", seeds=(0, 1))
    (tmp_path / "zoo" / "m1.toml").write_text('arch = "tinynets:dropout_cnn"\n')
    assert main(["evaluate", str(tmp_path / "zoo"), "--suite", "digits", "--tasks",
                 "fgsm,pgd,deepfool", "--limit", "30", "--out", str(tmp_path / "out"),
                 "--no-progress"]) == 0
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    flags = results[results.metric == "flag_randomized"].groupby("checkpoint").value.agg(set)
    assert flags["m0"] == {0.0} and flags["m1"] == {1.0}
    assert len(results[(results.metric == "flag_randomized")]) == 6  # 3 tasks x 2 models


@pytest.mark.parametrize(("flags", "message"), [
    (["--tasks", ","], "--tasks names no task"),
    (["--device", "tpu"], "--device tpu: expected auto, cpu, cuda or cuda:N"),
    (["--device", "cuda:7"], "--device cuda"),
])
def test_unusable_flags_exit_2_with_a_message(tmp_path, capsys, flags, message):
    make_zoo(tmp_path / "zoo", seeds=(0,))
    assert evaluate(tmp_path / "zoo", tmp_path / "out", *flags) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out" / "results.csv").exists()


def test_an_unwritable_out_folder_is_a_clear_error(tmp_path, capsys):
    if os.geteuid() == 0:  # root writes anywhere: a file where the folder should be instead
        (tmp_path / "out").write_text("in the way")
    else:
        (tmp_path / "out").mkdir(mode=0o500)
    make_zoo(tmp_path / "zoo", seeds=(0,))
    assert evaluate(tmp_path / "zoo", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert f"rubench: error: {tmp_path / 'out'}" in err and "Traceback" not in err


def test_a_model_with_another_class_count_is_refused_unless_asked(tmp_path, capsys):
    folder = tmp_path / "zoo"
    folder.mkdir()
    (folder / "rubench.toml").write_text(f'arch = "{TINY}"\nnum_classes = 12\nmean = [0.3]\n'
                                         'std = [0.25]\n')
    torch.manual_seed(0)
    torch.save(build_arch(TINY, num_classes=12).state_dict(), folder / "wide.pth")
    assert evaluate(folder, tmp_path / "out") == 1
    assert "the model has 12 classes, the data set digits 10" in capsys.readouterr().err
    assert evaluate(folder, tmp_path / "out", "--allow-class-mismatch") == 0


def test_concurrent_runs_on_one_out_folder_both_finish_with_whole_files(tmp_path):
    """Two runs with different tasks on one --out: the store serializes their transactions and
    each export is written under its own temporary name, then renamed."""
    make_zoo(tmp_path / "zoo")
    suite = basic_suite(tmp_path)
    runs = [subprocess.Popen([sys.executable, "-m", "benchmark.cli", "evaluate",
                              str(tmp_path / "zoo"), "--suite", str(suite), "--tasks", tasks,
                              "--out", str(tmp_path / "out"), "--no-progress"],
                             cwd=TESTS, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
            for tasks in ("clean", "calibration", "clean,calibration")]
    for run in runs:
        _, err = run.communicate(timeout=300)
        assert run.returncode == 0, err
    final = pd.read_csv(tmp_path / "out" / "results.csv")
    assert set(final.checkpoint) == {"m0", "m1", "m2"}
    assert not list((tmp_path / "out").glob("*.tmp*")) and not list(
        (tmp_path / "out").glob(".*tmp*"))
    with sqlite3.connect(tmp_path / "out" / "results.sqlite") as conn:
        done = conn.execute("SELECT COUNT(*) FROM completed").fetchone()[0]
    assert done == 6  # 3 checkpoints x 2 tasks, each stored once


def test_a_name_changed_in_a_sidecar_relabels_stored_results_at_once(tmp_path, capsys):
    make_zoo(tmp_path / "zoo", seeds=(0, 1))
    assert evaluate(tmp_path / "zoo", tmp_path / "out") == 0
    first = pd.read_csv(tmp_path / "out" / "results.csv")
    (tmp_path / "zoo" / "m0.toml").write_text('name = "mixup-seed0"\n')
    assert evaluate(tmp_path / "zoo", tmp_path / "out") == 0
    assert "0 task result(s) computed" in capsys.readouterr().out  # reused, not recomputed
    second = pd.read_csv(tmp_path / "out" / "results.csv")
    assert set(second.checkpoint) == {"mixup-seed0", "m1"}
    renamed = second[second.checkpoint == "mixup-seed0"].reset_index(drop=True)
    pd.testing.assert_series_equal(renamed.value, first[first.checkpoint == "m0"]
                                   .reset_index(drop=True).value)


def test_normalization_and_its_source_are_shown_and_a_suite_default_is_warned(tmp_path,
                                                                               capsys):
    make_zoo(tmp_path / "zoo", seeds=(0, 1))
    (tmp_path / "zoo" / "rubench.toml").write_text(f'arch = "{TINY}"\nnum_classes = 10\n')
    (tmp_path / "zoo" / "m1.toml").write_text("mean = [0.5]\nstd = [0.5]\n")
    suite = tmp_path / "s.toml"
    suite.write_text(BASIC_SUITE.replace("num_classes = 10\n",
                                         "num_classes = 10\nmean = [0.3]\nstd = [0.25]\n"))
    assert evaluate(tmp_path / "zoo", tmp_path / "out", "--suite", str(suite)) == 0
    captured = capsys.readouterr()
    assert "m0: mean=[0.3] std=[0.25] (suite defaults)" in captured.out
    assert f"m1: mean=[0.5] std=[0.5] ({tmp_path / 'zoo' / 'm1.toml'})" in captured.out
    assert "warning: m0: mean/std come only from the suite's defaults" in captured.err
    assert "m1:" not in captured.err
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    by_model = results.groupby("checkpoint").normalization.agg(set)
    assert by_model["m0"] == {"mean=[0.3] std=[0.25] (suite defaults)"}
    assert main(["report", str(tmp_path / "out")]) == 0
    assert "Normalization: mean=[0.3] std=[0.25] (suite defaults), mean=[0.5]" in (
        tmp_path / "out" / "leaderboard.md").read_text()


def test_without_bars_each_finished_unit_prints_a_line_naming_it(tmp_path, capsys):
    """A CI log (--no-progress) must not sit silent for a whole suite."""
    make_zoo(tmp_path / "zoo", seeds=(0, 1))
    assert evaluate(tmp_path / "zoo", tmp_path / "out") == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    assert [line.split(":")[0] for line in lines] == [
        "[1/4] m0 / clean", "[2/4] m0 / calibration", "[3/4] m1 / clean",
        "[4/4] m1 / calibration"]
    assert evaluate(tmp_path / "zoo", tmp_path / "out") == 0  # all reused: no unit lines
    assert not [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]


def test_broken_user_architectures_fail_their_checkpoint_alone(tmp_path, capsys, monkeypatch):
    """A module raising at import or a forward raising anything fails that checkpoint, recorded;
    the others are still evaluated."""
    (tmp_path / "brokenmod.py").write_text("raise RuntimeError('half-installed package')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    make_zoo(tmp_path / "zoo", seeds=(0, 1, 2))
    (tmp_path / "zoo" / "m1.toml").write_text('arch = "brokenmod:net"\n')
    (tmp_path / "zoo" / "m2.toml").write_text('arch = "tinynets:asserting_cnn"\n')
    assert evaluate(tmp_path / "zoo", tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert "cannot import architecture 'brokenmod:net': RuntimeError: half-installed" in err
    assert "forward pass on a 1x8x8 image failed: AssertionError" in err
    assert set(pd.read_csv(tmp_path / "out" / "results.csv").checkpoint) == {"m0"}


def test_cpu_device_with_an_index_is_accepted(tmp_path):
    make_zoo(tmp_path / "zoo", seeds=(0,))
    assert evaluate(tmp_path / "zoo", tmp_path / "out", "--device", "cpu:0") == 0


def test_a_full_disk_is_a_clear_error_and_keeps_what_was_stored(tmp_path, capsys, monkeypatch):
    """Fault injection: the store may grow by nothing (SQLite's max_page_count, as on a full
    disk): exit 2 naming the file, no traceback; the units stored before stay stored."""
    import benchmark.runner as runner
    from benchmark.store import Store

    make_zoo(tmp_path / "zoo", seeds=(0,))
    assert evaluate(tmp_path / "zoo", tmp_path / "out", "--tasks", "clean") == 0

    class FullStore(Store):
        def __init__(self, out_dir):
            super().__init__(out_dir)
            pages = self.conn.execute("PRAGMA page_count").fetchone()[0]
            self.conn.execute(f"PRAGMA max_page_count = {pages}")

    monkeypatch.setattr(runner, "Store", FullStore)
    make_zoo(tmp_path / "zoo", seeds=(0, 1, 2, 3))
    assert evaluate(tmp_path / "zoo", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "results.sqlite: cannot write the results store: database or disk is full" in err
    assert "Traceback" not in err
    with sqlite3.connect(tmp_path / "out" / "results.sqlite") as conn:
        stored = conn.execute("SELECT COUNT(*) FROM completed WHERE task = 'clean'")
        assert stored.fetchone()[0] >= 1


def test_results_csv_keeps_earlier_runs_current_results(tmp_path, capsys):
    """A second run with fewer tasks or another folder into the same --out keeps the earlier
    checkpoints and tasks in results.csv; a changed file's old numbers never come back;
    --results run restricts the export to the run."""
    make_zoo(tmp_path / "a", seeds=(0, 1))
    make_zoo(tmp_path / "b", seeds=(2,))
    out = tmp_path / "out"
    assert evaluate(tmp_path / "a", out) == 0
    assert evaluate(tmp_path / "b", out, "--tasks", "clean") == 0
    both = pd.read_csv(out / "results.csv")
    assert set(both.checkpoint) == {"m0", "m1", "m2"}
    assert set(both[both.checkpoint == "m0"].task) == {"clean", "calibration"}
    assert set(both[both.checkpoint == "m2"].task) == {"clean"}
    torch.manual_seed(9)  # m0's file changes: its new clean numbers, and no stale calibration
    torch.save(build_arch(TINY, num_classes=10).state_dict(), tmp_path / "a" / "m0.pth")
    assert evaluate(tmp_path / "a", out, "--tasks", "clean") == 0
    after = pd.read_csv(out / "results.csv")
    m0 = after[after.checkpoint == "m0"]
    assert set(m0.task) == {"clean"} and m0.checkpoint_sha256.nunique() == 1
    assert m0.checkpoint_sha256.iloc[0] != both[both.checkpoint == "m0"].checkpoint_sha256.iloc[0]
    assert set(after[after.checkpoint == "m1"].task) == {"clean", "calibration"}
    assert evaluate(tmp_path / "b", out, "--tasks", "clean", "--results", "run") == 0
    assert set(pd.read_csv(out / "results.csv").checkpoint) == {"m2"}
