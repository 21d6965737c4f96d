"""OOD detectors on penultimate features (see `ood.features`), higher score = more in-distribution.

Each is a fit on in-distribution training features (none for ASH) and a score of (N, D)
features; those that recompute logits from altered features take the final layer (`Head`).
Arithmetic is float64 except KNN's search, which runs in the features' dtype (float32 from a
model: distances to about 1e-6) because it is the one cost that grows with train x test size.

- ``mahalanobis``: Lee et al. 2018 without input preprocessing, as OpenOOD's MDS: class means
  and one tied covariance (maximum likelihood, divided by N) of the class-centred training
  features, its pseudo-inverse; score = -min_c (z - mu_c)' P (z - mu_c).
- ``knn``: Sun et al. 2022: features scaled to unit L2 norm (train and test); score = minus
  the Euclidean distance to the k-th nearest training feature (k = 50, the paper's CIFAR-10
  setting), by exact search (a chunked matrix product). OpenOOD negates the squared distance,
  pytorch-ood returns the distance: the same order, so the same metrics.
- ``vim``: Wang et al. 2022: origin u = -pinv(W) b; principal space = the `dim` leading
  eigenvectors of the covariance of z - u (divided by N); alpha = mean max training logit /
  mean training residual norm; score = logsumexp(logits) - alpha * |residual of z - u|.
  Default `dim` (`vim_dim`): 1000 for D >= 2048 and 512 for D >= 768 (the ViM code's values
  for ResNet-50 / BiT and ViT features), else D / 2 (OpenOOD's 256 for ResNet-18's 512).
- ``react``: Sun et al. 2021: features clipped above the `percentile` (90) of all training
  feature values (numpy's linear interpolation), then energy logsumexp(W z + b).
- ``ash``: Djurisic et al. 2023, on the pooled penultimate features, which is where OpenOOD
  applies it and where the authors' README example puts it (after the average pool): per
  sample, all but the largest k = D - round(D * percentile / 100) values (round half to
  even, as their code's np.round) are set to 0; ASH-P keeps the k as they are, ASH-B sets
  each to sum(z) / k, ASH-S scales them by exp(sum(z) / sum(kept)); then energy. Ties at the
  cut keep the lower feature index (a stable sort), so results do not depend on the device's
  top-k. Defaults: ASH-B 65, ASH-P 90, ASH-S 90 (`ASH_PERCENTILES`). The method assumes
  non-negative (post-ReLU) features.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray

from ood.features import Head

__all__ = [
    "ASH_PERCENTILES",
    "KNN_K",
    "REACT_PERCENTILE",
    "KNNFit",
    "MahalanobisFit",
    "ViMFit",
    "ash",
    "ash_scores",
    "default_vim_dim",
    "fit_knn",
    "fit_mahalanobis",
    "fit_vim",
    "knn_scores",
    "mahalanobis_scores",
    "react_scores",
    "react_threshold",
    "vim_scores",
]

KNN_K = 50
REACT_PERCENTILE = 90.0
ASH_PERCENTILES = {"b": 65.0, "p": 90.0, "s": 90.0}
_KNN_BLOCK = 1 << 25  # similarity entries per chunk of test points (128 MiB in float32)
_ROWS = 8192  # test points per chunk of the Mahalanobis score


def _matrix(features: torch.Tensor | np.ndarray, name: str = "features") -> torch.Tensor:
    """(N, D) features as a CPU tensor (dtype kept), checked."""
    x = torch.as_tensor(features).detach().cpu()
    if x.dim() != 2 or x.shape[1] == 0:
        raise ValueError(f"{name} must have shape (N, D) with D >= 1, got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} hold NaN or infinite values")
    return x


def _energy(logits: torch.Tensor) -> NDArray[np.float64]:
    """Negative free energy at temperature 1, logsumexp over classes, as float64 numpy."""
    return torch.logsumexp(logits.double(), dim=1).numpy()


@dataclass(frozen=True)
class MahalanobisFit:
    """Class means (C, D) and the precision (D, D) of the tied covariance, float64."""

    means: torch.Tensor
    precision: torch.Tensor


def fit_mahalanobis(features: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray,
                    num_classes: int) -> MahalanobisFit:
    """Class means and the pseudo-inverse of the tied (class-centred, divided by N)
    covariance of ID training features; every class in 0..num_classes-1 must occur."""
    x = _matrix(features).double()
    y = torch.as_tensor(labels).long().cpu()
    if y.shape != (len(x),):
        raise ValueError(f"labels must have shape ({len(x)},), got {tuple(y.shape)}")
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1}")
    counts = torch.bincount(y, minlength=num_classes)
    if (counts == 0).any():
        missing = torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(f"Mahalanobis needs training features of every class; none of "
                         f"class(es) {missing}")
    means = torch.zeros(num_classes, x.shape[1], dtype=torch.float64)
    means.index_add_(0, y, x)
    means /= counts[:, None].double()
    centred = x - means[y]
    covariance = centred.T @ centred / len(x)
    return MahalanobisFit(means, torch.linalg.pinv(covariance, hermitian=True))


def mahalanobis_scores(fit: MahalanobisFit, features: torch.Tensor | np.ndarray
                       ) -> NDArray[np.float64]:
    """-min over classes of the squared Mahalanobis distance to the class mean."""
    x = _matrix(features).double()
    projected = fit.means @ fit.precision  # (C, D): P mu_c (P symmetric)
    offsets = (projected * fit.means).sum(dim=1)  # mu_c' P mu_c
    scores = []
    for start in range(0, len(x), _ROWS):
        z = x[start:start + _ROWS]
        distances = ((z @ fit.precision) * z).sum(dim=1, keepdim=True) - 2 * z @ projected.T \
            + offsets
        scores.append(-distances.min(dim=1).values)
    return torch.cat(scores).numpy()


@dataclass(frozen=True)
class KNNFit:
    """The ID training features scaled to unit L2 norm (N, D), in their own dtype."""

    bank: torch.Tensor


def _unit(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit L2 norm (a zero row stays zero, as pytorch-ood's clamp does)."""
    return torch.nn.functional.normalize(x, dim=1, eps=1e-12)


def fit_knn(features: torch.Tensor | np.ndarray) -> KNNFit:
    """The L2-normalized training features KNN searches."""
    return KNNFit(_unit(_matrix(features)))


def knn_scores(fit: KNNFit, features: torch.Tensor | np.ndarray, k: int = KNN_K
               ) -> NDArray[np.float64]:
    """Minus the L2 distance from each normalized feature to its k-th nearest normalized
    training feature, by exact search in chunks (|a - b|^2 = 2 - 2 a.b on unit vectors)."""
    bank = fit.bank
    if not 1 <= k <= len(bank):
        raise ValueError(f"k = {k} needs 1 <= k <= {len(bank)} (the training features)")
    queries = _unit(_matrix(features)).to(bank.dtype)
    if queries.shape[1] != bank.shape[1]:
        raise ValueError(f"features have {queries.shape[1]} dimensions, the fit "
                         f"{bank.shape[1]}")
    rows = max(1, _KNN_BLOCK // len(bank))
    kth = [(queries[start:start + rows] @ bank.T).topk(k, dim=1).values[:, -1]
           for start in range(0, len(queries), rows)]
    similarity = torch.cat(kth).double()
    return -torch.sqrt((2 - 2 * similarity).clamp(min=0)).numpy()


def default_vim_dim(feature_dim: int) -> int:
    """ViM's principal-space dimension for D-dimensional features: 1000 for D >= 2048, 512
    for D >= 768 (the ViM code's choices), else D // 2 (OpenOOD's ResNet-18 setting)."""
    if feature_dim >= 2048:
        return 1000
    return 512 if feature_dim >= 768 else feature_dim // 2


@dataclass(frozen=True)
class ViMFit:
    """ViM's origin u (D,), the residual (null) space basis (D, D - dim) and alpha."""

    origin: torch.Tensor
    residual_basis: torch.Tensor
    alpha: float
    dim: int


def fit_vim(features: torch.Tensor | np.ndarray, head: Head, dim: int | None = None) -> ViMFit:
    """ViM's principal space (the `dim` leading eigenvectors of the covariance of the training
    features about u = -pinv(W) b) and alpha = mean max logit / mean residual norm."""
    x = _matrix(features).double()
    dim = default_vim_dim(x.shape[1]) if dim is None else dim
    if not 0 < dim < x.shape[1]:
        raise ValueError(f"ViM's principal dimension must lie in 1..{x.shape[1] - 1} for "
                         f"{x.shape[1]}-dimensional features, got {dim}")
    origin = -torch.linalg.pinv(head.weight) @ head.bias
    centred = x - origin
    _, vectors = torch.linalg.eigh(centred.T @ centred / len(x))  # ascending eigenvalues
    basis = vectors[:, :x.shape[1] - dim]
    residual = (centred @ basis).norm(dim=1).mean()
    alpha = float(head.logits(x).max(dim=1).values.mean() / residual)
    return ViMFit(origin, basis, alpha, dim)


def vim_scores(fit: ViMFit, features: torch.Tensor | np.ndarray, head: Head
               ) -> NDArray[np.float64]:
    """Energy of the logits minus alpha times the norm of the feature's residual."""
    x = _matrix(features).double()
    virtual = fit.alpha * ((x - fit.origin) @ fit.residual_basis).norm(dim=1)
    return _energy(head.logits(x)) - virtual.numpy()


def react_threshold(features: torch.Tensor | np.ndarray,
                    percentile: float = REACT_PERCENTILE) -> float:
    """ReAct's clipping value: the `percentile` of all training feature values."""
    if not 0 < percentile <= 100:
        raise ValueError(f"ReAct's percentile must lie in (0, 100], got {percentile}")
    return float(np.percentile(_matrix(features).numpy().ravel(), percentile))


def react_scores(features: torch.Tensor | np.ndarray, head: Head, threshold: float
                 ) -> NDArray[np.float64]:
    """Energy of the logits of the features clipped above `threshold`."""
    return _energy(head.logits(_matrix(features).double().clamp(max=threshold)))


def ash(features: torch.Tensor | np.ndarray, variant: str, percentile: float) -> torch.Tensor:
    """ASH-`variant` (b, p or s) of (N, D) features pruned at `percentile`, float64."""
    if variant not in ASH_PERCENTILES:
        raise ValueError(f"ASH variant must be one of {', '.join(ASH_PERCENTILES)}, "
                         f"got {variant!r}")
    x = _matrix(features).double()
    dims = x.shape[1]
    keep = dims - round(dims * percentile / 100)
    if not 0 <= percentile <= 100 or keep < 1:
        raise ValueError(f"ASH's percentile must lie in [0, 100) and keep at least one of the "
                         f"{dims} features, got {percentile}")
    order = torch.sort(x, dim=1, descending=True, stable=True).indices[:, :keep]
    kept = torch.zeros_like(x, dtype=torch.bool).scatter_(1, order, True)
    pruned = torch.where(kept, x, 0.0)
    if variant == "p":
        return pruned
    total = x.sum(dim=1, keepdim=True)
    if variant == "b":
        return kept * (total / keep)
    remaining = pruned.sum(dim=1, keepdim=True)
    scale = torch.where(remaining != 0, total / remaining, 0.0)  # all kept 0: scale unused
    return pruned * torch.exp(scale)


def ash_scores(features: torch.Tensor | np.ndarray, head: Head, variant: str,
               percentile: float | None = None) -> NDArray[np.float64]:
    """Energy of the logits of the ASH-shaped features (default percentile per variant)."""
    percentile = ASH_PERCENTILES.get(variant, 0.0) if percentile is None else percentile
    return _energy(head.logits(ash(features, variant, percentile)))
