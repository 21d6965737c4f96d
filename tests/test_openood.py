"""OpenOOD v1.5's protocol: near / far groups, full-spectrum rows (covariate-shifted ID counted as
ID) and the openood-* suites, on tiny fixtures in OpenOOD's on-disk layout (`benchmark_imglist/`
lists of `relative/path label`, label -1 for OOD, images under `images_classic/`)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from fixtures import write_cifar10
from PIL import Image
from scipy.special import softmax
from sklearn.metrics import roc_auc_score, roc_curve
from torchvision import transforms

from benchmark.archs import build_arch
from benchmark.checkpoints import NormalizedModel
from benchmark.cli import main
from benchmark.datasets import read_digits
from benchmark.errors import SuiteError
from benchmark.readers import read_cifar10
from benchmark.suites import load_suite
from benchmark.tasks import TaskContext, get_task, resolve_params
from ood.metrics import METRICS
from reports.leaderboard import leaderboard

TINY, TINY32 = "tinynets:tiny_cnn", "tinynets:tiny_cnn32"
NEAR, FAR = ["cifar100", "tin"], ["mnist", "svhn", "texture", "places365"]
# Each set as OpenOOD's CIFAR-10 lists name it: folder under images_classic/, image size and
# mode, count, and how bright its images are (so the sets differ for the detector).
OPENOOD_CIFAR10 = {
    "cifar100": ("cifar100/test/apple", (32, 32), "RGB", 7, 90),
    "tin": ("tin/test/n01443537/images", (64, 64), "RGB", 6, 120),
    "mnist": ("mnist/test", (28, 28), "L", 5, 30),
    "svhn": ("svhn/test", (32, 32), "RGB", 6, 150),
    "texture": ("texture/banded", (90, 120), "RGB", 4, 200),  # H x W: not square
    "places365": ("places365/airfield", (48, 48), "RGB", 5, 60),
    "cifar10c": ("cifar10c", (32, 32), "RGB", 8, 70),
}


def write_openood_cifar10(root: Path, seed: int = 0) -> dict[str, list[Path]]:
    """OpenOOD's CIFAR-10 lists (benchmark_imglist/cifar10/test_<set>.txt) and their images
    under images_classic/, as its download script extracts them; each set's image paths in
    list order. cifar10c (covariate-shifted ID) lines carry class labels, the others -1."""
    rng = np.random.default_rng(seed)
    lists = root / "benchmark_imglist" / "cifar10"
    lists.mkdir(parents=True)
    written = {}
    for name, (folder, (height, width), mode, count, level) in OPENOOD_CIFAR10.items():
        (root / "images_classic" / folder).mkdir(parents=True)
        lines, paths = [], []
        for i in range(count):
            shape = (height, width) if mode == "L" else (height, width, 3)
            pixels = np.clip(rng.normal(level, 40, shape), 0, 255).astype(np.uint8)
            suffix = ".jpg" if name in ("texture", "places365", "tin") else ".png"
            relative = f"{folder}/{name}_{i}{suffix}"
            Image.fromarray(pixels, mode).save(root / "images_classic" / relative)
            lines.append(f"{relative} {i % 10 if name == 'cifar10c' else -1}\n")
            paths.append(root / "images_classic" / relative)
        (lists / f"test_{name}.txt").write_text("".join(lines))
        written[name] = paths
    return written


def openood_transform(path: Path) -> torch.Tensor:
    """An image as OpenOOD's CIFAR test preprocessor reads it: RGB, Resize(32) bilinear on the
    shorter side, CenterCrop(32), [0, 1]."""
    pipeline = transforms.Compose([transforms.Resize(32, transforms.InterpolationMode.BILINEAR),
                                   transforms.CenterCrop(32), transforms.ToTensor()])
    with Image.open(path) as image:
        return pipeline(image.convert("RGB"))


def suite_file(tmp_path: Path) -> Path:
    """The shipped openood-cifar10 suite, its sets as shipped, with scorers a tiny model and 30
    training images can take (KNN with k = 5) and fewer bootstrap resamples."""
    text = (resources.files("benchmark") / "suites" / "openood-cifar10.toml").read_text()
    line = next(line for line in text.splitlines() if line.startswith("scorers = "))
    path = tmp_path / "openood-small.toml"
    path.write_text(text.replace(line, 'scorers = ["msp", "energy", "knn"]\nknn_k = 5\n'
                                       "bootstrap = 200"))
    return path


def test_openood_cifar10_suite_end_to_end_groups_and_full_spectrum(tmp_path, one_thread):
    """The shipped suite's sets on OpenOOD's layout, through the CLI: per-set rows as OpenOOD
    computes them, group means = the hand mean of their sets, full-spectrum AUROC and FPR@95
    (OOD positive) = scikit-learn's with the csid images counted as ID."""
    data = tmp_path / "data"
    write_cifar10(data, n_test=12)
    images = write_openood_cifar10(data)
    zoo, out = tmp_path / "zoo", tmp_path / "out"
    zoo.mkdir()
    (zoo / "rubench.toml").write_text(f'arch = "{TINY32}"\n')
    torch.manual_seed(0)
    state = build_arch(TINY32, num_classes=10).state_dict()
    torch.save(state, zoo / "m0.pth")
    assert main(["evaluate", str(zoo), "--suite", str(suite_file(tmp_path)), "--data-root",
                 str(data), "--out", str(out), "--no-progress"]) == 0
    results = pd.read_csv(out / "results.csv")
    ood = results[(results.task == "ood") & results.metric.isin(list(METRICS))]
    assert {"ood_group", "spectrum"} <= set(ood.columns)

    def row(scorer: str, ood_set: str, metric: str = "auroc", group: str | None = None,
            full: bool = False) -> pd.Series:
        found = ood[(ood.scorer == scorer) & (ood.ood_set == ood_set) & (ood.metric == metric)
                    & (ood.ood_group == group if group else ood.ood_group.isna())
                    & (ood.spectrum == "full" if full else ood.spectrum.isna())]
        assert len(found) == 1, (scorer, ood_set, metric, group, full)
        return found.iloc[0]

    standard = ood[ood.spectrum.isna()]
    assert set(standard.ood_set) == {*NEAR, *FAR, "mean"}  # the csid set is no OOD set
    assert set(ood[ood.spectrum == "full"].ood_set) == {*NEAR, *FAR, "mean"}
    assert set(ood.ood_group.dropna()) == {"near", "far"}
    assert (ood[ood.ood_group.notna()].ood_set == "mean").all()
    for scorer in ("msp", "energy", "knn"):
        for full in (False, True):
            for metric in METRICS:
                for group, names in (("near", NEAR), ("far", FAR), (None, NEAR + FAR)):
                    mean = row(scorer, "mean", metric, group, full)
                    hand = np.mean([row(scorer, name, metric, None, full).value
                                    for name in names])
                    assert mean.value == pytest.approx(hand, abs=1e-9)
                    assert mean.ci_low <= mean.value + 1e-9 and mean.value <= mean.ci_high + 1e-9
    n_csid = len(images["cifar10c"])
    assert row("msp", "mean", group="near").n == 12 + 7 + 6
    assert row("msp", "mean", group="far", full=True).n == 12 + n_csid + 5 + 6 + 4 + 5

    model = NormalizedModel(build_arch(TINY32, num_classes=10), [0.4914, 0.4822, 0.4465],
                            [0.2470, 0.2435, 0.2616]).eval()
    model.net.load_state_dict(state)

    def msp(batch: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return softmax(model(batch).double().numpy(), axis=1).max(1)

    id_msp = msp(read_cifar10(data / "cifar-10-batches-py", split="test").images.float() / 255)
    csid_msp = msp(torch.stack([openood_transform(p) for p in images["cifar10c"]]))
    for name in NEAR + FAR:
        ood_msp = msp(torch.stack([openood_transform(p) for p in images[name]]))
        for full, id_scores in ((False, id_msp), (True, np.r_[id_msp, csid_msp])):
            scores = np.r_[id_scores, ood_msp]
            is_ood = np.r_[np.zeros(len(id_scores)), np.ones(len(ood_msp))]
            assert row("msp", name, "auroc", None, full).value == pytest.approx(
                100 * roc_auc_score(1 - is_ood, scores), abs=1e-6)
            fpr, tpr, _ = roc_curve(is_ood, -scores)  # OpenOOD's FPR@95: OOD positive
            assert row("msp", name, "fpr_at_tpr95_ood_positive", None, full).value == \
                pytest.approx(100 * fpr[np.argmax(tpr >= 0.95)], abs=1e-6)
            assert row("msp", name, "auroc", None, full).n == len(scores)

    hist = pd.read_csv(out / "artifacts.csv")
    assert set(hist[hist.metric == "score_hist"].ood_set) == {"in_distribution", *NEAR, *FAR}
    table = leaderboard(results).values  # the headline: the standard mean over all OOD sets
    assert [c for c in table.columns if c.startswith("OOD AUROC")] == [
        "OOD AUROC (MSP, mean over 6 sets)"]
    assert table.at["m0", "OOD AUROC (MSP, mean over 6 sets)"] == row("msp", "mean").value
    # the rows are a reduction of the stored records and the suite's parameters alone (values
    # only: the store keeps `sets` key-sorted, which reorders the sets' bootstrap streams)
    assert main(["report", str(out), "--recompute", "--no-progress"]) == 0
    key = ["task", "metric", "scorer", "ood_set", "ood_group", "spectrum"]
    columns = [*key, "value", "n"]
    recomputed = pd.read_csv(out / "results.csv")[columns]
    pd.testing.assert_frame_equal(recomputed.sort_values(key, ignore_index=True),
                                  results[columns].sort_values(key, ignore_index=True))


def digits_ctx(model: torch.nn.Module, data_root: Path) -> TaskContext:
    return TaskContext(model=model, data=read_digits(split="test"), seed=0,
                       device=torch.device("cpu"), batch_size=600, progress=False,
                       data_root=data_root)


def run_ood(ctx: TaskContext, **params) -> tuple:
    task = get_task("ood")
    return task.run(ctx, resolve_params(task, params, "test suite"))


def keyed(metrics: list) -> dict:
    return {(m.metric, tuple(sorted(m.conditions.items()))): m for m in metrics}


def test_groups_and_csid_sets_add_rows_and_leave_the_others_unchanged(tmp_path, one_thread):
    """The same sets with groups and a csid folder (digits of the train split, dimmed): every
    row of the plain run comes back bit-identical (histograms too: csid scores stay out of
    the shared bins); the new rows are group means and full-spectrum rows only, the latter
    as scikit-learn computes them with the csid images as ID."""
    digits = read_digits(split="train")
    folder = tmp_path / "dimmed"
    folder.mkdir()
    for i in range(40):
        pixels = np.round(digits.images[i, 0].numpy() * 0.7 * 255).astype(np.uint8)
        Image.fromarray(pixels, "L").save(folder / f"{i:02d}.png")
    torch.manual_seed(3)
    model = NormalizedModel(build_arch(TINY, num_classes=10), [0.3], [0.25]).eval()
    ctx = digits_ctx(model, tmp_path)
    common = {"scorers": ["msp", "maxlogit"], "ood_limit": 50, "bootstrap": 200,
              "histogram_bins": 8}
    plain = {"u": "uniform", "g": "gaussian", "c": {"kind": "natural_crops", "levels": 17}}
    grouped = {"u": {"kind": "uniform", "group": "far"},
               "g": {"kind": "gaussian", "group": "far"},
               "c": {"kind": "natural_crops", "levels": 17, "group": "near"},
               "dimmed": {"kind": "folder", "path": "dimmed", "role": "csid"}}
    _, before = run_ood(ctx, sets=plain, **common)
    records, after = run_ood(ctx, sets=grouped, **common)
    before, after = keyed(before), keyed(after)
    assert {key: after[key] for key in before} == before
    added = {key for key in after if key not in before}
    assert added and all(dict(c).get("ood_group") or dict(c).get("spectrum") == "full"
                         for _, c in added)
    for metric in METRICS:
        for scorer in ("msp", "maxlogit"):
            far = after[metric, (("ood_group", "far"), ("ood_set", "mean"), ("scorer", scorer))]
            hand = (before[metric, (("ood_set", "u"), ("scorer", scorer))].value
                    + before[metric, (("ood_set", "g"), ("scorer", scorer))].value) / 2
            assert far.value == pytest.approx(hand) and far.n == 600 + 100
    assert len(records.one(scorer="msp", ood_set="dimmed")["score"]) == 40
    id_scores = records.one(scorer="maxlogit", ood_set="in_distribution")["score"]
    with torch.no_grad():
        dimmed = torch.from_numpy(np.stack([np.asarray(Image.open(folder / f"{i:02d}.png"))
                                            for i in range(40)])).float()[:, None] / 255
        csid = model(dimmed).max(1).values.double().numpy()
    for name in ("u", "g", "c"):
        ood_scores = records.one(scorer="maxlogit", ood_set=name)["score"]
        scores = np.r_[id_scores, csid, ood_scores]
        is_id = np.r_[np.ones(640), np.zeros(len(ood_scores))]
        full = after["auroc", (("ood_set", name), ("scorer", "maxlogit"), ("spectrum", "full"))]
        assert full.value == pytest.approx(100 * roc_auc_score(is_id, scores), abs=1e-6)
        assert full.n == 640 + 50
        assert full.value != before["auroc", (("ood_set", name), ("scorer", "maxlogit"))].value


def test_set_resize_overrides_the_task_mode(tmp_path):
    """A set's own `resize` (OpenOOD's ImageNet-C: no resize) wins over the task's."""
    folder = tmp_path / "big"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((16, 12), 40 * i, np.uint8)).save(folder / f"{i}.png")
    torch.manual_seed(0)
    ctx = digits_ctx(NormalizedModel(build_arch(TINY, num_classes=10), [0.3], [0.25]).eval(),
                     tmp_path)
    _, rows = run_ood(ctx, scorers=["msp"], bootstrap=0, histogram_bins=0,
                      sets={"big": {"kind": "folder", "path": "big", "resize": "resize"}})
    assert {m.n for m in rows if m.metric == "auroc"} == {600 + 3}
    with pytest.raises(Exception, match="16x12 but the model takes 8x8"):
        run_ood(ctx, scorers=["msp"], resize="resize", sets={
            "big": {"kind": "folder", "path": "big", "resize": "none"}})


@pytest.mark.parametrize(("sets", "message"), [
    ({"u": {"kind": "uniform", "role": "shifted"}}, "role must be one of ood, csid"),
    ({"u": "uniform", "c": {"kind": "gaussian", "role": "csid", "group": "near"}},
     "csid set .* takes no group"),
    ({"u": {"kind": "uniform", "group": ""}}, "group must be a non-empty string"),
    ({"u": {"kind": "folder", "path": "x", "resize": "stretch"}}, "resize must be one of"),
    ({"u": {"kind": "uniform", "resize": "none"}}, "unknown key"),
    ({"c": {"kind": "gaussian", "role": "csid"}}, "no OOD sets"),
])
def test_bad_groups_roles_and_resize_are_suite_errors(sets, message):
    task = get_task("ood")
    with pytest.raises(SuiteError, match=message):
        params = resolve_params(task, {"sets": sets}, "test suite")
        task.run(digits_ctx(torch.nn.Identity(), None), params)


def test_odin_tuning_source_takes_no_group():
    with pytest.raises(SuiteError, match="takes no group or role"):
        resolve_params(get_task("ood"), {"sets": {"u": "uniform"}, "odin_tune_ood": {
            "kind": "gaussian", "group": "near"}}, "test suite")


# OpenOOD v1.5's sets per benchmark (openood/evaluation_api/datasets.py, DATA_INFO): group ->
# (set, image list under benchmark_imglist/, image root).
OPENOOD_SETS = {
    "openood-cifar10": {
        "near": [("cifar100", "cifar10/test_cifar100.txt", "images_classic"),
                 ("tin", "cifar10/test_tin.txt", "images_classic")],
        "far": [(name, f"cifar10/test_{name}.txt", "images_classic")
                for name in ("mnist", "svhn", "texture", "places365")],
        "csid": [("cifar10c", "cifar10/test_cifar10c.txt", "images_classic")],
    },
    "openood-cifar100": {
        "near": [("cifar10", "cifar100/test_cifar10.txt", "images_classic"),
                 ("tin", "cifar100/test_tin.txt", "images_classic")],
        "far": [(name, f"cifar100/test_{name}.txt", "images_classic")
                for name in ("mnist", "svhn", "texture", "places365")],
        "csid": [],
    },
    "openood-imagenet": {
        "near": [(name, f"imagenet/test_{name}.txt", "images_largescale")
                 for name in ("ssb_hard", "ninco")],
        "far": [("inaturalist", "imagenet/test_inaturalist.txt", "images_largescale"),
                ("textures", "imagenet/test_textures.txt", "images_classic"),
                ("openimage_o", "imagenet/test_openimage_o.txt", "images_largescale")],
        "csid": [(name, f"imagenet/test_{name}.txt", "images_largescale")
                 for name in ("imagenet_v2", "imagenet_c", "imagenet_r", "imagenet_es")],
    },
}


@pytest.mark.parametrize("name", sorted(OPENOOD_SETS))
def test_openood_suites_name_openood_v15_sets_groups_and_preprocessing(name):
    suite = load_suite(name)
    assert [t.name for t in suite.tasks] == ["clean", "ood"]
    params = suite.tasks[1].params
    found: dict[str, list] = {"near": [], "far": [], "csid": []}
    for set_name, spec in params["sets"].items():
        assert spec["kind"] == "list" and spec["path"].startswith("benchmark_imglist/")
        found[spec.get("group", spec.get("role"))].append(
            (set_name, spec["path"].removeprefix("benchmark_imglist/"), spec["root"]))
    assert found == OPENOOD_SETS[name]
    imagenet = name == "openood-imagenet"
    # OpenOOD: Resize(pre_size) bilinear -> CenterCrop(img_size); pre 32 / 32, 256 / 224
    assert params["resize"] == ("imagenet" if imagenet else "resize_center_crop")
    assert params["ash_b_percentile"] == 90.0 and "ash_b" in params["scorers"]
    assert {"msp", "odin", "energy", "maxlogit"} <= set(params["scorers"])
    assert imagenet or {"mahalanobis", "knn", "vim", "react"} <= set(params["scorers"])
    if imagenet:  # ImageNet-C is stored at 224x224 and read as is
        assert params["sets"]["imagenet_c"]["resize"] == "none"


def test_imagenet_resize_follows_the_id_images_own_preprocessing(tmp_path):
    """A timm checkpoint's ID images are read with its own resize and crop; OOD image files
    read with the `imagenet` mode get exactly the same, so resampling cannot separate them."""
    from benchmark.data import Preprocessing
    from ood.datasets import ResizeCrop, fit_to_input

    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (300, 410, 3), dtype=np.uint8))
    for own in (Preprocessing(256, 224), Preprocessing(235, 224, "bicubic"),
                Preprocessing(235, 224, "bicubic", squash=True)):
        expected = (own.transform()(image) * 255).round().to(torch.uint8)
        fitted = fit_to_input(image, (224, 224), ResizeCrop(own.resize, own.interpolation,
                                                             own.squash), "x")
        got = torch.from_numpy(np.array(fitted, dtype=np.uint8)).permute(2, 0, 1)
        assert torch.equal(got, expected), own.describe()
    # the suite default (Resize(256) bilinear -> CenterCrop(224)) is the `imagenet` mode itself
    default = fit_to_input(image, (224, 224), "imagenet", "x")
    assert np.array_equal(np.array(default), np.array(fit_to_input(
        image, (224, 224), ResizeCrop(256), "x")))
