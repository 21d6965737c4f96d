"""Writes tests/data/report_results.csv, a fixed results.csv in rubench's long form, and with
`--golden` the leaderboard it must produce (tests/data/report_leaderboard.md).

Numbers are synthetic but chosen by hand so the expected table can be checked by eye: three
checkpoints (erm, mixup, cutout), clean / FGSM at two eps / calibration / OOD rows, and one
occlusion sweep; FGSM sanity flags (one raised: mixup at eps 0.2), three reliability bins, OOD
score histograms (ID and one set, four bins) and a few corruption cells. Re-run after an
intended change of the leaderboard format, and read the diff.

    python tests/data/make_report_fixture.py [--golden]
"""

import sys
from pathlib import Path

import pandas as pd

HERE = Path(__file__).parent
PROVENANCE = {"seed": 0, "suite": "digits", "suite_version": "1", "dataset": "digits",
              "split": "test", "n_data": 600, "limit": 0, "device": "cpu",
              "rubench_version": "0.1.0", "torch_version": "2.14.1", "git_hash": "abc123"}


def rows() -> list[dict]:
    """(checkpoint, task, metric, conditions, errors out of 600 or a value)."""
    out = []

    def add(checkpoint, task, metric, value, higher=False, ci=None, **conditions):
        low, high = ci if ci else (None, None)
        out.append({"checkpoint": checkpoint, "task": task, "metric": metric, **conditions,
                    "value": value, "ci_low": low, "ci_high": high, "n": 600,
                    "higher_is_better": higher, "task_type": task, **PROVENANCE})

    for name, clean, fgsm1, fgsm2, ece, auroc in (("erm", 1.5, 40.0, 80.0, 2.0, 90.0),
                                                    ("mixup", 2.0, 30.0, 60.0, 8.0, 85.0),
                                                    ("cutout", 1.0, 45.0, 85.0, 1.5, 92.5)):
        add(name, "clean", "top1_err", clean, ci=(clean - 0.5, clean + 0.6))
        add(name, "clean", "nll", clean / 20)
        add(name, "fgsm", "top1_err", fgsm1, ci=(fgsm1 - 3, fgsm1 + 4), eps=0.1,
            space="pixel")
        add(name, "fgsm", "top1_err", fgsm2, ci=(fgsm2 - 3, fgsm2 + 3), eps=0.2,
            space="pixel")
        for eps in (0.1, 0.2):
            raised = float(name == "mixup" and eps == 0.2)
            add(name, "fgsm", "flag_below_clean", raised, eps=eps, space="pixel")
        add(name, "fgsm", "flag_zero_grad", 0.0, space="pixel")
        add(name, "calibration", "ece", ece, scaling="none")
        for i, (accuracy, confidence) in enumerate(((30.0, 25.0), (60.0, 55.0),
                                                    (90.0, 95.0))):
            add(name, "calibration", "reliability_accuracy", accuracy, higher=None,
                scaling="none", bin=i)
            add(name, "calibration", "reliability_confidence", confidence, higher=None,
                scaling="none", bin=i)
            add(name, "calibration", "reliability_count", 200, higher=None, scaling="none",
                bin=i)
        for ood_set, shares in (("in_distribution", (5, 10, 25, 60)),
                                ("noise", (50, 30, 15, 5))):
            for i, share in enumerate(shares):
                add(name, "ood", "score_hist", float(share), higher=None, ood_set=ood_set,
                    scorer="msp", bin=i)
        for i in range(4):
            add(name, "ood", "score_hist_centre", 0.1 + 0.25 * i, higher=None, scorer="msp",
                bin=i)
        for corruption, category in (("gaussian_noise", "noise"), ("fog", "weather")):
            for severity in (1, 3, 5):
                add(name, "corruptions", "top1_err", clean + 5 * severity, category=category,
                    corruption=corruption, severity=severity, source="generated")
        for category in ("noise", "weather", "benchmark"):  # the task's means per severity
            for severity in (1, 3, 5):
                value = clean + 5 * severity
                add(name, "corruptions", "severity_err", value, ci=(value - 1, value + 1),
                    category=category, severity=severity, source="generated")
        add(name, "ood", "auroc", auroc, higher=True, ood_set="mean", scorer="msp")
        add(name, "ood", "auroc", auroc - 5, higher=True, ood_set="mean", scorer="energy")
        for frac, err in ((0.0, clean), (0.5, 3 * clean + 10), (1.0, 90.0)):
            add(name, "occlusion", "top1_err", err, mode="center", hole_frac=frac)
    frame = pd.DataFrame(out)
    conditions = ["bin", "category", "corruption", "eps", "hole_frac", "mode", "ood_set",
                  "scaling", "scorer", "severity", "source", "space"]
    front = ["checkpoint", "task", "metric", *conditions]
    return frame[front + [c for c in frame.columns if c not in front]]


def main() -> None:
    results = rows()
    results.to_csv(HERE / "report_results.csv", index=False)
    if "--golden" in sys.argv:
        sys.path.insert(0, str(HERE.parents[1]))
        import tempfile

        from reports.leaderboard import write_leaderboard

        with tempfile.TemporaryDirectory() as folder:
            results.to_csv(Path(folder) / "results.csv", index=False)
            markdown, _ = write_leaderboard(Path(folder), baseline="erm")
            (HERE / "report_leaderboard.md").write_text(markdown.read_text())


if __name__ == "__main__":
    main()
