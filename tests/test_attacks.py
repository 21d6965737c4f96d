"""The `attacks` library against independent references: few-line formulas, foolbox, and a linear
model whose minimal adversarial distances are known in closed form."""

import foolbox as fb
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from tinynets import tiny_cnn

from attacks import sanity
from attacks.common import (
    BudgetError,
    attack_loss,
    attack_space,
    check_adversarial,
    perturbation_norms,
    unit_noise,
)
from attacks.gradient import fgm, fgsm, ifgsm, pgd
from attacks.minimal import carlini_wagner, ddn, deepfool
from benchmark.checkpoints import NormalizedModel
from benchmark.datasets import read_digits
from benchmark.reductions.attacks import not_monotone

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def digits():
    """150 test digits (images in [0, 1], labels)."""
    data = read_digits(split="test")
    return data.images[:150].float(), torch.from_numpy(data.labels[:150])


@pytest.fixture(scope="module")
def net():
    """tinynets.tiny_cnn trained (seeded, full batch Adam, 100 steps) on the digits train split."""
    torch.manual_seed(0)
    model = tiny_cnn()
    train = read_digits(split="train")
    x, y = train.images.float(), torch.from_numpy(train.labels)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(100):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model.eval()


def error(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(1) != y).double().mean().item()


def test_trained_net_is_a_useful_victim(net, digits):
    x, y = digits
    assert error(net, x, y) < 0.15


def assert_same_signed_step(ours: torch.Tensor, expected: torch.Tensor, grad: torch.Tensor,
                            logits: torch.Tensor, y: torch.Tensor) -> None:
    """Equal up to float rounding wherever the gradient's sign is determined by the maths.

    The input gradient of cross-entropy scales with 1 - p(true class), which float32 knows only
    to about 6e-8: for a sample predicted with 1 - p < 1e-4 the whole gradient is float noise,
    and elsewhere an element below 1e-3 of its sample's largest is too. There another CPU's
    kernels (or another reduction order) may flip sign(); everywhere else the steps must agree.
    """
    shape = (-1, *[1] * (grad.dim() - 1))
    determined_sample = (1 - logits.softmax(dim=1).gather(1, y[:, None])).view(shape) > 1e-4
    determined = determined_sample & (grad.abs() > 1e-3 * grad.abs().flatten(1).amax(1)
                                      .view(shape))
    differ = (ours - expected).abs() > 1e-6
    assert not (differ & determined).any()
    assert determined_sample.sum() >= 10  # the comparison still covers a few dozen samples


def test_fgsm_equals_the_few_line_reference(net, digits):
    x, y = digits
    eps = 0.1
    # Reference: Goodfellow et al., mean-reduced cross-entropy (the sign ignores the scale).
    xr = x.clone().requires_grad_(True)
    F.cross_entropy(net(xr), y).backward()
    expected = (x + eps * xr.grad.sign()).clamp(0, 1)
    logits = net(x).detach()
    assert_same_signed_step(fgsm(net, x, y, eps), expected, xr.grad, logits, y)
    _, foolbox_adv, _ = fb.attacks.FGSM()(fb.PyTorchModel(net, bounds=(0, 1)), x, y,
                                          epsilons=eps)
    assert_same_signed_step(fgsm(net, x, y, eps), foolbox_adv, xr.grad, logits, y)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_without_random_start_matches_foolbox(net, digits, norm):
    x, y = digits
    eps, steps = (0.1, 10) if norm == "linf" else (0.8, 10)
    step = 2.5 * eps / steps
    ours = pgd(net, x, y, eps, norm=norm, steps=steps, random_start=False)
    cls = fb.attacks.LinfPGD if norm == "linf" else fb.attacks.L2PGD
    _, theirs, _ = cls(abs_stepsize=step, steps=steps, random_start=False)(
        fb.PyTorchModel(net, bounds=(0, 1)), x, y, epsilons=eps)
    differ = (ours - theirs).abs().flatten(1).amax(1) > 1e-5
    # A sign() of a gradient within float noise of 0 may flip a pixel: allow a rare sample.
    assert differ.sum() <= 2
    assert error(net, ours, y) == pytest.approx(error(net, theirs, y), abs=1 / 150)


def test_l2_fgm_matches_foolbox(net, digits):
    x, y = digits
    _, theirs, _ = fb.attacks.L2FastGradientAttack()(fb.PyTorchModel(net, bounds=(0, 1)), x, y,
                                                     epsilons=0.5)
    assert torch.allclose(fgm(net, x, y, 0.5, norm="l2"), theirs, atol=1e-5)


def test_ifgsm_is_pgd_from_x_with_steps_adding_up_to_eps(net, digits):
    x, y = digits
    assert torch.equal(ifgsm(net, x, y, 0.1, steps=5),
                       pgd(net, x, y, 0.1, steps=5, step_size=0.02, random_start=False))


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_budget_bounds_and_strength(net, digits, norm):
    x, y = digits
    eps = 0.1 if norm == "linf" else 0.8
    adv = pgd(net, x, y, eps, norm=norm, seed=3)
    check_adversarial(x, adv, norm=norm, bounds=(0.0, 1.0), eps=eps)
    assert adv.min() >= 0 and adv.max() <= 1
    assert perturbation_norms(adv - x, norm).max() <= eps + 1e-6
    # iterative >= single step (the default step 2.5 * eps / steps reaches the boundary)
    assert error(net, adv, y) >= error(net, fgm(net, x, y, eps, norm=norm), y)


def test_pgd_error_grows_with_eps(net, digits):
    x, y = digits
    errors = [error(net, pgd(net, x, y, eps), y) for eps in (0.0, 0.02, 0.05, 0.1, 0.2)]
    assert errors == sorted(errors) and errors[-1] > errors[0] + 0.3
    assert not not_monotone([0.0, 0.02, 0.05, 0.1, 0.2], errors)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_random_start_is_seeded_per_sample_not_per_batch(net, digits, norm):
    x, y = digits
    index = torch.arange(100, 100 + len(x))
    whole = pgd(net, x, y, 0.1, norm=norm, seed=7, index=index)
    again = pgd(net, x, y, 0.1, norm=norm, seed=7, index=index)
    assert torch.equal(whole, again)
    parts = torch.cat([pgd(net, x[i:i + 64], y[i:i + 64], 0.1, norm=norm, seed=7,
                           index=index[i:i + 64]) for i in range(0, len(x), 64)])
    assert torch.allclose(whole, parts, atol=1e-5)
    assert not torch.equal(whole, pgd(net, x, y, 0.1, norm=norm, seed=8, index=index))


def test_random_start_is_uniform_in_the_ball():
    linf = unit_noise((3, 4, 4), torch.arange(2000), seed=0, restart=0, norm="linf")
    assert linf.abs().max() <= 1 and abs(linf.mean().item()) < 0.01
    l2 = unit_noise((48,), torch.arange(4000), seed=0, restart=0, norm="l2").flatten(1)
    radius = l2.norm(dim=1).numpy()
    assert radius.max() <= 1
    # uniform in the d-ball: P(radius <= r) = r^d, so radius^d is U(0, 1)
    assert abs(np.mean(radius**48) - 0.5) < 0.03


def test_restarts_keep_the_worst_case(net, digits):
    x, y = digits
    one = pgd(net, x, y, 0.05, seed=1)
    three = pgd(net, x, y, 0.05, seed=1, restarts=3)
    with torch.no_grad():
        wrong1, wrong3 = net(one).argmax(1) != y, net(three).argmax(1) != y
    assert (wrong3 | ~wrong1).all()  # restart 0 is the single run: its breaks stay broken
    assert wrong3.sum() >= wrong1.sum()
    check_adversarial(x, three, norm="linf", bounds=(0.0, 1.0), eps=0.05)


def test_bce_loss_is_manifold_mixups_formula():
    logits = torch.randn(5, 4, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 1])
    p = torch.softmax(logits, 1)
    onehot = F.one_hot(y, 4).double()
    expected = -(onehot * p.log() + (1 - onehot) * (1 - p).log()).sum(1)
    assert torch.allclose(attack_loss(logits, y, "bce"), expected)
    assert torch.allclose(attack_loss(logits, y, "ce"), F.cross_entropy(logits, y,
                                                                         reduction="none"))


def test_normalized_space_fgsm_matches_patchups_formula(net, digits):
    x, y = digits
    model = NormalizedModel(net, [0.3], [0.4])  # [0, 1] images in, as the harness's models
    space = attack_space(model, x, "normalized", [0.3], [0.4])
    eps = 0.2
    ours = fgsm(space.model, space.x, y, eps, bounds=space.bounds)
    # PatchUp's reference: FGSM on the normalized batch z, clamped to the batch's min / max,
    # then the perturbation clamped to eps.
    z = ((x - 0.3) / 0.4).requires_grad_(True)
    F.cross_entropy(model(z * 0.4 + 0.3), y).backward()
    expected = (z + eps * z.grad.sign()).clamp(z.min().item(), z.max().item())
    expected = z + (expected - z).clamp(-eps, eps)
    assert_same_signed_step(ours, expected.detach(), z.grad, model(x).detach(), y)
    assert space.bounds == (z.min().item(), z.max().item())
    assert torch.allclose(space.to_pixels(space.x), x, atol=1e-6)


def test_check_adversarial_fires_on_each_violation():
    x = torch.full((4, 1, 2, 2), 0.5)
    ok = x + 0.1
    check_adversarial(x, ok, norm="linf", bounds=(0.0, 1.0), eps=0.1)
    with pytest.raises(BudgetError, match=r"exceed the budget.*linf"):
        check_adversarial(x, x + 0.1001, norm="linf", bounds=(0.0, 1.0), eps=0.1)
    with pytest.raises(BudgetError, match=r"exceed the budget.*l2"):  # L2 norm of +0.1 x 4 = 0.2
        check_adversarial(x, ok, norm="l2", bounds=(0.0, 1.0), eps=0.19)
    with pytest.raises(BudgetError, match="leave the input bounds"):
        check_adversarial(x, x + 0.6, norm="linf", bounds=(0.0, 1.0), eps=1.0)
    nan = ok.clone()
    nan[2, 0, 0, 0] = float("nan")
    with pytest.raises(BudgetError, match="NaN"):
        check_adversarial(x, nan, norm="linf", bounds=(0.0, 1.0), eps=1.0)


# ------------------------------------------------------------------ minimal-perturbation attacks


class Linear(nn.Module):
    """f(x) = W flatten(x) + b."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.fc = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.fc.weight.copy_(weight)
            self.fc.bias.copy_(bias)

    def forward(self, x):
        return self.fc(x.flatten(1))


@pytest.fixture(scope="module")
def linear_case():
    """A 3-class linear model on 1x4x4 inputs, and points near the box centre it classifies.

    For a linear model the smallest perturbation that leaves class y has size
    min_k (f_y - f_k)(x) / ||w_y - w_k||_dual (L2: the L2 norm; Linf: the L1 norm), as long as
    the step stays inside [0, 1] — guaranteed here: every distance is < 0.2 and every pixel lies
    in [0.3, 0.7].
    """
    gen = torch.Generator().manual_seed(0)
    weight, bias = torch.randn(3, 16, generator=gen), torch.zeros(3)
    model = Linear(weight, bias).eval()
    x = 0.3 + 0.4 * torch.rand(400, 1, 4, 4, generator=gen)
    with torch.no_grad():
        logits = model(x)
    y = logits.argmax(1)
    others = logits.topk(3, dim=1).indices[:, 1:]
    diffs = weight[y][:, None, :] - weight[others]  # (n, 2, 16)
    margins = logits.gather(1, y[:, None]) - logits.gather(1, others)
    l2 = (margins / diffs.norm(dim=2)).min(1).values
    linf = (margins / diffs.abs().sum(dim=2)).min(1).values
    keep = torch.nonzero(l2 < 0.2).flatten()[:120]
    return model, x[keep], y[keep], l2[keep].double(), linf[keep].double()


def test_linear_case_is_nontrivial(linear_case):
    _, x, _, l2, _ = linear_case
    assert len(x) == 120 and l2.median() > 0.03


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_deepfool_finds_the_closed_form_distance(linear_case, norm):
    model, x, y, l2, linf = linear_case
    exact = l2 if norm == "l2" else linf
    result = deepfool(model, x, y, norm=norm)
    assert result.success.all()
    # One linearization step is exact for a linear model: norm = (1 + overshoot) * (d + 1e-4).
    assert torch.allclose(result.norms, 1.02 * (exact + 1e-4), rtol=1e-4, atol=1e-5)


def test_cw_and_ddn_medians_match_the_closed_form(linear_case):
    model, x, y, l2, _ = linear_case
    exact = l2.median().item()
    cw = carlini_wagner(model, x, y, binary_search_steps=9, steps=200)
    assert cw.success.all()
    assert cw.norms.median().item() == pytest.approx(exact, rel=0.03)
    assert (cw.norms >= l2 * (1 - 1e-3)).all()  # nothing beats the exact minimum
    result = ddn(model, x, y, steps=100)
    assert result.success.all()
    # DDN moves its norm by factors 1 +- gamma (0.05): it lands within that of the boundary.
    assert result.norms.median().item() == pytest.approx(exact, rel=0.06)
    assert (result.norms >= l2 * (1 - 1e-3)).all()


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_deepfool_matches_foolbox(net, digits, norm):
    x, y = digits
    ours = deepfool(net, x, y, norm=norm, steps=7)
    cls = fb.attacks.L2DeepFoolAttack if norm == "l2" else fb.attacks.LinfDeepFoolAttack
    theirs, _, _ = cls(steps=7)(fb.PyTorchModel(net, bounds=(0, 1)), x, y, epsilons=None)
    with torch.no_grad():
        theirs_broken = (net(theirs).argmax(1) != y) | (net(x).argmax(1) != y)
    assert torch.equal(ours.success, theirs_broken)
    # DeepFool is chaotic at the boundary: float noise (batch composition, thread count) can
    # flip whether a point counts as crossed at some step. Nearly all points must agree.
    same = (ours.x_adv - theirs).abs().flatten(1).amax(1) <= 1e-5
    assert same[ours.success].double().mean() >= 0.97


@pytest.mark.slow
def test_minimal_attacks_on_a_cnn_agree_with_each_other(net, digits):
    x, y = digits[0][:60], digits[1][:60]
    medians = {
        "deepfool": deepfool(net, x, y).norms.median().item(),
        "ddn": ddn(net, x, y, steps=100).norms.median().item(),
        "cw": carlini_wagner(net, x, y, binary_search_steps=5, steps=100, stepsize=0.05,
                             initial_const=1.0).norms.median().item(),
    }
    # Two gradient-based optimizers (CW, DDN) land within 10 %; DeepFool overshoots a little.
    assert medians["cw"] == pytest.approx(medians["ddn"], rel=0.10)
    assert medians["ddn"] * 0.95 <= medians["deepfool"] <= medians["ddn"] * 1.35


def test_misclassified_points_are_broken_at_distance_zero(linear_case):
    model, x, y, _, _ = linear_case
    wrong = (y + 1) % 3  # every label wrong: all points already misclassified
    for result in (deepfool(model, x, wrong), ddn(model, x, wrong, steps=5)):
        assert result.success.all() and (result.norms == 0).all()
        assert torch.equal(result.x_adv, x)


def test_cw_failures_are_not_counted_as_broken():
    # A constant model can never be fooled: foolbox returns all-zero "adversarials" for the
    # points it never broke; they must come back unbroken at distance +inf.
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2)).eval()
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.copy_(torch.tensor([1.0, 0.0]))
    x = torch.full((3, 1, 2, 2), 0.5)
    result = carlini_wagner(model, x, torch.zeros(3, dtype=torch.long), binary_search_steps=2,
                            steps=5)
    assert not result.success.any() and torch.isinf(result.norms).all()
    assert torch.equal(result.x_adv, x)


# ------------------------------------------------------------------ sanity checks


def test_sanity_checks_fire_on_crafted_models(net, digits):
    x, _ = digits
    noisy = nn.Sequential(net, nn.Dropout(0.5)).train()
    assert sanity.outputs_randomized(noisy, x)
    assert not sanity.outputs_randomized(net, x)
    with torch.no_grad():
        logits = net(x)
    assert sanity.probability_rows(torch.softmax(logits, 1)).all()
    assert not sanity.probability_rows(logits).all()
    assert sanity.zero_gradients(torch.zeros(2, 1, 3, 3)).all()
    assert not sanity.zero_gradients(torch.randn(2, 1, 3, 3)).any()
    assert not_monotone([0.1, 0.2, 0.3], [10.0, 30.0, 20.0])
    assert not_monotone([0.3, 0.1, 0.2], [20.0, 10.0, 30.0])  # eps order given freely
    assert not not_monotone([0.3, 0.1, 0.2], [30.0, 10.0, 20.0])


def test_bad_options_are_named():
    x, y = torch.zeros(1, 1, 2, 2), torch.zeros(1, dtype=torch.long)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="norm"):
        pgd(model, x, y, 0.1, norm="l1")
    with pytest.raises(ValueError, match="loss"):
        fgsm(model, x, y, 0.1, loss="mse")
    with pytest.raises(ValueError, match="restarts"):
        pgd(model, x, y, 0.1, restarts=2, random_start=False)
    with pytest.raises(ValueError, match="mean and std"):
        attack_space(model, x, "normalized")
