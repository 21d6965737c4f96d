"""OOD metrics against scikit-learn on random scores (ties, tiny sets) and hand-computed cases;
the vectorized bootstrap against a naive loop on the same resamples and against DeLong."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

import ood.metrics
from ood.metrics import (
    METRICS,
    OODMetrics,
    aupr_in,
    aupr_out,
    auroc,
    bootstrap_ood_metrics,
    detection_acc,
    fpr_at_tpr95_ood_positive,
    ood_metrics,
    percentile_interval,
    tnr_at_tpr95,
)

Z95 = 1.959963984540054


def sklearn_reference(id_scores: np.ndarray, ood_scores: np.ndarray) -> dict[str, float]:
    """The six metrics from scikit-learn, each positive class stated explicitly."""
    is_id = np.r_[np.ones(len(id_scores)), np.zeros(len(ood_scores))]
    scores = np.r_[id_scores, ood_scores]
    fpr, tpr, _ = roc_curve(is_id, scores, drop_intermediate=False)
    fpr_out, tpr_out, _ = roc_curve(1 - is_id, -scores, drop_intermediate=False)
    return {
        "tnr_at_tpr95": 1.0 - fpr[np.argmax(tpr >= 0.95)],
        "auroc": roc_auc_score(is_id, scores),
        "aupr_in": average_precision_score(is_id, scores),
        "aupr_out": average_precision_score(1 - is_id, -scores),
        "detection_acc": np.max(0.5 * (tpr + 1.0 - fpr)),
        "fpr_at_tpr95_ood_positive": fpr_out[np.argmax(tpr_out >= 0.95)],
    }


def random_case(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Tiny to medium sets; half of them on a coarse grid so that ID/OOD ties are common."""
    n_id, n_ood = rng.integers(1, 40, size=2)
    if rng.random() < 0.5:
        levels = int(rng.integers(1, 6))
        return (rng.integers(0, levels, n_id).astype(float),
                rng.integers(0, levels, n_ood) - rng.integers(0, 2).astype(float))
    return rng.normal(1.0, 1.0, n_id), rng.normal(0.0, 1.0, n_ood)


@pytest.mark.parametrize("seed", range(4))
def test_all_metrics_match_sklearn_on_random_scores_with_ties(seed):
    rng = np.random.default_rng(seed)
    for _ in range(150):
        id_scores, ood_scores = random_case(rng)
        ours = ood_metrics(id_scores, ood_scores)
        reference = sklearn_reference(id_scores, ood_scores)
        assert list(ours) == list(METRICS)
        for name, value in reference.items():
            assert ours[name] == pytest.approx(value, abs=1e-12), (name, id_scores, ood_scores)


def test_single_metric_functions_and_streaming_class_agree_with_ood_metrics():
    rng = np.random.default_rng(7)
    id_scores, ood_scores = rng.normal(1, 1, 300).round(1), rng.normal(0, 1, 200).round(1)
    joint = ood_metrics(id_scores, ood_scores)
    functions = {"tnr_at_tpr95": tnr_at_tpr95, "auroc": auroc, "aupr_in": aupr_in,
                 "aupr_out": aupr_out, "detection_acc": detection_acc,
                 "fpr_at_tpr95_ood_positive": fpr_at_tpr95_ood_positive}
    for name, fn in functions.items():
        assert fn(id_scores, ood_scores) == joint[name]
    stream = OODMetrics()
    for start in range(0, 300, 60):  # interleaved batches of both kinds
        stream.update(ood_scores[start * 2 // 3:(start + 60) * 2 // 3], is_id=False)
        stream.update(id_scores[start:start + 60], is_id=True)
    assert stream.compute() == pytest.approx(joint)
    stream.reset()
    with pytest.raises(ValueError, match="empty"):
        stream.compute()


def test_hand_computed_case_without_ties():
    # ID 0.9 0.8 0.7, OOD 0.85 0.1.
    # TNR@TPR95: keeping >= 95 % of 3 ID needs all 3, t = 0.7; OOD >= 0.7 is {0.85}: TNR = 1/2.
    # AUROC: ID > OOD in 4 of the 6 pairs (0.8 and 0.7 lose to 0.85): 4/6.
    # Det. acc: t = 0.7 gives TPR 1, TNR 1/2: 0.75 (t = 0.9: 1/3 and 1 -> 2/3; others lower).
    # AUPR-In: ranks 0.9 (ID, P 1), 0.85 (OOD), 0.8 (ID, P 2/3), 0.7 (ID, P 3/4):
    #   (1 + 2/3 + 3/4) / 3 = 29/36.
    # AUPR-Out (OOD positive, lowest first): 0.1 (OOD, P 1), 0.7, 0.8 (ID), 0.85 (OOD, P 2/4):
    #   (1 + 1/2) / 2 = 3/4.
    # FPR@TPR95 OOD positive: both OOD flagged needs s <= 0.85, which flags ID 0.8 and 0.7: 2/3.
    got = ood_metrics([0.9, 0.8, 0.7], [0.85, 0.1])
    assert got == pytest.approx({"tnr_at_tpr95": 0.5, "auroc": 4 / 6, "aupr_in": 29 / 36,
                                 "aupr_out": 0.75, "detection_acc": 0.75,
                                 "fpr_at_tpr95_ood_positive": 2 / 3})


def test_hand_computed_case_with_ties_counts_a_tied_ood_sample_as_accepted():
    # ID 1 1 0, OOD 1 0 (ties at both scores).
    # TNR@TPR95: all 3 ID needed, t = 0; both OOD score >= 0 and are accepted: TNR = 0
    #   (a threshold never splits the tie; a rule that did would report 1/2).
    # AUROC: pairs (1,1) 1/2, (1,0) 1, (1,1) 1/2, (1,0) 1, (0,1) 0, (0,0) 1/2 -> 3.5/6.
    # Det. acc: t = 1: TPR 2/3, TNR 1/2 -> 7/12; t = 0 and "none" give 1/2.
    # AUPR-In: t = 1: 2 ID + 1 OOD, P 2/3, recall step 2/3; t = 0: P 3/5, step 1/3
    #   -> 4/9 + 1/5 = 29/45.
    # AUPR-Out: s <= 0 flags 1 OOD + 1 ID, P 1/2, step 1/2; s <= 1 flags all, P 2/5, step 1/2
    #   -> 1/4 + 1/5 = 9/20.
    # FPR@TPR95 OOD positive: both OOD flagged needs s <= 1: all 3 ID flagged -> 1.
    got = ood_metrics([1, 1, 0], [1, 0])
    assert got == pytest.approx({"tnr_at_tpr95": 0.0, "auroc": 3.5 / 6, "aupr_in": 29 / 45,
                                 "aupr_out": 9 / 20, "detection_acc": 7 / 12,
                                 "fpr_at_tpr95_ood_positive": 1.0})


def test_tpr_threshold_is_the_first_reach_of_95_percent():
    # 20 ID scores 1..20: 19 of them (95 % exactly) are >= 2, so t = 2. OOD 1.5 is rejected,
    # OOD 2 ties with t and is accepted, OOD 2.5 is accepted: TNR = 1/3.
    assert tnr_at_tpr95(np.arange(1, 21), [1.5, 2.0, 2.5]) == pytest.approx(1 / 3)
    # 19 ID scores: 95 % is 18.05 samples, so 19 are needed and t = 1: every OOD >= 1 accepted.
    assert tnr_at_tpr95(np.arange(1, 20), [0.5, 1.0, 1.5]) == pytest.approx(1 / 3)


def test_aupr_in_and_out_are_not_interchangeable():
    # Few OOD among many ID: AUPR-In (ID positive, base rate 0.9) must be high, AUPR-Out (OOD
    # positive, base rate 0.1) low for a weak detector. A swap of the two cannot pass.
    rng = np.random.default_rng(3)
    id_scores, ood_scores = rng.normal(0.3, 1, 900), rng.normal(0, 1, 100)
    got = ood_metrics(id_scores, ood_scores)
    assert got["aupr_in"] > 0.9 > 0.3 > got["aupr_out"]
    is_id = np.r_[np.ones(900), np.zeros(100)]
    scores = np.r_[id_scores, ood_scores]
    assert got["aupr_out"] == pytest.approx(average_precision_score(1 - is_id, -scores))
    assert got["aupr_out"] != pytest.approx(average_precision_score(1 - is_id, scores))


def test_id_positive_tnr_and_ood_positive_fpr_are_different_numbers():
    rng = np.random.default_rng(5)
    id_scores, ood_scores = rng.normal(1, 1, 2000), rng.normal(0, 2, 2000)
    got = ood_metrics(id_scores, ood_scores)
    assert abs((1 - got["tnr_at_tpr95"]) - got["fpr_at_tpr95_ood_positive"]) > 0.1


def test_perfect_and_reversed_detectors():
    perfect = ood_metrics([2.0, 3.0], [0.0, 1.0])
    assert perfect == {"tnr_at_tpr95": 1.0, "auroc": 1.0, "aupr_in": 1.0, "aupr_out": 1.0,
                       "detection_acc": 1.0, "fpr_at_tpr95_ood_positive": 0.0}
    reversed_ = ood_metrics([0.0, 1.0], [2.0, 3.0])
    assert reversed_["auroc"] == 0.0 and reversed_["tnr_at_tpr95"] == 0.0
    assert reversed_["detection_acc"] == 0.5  # "accept all" or "accept none"


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="id_scores is empty"):
        ood_metrics([], [1.0])
    with pytest.raises(ValueError, match="ood_scores must be finite"):
        ood_metrics([1.0], [np.nan])


def naive_bootstrap(id_scores: np.ndarray, ood_sets: list[np.ndarray], resamples: int,
                    seed: int) -> dict[str, np.ndarray]:
    """One resample at a time, with the indices `bootstrap_ood_metrics` documents: the r-th
    ``integers(0, n, n)`` of default_rng([seed, 0]) for ID (shared by every set) and of
    default_rng([seed, 1 + j]) for set j, scored by the exact `ood_metrics`."""
    id_rng = np.random.default_rng([seed, 0])
    set_rngs = [np.random.default_rng([seed, 1 + j]) for j in range(len(ood_sets))]
    out = {name: np.empty((resamples, len(ood_sets))) for name in METRICS}
    for r in range(resamples):
        id_sample = id_scores[id_rng.integers(0, id_scores.size, id_scores.size)]
        for j, (scores, rng) in enumerate(zip(ood_sets, set_rngs, strict=True)):
            values = ood_metrics(id_sample, scores[rng.integers(0, scores.size, scores.size)])
            for name, value in values.items():
                out[name][r, j] = value
    return out


def delong_interval(id_scores: np.ndarray, ood_scores: np.ndarray) -> tuple[float, float]:
    """DeLong et al. (1988)'s 95 % AUROC interval from the explicit O(n^2) pair kernel:
    AUROC -/+ z * sqrt(var(V10) / n_id + var(V01) / n_ood), V = row / column means."""
    kernel = (id_scores[:, None] > ood_scores[None]) + 0.5 * (id_scores[:, None]
                                                                == ood_scores[None])
    area = kernel.mean()
    se = np.sqrt(kernel.mean(1).var(ddof=1) / id_scores.size
                 + kernel.mean(0).var(ddof=1) / ood_scores.size)
    return area - Z95 * se, area + Z95 * se


@pytest.mark.parametrize("seed", range(3))
def test_bootstrap_equals_a_naive_loop_on_the_same_resamples_with_ties(seed, monkeypatch):
    # A small chunk forces several chunks; the replicates must not depend on chunking.
    monkeypatch.setattr(ood.metrics, "_CHUNK_ELEMENTS", 150)
    rng = np.random.default_rng(100 + seed)
    for _ in range(6):
        id_scores, first = random_case(rng)  # half the cases on a coarse grid: tied ID/OOD
        second = rng.integers(-1, 3, int(rng.integers(1, 30))).astype(float)
        got = bootstrap_ood_metrics(id_scores, [first, second], resamples=40, seed=seed)
        expected = naive_bootstrap(id_scores, [first, second], 40, seed)
        assert list(got) == list(METRICS)
        for name in METRICS:
            assert got[name].shape == (40, 2)
            np.testing.assert_allclose(got[name], expected[name], rtol=0, atol=1e-12,
                                       err_msg=name)


def test_bootstrap_is_seeded_and_shares_the_id_resample_across_sets():
    rng = np.random.default_rng(4)
    id_scores, ood_scores = rng.normal(1, 1, 300), rng.normal(0, 1, 200)
    once = bootstrap_ood_metrics(id_scores, [ood_scores, ood_scores], 200, seed=5)
    again = bootstrap_ood_metrics(id_scores, [ood_scores, ood_scores], 200, seed=5)
    other = bootstrap_ood_metrics(id_scores, [ood_scores, ood_scores], 200, seed=6)
    for name in METRICS:
        assert np.array_equal(once[name], again[name])
        assert not np.array_equal(once[name], other[name])
    # the same set twice: different OOD resamples but one ID resample, so the replicates of
    # the two columns are correlated (each metric moves with the shared ID draw)
    auroc_reps = once["auroc"]
    assert not np.array_equal(auroc_reps[:, 0], auroc_reps[:, 1])
    assert np.corrcoef(auroc_reps[:, 0], auroc_reps[:, 1])[0, 1] > 0.3


def test_bootstrap_auroc_interval_is_close_to_delong_on_large_continuous_samples():
    rng = np.random.default_rng(8)
    id_scores, ood_scores = rng.normal(1, 1, 2000), rng.normal(0, 1.5, 1500)
    low, high = delong_interval(id_scores, ood_scores)
    replicates = bootstrap_ood_metrics(id_scores, [ood_scores], 1000, seed=0)["auroc"][:, 0]
    boot_low, boot_high = percentile_interval(replicates)
    half = (high - low) / 2
    assert abs(boot_low - low) < 0.1 * half and abs(boot_high - high) < 0.1 * half
    assert replicates.std(ddof=1) == pytest.approx(half / Z95, rel=0.08)
    assert boot_low < auroc(id_scores, ood_scores) < boot_high


def test_bootstrap_of_tied_scores_never_splits_the_tie():
    # ID [1], OOD [1, 1]: every resample is the same all-tied sample. The one threshold accepts
    # the ID and both OOD: TNR 0, AUROC 1/2, Det. acc 1/2 ("accept all" or "accept none"),
    # AUPR-In 1/3 (precision 1/3), AUPR-Out 2/3, FPR@TPR95 (OOD positive) 1.
    got = bootstrap_ood_metrics([1.0], [[1.0, 1.0]], resamples=25, seed=1)
    hand = {"tnr_at_tpr95": 0.0, "auroc": 0.5, "aupr_in": 1 / 3, "aupr_out": 2 / 3,
            "detection_acc": 0.5, "fpr_at_tpr95_ood_positive": 1.0}
    for name, value in hand.items():
        np.testing.assert_allclose(got[name], value, rtol=0, atol=1e-15, err_msg=name)
        assert percentile_interval(got[name]) == pytest.approx((value, value))


def test_percentile_interval_and_bad_bootstrap_arguments():
    assert percentile_interval(np.arange(1001) / 1000) == pytest.approx((0.025, 0.975))
    assert percentile_interval(np.arange(101), level=0.5) == pytest.approx((25, 75))
    with pytest.raises(ValueError, match="level"):
        percentile_interval([1.0, 2.0], level=1.0)
    with pytest.raises(ValueError, match="resamples"):
        bootstrap_ood_metrics([1.0], [[0.0]], resamples=0)
    with pytest.raises(ValueError, match="no OOD sets"):
        bootstrap_ood_metrics([1.0], [])
    with pytest.raises(ValueError, match="ood_scores must be finite"):
        bootstrap_ood_metrics([1.0], [[0.0], [np.inf]])
