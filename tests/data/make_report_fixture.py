"""Writes tests/data/report_results.csv, a fixed results.csv in rubench's long form, and with
`--golden` the leaderboard it must produce (tests/data/report_leaderboard.md).

Numbers are synthetic but chosen by hand so the expected table can be checked by eye: three
checkpoints (erm, mixup, cutout), clean / FGSM at two eps / calibration / OOD rows, and one
occlusion sweep. Re-run after an intended change of the leaderboard format, and read the diff.

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
        add(name, "fgsm", "top1_err", fgsm1, eps=0.1, space="pixel")
        add(name, "fgsm", "top1_err", fgsm2, eps=0.2, space="pixel")
        add(name, "calibration", "ece", ece)
        add(name, "ood", "auroc", auroc, higher=True, ood_set="mean", scorer="msp")
        add(name, "ood", "auroc", auroc - 5, higher=True, ood_set="mean", scorer="energy")
        for frac, err in ((0.0, clean), (0.5, 3 * clean + 10), (1.0, 90.0)):
            add(name, "occlusion", "top1_err", err, mode="center", hole_frac=frac)
    frame = pd.DataFrame(out)
    conditions = ["eps", "space", "ood_set", "scorer", "mode", "hole_frac"]
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
