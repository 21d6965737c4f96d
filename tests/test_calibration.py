"""Calibration metrics checked against torchmetrics, scikit-learn, torch and hand-computed cases."""

from __future__ import annotations

import inspect
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import brier_score_loss, log_loss
from torchmetrics.functional.classification import multiclass_calibration_error

from benchmark.archs import build_arch
from benchmark.checkpoints import NormalizedModel
from benchmark.datasets import read_digits
from benchmark.records import Records, concat
from benchmark.tasks import TaskContext, get_task
from ood.calibration import (
    adaptive_ece,
    brier,
    brier_per_sample,
    ece,
    fit_temperature,
    mce,
    nll,
    nll_per_sample,
    reliability_bins,
    resampled_calibration_errors,
    softmax,
    top_label,
)

SEEDS = [0, 1, 2, 3]
SIZES = [1, 2, 3, 10, 257, 2000]
EDGES = np.linspace(0.0, 1.0, 16)


def _random_logits(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """Gaussian logits with a random per-sample temperature so confidences span (1/K, 1)."""
    return rng.normal(size=(n, k)) * rng.uniform(0.2, 4.0, size=(n, 1))


def _random_labels(rng: np.random.Generator, pred: np.ndarray, k: int) -> np.ndarray:
    """Labels that agree with pred about 70 % of the time, so both outcomes occur."""
    return np.where(rng.random(pred.size) < 0.7, pred, rng.integers(0, k, size=pred.size))


def _guo_loop(
    conf: np.ndarray, correct: np.ndarray, n_bins: int
) -> tuple[float, float, list[int]]:
    """Guo et al.'s reference written as a plain loop: bin (lower, upper] via > and <=."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    total, worst, counts = 0.0, 0.0, []
    for lower, upper in itertools.pairwise(edges):
        members = [i for i, c in enumerate(conf) if c > lower and c <= upper]
        counts.append(len(members))
        if members:
            gap = abs(np.mean(correct[members]) - np.mean(conf[members]))
            total += len(members) / len(conf) * gap
            worst = max(worst, gap)
    return total, worst, counts


# --- ECE / MCE against torchmetrics ---


@pytest.mark.parametrize("k", [2, 10])
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("seed", SEEDS)
def test_ece_mce_match_torchmetrics(seed: int, n: int, k: int) -> None:
    """Away from bin edges (where both conventions agree) ECE and MCE equal torchmetrics'."""
    rng = np.random.default_rng(seed)
    # torchmetrics bins float32 confidences on float32 edges and gives 1.0 its own bin, so draw
    # float32 probabilities and keep only rows whose confidence is > 1e-6 from every edge.
    probs = softmax(_random_logits(rng, n + 20, k)).astype(np.float32)
    conf32 = probs.max(axis=1)
    edges32 = torch.linspace(0, 1, 16).numpy()
    dist = np.minimum(
        np.abs(conf32[:, None] - EDGES[None, :]).min(axis=1),
        np.abs(conf32[:, None] - edges32[None, :]).min(axis=1),
    )
    probs = probs[dist > 1e-6][:n]
    assert probs.shape[0] == n
    conf, pred = top_label(probs, from_logits=False)
    labels = _random_labels(rng, pred, k)
    correct = pred == labels
    preds_t, target_t = torch.from_numpy(probs), torch.from_numpy(labels)
    for norm, ours in (("l1", ece), ("max", mce)):
        ref = multiclass_calibration_error(preds_t, target_t, num_classes=k, n_bins=15, norm=norm)
        assert ours(conf, correct) == pytest.approx(float(ref), abs=1e-6)


# --- bin-edge conventions against a Guo-style loop ---


@pytest.mark.parametrize("seed", SEEDS)
def test_edges_and_one_follow_guo_loop(seed: int) -> None:
    """Confidences on edges (linspace, k/15) and at 1.0 bin as `c > lower and c <= upper`."""
    rng = np.random.default_rng(seed)
    on_edges = np.concatenate([EDGES[1:], np.arange(1, 16) / 15, [1.0, 1.0, 1.0]])
    conf = rng.permutation(np.concatenate([on_edges, rng.uniform(1 / 15, 1.0, size=40)]))
    correct = rng.random(conf.size) < 0.6
    ref_ece, ref_mce, ref_counts = _guo_loop(conf, correct, 15)
    bins = reliability_bins(conf, correct)
    assert bins.count.tolist() == ref_counts
    assert ece(conf, correct) == pytest.approx(ref_ece, abs=1e-12)
    assert mce(conf, correct) == pytest.approx(ref_mce, abs=1e-12)


@pytest.mark.parametrize("k", range(1, 16))
def test_edge_goes_to_lower_bin(k: int) -> None:
    """Confidence k/15 lands in bin k-1 (the bin it closes), never in bin k."""
    for value in (EDGES[k], k / 15):
        count = reliability_bins([value], [True]).count
        assert np.flatnonzero(count).tolist() == [k - 1]


def test_zero_confidence_guarded_into_first_bin() -> None:
    """Confidence 0.0 (outside every Guo bin) is kept, in the first bin."""
    bins = reliability_bins([0.0, 0.5], [False, True], n_bins=15)
    assert bins.count[0] == 1
    assert bins.count.sum() == 2
    assert ece([0.0, 0.5], [False, True]) == pytest.approx(0.25)


def test_reliability_bins_layout() -> None:
    """Bins carry their edges and per-bin means; empty bins have NaN means."""
    bins = reliability_bins([0.1, 0.15, 0.9], [1, 0, 1], n_bins=4)
    np.testing.assert_array_equal(bins.lower, [0.0, 0.25, 0.5, 0.75])
    np.testing.assert_array_equal(bins.upper, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_array_equal(bins.count, [2, 0, 0, 1])
    np.testing.assert_allclose(bins.confidence[[0, 3]], [0.125, 0.9])
    np.testing.assert_allclose(bins.accuracy[[0, 3]], [0.5, 1.0])
    assert np.isnan(bins.confidence[1:3]).all()
    assert np.isnan(bins.accuracy[1:3]).all()


# --- known values ---


def test_perfectly_calibrated_construction_has_zero_ece() -> None:
    """Each confidence c appears 10 times with exactly 10c correct: ECE = MCE = adaptive = 0."""
    conf, correct = [], []
    for c in (0.3, 0.5, 0.7, 0.8, 1.0):
        hits = round(10 * c)
        conf += [c] * 10
        correct += [True] * hits + [False] * (10 - hits)
    assert ece(conf, correct) == pytest.approx(0.0, abs=1e-12)
    assert mce(conf, correct) == pytest.approx(0.0, abs=1e-12)
    assert adaptive_ece(conf, correct, n_bins=5) == pytest.approx(0.0, abs=1e-12)


def test_sampled_calibrated_model_has_small_ece() -> None:
    """Outcomes drawn as Bernoulli(confidence) give an ECE near zero for large N."""
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.1, 1.0, size=200_000)
    correct = rng.random(conf.size) < conf
    assert ece(conf, correct) < 0.005
    assert adaptive_ece(conf, correct) < 0.005


@pytest.mark.parametrize("accuracy", [0.0, 0.25, 0.9])
def test_extreme_overconfidence(accuracy: float) -> None:
    """Confidence 1.0 everywhere with accuracy a: ECE = MCE = adaptive ECE = 1 - a."""
    n = 20
    correct = np.arange(n) < round(accuracy * n)
    conf = np.ones(n)
    for metric in (ece, mce, adaptive_ece):
        assert metric(conf, correct) == pytest.approx(1.0 - accuracy)


def test_mce_ignores_empty_bins_and_takes_max() -> None:
    """MCE is the largest gap over occupied bins only."""
    conf = [0.95, 0.95, 0.55, 0.55]
    correct = [1, 1, 0, 1]
    assert mce(conf, correct) == pytest.approx(0.05)
    assert ece(conf, correct) == pytest.approx(0.5 * 0.05 + 0.5 * 0.05)


# --- adaptive ECE ---


def test_adaptive_ece_hand_computed() -> None:
    """Six samples, three groups of two: (0.15 + 0.65 + 0.425) / 3."""
    conf = [0.9, 0.1, 0.4, 0.95, 0.2, 0.3]
    correct = [1, 0, 1, 0, 0, 1]
    assert adaptive_ece(conf, correct, n_bins=3) == pytest.approx((0.15 + 0.65 + 0.425) / 3)


def test_adaptive_ece_uneven_groups() -> None:
    """Five samples in two groups: the first (lowest) group takes three."""
    conf = [0.2, 0.4, 0.6, 0.8, 1.0]
    correct = [0, 0, 0, 1, 1]
    expected = (3 * abs(0 - 0.4) + 2 * abs(1 - 0.9)) / 5
    assert adaptive_ece(conf, correct, n_bins=2) == pytest.approx(expected)


def test_adaptive_ece_ties_split_by_input_order() -> None:
    """Tied confidences straddling a boundary are cut by rank; the earlier input goes lower."""
    conf = [0.5, 0.5, 0.5, 0.5]
    assert adaptive_ece(conf, [1, 1, 0, 0], n_bins=2) == pytest.approx(0.5)
    assert adaptive_ece(conf, [1, 0, 1, 0], n_bins=2) == pytest.approx(0.0)


def test_adaptive_ece_more_bins_than_samples() -> None:
    """With n_bins >= N each sample is its own group: mean |correct - confidence|."""
    conf = np.array([0.3, 0.9, 0.6])
    correct = np.array([True, False, True])
    assert adaptive_ece(conf, correct, n_bins=15) == pytest.approx(np.mean(np.abs(correct - conf)))


@pytest.mark.parametrize("seed", SEEDS)
def test_single_bin_ece_and_adaptive_agree(seed: int) -> None:
    """With one bin both reduce to |accuracy - mean confidence|."""
    rng = np.random.default_rng(seed)
    conf = rng.uniform(0.0, 1.0, size=50)
    correct = rng.random(50) < 0.5
    expected = abs(correct.mean() - conf.mean())
    assert ece(conf, correct, n_bins=1) == pytest.approx(expected)
    assert adaptive_ece(conf, correct, n_bins=1) == pytest.approx(expected)


# --- NLL ---


@pytest.mark.parametrize("k", [2, 7])
@pytest.mark.parametrize("n", [1, 2, 100])
@pytest.mark.parametrize("seed", SEEDS)
def test_nll_matches_sklearn_and_torch(seed: int, n: int, k: int) -> None:
    """NLL equals sklearn's log_loss on softmax probabilities and torch's cross_entropy."""
    rng = np.random.default_rng(seed)
    logits = _random_logits(rng, n, k)
    labels = rng.integers(0, k, size=n)
    ours = nll(logits, labels)
    assert ours == pytest.approx(log_loss(labels, softmax(logits), labels=np.arange(k)), rel=1e-10)
    ref = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels))
    assert ours == pytest.approx(float(ref), rel=1e-12)


def test_nll_stable_for_huge_logits() -> None:
    """Logits of magnitude 1e4 give finite, exact values (no overflow in exp)."""
    logits = np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 1e4]])
    assert nll(logits, np.array([1, 1])) == pytest.approx((1e4 + np.log(2)) / 2)


# --- Brier ---


def test_brier_hand_computed() -> None:
    """(0.3^2 + 0.2^2 + 0.1^2) and (0.5^2 + 0.5^2) averaged; confident and wrong scores 2."""
    probs = np.array([[0.7, 0.2, 0.1], [0.5, 0.0, 0.5]])
    assert brier(probs, np.array([0, 1])) == pytest.approx((0.14 + 1.5) / 2)
    assert brier(np.array([[1.0, 0.0]]), np.array([1])) == pytest.approx(2.0)
    assert brier(np.array([[0.0, 1.0]]), np.array([1])) == pytest.approx(0.0)


@pytest.mark.parametrize("n", [1, 2, 100])
@pytest.mark.parametrize("seed", SEEDS)
def test_brier_binary_is_twice_sklearn(seed: int, n: int) -> None:
    """For K = 2, sklearn's binary brier_score_loss (positive-class column) is half of ours."""
    rng = np.random.default_rng(seed)
    probs = softmax(_random_logits(rng, n, 2))
    labels = rng.integers(0, 2, size=n)
    ref = brier_score_loss(labels, probs[:, 1], pos_label=1)
    assert brier(probs, labels) == pytest.approx(2 * ref, rel=1e-12)


@pytest.mark.skipif(
    "scale_by_half" not in inspect.signature(brier_score_loss).parameters,
    reason="multi-class brier_score_loss needs scikit-learn >= 1.7",
)
@pytest.mark.parametrize("k", [3, 10])
@pytest.mark.parametrize("seed", SEEDS)
def test_brier_matches_sklearn_multiclass(seed: int, k: int) -> None:
    """Ours equals sklearn's multi-class brier_score_loss without the halving."""
    rng = np.random.default_rng(seed)
    probs = softmax(_random_logits(rng, 64, k))
    labels = rng.integers(0, k, size=64)
    ref = brier_score_loss(labels, probs, labels=np.arange(k), scale_by_half=False)
    assert brier(probs, labels) == pytest.approx(ref, rel=1e-12)


# --- top_label ---


@pytest.mark.parametrize("seed", SEEDS)
def test_top_label_matches_torch_softmax(seed: int) -> None:
    """Confidence and class equal torch's softmax max/argmax; probabilities pass through as-is."""
    rng = np.random.default_rng(seed)
    logits = _random_logits(rng, 30, 5)
    ref_conf, ref_pred = torch.softmax(torch.from_numpy(logits), dim=1).max(dim=1)
    conf, pred = top_label(logits)
    np.testing.assert_allclose(conf, ref_conf.numpy(), rtol=1e-12)
    np.testing.assert_array_equal(pred, ref_pred.numpy())
    conf_p, pred_p = top_label(softmax(logits), from_logits=False)
    np.testing.assert_allclose(conf_p, conf, rtol=1e-12)
    np.testing.assert_array_equal(pred_p, pred)


def test_top_label_stable_for_huge_logits() -> None:
    """Huge logits give confidence 1.0 or an exact 0.5 tie, never NaN."""
    conf, pred = top_label(np.array([[1e5, 0.0], [1e5, 1e5]]))
    np.testing.assert_array_equal(conf, [1.0, 0.5])
    np.testing.assert_array_equal(pred, [0, 0])


# --- temperature scaling ---


def _sampled_labels(rng: np.random.Generator, logits: np.ndarray) -> np.ndarray:
    """Labels drawn from softmax(logits): these logits are calibrated by construction."""
    probs = softmax(logits)
    return (rng.random((len(probs), 1)) > probs.cumsum(axis=1)).sum(axis=1)


def test_fit_temperature_recovers_a_known_overconfidence() -> None:
    """Labels drawn from softmax(z): logits 3z need T = 3, z / 2 needs T = 0.5 (up to noise)."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(20000, 10)) * 2
    labels = _sampled_labels(rng, z)
    assert fit_temperature(3 * z, labels) == pytest.approx(3.0, rel=0.03)
    assert fit_temperature(z / 2, labels) == pytest.approx(0.5, rel=0.03)


def test_fit_temperature_matches_torch_lbfgs_and_is_a_minimum() -> None:
    """An independent fit (LBFGS on log T, torch cross-entropy) lands on the same T."""
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(500, 5)) * 4
    labels = _sampled_labels(rng, logits / 2.5)
    ours = fit_temperature(logits, labels)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    z, y = torch.from_numpy(logits), torch.from_numpy(labels)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=200, tolerance_grad=1e-12,
                                  tolerance_change=1e-14, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    optimizer.step(closure)
    assert ours == pytest.approx(log_t.exp().item(), rel=1e-5)
    for step in (0.99, 1.01):
        assert nll(logits / ours, labels) < nll(logits / (ours * step), labels)


def test_fit_temperature_stops_at_the_bound_when_all_predictions_are_right() -> None:
    """Every top-1 prediction correct: NLL keeps falling as T -> 0, so T is the lower bound."""
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]])
    assert fit_temperature(logits, np.array([0, 1, 0]), bounds=(0.05, 10.0)) == pytest.approx(
        0.05, rel=1e-6)
    with pytest.raises(ValueError, match="bounds"):
        fit_temperature(logits, np.array([0, 1, 0]), bounds=(1.0, 0.5))


# --- input validation ---


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: ece([0.5, 0.6], [True]), "shape"),
        (lambda: ece([], []), "empty"),
        (lambda: ece([[0.5]], [[True]]), "1-D"),
        (lambda: ece([0.5], [True], n_bins=0), "n_bins"),
        (lambda: mce([0.5], [True], n_bins=2.5), "n_bins"),
        (lambda: adaptive_ece([0.5], [True], n_bins=True), "n_bins"),
        (lambda: ece([1.5], [True]), r"\[0, 1\]"),
        (lambda: ece([np.nan], [True]), "finite"),
        (lambda: ece([0.5], [2]), "0/1"),
        (lambda: nll(np.zeros((2, 3)), np.array([0, 3])), "labels must lie"),
        (lambda: nll(np.zeros((2, 3)), np.array([0.0, 1.0])), "integers"),
        (lambda: nll(np.zeros((2, 3)), np.array([0])), "labels must have shape"),
        (lambda: nll(np.zeros((0, 3)), np.array([], dtype=int)), r"\(N, K\)"),
        (lambda: nll(np.array([[np.inf, 0.0]]), np.array([0])), "finite"),
        (lambda: brier(np.array([[2.0, -1.0]]), np.array([0])), "softmax"),
        (lambda: brier(np.array([[0.2, 0.2]]), np.array([0])), "summing to 1"),
    ],
)
def test_invalid_inputs_raise_value_error(call, message: str) -> None:
    """Bad inputs raise ValueError naming the problem."""
    with pytest.raises(ValueError, match=message):
        call()


# ---------------------------------------------------------------------------------------------
# bootstrap resamples and intervals


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", [1, 3, 10, 257])
def test_resampled_errors_equal_the_scalar_functions_row_by_row(seed: int, n: int) -> None:
    """The vectorized resample statistics equal ece / mce / adaptive_ece called on each
    resample, including confidences on bin edges, ties, 1.0 and fewer samples than bins."""
    rng = np.random.default_rng(seed)
    conf = rng.choice(np.concatenate([EDGES[1:], rng.uniform(0.1, 1.0, 30)]), size=n)
    correct = rng.random(n) < conf
    rows = rng.integers(0, n, size=(25, n))
    got = resampled_calibration_errors(conf, correct, rows, n_bins=15)
    for name, scalar in (("ece", ece), ("mce", mce), ("adaptive_ece", adaptive_ece)):
        want = [scalar(conf[r], correct[r], n_bins=15) for r in rows]
        np.testing.assert_allclose(got[name], want, rtol=0, atol=1e-12, err_msg=name)


def test_per_sample_nll_and_brier_average_to_the_metrics() -> None:
    rng = np.random.default_rng(5)
    logits = _random_logits(rng, 300, 7)
    labels = rng.integers(0, 7, 300)
    assert nll_per_sample(logits, labels).mean() == pytest.approx(nll(logits, labels), rel=1e-12)
    probs = softmax(logits)
    assert brier_per_sample(probs, labels).mean() == pytest.approx(brier(probs, labels),
                                                                   rel=1e-12)


def _calibration_rows(logits: np.ndarray, labels: np.ndarray, seed: int = 0) -> dict:
    from benchmark.records import SampleTable
    from benchmark.reductions.calibration import calibration_errors
    from benchmark.tasks.calibration import calibration_columns

    table = SampleTable({}, calibration_columns(logits, labels, with_nll=True))
    return {m.metric: m for m in calibration_errors(table, 15, {"scaling": "none"}, seed)}


def _sampled_model(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A slightly overconfident 10-class model: labels drawn from softmax(logits / 1.3)."""
    logits = _random_logits(rng, n, 10)
    probs = softmax(logits / 1.3)
    labels = (probs.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return logits, labels


def test_calibration_intervals_match_the_spread_over_independent_test_sets() -> None:
    """The bootstrap half-width estimates how much each metric varies between independent
    test sets of the same size (the reference: 300 fresh sets from the same model)."""
    rng = np.random.default_rng(11)
    n = 1000

    def values(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        conf, pred = top_label(logits)
        return {"ece": 100 * ece(conf, pred == labels), "mce": 100 * mce(conf, pred == labels),
                "adaptive_ece": 100 * adaptive_ece(conf, pred == labels),
                "brier": brier(softmax(logits), labels), "nll": nll(logits, labels)}

    fresh = [values(*_sampled_model(rng, n)) for _ in range(300)]
    one = _calibration_rows(*_sampled_model(rng, n))
    for name in ("ece", "mce", "adaptive_ece", "brier", "nll"):
        spread = np.std([rows[name] for rows in fresh])
        half = (one[name].ci_high - one[name].ci_low) / 2
        assert 0.5 * 1.96 * spread <= half <= 2.0 * 1.96 * spread, name
        assert one[name].ci_low < one[name].ci_high


def test_calibration_intervals_are_seeded_and_shrink_with_n() -> None:
    rng = np.random.default_rng(3)
    logits, labels = _sampled_model(rng, 4000)
    first, again = _calibration_rows(logits, labels, 0), _calibration_rows(logits, labels, 0)
    other = _calibration_rows(logits, labels, 1)
    small = _calibration_rows(logits[:400], labels[:400], 0)
    for name in ("ece", "brier"):
        assert (first[name].ci_low, first[name].ci_high) == (again[name].ci_low,
                                                             again[name].ci_high)
        assert (first[name].ci_low, first[name].ci_high) != (other[name].ci_low,
                                                             other[name].ci_high)
        width = first[name].ci_high - first[name].ci_low
        assert 2.0 < (small[name].ci_high - small[name].ci_low) / width < 5.0  # ~sqrt(10)


def test_binned_calibration_intervals_contain_the_estimate_on_a_calibrated_model() -> None:
    """Resampling inflates a binned ECE: a percentile interval sat above the estimate (ECE 0.79,
    interval [0.83, 2.02] at n = 10,000); the basic bootstrap interval brackets it."""
    rng = np.random.default_rng(21)
    for n in (200, 2000, 10000):
        logits = _random_logits(rng, n, 10)
        probs = softmax(logits)
        labels = (probs.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)  # calibrated
        rows = _calibration_rows(logits, labels)
        for name in ("ece", "mce", "adaptive_ece", "brier", "nll"):
            assert rows[name].ci_low <= rows[name].value <= rows[name].ci_high, (n, name)
            assert rows[name].ci_low >= 0


def test_calibration_records_re_reduce_to_the_same_metrics() -> None:
    """The task's rows are a reduction of its records alone: after an encode / decode round trip
    and after merging two shards (rows split by index parity), bit-identical rows."""
    torch.manual_seed(3)
    model = NormalizedModel(build_arch("tinynets:tiny_cnn", num_classes=10), [0.3], [0.25])
    ctx = TaskContext(model=model.eval(), data=read_digits(split="test"), seed=0,
                      device=torch.device("cpu"), batch_size=600, progress=False)
    task = get_task("calibration")
    params = {**task.defaults, "temperature_split": "val", "reliability": True}
    records, metrics = task.run(ctx, params)
    plain, scaled = records.one(scaling="none"), records.one(scaling="temperature")
    assert set(plain.columns) == {"index", "correct", "pred", "confidence", "brier"}
    assert set(scaled.columns) == set(plain.columns) | {"nll"}
    assert len(plain) == len(scaled) == 600
    assert set(records.facts) == {"temperature", "temperature_n"}
    assert records.facts["temperature_n"] == 200
    assert task.reduce(Records.decode(records.encode()), params, ctx.seed) == metrics
    halves = concat([Records([table.take(table["index"] % 2 == parity) for table in records],
                             dict(records.facts)) for parity in (1, 0)])
    assert task.reduce(halves, params, ctx.seed) == metrics
