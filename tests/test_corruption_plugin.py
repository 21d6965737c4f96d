"""A corruption added by plugin: one file and its registration. It is generated, evaluated and
summarized like the catalog's, and never enters the groups, the summaries over categories or
the released sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fixtures import write_cifar10
from fixtures_corruptions import cifar_test_images
from test_corruptions_task import TINY32, _predict, _run, _suite, make_cifar_c

from benchmark.registry import registry
from corruptions.catalog import ALL, select
from corruptions.generate import corrupt, image_rngs, register_corruption

PLUGIN = '''
import numpy as np

from corruptions.generate import register_corruption


@register_corruption("negative", severities=[0.1, 0.2, 0.3, 0.4, 0.5], category="colour")
def negative(images, amount, rngs):
    """Blend each image toward its negative by `amount`."""
    return images + amount * (255.0 - 2.0 * images)
'''


@pytest.fixture
def cifar_c(tmp_path: Path):
    return make_cifar_c(tmp_path)


def _negative(images: np.ndarray, amount: float) -> np.ndarray:
    """The plugin's formula, written again: clipped and truncated as every generator's output."""
    x = images.astype(np.float64)
    return np.clip(x + amount * (255.0 - 2.0 * x), 0, 255).astype(np.uint8)


@register_corruption("test_speckle", severities=[1, 2, 3, 4, 5], category="noise")
def _speckle(images, level, rngs):
    """Test generator: adds seeded noise, one generator per image."""
    noise = np.stack([rng.normal(0, level, images.shape[1:]) for rng in rngs])
    return images + noise


def test_registration_needs_five_constants_and_never_joins_the_groups():
    with pytest.raises(ValueError, match="5 severity constants needed, got 2"):
        register_corruption("short", severities=[1, 2])
    entry = registry("corruption").entry("test_speckle")
    assert entry.info == {"category": "noise", "released": False,
                          "severities": (1, 2, 3, 4, 5)}
    assert select("all") == list(ALL) and "test_speckle" not in select("benchmark")
    assert select(["test_speckle", "fog"]) == ["fog", "test_speckle"]
    assert select(["test_speckle", "fog"], ["noise"]) == ["test_speckle"]
    with pytest.raises(ValueError, match="did you mean 'test_speckle'"):
        select(["test_speckel"])


def test_a_plugin_generator_is_seeded_per_image_like_the_catalogs():
    images = np.random.default_rng(0).integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    whole = corrupt(images, "test_speckle", 4, seed=3)
    parts = np.concatenate([corrupt(images[i:i + 2], "test_speckle", 4, seed=3,
                                    indices=range(i, i + 2)) for i in (0, 2, 4)])
    assert np.array_equal(whole, parts)  # batch-independent
    rngs = image_rngs(3, "test_speckle", 4, range(6))
    noise = np.stack([rng.normal(0, 4, (8, 8, 3)) for rng in rngs])
    assert np.array_equal(whole, np.clip(images + noise, 0, 255).astype(np.uint8))
    assert not np.array_equal(whole, corrupt(images, "test_speckle", 4, seed=4))
    with pytest.raises(ValueError, match=r"severity must be 1\.\.5"):
        corrupt(images, "test_speckle", 0)


def test_a_plugin_corruption_is_generated_evaluated_and_summarized(tmp_path: Path, cifar_c):
    data_root, states, labels = cifar_c
    (tmp_path / "negative.py").write_text(PLUGIN)
    table = ('corruptions = ["negative", "brightness"]\nseverities = [1, 5]\n'
             'generate = true\npath = "generated-C"\n')
    suite = _suite(tmp_path / "s.toml", "cifar10", table, 10, 32)
    assert _run(tmp_path, data_root, suite, "--plugin", str(tmp_path / "negative.py")) == 0
    images, _ = cifar_test_images(write_cifar10(tmp_path / "again", n_train_per_batch=2,
                                                n_test=40, seed=3))  # the fixture's images
    stored = np.load(data_root / "generated-C" / "negative.npy")
    for severity, amount in ((1, 0.1), (5, 0.5)):
        rows = stored[(severity - 1) * 40:severity * 40]
        assert np.array_equal(rows, _negative(images, amount))
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    cells = results[(results.task == "corruptions") & (results.metric == "top1_err")
                    & (results.corruption == "negative")]
    assert set(cells.category) == {"colour"} and set(cells.source) == {"generated"}
    for name, state in states.items():
        for severity, amount in ((1, 0.1), (5, 0.5)):
            predicted = _predict(state, TINY32, 10, _negative(images, amount))
            row = cells[(cells.checkpoint == name) & (cells.severity == severity)]
            assert row.value.item() == pytest.approx(100 * np.mean(predicted != labels))
    means = results[(results.task == "corruptions") & (results.metric == "corruption_err")]
    assert set(means.corruption) == {"negative", "brightness"}
    assert "mean_corruption_err" not in set(results.metric)  # not the 15 benchmark ones


def test_a_released_set_refuses_a_plugin_corruption(tmp_path: Path, cifar_c, capsys):
    data_root, _, _ = cifar_c
    suite = _suite(tmp_path / "s.toml", "cifar10", 'corruptions = ["test_speckle"]\n', 10, 32)
    assert _run(tmp_path, data_root, suite) == 1
    err = capsys.readouterr().err
    assert "CIFAR-10-C: a released set, which does not hold test_speckle" in err
    assert "generate = true" in err
