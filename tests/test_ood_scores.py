"""OOD scores: logit scores vs scipy, ODIN vs a transcription of ODIN's normalized-space recipe."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import logsumexp, softmax
from torch import nn

from ood.metrics import tnr_at_tpr95
from ood.scores import energy, maxlogit, msp, odin, odin_gradient_sign, tune_odin

MEAN, STD = torch.tensor([0.2, 0.5, 0.7]), torch.tensor([0.3, 0.25, 0.2])


class Normalized(nn.Module):
    """[0, 1] images in, normalization inside (as the harness wraps every model)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net((images - MEAN.view(1, 3, 1, 1)) / STD.view(1, 3, 1, 1))


def small_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(24, 5)).eval()


def odin_in_normalized_space(net: nn.Module, images: torch.Tensor, temperature: float,
                             eps: float) -> np.ndarray:
    """ODIN as its reference code does it: gradient w.r.t. the *normalized* input, sign as
    (grad >= 0) * 2 - 1, divided by the channel std, subtracted eps times from the normalized
    input; score = max softmax(f / T) in float64."""
    x = ((images - MEAN.view(1, 3, 1, 1)) / STD.view(1, 3, 1, 1)).requires_grad_(True)
    out = net(x) / temperature
    nn.functional.cross_entropy(out, out.argmax(1), reduction="sum").backward()
    gradient = ((x.grad >= 0).float() - 0.5) * 2 / STD.view(1, 3, 1, 1)
    with torch.no_grad():
        logits = net(x - eps * gradient).double().numpy()
    return softmax(logits / temperature, axis=1).max(axis=1)


def test_logit_scores_match_scipy():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 5, (50, 7))
    logits[0] = [30, 0, 0, 0, 0, 0, -20]  # float32 softmax gives exactly 1.0, float64 does not
    t = torch.from_numpy(logits).float()
    z = t.double().numpy()
    assert msp(t) == pytest.approx(softmax(z, axis=1).max(1), rel=1e-12)
    assert msp(t)[0] < 1.0  # no float32 saturation
    assert msp(z) == pytest.approx(msp(t), rel=1e-15)  # tensors and arrays alike
    assert maxlogit(t) == pytest.approx(z.max(1), rel=1e-12)
    assert energy(t) == pytest.approx(logsumexp(z, axis=1), rel=1e-12)
    assert energy(t, 2.5) == pytest.approx(2.5 * logsumexp(z / 2.5, axis=1), rel=1e-12)
    assert msp(t).dtype == np.float64
    with pytest.raises(ValueError, match="temperature"):
        energy(t, 0.0)


def test_odin_matches_the_normalized_space_recipe_with_pixel_eps():
    net = small_net()
    images = torch.rand(16, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    for temperature, eps in ((1000.0, 0.0014), (1.0, 0.004), (10.0, 0.0)):
        ours = odin(Normalized(net), images, temperature, eps)
        reference = odin_in_normalized_space(net, images, temperature, eps)
        assert ours == pytest.approx(reference, rel=1e-6, abs=1e-9)


def test_odin_perturbation_raises_the_score_and_does_not_depend_on_batching():
    model = Normalized(small_net(2))
    images = torch.rand(12, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    whole = odin(model, images, 1.0, 0.002)
    one_by_one = np.concatenate([odin(model, images[i:i + 1], 1.0, 0.002) for i in range(12)])
    assert whole == pytest.approx(one_by_one, rel=1e-6)
    # the step descends the cross-entropy of the predicted class: MSP goes up
    assert (whole >= odin(model, images, 1.0, 0.0) - 1e-9).all()
    sign = odin_gradient_sign(model, images, 1.0)
    assert set(sign.unique().tolist()) <= {-1.0, 1.0}
    assert all(p.grad is None for p in model.parameters())  # no parameter gradients left over


def test_tune_odin_returns_the_first_best_grid_point():
    model = Normalized(small_net(4))
    gen = torch.Generator().manual_seed(5)
    id_images = torch.rand(40, 3, 8, 8, generator=gen) * 0.5 + 0.25
    ood_images = torch.rand(30, 3, 8, 8, generator=gen)
    temperatures, eps_grid = [1.0, 10.0, 1000.0], [0.0, 0.002, 0.004]
    temperature, eps, table = tune_odin(model, id_images, ood_images, 16,
                                        temperatures=temperatures, eps_grid=eps_grid)
    brute = {(t, e): tnr_at_tpr95(odin(model, id_images, t, e), odin(model, ood_images, t, e))
             for t in temperatures for e in eps_grid}
    assert table == pytest.approx(brute)
    best = max(brute.values())
    assert (temperature, eps) == next(key for key, value in brute.items() if value == best)
    with pytest.raises(ValueError, match="at least one"):
        tune_odin(model, id_images, ood_images, 16, temperatures=[])
