"""Tasks `ood` and `calibration` end to end: numbers vs independent computations, errors, CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from fixtures import write_cifar10, write_cifar100
from PIL import Image
from scipy.io import savemat
from scipy.special import logsumexp, softmax
from sklearn.calibration import calibration_curve
from sklearn.metrics import roc_auc_score
from torchmetrics.functional.classification import multiclass_calibration_error

from benchmark.archs import build_arch
from benchmark.checkpoints import NormalizedModel
from benchmark.cli import main
from benchmark.data import stratified_subset
from benchmark.datasets import load_dataset, read_digits
from benchmark.errors import DataError, SuiteError
from benchmark.readers import read_cifar100
from benchmark.records import Records, concat
from benchmark.reductions.ood import _detection_rows
from benchmark.stats import wilson_interval
from benchmark.tasks import TaskContext, get_task, resolve_params
from benchmark.tasks import ood as ood_task
from ood.calibration import fit_temperature
from ood.datasets import natural_crops
from ood.metrics import METRICS, ood_metrics
from ood.scores import odin, tune_odin
from reports.leaderboard import leaderboard

TINY, TINY32 = "tinynets:tiny_cnn", "tinynets:tiny_cnn32"


def tiny_model(arch: str = TINY, seed: int = 0, channels: int = 1) -> NormalizedModel:
    torch.manual_seed(seed)
    return NormalizedModel(build_arch(arch, num_classes=10), [0.3] * channels,
                           [0.25] * channels).eval()


def digits_ctx(model: torch.nn.Module, batch_size: int = 600, data_root: Path | None = None
               ) -> TaskContext:
    return TaskContext(model=model, data=read_digits(split="test"), seed=0,
                       device=torch.device("cpu"), batch_size=batch_size, progress=False,
                       data_root=data_root)


def run_ood(ctx: TaskContext, **params) -> list:
    """The task as the runner calls it: parameters validated (as at suite load), then run."""
    task = get_task("ood")
    return task.run(ctx, resolve_params(task, params, "test suite"))[1]


def by_condition(metrics: list) -> dict[tuple, float]:
    return {(m.metric, m.conditions.get("scorer"), m.conditions.get("ood_set")): m
            for m in metrics}


def logits_of(model: torch.nn.Module, images: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model(images.float() / (255 if images.dtype == torch.uint8 else 1)).double().numpy()


def test_digits_ood_numbers_match_sklearn_on_independently_generated_noise():
    model = tiny_model()
    metrics = run_ood(digits_ctx(model), ood_limit=60,
                      sets={"uniform": "uniform", "crops": {"kind": "natural_crops",
                                                            "levels": 17}})
    rows = by_condition(metrics)
    scorers, sets = get_task("ood").defaults["scorers"], ["uniform", "crops", "mean"]
    assert {key for key in rows if key[0] in METRICS} == {
        (metric, scorer, name) for metric in METRICS for scorer in scorers for name in sets}
    # ODIN's uniform set, regenerated from its definition: image i ~ default_rng([0, 1, 0, i]).
    noise = torch.from_numpy(np.stack([np.random.default_rng([0, 1, 0, i]).random((1, 8, 8))
                                       for i in range(60)])).float()
    id_logits = logits_of(model, read_digits(split="test").images)
    ood_logits = logits_of(model, noise)
    is_id = np.r_[np.ones(600), np.zeros(60)]
    for scorer, score in (("msp", lambda z: softmax(z, axis=1).max(1)),
                          ("maxlogit", lambda z: z.max(1))):
        scores = np.r_[score(id_logits), score(ood_logits)]
        auroc = rows["auroc", scorer, "uniform"]
        assert auroc.value == pytest.approx(100 * roc_auc_score(is_id, scores), abs=1e-6)
        assert auroc.ci_low < auroc.value < auroc.ci_high and auroc.n == 660
    for key, row in rows.items():  # every metric row carries an interval, in percent
        if key[0] in METRICS:
            assert 0 <= row.ci_low <= row.ci_high <= 100, key
    odin_rows = ood_metrics(odin(model, read_digits(split="test").images), odin(model, noise))
    for metric, value in odin_rows.items():
        assert rows[metric, "odin", "uniform"].value == pytest.approx(100 * value, abs=1e-6)
    for metric in METRICS:  # "mean": every set weighs the same
        for scorer in scorers:
            expected = (rows[metric, scorer, "uniform"].value + rows[metric, scorer, "crops"].value)
            assert rows[metric, scorer, "mean"].value == pytest.approx(expected / 2)
            assert rows[metric, scorer, "mean"].n == 720
    assert rows["odin_temperature", "odin", None].value == 1000.0
    assert rows["odin_eps", "odin", None].value == 0.0014


def test_bootstrap_intervals_per_set_and_for_the_mean_over_sets():
    """Every row's interval against an independent bootstrap: a plain loop over resamples with
    scikit-learn's AUROC and another random stream (ID resampled once per replicate for all
    sets, as the task does); the two agree to Monte Carlo error. The TNR / FPR rows also cover
    their Wilson interval."""
    model = tiny_model(seed=4)
    rows = by_condition(run_ood(digits_ctx(model), scorers=["maxlogit"], ood_limit=50,
                                bootstrap=1000, histogram_bins=0,
                                sets={"gaussian": "gaussian", "crops": {
                                    "kind": "natural_crops", "levels": 17}}))
    assert not any(key[0] == "score_hist" for key in rows)
    id_scores = np.asarray(logits_of(model, read_digits(split="test").images).max(1))
    noise = torch.from_numpy(np.stack([
        np.clip(np.random.default_rng([0, 2, 0, i]).normal(0.5, 1.0, (1, 8, 8)), 0, 1)
        for i in range(50)])).float()
    crops = natural_crops(50, 1, (8, 8), seed=0, stream=0, levels=17).images
    sets = [np.asarray(logits_of(model, images).max(1)) for images in (noise, crops)]
    rng = np.random.default_rng(99)
    naive: dict = {0: [], 1: [], "mean": []}
    for _ in range(1000):
        ids = id_scores[rng.integers(0, len(id_scores), len(id_scores))]
        per_set = []
        for j, scores in enumerate(sets):
            ood = scores[rng.integers(0, len(scores), len(scores))]
            per_set.append(roc_auc_score(np.r_[np.ones(len(ids)), np.zeros(len(ood))],
                                         np.r_[ids, ood]))
            naive[j].append(per_set[-1])
        naive["mean"].append(np.mean(per_set))
    for key, name in ((0, "gaussian"), (1, "crops"), ("mean", "mean")):
        row = rows["auroc", "maxlogit", name]
        low, high = 100 * np.quantile(naive[key], [0.025, 0.975])
        assert abs(row.ci_low - low) < 0.2 * (high - low), name
        assert abs(row.ci_high - high) < 0.2 * (high - low), name
    for metric in METRICS:
        values = [ood_metrics(id_scores, scores)[metric] for scores in sets]
        for j, name in enumerate(["gaussian", "crops"]):
            row = rows[metric, "maxlogit", name]
            assert row.value == pytest.approx(100 * values[j], abs=1e-6)
            assert row.ci_low < row.ci_high
            if metric in ("tnr_at_tpr95", "fpr_at_tpr95_ood_positive"):
                w_low, w_high = wilson_interval(round(values[j] * 50), 50)
                assert row.ci_low <= 100 * w_low + 1e-9 and row.ci_high >= 100 * w_high - 1e-9
        assert rows[metric, "maxlogit", "mean"].value == pytest.approx(
            100 * np.mean(values), abs=1e-6)
    plain = run_ood(digits_ctx(model), scorers=["maxlogit"], ood_limit=50, bootstrap=0,
                    histogram_bins=0, sets={"gaussian": "gaussian"})
    assert all(m.ci_low is None and m.ci_high is None for m in plain)


def test_ood_shares_at_0_and_100_percent_keep_a_wilson_interval():
    """Perfect separation: every bootstrap replicate gives TNR 100 / FPR 0, but a finite sample
    cannot pin a share down to a point; Wilson's bound for 0 of n is z^2 / (n + z^2), n the
    images the share counts: the 100 OOD images for TNR, the 200 ID images for OpenOOD's FPR
    (OOD positive: the share of ID images flagged)."""
    id_scores = np.linspace(1.0, 2.0, 200)
    rows = {(m.metric, m.conditions["ood_set"]): m for m in _detection_rows(
        "msp", id_scores, {"far": np.full(100, -5.0), "farther": np.full(100, -9.0)}, 200, 0)}
    z2 = 1.959963984540054**2
    for ood_set in ("far", "mean"):  # "mean": the mean of the sets' bounds
        tnr, fpr = rows["tnr_at_tpr95", ood_set], rows["fpr_at_tpr95_ood_positive", ood_set]
        assert (tnr.value, fpr.value) == (100.0, 0.0)
        assert (tnr.ci_low, tnr.ci_high) == pytest.approx((100 - 100 * z2 / (100 + z2), 100.0))
        assert (fpr.ci_low, fpr.ci_high) == pytest.approx((0.0, 100 * z2 / (200 + z2)))


def test_score_histograms_share_edges_and_match_numpy():
    model = tiny_model(seed=5)
    rows = run_ood(digits_ctx(model), scorers=["msp", "energy"], ood_limit=40, bootstrap=0,
                   histogram_bins=7, sets={"uniform": "uniform", "gaussian": "gaussian"})
    hist = [m for m in rows if m.metric == "score_hist"]
    assert all(m.higher_is_better is None and m.ci_low is None for m in hist)
    id_logits = logits_of(model, read_digits(split="test").images)
    logits = {"uniform": logits_of(model, torch.from_numpy(np.stack([
        np.random.default_rng([0, 1, 0, i]).random((1, 8, 8)) for i in range(40)])).float()),
        "gaussian": logits_of(model, torch.from_numpy(np.stack([
            np.clip(np.random.default_rng([0, 2, 0, i]).normal(0.5, 1.0, (1, 8, 8)), 0, 1)
            for i in range(40)])).float())}
    for scorer, score in (("msp", lambda z: softmax(z, axis=1).max(1)),
                          ("energy", lambda z: logsumexp(z, axis=1))):
        scores = {"in_distribution": score(id_logits),
                  **{name: score(z) for name, z in logits.items()}}
        everything = np.concatenate(list(scores.values()))
        edges = np.linspace(everything.min(), everything.max(), 8)
        for name, values in scores.items():
            mine = sorted((m for m in hist if m.conditions["scorer"] == scorer
                           and m.conditions["ood_set"] == name),
                          key=lambda m: m.conditions["bin"])
            assert [m.conditions["bin"] for m in mine] == list(range(7))
            assert sum(m.value for m in mine) == pytest.approx(100)
            assert all(m.n == len(values) for m in mine)
            expected = 100 * np.histogram(values, bins=edges)[0] / len(values)
            assert [m.value for m in mine] == pytest.approx(expected)
        centres = sorted((m for m in rows if m.metric == "score_hist_centre"
                          and m.conditions["scorer"] == scorer),
                         key=lambda m: m.conditions["bin"])
        assert [m.value for m in centres] == pytest.approx((edges[:-1] + edges[1:]) / 2,
                                                           rel=1e-6)


def test_equal_scores_make_one_histogram_bin():
    flat = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    torch.nn.init.zeros_(flat[1].weight)
    torch.nn.init.zeros_(flat[1].bias)
    rows = run_ood(digits_ctx(flat.eval()), scorers=["msp"], ood_limit=20, bootstrap=50,
                   histogram_bins=5, sets={"uniform": "uniform"})
    hist = {m.conditions["ood_set"]: m for m in rows if m.metric == "score_hist"}
    assert len([m for m in rows if m.metric == "score_hist"]) == 2
    for name, n in (("in_distribution", 600), ("uniform", 20)):
        assert hist[name].value == 100 and hist[name].n == n
        assert hist[name].conditions["bin"] == 0
    centre = next(m for m in rows if m.metric == "score_hist_centre")
    assert (centre.value, centre.conditions["bin"]) == (pytest.approx(0.1), 0)
    auroc = by_condition(rows)["auroc", "msp", "uniform"]
    assert (auroc.value, auroc.ci_low, auroc.ci_high) == (50, 50, 50)


def test_results_do_not_depend_on_batch_size():
    sets = {"gaussian": "gaussian"}
    big = run_ood(digits_ctx(tiny_model(seed=1)), sets=sets, ood_limit=50,
                  scorers=["msp", "energy"])
    small = run_ood(digits_ctx(tiny_model(seed=1), batch_size=7), sets=sets, ood_limit=50,
                    scorers=["msp", "energy"])
    assert [(m.metric, m.conditions) for m in big] == [(m.metric, m.conditions) for m in small]
    assert [m.value for m in big] == pytest.approx([m.value for m in small], abs=1e-6)


def test_large_sets_stay_lazy_and_give_the_same_numbers(tmp_path, monkeypatch):
    folder = tmp_path / "pngs"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(30):
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(folder / f"{i}.png")
    params = {"sets": {"pngs": "pngs", "gaussian": "gaussian"}, "ood_limit": 40,
              "scorers": ["msp", "energy"]}
    eager = run_ood(digits_ctx(tiny_model(), batch_size=300, data_root=tmp_path), **params)
    monkeypatch.setattr(ood_task, "_MATERIALIZE_BYTES", 0)
    ctx = digits_ctx(tiny_model(), batch_size=300, data_root=tmp_path)  # a fresh input cache
    request = ood_task.OODSetInput("pngs", '{"kind": "auto", "path": "pngs"}', "none", 0)
    assert request.load(ctx).made.images is None
    lazy = run_ood(ctx, **params)
    assert [m.value for m in lazy] == pytest.approx([m.value for m in eager], abs=1e-9)


def test_cifar10_against_cifar100_svhn_and_an_image_folder(tmp_path):
    write_cifar10(tmp_path, n_test=12)
    write_cifar100(tmp_path, n_test=9)
    rng = np.random.default_rng(0)
    svhn = rng.integers(0, 256, (32, 32, 3, 7), dtype=np.uint8)
    savemat(tmp_path / "test_32x32.mat", {"X": svhn, "y": np.ones((7, 1))})
    for i in range(5):
        folder = tmp_path / "LSUN_resize" / "test"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
            folder / f"{i}.png")
    model = tiny_model(TINY32, channels=3)
    data = load_dataset("cifar10", "test", None, tmp_path)
    ctx = TaskContext(model=model, data=data, seed=0, device=torch.device("cpu"), batch_size=4,
                      progress=False, data_root=tmp_path)
    rows = by_condition(run_ood(ctx, scorers=["msp"], sets={
        "cifar100": "cifar-100-python", "svhn": "test_32x32.mat", "lsun": "LSUN_resize"}))
    assert rows["auroc", "msp", "cifar100"].n == 12 + 9
    assert rows["auroc", "msp", "svhn"].n == 12 + 7
    assert rows["auroc", "msp", "lsun"].n == 12 + 5
    id_scores = softmax(logits_of(model, data.images), axis=1).max(1)
    ood_scores = softmax(logits_of(model, read_cifar100(tmp_path / "cifar-100-python").images),
                         axis=1).max(1)
    expected = ood_metrics(id_scores, ood_scores)
    for metric in METRICS:
        assert rows[metric, "msp", "cifar100"].value == pytest.approx(100 * expected[metric])
    with pytest.raises(SuiteError, match="cifar10 is the data set under evaluation"):
        run_ood(ctx, sets={"self": "cifar10"})


def test_bad_parameters_and_sets_are_clear_errors(tmp_path):
    ctx = digits_ctx(tiny_model(), data_root=tmp_path)
    cases = [
        ({"sets": {}}, SuiteError, "no OOD sets"),
        ({"sets": {"mean": "uniform"}}, SuiteError, "reserved"),
        ({"sets": {"in_distribution": "uniform"}}, SuiteError, "'in_distribution' is reserved"),
        ({"sets": {"u": "uniform"}, "bootstrap": -1}, SuiteError, "'bootstrap'"),
        ({"sets": {"u": "uniform"}, "bootstrap": True}, SuiteError, "'bootstrap'"),
        ({"sets": {"u": "uniform"}, "histogram_bins": 2.5}, SuiteError, "'histogram_bins'"),
        ({"sets": {"u": "uniform"}, "scorers": ["msp", "gram"]}, SuiteError, "scorers"),
        ({"sets": {"u": {"kind": "noise"}}}, SuiteError, "kind 'noise'"),
        ({"sets": {"u": {"kind": "uniform", "path": "x"}}}, SuiteError, "unknown key"),
        ({"sets": {"u": "uniform"}, "resize": "stretch"}, SuiteError, "resize"),
        ({"sets": {"u": "uniform"}, "odin_eps": -1}, SuiteError, "odin_eps"),
        ({"sets": {"x": "missing_folder"}}, DataError, "missing_folder: OOD set not found"),
    ]
    for params, error, message in cases:
        with pytest.raises(error, match=message):
            run_ood(ctx, **params)
    folder = tmp_path / "big"
    folder.mkdir()
    Image.fromarray(np.zeros((12, 12), dtype=np.uint8)).save(folder / "a.png")
    with pytest.raises(DataError, match=r"OOD set 'big'.*image is 12x12 but the model takes 8x8"):
        run_ood(ctx, sets={"big": "big"})
    rows = by_condition(run_ood(ctx, sets={"big": "big"}, resize="resize", scorers=["msp"]))
    assert rows["auroc", "msp", "big"].n == 601
    with pytest.raises(SuiteError, match=r"odin_tune_ood.*test OOD set 'big'"):
        run_ood(ctx, sets={"big": "big"}, odin_tune_split="val", odin_tune_ood="big")


def test_odin_tuning_uses_the_held_out_split_and_a_separate_noise_stream():
    model = tiny_model(seed=2)
    grid = {"odin_temperatures": [1.0, 1000.0], "odin_eps_grid": [0.0, 0.004]}
    metrics = run_ood(digits_ctx(model), sets={"u": "uniform"}, ood_limit=40, scorers=["odin"],
                      odin_tune_split="val", odin_tune_n=50, **grid)
    rows = by_condition(metrics)
    val = read_digits(split="val")
    chosen = val.images[torch.from_numpy(stratified_subset(val.labels, 50, 0))]
    tune_ood = natural_crops(50, 1, (8, 8), seed=0, stream=1).images
    temperature, eps, _ = tune_odin(model, chosen, tune_ood, 600,
                                    temperatures=grid["odin_temperatures"],
                                    eps_grid=grid["odin_eps_grid"])
    assert rows["odin_temperature", "odin", None].value == temperature
    assert rows["odin_eps", "odin", None].value == eps
    assert rows["odin_eps", "odin", None].n == 100
    with pytest.raises(SuiteError, match="evaluated images are in that split"):
        run_ood(digits_ctx(model), sets={"u": "uniform"}, scorers=["odin"],
                odin_tune_split="test")


def test_calibration_temperature_scaling_and_reliability_bins():
    model = tiny_model(seed=3)
    ctx = digits_ctx(model)
    task = get_task("calibration")
    metrics = task.run(ctx, {**task.defaults, "temperature_split": "val",
                             "reliability": True})[1]
    test, val = read_digits(split="test"), read_digits(split="val")
    temperature = fit_temperature(logits_of(model, val.images), val.labels)
    rows = {(m.metric, m.conditions.get("scaling"), m.conditions.get("bin")): m for m in metrics}
    assert rows["temperature", "temperature", None].value == pytest.approx(temperature)
    logits = logits_of(model, test.images)
    for scaling, t in (("none", 1.0), ("temperature", temperature)):
        reference = multiclass_calibration_error(
            torch.from_numpy(softmax(logits / t, axis=1)), torch.from_numpy(test.labels),
            num_classes=10, n_bins=15, norm="l1")
        assert rows["ece", scaling, None].value == pytest.approx(100 * reference.item(),
                                                                 abs=1e-4)
        confidence = softmax(logits / t, axis=1).max(1)
        correct = softmax(logits / t, axis=1).argmax(1) == test.labels
        accuracy, mean_conf = calibration_curve(correct, confidence, n_bins=15,
                                                strategy="uniform")
        filled = sorted(b for (name, s, b) in rows if name == "reliability_accuracy"
                        and s == scaling)
        assert [rows["reliability_accuracy", scaling, b].value for b in filled] == \
            pytest.approx(100 * accuracy)
        assert [rows["reliability_confidence", scaling, b].value for b in filled] == \
            pytest.approx(100 * mean_conf)
        assert sum(rows["reliability_count", scaling, b].value for b in range(15)) == 600
    assert rows["nll", "temperature", None].value < 2.5
    with pytest.raises(SuiteError, match="evaluated images are in that split"):
        task.run(ctx, {**task.defaults, "temperature_split": "test"})[1]
    with pytest.raises(SuiteError, match="digits has the splits train, val, test"):
        task.run(ctx, {**task.defaults, "temperature_split": "holdout"})[1]
    plain = task.run(ctx, task.defaults)[1]
    assert [m.metric for m in plain] == ["ece", "mce", "adaptive_ece", "brier"]


SUITE = """\
name = "digits-ood"
version = "1"
[dataset]
name = "digits"
[model_defaults]
num_classes = 10
[tasks.clean]
[tasks.calibration]
temperature_split = "val"
reliability = true
[tasks.ood]
scorers = ["msp", "energy"]
ood_limit = 100
sets = {crops = {kind = "natural_crops", levels = 17}, uniform = "uniform"}
"""


def test_cli_run_writes_condition_columns_and_feeds_the_leaderboard(tmp_path):
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    (zoo / "rubench.toml").write_text(f'arch = "{TINY}"\nnum_classes = 10\nmean = [0.3]\n'
                                      "std = [0.25]\n")
    for seed in (0, 1):
        torch.save(tiny_model(seed=seed).net.state_dict(), zoo / f"m{seed}.pth")
    (tmp_path / "suite.toml").write_text(SUITE)
    out = tmp_path / "out"
    assert main(["evaluate", str(zoo), "--suite", str(tmp_path / "suite.toml"), "--out",
                 str(out), "--no-progress"]) == 0
    results = pd.read_csv(out / "results.csv")
    assert {"scorer", "ood_set", "scaling"} <= set(results.columns)
    assert "bin" not in results and not results.metric.str.startswith("score_hist").any()
    ood = results[results.task == "ood"]
    detection = ood
    assert len(detection) == 2 * 2 * 3 * len(METRICS)  # checkpoints x scorers x (2 sets + mean)
    assert set(detection.ood_set) == {"crops", "uniform", "mean"}
    assert detection.ci_low.notna().all() and (detection.ci_low <= detection.ci_high).all()
    binned = pd.read_csv(out / "artifacts.csv")  # the figures' rows, beside the metrics
    hist = binned[(binned.task == "ood") & (binned.metric == "score_hist")]
    assert len(hist) == 2 * 2 * 3 * 30  # checkpoints x scorers x (ID + 2 sets) x bins
    assert set(hist.ood_set) == {"in_distribution", "crops", "uniform"}
    assert hist.groupby(["checkpoint", "scorer", "ood_set"]).value.sum().to_numpy() == \
        pytest.approx(100)
    table = leaderboard(results).values
    for name in ("m0", "m1"):
        mean_auroc = ood[(ood.checkpoint == name) & (ood.scorer == "msp")
                         & (ood.ood_set == "mean") & (ood.metric == "auroc")].value.item()
        assert table.at[name, "OOD AUROC (MSP, mean over 2 sets)"] == mean_auroc


def test_mean_row_wilson_bound_follows_the_unweighted_mean_of_sets():
    """Sets of 10,000 and 50 images, both perfectly separated: the TNR mean's interval is the
    mean of their Wilson bounds (about 3.6 %), not the pooled 10,050 images' (0.04 %). OpenOOD's
    FPR counts the 200 ID images for every set."""
    z2 = 1.959963984540054**2
    rows = {(m.metric, m.conditions["ood_set"]): m for m in _detection_rows(
        "msp", np.linspace(1.0, 2.0, 200), {"big": np.full(10000, -5.0),
                                            "small": np.full(50, -5.0)}, 100, 0)}
    expected = 100 * (z2 / (10000 + z2) + z2 / (50 + z2)) / 2
    assert rows["tnr_at_tpr95", "mean"].ci_low == pytest.approx(100 - expected)
    assert rows["fpr_at_tpr95_ood_positive", "mean"].ci_high == pytest.approx(
        100 * z2 / (200 + z2))


def halves_by_parity(records: Records) -> Records:
    """The records split by index parity into two shards, merged back (odd shard first)."""
    return concat([Records([table.take(table["index"] % 2 == parity) for table in records],
                           dict(records.facts)) for parity in (1, 0)])


def test_ood_records_re_reduce_to_the_same_metrics():
    """The metrics are a reduction of the records alone: after an encode / decode round trip
    and after merging two shards of them, bit-identical rows (intervals included)."""
    task = get_task("ood")
    params = resolve_params(task, {"ood_limit": 30, "bootstrap": 200, "histogram_bins": 5,
                                   "sets": {"u": "uniform", "g": "gaussian"}}, "test suite")
    ctx = digits_ctx(tiny_model(seed=6))
    records, metrics = task.run(ctx, params)
    for scorer in params["scorers"]:
        inside = records.one(scorer=scorer, ood_set="in_distribution")
        assert set(inside.columns) == {"index", "score", "correct", "pred", "confidence"}
        assert len(inside) == 600 and inside["score"].dtype == np.float64
        for name in ("u", "g"):
            table = records.one(scorer=scorer, ood_set=name)
            assert set(table.columns) == {"index", "score"} and len(table) == 30
    assert records.facts == {"odin_temperature": 1000.0, "odin_eps": 0.0014, "odin_tune_n": 0}
    assert task.reduce(Records.decode(records.encode()), params, ctx.seed) == metrics
    assert task.reduce(halves_by_parity(records), params, ctx.seed) == metrics
