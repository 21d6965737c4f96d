"""Feature-space OOD detectors: each against an independent reference (the papers' formulas in
numpy / scikit-learn, the way OpenOOD and the authors' code compute them) and against
pytorch-ood's implementation, on random features and on the digits zoo's real features; the
feature hook on rubench's and torchvision's networks; the `ood` task's feature scorers."""

from __future__ import annotations

import copy
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from safetensors.torch import save_file
from scipy.special import logsumexp
from sklearn.covariance import EmpiricalCovariance
from sklearn.neighbors import NearestNeighbors
from torch import nn

from benchmark.archs import build_arch
from benchmark.checkpoints import NormalizedModel, load_model, make_ref
from benchmark.data import stratified_subset
from benchmark.datasets import read_digits
from benchmark.errors import CheckpointError, SuiteError
from benchmark.inputs import InputCache
from benchmark.suites import load_suite
from benchmark.tasks import TaskContext, get_task, resolve_params
from benchmark.tasks import ood as ood_task
from ood import datasets as oodsets
from ood import detectors
from ood.features import FeatureHook, Head, extract, final_linear

ZOO = Path(__file__).resolve().parents[1] / ".ci" / "zoo"
FEATURE_SCORERS = ["mahalanobis", "knn", "vim", "react", "ash_b", "ash_p", "ash_s"]


# ---- independent references: the definitions, written out with numpy and scikit-learn ----

def ref_mahalanobis(train: np.ndarray, labels: np.ndarray, test: np.ndarray, classes: int
                    ) -> np.ndarray:
    """OpenOOD's MDS: class means, sklearn's EmpiricalCovariance of the class-centred features."""
    means = np.stack([train[labels == c].mean(axis=0) for c in range(classes)])
    precision = EmpiricalCovariance(assume_centered=False).fit(train - means[labels]).precision_
    distances = np.stack([np.einsum("nd,de,ne->n", test - m, precision, test - m)
                          for m in means], axis=1)
    return -distances.min(axis=1)


def ref_knn(train: np.ndarray, test: np.ndarray, k: int) -> np.ndarray:
    """Sun et al.: minus the distance to the k-th nearest unit-norm training feature."""
    def unit(x: np.ndarray) -> np.ndarray:
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    distances, _ = NearestNeighbors(n_neighbors=k).fit(unit(train)).kneighbors(unit(test))
    return -distances[:, -1]


def ref_vim(train: np.ndarray, test: np.ndarray, w: np.ndarray, b: np.ndarray, dim: int
            ) -> np.ndarray:
    """ViM's released code: pinv origin, np.linalg.eig of sklearn's covariance, residual."""
    u = -np.linalg.pinv(w) @ b
    values, vectors = np.linalg.eig(EmpiricalCovariance(assume_centered=True)
                                    .fit(train - u).covariance_)
    residual = np.ascontiguousarray(vectors.T[np.argsort(-values.real)[dim:]].T.real)
    alpha = (train @ w.T + b).max(axis=1).mean() / \
        np.linalg.norm((train - u) @ residual, axis=1).mean()
    return logsumexp(test @ w.T + b, axis=1) - alpha * np.linalg.norm((test - u) @ residual,
                                                                      axis=1)


def ref_react(train: np.ndarray, test: np.ndarray, w: np.ndarray, b: np.ndarray,
              percentile: float) -> np.ndarray:
    """ReAct: clip at the training activations' percentile, then the energy."""
    return logsumexp(np.minimum(test, np.percentile(train.ravel(), percentile)) @ w.T + b,
                     axis=1)


def ref_ash(test: np.ndarray, w: np.ndarray, b: np.ndarray, variant: str, percentile: float
            ) -> np.ndarray:
    """ASH, one sample at a time: keep the top D - round(D p / 100) (ties: lower index)."""
    scores = []
    for z in test:
        keep = len(z) - int(np.round(len(z) * percentile / 100))
        top = np.argsort(-z, kind="stable")[:keep]
        shaped = np.zeros_like(z)
        shaped[top] = {"p": z[top], "b": z.sum() / keep,
                       "s": z[top] * np.exp(z.sum() / z[top].sum())}[variant]
        scores.append(logsumexp(shaped @ w.T + b))
    return np.array(scores)


# ---- features: random, and the digits zoo's ERM model on digits and noise ----

def random_features(seed: int = 0) -> dict:
    """Strictly positive (no ties, as after a ReLU with no dead unit) class-shifted features."""
    g = torch.Generator().manual_seed(seed)
    classes, dims = 4, 24
    labels = torch.arange(400) % classes
    shift = torch.rand(classes, dims, generator=g, dtype=torch.float64)
    train = nn.functional.softplus(torch.randn(400, dims, generator=g, dtype=torch.float64)
                                   + 2 * shift[labels])
    test = nn.functional.softplus(torch.randn(150, dims, generator=g, dtype=torch.float64)
                                  + 2 * shift[torch.arange(150) % classes]
                                  * (torch.arange(150) < 100)[:, None])
    head = Head(torch.randn(classes, dims, generator=g, dtype=torch.float64),
                torch.randn(classes, generator=g, dtype=torch.float64))
    return {"train": train, "labels": labels, "test": test, "head": head, "classes": classes}


@pytest.fixture(scope="module")
def zoo_features() -> dict:
    """Penultimate features (float32) of the committed digits zoo's ERM model: the train split,
    the test split and 200 uniform-noise images."""
    model = load_model(make_ref(ZOO / "erm.safetensors", ZOO, {}, {})).model
    noise = oodsets.uniform(200, 1, (8, 8), 0, 0, lazy=False).images
    with FeatureHook(model, "net.fc") as hook:
        train_split = read_digits(split="train")
        _, train = extract(hook, model, [train_split.images.float()])
        _, test = extract(hook, model, [read_digits(split="test").images.float(),
                                        noise.float() / 255 if noise.dtype == torch.uint8
                                        else noise])
        head = hook.head()
    return {"train": train, "labels": torch.from_numpy(train_split.labels), "test": test,
            "head": head, "classes": 10}


FEATURES = ["random", "zoo"]


@pytest.fixture(params=FEATURES)
def features(request: pytest.FixtureRequest) -> dict:
    return random_features() if request.param == "random" \
        else request.getfixturevalue("zoo_features")


def numpy_of(f: dict) -> tuple[np.ndarray, ...]:
    return (f["train"].double().numpy(), f["labels"].numpy(), f["test"].double().numpy(),
            f["head"].weight.numpy(), f["head"].bias.numpy())


# ---- each detector vs its independent reference ----

def test_mahalanobis_matches_openood_recipe(features):
    train, labels, test, _, _ = numpy_of(features)
    fit = detectors.fit_mahalanobis(features["train"], features["labels"], features["classes"])
    np.testing.assert_allclose(detectors.mahalanobis_scores(fit, features["test"]),
                               ref_mahalanobis(train, labels, test, features["classes"]),
                               rtol=1e-8)


def test_knn_matches_sklearn_nearest_neighbours(features):
    train, _, test, _, _ = numpy_of(features)
    for k in (1, 50):
        ours = detectors.knn_scores(detectors.fit_knn(features["train"]), features["test"], k)
        # float64 features: exact up to 2 - 2 cos; float32 (the model's): about 1e-6
        tolerance = 1e-9 if features["train"].dtype == torch.float64 else 2e-5
        np.testing.assert_allclose(ours, ref_knn(train, test, k), atol=tolerance)


def test_vim_matches_the_vim_code(features):
    train, _, test, w, b = numpy_of(features)
    dim = detectors.default_vim_dim(train.shape[1])
    assert dim == train.shape[1] // 2
    fit = detectors.fit_vim(features["train"], features["head"])
    np.testing.assert_allclose(detectors.vim_scores(fit, features["test"], features["head"]),
                               ref_vim(train, test, w, b, dim), rtol=1e-7, atol=1e-7)


def test_react_matches_clip_then_energy(features):
    train, _, test, w, b = numpy_of(features)
    threshold = detectors.react_threshold(features["train"], 90)
    assert threshold == pytest.approx(np.percentile(train.ravel(), 90), rel=1e-6)
    np.testing.assert_allclose(detectors.react_scores(features["test"], features["head"],
                                                      threshold),
                               ref_react(train, test, w, b, 90), rtol=1e-6)


@pytest.mark.parametrize("variant", ["b", "p", "s"])
def test_ash_matches_the_definitions(features, variant):
    _, _, test, w, b = numpy_of(features)
    percentile = detectors.ASH_PERCENTILES[variant]
    np.testing.assert_allclose(detectors.ash_scores(features["test"], features["head"], variant),
                               ref_ash(test, w, b, variant, percentile), rtol=1e-9)


def test_detector_rules_and_refusals():
    assert [detectors.default_vim_dim(d) for d in (64, 512, 768, 2048, 4096)] == \
        [32, 256, 512, 1000, 1000]
    f = random_features()
    with pytest.raises(ValueError, match="every class"):
        detectors.fit_mahalanobis(f["train"][f["labels"] < 3], f["labels"][f["labels"] < 3], 4)
    with pytest.raises(ValueError, match="k = 401"):
        detectors.knn_scores(detectors.fit_knn(f["train"]), f["test"], 401)
    with pytest.raises(ValueError, match="principal dimension"):
        detectors.fit_vim(f["train"], f["head"], 24)
    with pytest.raises(ValueError, match="keep at least one"):
        detectors.ash(f["test"], "b", 100)
    # ASH-B at a tie: the fill goes to the lowest-index features, whatever top-k would pick
    shaped = detectors.ash(torch.tensor([[0.0, 2.0, 0.0, 0.0]]), "b", 50)
    assert shaped.tolist() == [[1.0, 1.0, 0.0, 0.0]]


# ---- each detector vs pytorch-ood (its outlier scores are minus ours, up to scale) ----

@contextmanager
def float64_default():
    """pytorch-ood's Mahalanobis allocates its statistics in the default dtype."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def no_tie_at_cut(x: np.ndarray, percentile: float) -> np.ndarray:
    """Rows whose k-th and (k+1)-th largest values differ (where top-k is unambiguous)."""
    keep = x.shape[1] - int(np.round(x.shape[1] * percentile / 100))
    ordered = -np.sort(-x, axis=1)
    return ordered[:, keep - 1] != ordered[:, keep]


def test_detectors_agree_with_pytorch_ood(features):
    pod = pytest.importorskip("pytorch_ood.detector")
    train, test = features["train"].double(), features["test"].double()
    labels, head = features["labels"], features["head"]
    n = len(train)

    with float64_default():
        theirs = pod.Mahalanobis(None).fit_features(train, labels).predict_features(test)
    ours = detectors.mahalanobis_scores(
        detectors.fit_mahalanobis(train, labels, features["classes"]), test)
    # pytorch-ood: half the distance, under inv(N * covariance + 1e-6 I)
    np.testing.assert_allclose(ours, -2 * n * theirs.numpy(), rtol=1e-5)

    theirs = pod.KNN(None, k=50).fit_features(train, labels).predict_features(test)
    np.testing.assert_allclose(detectors.knn_scores(detectors.fit_knn(train), test, 50),
                               -theirs.numpy(), atol=1e-9)

    dim = detectors.default_vim_dim(train.shape[1])
    vim = pod.ViM(None, d=dim, w=head.weight, b=head.bias).fit_features(train, labels)
    ours = detectors.vim_scores(detectors.fit_vim(train, head), test, head)
    # pytorch-ood's ViM runs in float32 (its eigenvectors of the zoo's covariance to ~1e-4)
    np.testing.assert_allclose(ours, -vim.predict_features(test).numpy(), rtol=1e-4, atol=2e-3)
    assert detectors.fit_vim(train, head).alpha == pytest.approx(vim.alpha, rel=1e-5)

    def linear(maps: torch.Tensor) -> torch.Tensor:
        return head.logits(maps.flatten(1))

    maps = test[:, :, None, None]
    react = pod.ReAct(backbone=None, head=linear, percentile=0.9)
    react.fit_feature_maps(train[:, :, None, None], labels)
    threshold = detectors.react_threshold(train, 90)
    assert threshold == pytest.approx(react.threshold, rel=1e-12)
    np.testing.assert_allclose(detectors.react_scores(test, head, threshold),
                               -react.predict_feature_maps(maps).numpy(), rtol=1e-12)

    for variant, percentile in detectors.ASH_PERCENTILES.items():
        ash = pod.ASH(backbone=None, head=linear, variant=f"ash-{variant}",
                      percentile=percentile / 100)
        rows = no_tie_at_cut(test.numpy(), percentile)
        assert rows.sum() >= len(rows) // 2
        np.testing.assert_allclose(detectors.ash_scores(test, head, variant)[rows],
                                   -ash.predict_feature_maps(maps).numpy()[rows], rtol=1e-9)


def test_real_features_separate_noise_from_digits(zoo_features):
    """A sanity check of the zoo fixture: every detector ranks digits above uniform noise more
    often than not (the per-set numbers are the task's business)."""
    from sklearn.metrics import roc_auc_score

    f = zoo_features
    is_id = np.r_[np.ones(600), np.zeros(200)]
    knn = detectors.knn_scores(detectors.fit_knn(f["train"]), f["test"])
    maha = detectors.mahalanobis_scores(detectors.fit_mahalanobis(f["train"], f["labels"], 10),
                                        f["test"])
    assert roc_auc_score(is_id, knn) > 0.9 and roc_auc_score(is_id, maha) > 0.9


# ---- the hook ----

@pytest.mark.parametrize(("arch", "layer", "shape"), [
    ("digits_cnn", "fc", (1, 8, 8)), ("cifar_resnet18", "linear", (3, 32, 32)),
    ("preactresnet18", "linear", (3, 32, 32)), ("wrn28_2", "linear", (3, 32, 32)),
    pytest.param("pyramidnet200_240", "fc", (3, 32, 32), marks=pytest.mark.slow),  # 11 s
    ("resnet18", "fc", (3, 64, 64)),
    ("mobilenet_v3_small", "classifier.3", (3, 64, 64)),
])
def test_final_linear_found_on_rubench_and_torchvision_archs(arch, layer, shape):
    torch.manual_seed(0)
    net = build_arch(arch, num_classes=10).eval()
    example = torch.rand(2, *shape)
    assert final_linear(net, example) == layer
    with FeatureHook(net, layer) as hook, torch.no_grad():
        logits, feats = hook(net, example)
        torch.testing.assert_close(hook.linear(feats), logits)
        torch.testing.assert_close(hook.head().logits(feats).float(), logits,
                                   atol=1e-5, rtol=1e-5)
    assert not net.get_submodule(layer)._forward_hooks  # removed on exit


def test_resnet18_features_are_the_pooled_trunk():
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None).eval()
    trunk = copy.deepcopy(net)
    trunk.fc = nn.Identity()
    images = torch.rand(3, 3, 64, 64)
    with FeatureHook(net, final_linear(net, images[:1])) as hook:
        logits, feats = extract(hook, net, [images[:2], images[2:]])
    with torch.no_grad():
        torch.testing.assert_close(feats, trunk(images))
        torch.testing.assert_close(logits, net(images))


class Reordered(nn.Module):
    """The classifier is registered before the layer that feeds it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 3)
        self.proj = nn.Linear(64, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.proj(x.flatten(1))))


def test_final_linear_follows_execution_order_and_names_can_be_overridden():
    net = Reordered()
    x = torch.rand(2, 1, 8, 8)
    assert final_linear(net, x) == "fc"
    with FeatureHook(net, "proj") as hook:  # an override: the input of another linear layer
        _, feats = hook(net, x)
    torch.testing.assert_close(feats, x.flatten(1))
    with pytest.raises(ValueError, match=r"no module 'head'.*fc, proj"):
        FeatureHook(net, "head")
    conv_head = nn.Sequential(nn.Conv2d(1, 3, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with pytest.raises(ValueError, match=r"no nn\.Linear layer produces the logits"):
        final_linear(conv_head, x)
    with pytest.raises(ValueError, match=r"is a Conv2d, not an nn\.Linear"):
        FeatureHook(conv_head, "0")


def test_sidecar_feature_layer_reaches_the_model_metadata(tmp_path):
    torch.manual_seed(0)
    save_file(build_arch("digits_cnn", num_classes=10).state_dict(), tmp_path / "m.safetensors")
    sidecar = tmp_path / "m.toml"
    sidecar.write_text('arch = "digits_cnn"\nnum_classes = 10\nmean = [0.3]\nstd = [0.4]\n'
                       'feature_layer = "fc"\n')
    ref = make_ref(tmp_path / "m.safetensors", tmp_path, {}, {})
    assert ref.external()["feature_layer"] == ("fc", str(sidecar))  # keys the stored results
    assert load_model(ref).meta["feature_layer"] == "fc"
    sidecar.write_text('arch = "digits_cnn"\nfeature_layer = 3\n')
    with pytest.raises(CheckpointError, match="feature_layer"):
        make_ref(tmp_path / "m.safetensors", tmp_path, {}, {})


# ---- the `ood` task ----

def zoo_ctx(name: str = "erm", cache: InputCache | None = None, meta: dict | None = None
            ) -> TaskContext:
    loaded = load_model(make_ref(ZOO / f"{name}.safetensors", ZOO, {}, {}))
    return TaskContext(model=loaded.model, data=read_digits(split="test"), seed=0,
                       device=torch.device("cpu"), batch_size=600, progress=False,
                       meta={**loaded.meta, **(meta or {})},
                       cache=cache if cache is not None else InputCache())


def run_records(ctx: TaskContext, **params):
    task = get_task("ood")
    resolved = resolve_params(task, {"sets": {"uniform": "uniform"}, "ood_limit": 100,
                                     "bootstrap": 0, "histogram_bins": 0, **params}, "test")
    return task.run(ctx, resolved)


def task_features(model: nn.Module, layer: str, images: torch.Tensor) -> torch.Tensor:
    """Features by a hand-made hook, independent of `ood.features`."""
    seen = []
    handle = model.get_submodule(layer).register_forward_hook(
        lambda _m, inputs, _o: seen.append(inputs[0]))
    with torch.no_grad():
        model(images)
    handle.remove()
    return seen[0].double()


def test_task_scores_match_references_on_the_zoo():
    ctx = zoo_ctx()
    records, metrics = run_records(ctx, scorers=["msp", *FEATURE_SCORERS], train_limit=500)
    train = read_digits(split="train")
    train = train.subset(stratified_subset(train.labels, 500, 0))
    noise = oodsets.uniform(100, 1, (8, 8), 0, ood_task.TEST_STREAM, lazy=False).images
    f_train = task_features(ctx.model, "net.fc", train.images.float()).numpy()
    f_test = task_features(ctx.model, "net.fc", ctx.data.images.float()).numpy()
    f_noise = task_features(ctx.model, "net.fc", noise.float() / 255
                            if noise.dtype == torch.uint8 else noise).numpy()
    w = ctx.model.net.fc.weight.detach().double().numpy()
    b = ctx.model.net.fc.bias.detach().double().numpy()
    for test, where in ((f_test, "in_distribution"), (f_noise, "uniform")):
        expected = {
            "mahalanobis": ref_mahalanobis(f_train, train.labels, test, 10),
            "knn": ref_knn(f_train, test, 50),
            "vim": ref_vim(f_train, test, w, b, 32),
            "react": ref_react(f_train, test, w, b, 90),
            **{f"ash_{v}": ref_ash(test, w, b, v, p)
               for v, p in detectors.ASH_PERCENTILES.items()},
        }
        for scorer, reference in expected.items():
            got = records.one(scorer=scorer, ood_set=where)["score"]
            np.testing.assert_allclose(got, reference, rtol=1e-6, atol=2e-5,
                                       err_msg=f"{scorer} on {where}")
    facts = records.facts
    assert facts["feature_layer"] == "fc" and facts["train_split"] == "train"
    assert facts["train_n"] == 500 and facts["knn_k"] == 50 and facts["vim_dim"] == 32
    assert facts["react_percentile"] == 90 and facts["ash_b_percentile"] == 65
    assert facts["react_threshold"] == pytest.approx(np.percentile(f_train.ravel(), 90),
                                                     rel=1e-6)
    auroc = {m.conditions["scorer"]: m.value for m in metrics
             if m.metric == "auroc" and m.conditions["ood_set"] == "uniform"}
    assert set(auroc) == {"msp", *FEATURE_SCORERS}
    # the logit scorers' records do not change when feature scorers join them
    plain, _ = run_records(zoo_ctx(), scorers=["msp"])
    for where in ("in_distribution", "uniform"):
        np.testing.assert_array_equal(plain.one(scorer="msp", ood_set=where)["score"],
                                      records.one(scorer="msp", ood_set=where)["score"])


def test_fit_is_cached_per_checkpoint_and_training_data(monkeypatch):
    loads = []
    real = ood_task.FeatureFit.load
    monkeypatch.setattr(ood_task.FeatureFit, "load",
                        lambda self, ctx: loads.append(self) or real(self, ctx))
    cache = InputCache()
    first, _ = run_records(zoo_ctx(cache=cache), scorers=["knn"], train_limit=300)
    again, _ = run_records(zoo_ctx(cache=cache), scorers=["knn"], train_limit=300)
    assert len(loads) == 1  # same weights, same training subset: fitted once
    np.testing.assert_array_equal(first.one(scorer="knn", ood_set="uniform")["score"],
                                  again.one(scorer="knn", ood_set="uniform")["score"])
    run_records(zoo_ctx("mixup", cache=cache), scorers=["knn"], train_limit=300)
    run_records(zoo_ctx(cache=cache), scorers=["knn"], train_limit=200)
    assert len(loads) == 3  # another checkpoint, another subset
    run_records(zoo_ctx(cache=cache), scorers=["ash_s"])
    assert len(loads) == 3  # ASH fits nothing


def two_layer_ctx(meta: dict) -> TaskContext:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    return TaskContext(model=NormalizedModel(net, [0.3], [0.4]).eval(),
                       data=read_digits(split="test"), seed=0, device=torch.device("cpu"),
                       batch_size=600, progress=False, meta=meta)


def test_feature_layer_override_from_the_checkpoint_metadata():
    auto, _ = run_records(two_layer_ctx({}), scorers=["knn"], train_limit=200)
    ctx = two_layer_ctx({"feature_layer": "1"})
    records, _ = run_records(ctx, scorers=["knn"], train_limit=200)
    assert auto.facts["feature_layer"] == "3" and records.facts["feature_layer"] == "1"
    train = read_digits(split="train")
    train = train.subset(stratified_subset(train.labels, 200, 0))
    # the input of layer "1" is the normalized, flattened image
    expected = ref_knn(((train.images - 0.3) / 0.4).flatten(1).double().numpy(),
                       ((ctx.data.images - 0.3) / 0.4).flatten(1).double().numpy(), 50)
    np.testing.assert_allclose(records.one(scorer="knn", ood_set="in_distribution")["score"],
                               expected, atol=2e-5)
    with pytest.raises(SuiteError, match=r"no module 'net\.9'"):
        run_records(two_layer_ctx({"feature_layer": "9"}), scorers=["knn"])


@pytest.mark.parametrize(("params", "message"), [
    ({"scorers": ["mahalanobis"], "train_limit": 5}, "train_limit = 5.*every class"),
    ({"scorers": ["knn"], "train_limit": 20}, "k = 50 needs 1 <= k <= 20"),
    ({"scorers": ["vim"], "vim_dim": 64}, "principal dimension"),
    ({"scorers": ["ash_p"], "ash_p_percentile": 100}, "keep at least one"),
    ({"scorers": ["react"], "train_split": "test"}, "evaluated images"),
    ({"scorers": ["knn"], "train_split": "extra"}, "has the splits"),
])
def test_task_refuses_settings_that_do_not_fit(params, message):
    with pytest.raises(SuiteError, match=message):
        run_records(zoo_ctx(), **params)


def test_feature_scorers_are_registered_for_ood_only():
    resolve_params(get_task("ood"), {"scorers": FEATURE_SCORERS}, "test")
    with pytest.raises(SuiteError, match="not a function of"):
        resolve_params(get_task("selective"), {"scorers": ["knn"]}, "test")
    ood = next(t for t in load_suite("digits").tasks if t.name == "ood")
    assert {"knn", "mahalanobis"} <= set(ood.params["scorers"])
