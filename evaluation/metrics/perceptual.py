"""Perceptual distances between frame sets: LPIPS and a fast, exact FID (paper Sec. 4.2).

The paper compares videos by LPIPS (AlexNet variant) and FID (Inception-v3 pool
features, sets of N = 128 frames). Both are torchmetrics :class:`~torchmetrics.Metric` s
here so that the evaluation protocol and a training callback (validation frames) use the
same code; their states are lists of per-sample tensors with ``dist_reduce_fx="cat"``, so
under DDP ``compute`` sees every rank's samples.

Inputs (``images`` below), one convention for both metrics:

* ``uint8`` arrays or tensors ``(N, H, W, 3)`` (or one ``(H, W, 3)``): RGB frames as the
  project stores them (``sensor_removal.core.video``);
* floating tensors ``(N, 3, H, W)`` in ``[-1, 1]``: model tensors (``sensor_removal.training.data
  .to_tensor``), e.g. generator outputs in a callback.

LPIPS sees ``[-1, 1]`` floats; Inception sees uint8 (torch-fidelity's convention;
floats are rounded to uint8 first, as a saved frame would be).

Fast FID. With centred feature matrices X (n×d) and Y (m×d), Σx = XᵀX/(n−1) and
Σy = YᵀY/(m−1). tr √(Σx Σy) is the sum of the square roots of the eigenvalues of Σx Σy
(real and ≥ 0: Σx Σy is similar to the PSD Σx^½ Σy Σx^½). Its non-zero eigenvalues,
those of Xᵀ(X YᵀY)/((n−1)(m−1)), equal those of (X YᵀY) Xᵀ/((n−1)(m−1)) = M Mᵀ/((n−1)(m−1))
with M = X Yᵀ (n×m) — AB and BA share non-zero eigenvalues — and M Mᵀ is symmetric PSD
with eigenvalues σᵢ(M)². Hence

    tr √(Σx Σy) = Σᵢ σᵢ(X Yᵀ) / √((n−1)(m−1)) = ‖X Yᵀ‖_* / √((n−1)(m−1)),

    FID = ‖μx − μy‖² + ‖X‖_F²/(n−1) + ‖Y‖_F²/(m−1) − 2 ‖X Yᵀ‖_* / √((n−1)(m−1)),

an n×m singular-value problem (128×128) instead of a d×d matrix square root
(2048×2048): O(nmd) instead of O(d³), in float64, with no complex round-off from the
d − n zero eigenvalues. ``tests/test_perceptual.py`` checks it against torchmetrics'
exact ``_compute_fid`` and scipy's ``sqrtm`` (rtol 1e-4).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from evaluation.weight_files import fid_files, lpips_files, require_present
from sensor_removal.core.tensors import to_tensor

#: The paper's FID set size (Sec. 4.2: N = 128).
FID_SET_SIZE: int = 128

ImagesLike = np.ndarray | Tensor


# ------------------------------------------------------------------------ conversions


def _frames(t: Tensor) -> Tensor:
    """uint8 RGB frames as ``(N, H, W, 3)``, shape checked."""
    if t.ndim == 3:
        t = t.unsqueeze(0)
    if t.ndim != 4 or t.shape[-1] != 3:
        raise ValueError(f"uint8 images must be RGB frames (N, H, W, 3), got shape {tuple(t.shape)}")
    return t


def to_float_images(images: ImagesLike) -> Tensor:
    """``images`` (see module docstring) → float ``(N, 3, H, W)`` in ``[-1, 1]``."""
    t = torch.as_tensor(images)
    if t.dtype == torch.uint8:
        return to_tensor(_frames(t))
    if not t.is_floating_point():
        raise ValueError(
            f"images must be uint8 frames (N, H, W, 3) or float tensors (N, 3, H, W) in [-1, 1], got {t.dtype}"
        )
    if t.ndim != 4 or t.shape[1] != 3:
        raise ValueError(f"float images must be (N, 3, H, W) in [-1, 1], got shape {tuple(t.shape)}")
    return t


def to_uint8_images(images: ImagesLike) -> Tensor:
    """``images`` → uint8 ``(N, 3, H, W)`` (Inception's input; floats rounded and clipped
    as a saved frame would be)."""
    t = torch.as_tensor(images)
    if t.dtype == torch.uint8:
        return _frames(t).permute(0, 3, 1, 2).contiguous()
    t = to_float_images(t)
    return t.detach().add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8)


# --------------------------------------------------------------------------- networks


def load_lpips(net: str = "alex", device: str | torch.device = "cpu") -> nn.Module:
    """``lpips.LPIPS(net="alex")`` (the paper's variant), frozen, in eval mode.

    Checks the weight files first (:func:`evaluation.weight_files.lpips_files`): a missing
    AlexNet backbone raises :class:`~evaluation.weight_files.MissingWeightsError` instead of a
    download attempt. The backbone then loads through torchvision's hub cache
    (``$TORCH_HOME/hub/checkpoints``), the linear heads from the lpips package."""
    if net != "alex":
        raise ValueError(f"only LPIPS net='alex' (the paper's variant) is supported, got {net!r}")
    require_present(lpips_files(), ["lpips"])
    import lpips

    with warnings.catch_warnings():
        # lpips calls torchvision with the deprecated `pretrained=`; harmless here.
        warnings.filterwarnings("ignore", message=r".*(pretrained|weight enum).*", category=UserWarning)
        model = lpips.LPIPS(net=net, verbose=False)
    model.eval().requires_grad_(False)
    return model.to(device)


def load_inception(device: str | torch.device = "cpu", antialias: bool = True) -> nn.Module:
    """torchmetrics' Inception-v3 (torch-fidelity's ``FeatureExtractorInceptionV3``, 2048-d
    pool features), loaded through its real code from
    ``$TORCH_HOME/hub/checkpoints/weights-inception-2015-12-05-6726825d.pth``.

    ``antialias=True`` is torchmetrics' default resize to 299 px (torch-fidelity's own
    TF-compatible resize is ``antialias=False``). Weight files are checked first."""
    require_present(fid_files(), ["fid"])
    from torchmetrics.image.fid import NoTrainInceptionV3

    model = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"], antialias=antialias)
    model.requires_grad_(False)
    return model.to(device)


# ---------------------------------------------------------------------- computations


@torch.no_grad()
def lpips_distances(net: nn.Module, images_a: ImagesLike, images_b: ImagesLike, batch_size: int = 16) -> Tensor:
    """LPIPS of each pair ``(images_a[i], images_b[i])`` → float ``(N,)`` on ``net``'s
    device. Both sets need the same length and image size."""
    a, b = to_float_images(images_a), to_float_images(images_b)
    if a.shape != b.shape:
        raise ValueError(f"LPIPS pairs need equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}")
    device = next(net.parameters()).device
    out = []
    for i in range(0, a.shape[0], batch_size):
        d = net(a[i : i + batch_size].to(device), b[i : i + batch_size].to(device))
        out.append(d.reshape(-1).float())
    return torch.cat(out) if out else torch.empty(0, device=device)


Moments = list[tuple[Tensor, Tensor, int]]


def lpips_moments(net: nn.Module, images: ImagesLike, batch_size: int = 16) -> Moments | None:
    """Per LPIPS layer: the sum and the sum of squares of the unit-normalised features
    ``(C, H, W)`` over ``images`` (float64), and the number of images — all that the mean
    LPIPS over *all* pairs of two sets needs (:func:`lpips_all_pairs`). Sums of several
    calls add up (:func:`add_moments`), so a video can be fed in batches. None for no
    images."""
    n = int(to_float_images(images).shape[0])
    return lpips_group_moments(net, images, [np.ones(n, bool)], batch_size)[0]


@torch.no_grad()
def lpips_group_moments(
    net: nn.Module, images: ImagesLike, groups: list[np.ndarray], batch_size: int = 16
) -> list[Moments | None]:
    """:func:`lpips_moments` of several subsets of ``images`` (boolean masks ``groups``,
    e.g. the task segments a frame lies in) from one network pass per image; None for
    an empty group."""
    import lpips

    x = to_float_images(images)
    device = next(net.parameters()).device
    lp: Any = net  # an lpips.LPIPS (untyped): its backbone and input scaling
    out: list[Moments | None] = [None] * len(groups)
    for i in range(0, x.shape[0], batch_size):
        feats = [
            lpips.normalize_tensor(f).double()
            for f in lp.net.forward(lp.scaling_layer(x[i : i + batch_size].to(device)))
        ]
        for g, mask in enumerate(groups):
            m = torch.as_tensor(np.asarray(mask, bool)[i : i + batch_size], device=device)
            if not bool(m.any()):
                continue
            part = [(u[m].sum(0), (u[m] * u[m]).sum(0), int(m.sum())) for u in feats]
            earlier = out[g]
            out[g] = part if earlier is None else add_moments(earlier, part)
    return out


def add_moments(a: Moments, b: Moments) -> Moments:
    """The moments of the union of two frame sets (:func:`lpips_moments`)."""
    return [(s1 + s2, q1 + q2, n1 + n2) for (s1, q1, n1), (s2, q2, n2) in zip(a, b, strict=True)]


def lpips_all_pairs(net: nn.Module, moments_a: Moments, moments_b: Moments) -> float:
    """Mean LPIPS over all ``n_a × n_b`` frame pairs of two sets, exactly, from their
    :func:`lpips_moments`. LPIPS is, per layer, the spatial mean of ``Σ_c w_c (â_c − b̂_c)²``
    (unit-normalised features, non-negative head weights ``w``); averaged over all pairs
    that is ``Σ_c w_c (E[â_c²] + E[b̂_c²] − 2 E[â_c] E[b̂_c])`` per position, because the
    square expands into terms of one set each. One network pass per frame instead of one
    per pair. ``tests/test_perceptual.py`` checks it against the pairwise mean."""
    total = 0.0
    lp: Any = net  # an lpips.LPIPS (untyped): its linear heads
    for lin, (sa, qa, na), (sb, qb, nb) in zip(lp.lins, moments_a, moments_b, strict=True):
        w = lin.model[-1].weight.detach().double().reshape(-1, 1, 1).to(sa.device)
        per_pos = (w * (qa / na + qb / nb - 2.0 * (sa / na) * (sb / nb))).sum(0)
        total += float(per_pos.mean())
    return total


@torch.no_grad()
def inception_features(net: nn.Module, images: ImagesLike, batch_size: int = 32) -> Tensor:
    """2048-d pool features ``(N, 2048)`` (float64) of ``images``."""
    x = to_uint8_images(images)
    device = next(net.parameters()).device
    out = [net(x[i : i + batch_size].to(device)).double() for i in range(0, x.shape[0], batch_size)]
    return torch.cat(out) if out else torch.empty(0, 2048, dtype=torch.float64)


def _as_f64(x: ImagesLike) -> Tensor:
    t = torch.as_tensor(x)
    if t.ndim != 2:
        raise ValueError(f"features must be (n, d), got shape {tuple(t.shape)}")
    return t.to(torch.float64)


def fid_lowrank(features_x: ImagesLike, features_y: ImagesLike) -> float:
    """Exact FID between two feature sets via the n×m nuclear norm (module docstring):
    ``‖μx−μy‖² + ‖X‖²_F/(n−1) + ‖Y‖²_F/(m−1) − 2‖XYᵀ‖_*/√((n−1)(m−1))``, X, Y centred.
    Float64; needs n, m >= 2."""
    x, y = _as_f64(features_x), _as_f64(features_y)
    n, m = x.shape[0], y.shape[0]
    if n < 2 or m < 2:
        raise ValueError(f"FID needs at least 2 samples per set, got {n} and {m}")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature sizes differ: {x.shape[1]} and {y.shape[1]}")
    mx, my = x.mean(0), y.mean(0)
    xc, yc = x - mx, y - my
    trace_term = torch.linalg.svdvals(xc @ yc.T).sum() / ((n - 1) * (m - 1)) ** 0.5
    value = (mx - my).square().sum() + xc.square().sum() / (n - 1) + yc.square().sum() / (m - 1) - 2 * trace_term
    return float(value)


def fid_exact(features_x: ImagesLike, features_y: ImagesLike) -> float:
    """FID with d×d covariances and torchmetrics' ``_compute_fid`` (eigenvalues of
    Σx Σy). O(d³): a reference for tests, not for production."""
    from torchmetrics.image.fid import _compute_fid

    x, y = _as_f64(features_x), _as_f64(features_y)
    return float(_compute_fid(x.mean(0), torch.cov(x.T), y.mean(0), torch.cov(y.T)))


def draw_sets(n: int, set_size: int, num_sets: int, generator: torch.Generator) -> list[Tensor]:
    """``num_sets`` index sets of ``min(set_size, n)`` distinct indices in ``[0, n)``."""
    k = min(set_size, n)
    return [torch.randperm(n, generator=generator)[:k] for _ in range(num_sets)]


def fid_sets(
    features_x: Tensor, features_y: Tensor, set_size: int | None = FID_SET_SIZE, num_sets: int = 1, seed: int = 0
) -> Tensor:
    """Low-rank FID over ``num_sets`` seeded draws of ``set_size`` samples from each side
    (``None``: all samples, one set) → float64 ``(num_sets,)``."""
    if set_size is None:
        return torch.tensor([fid_lowrank(features_x, features_y)], dtype=torch.float64)
    g = torch.Generator().manual_seed(int(seed))
    sx = draw_sets(features_x.shape[0], set_size, num_sets, g)
    sy = draw_sets(features_y.shape[0], set_size, num_sets, g)
    return torch.tensor(
        [fid_lowrank(features_x[a], features_y[b]) for a, b in zip(sx, sy, strict=True)], dtype=torch.float64
    )


# ---------------------------------------------------------------------------- metrics


def _attach_frozen(metric: Metric, name: str, net: nn.Module) -> None:
    """Keep a pretrained network on ``metric`` *outside* its module tree: it follows
    ``.to(device)`` (see the ``_apply`` overrides) but is not part of ``state_dict()``, so
    a LightningModule holding the metric does not save 10-100 MB of fixed ImageNet
    weights in every checkpoint (nor need them to load one)."""
    net.eval().requires_grad_(False)
    object.__setattr__(metric, name, net)


class LPIPSMean(Metric):
    """Mean LPIPS (AlexNet) over image pairs: ``update(images_a, images_b)`` adds the
    pairs ``(images_a[i], images_b[i])``; ``compute()`` returns their mean.

    Per-pair distances are kept (``values``, ``dist_reduce_fx="cat"``), so the result is
    exact under DDP and :meth:`compute_std` is available. Unpaired frame sets (the
    evaluation protocol) are paired by seeded random draws before ``update``. The LPIPS
    network follows ``.to()`` but is not in ``state_dict()`` (checkpoints stay small).
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False
    net: nn.Module  # set by _attach_frozen
    values: list[Tensor] | Tensor  # metric state: the batches' distances (one tensor once synchronised)

    def __init__(self, net: nn.Module | None = None, batch_size: int = 16, **kwargs) -> None:
        super().__init__(**kwargs)
        _attach_frozen(self, "net", load_lpips() if net is None else net)
        self.batch_size = batch_size
        self.add_state("values", default=[], dist_reduce_fx="cat")

    def _apply(self, fn, *args, **kwargs):  # .to(device) etc. also move the frozen network
        out = super()._apply(fn, *args, **kwargs)
        self.net._apply(fn)
        return out

    def update(self, images_a: ImagesLike, images_b: ImagesLike) -> None:
        assert isinstance(self.values, list)  # a list between synchronisations
        self.values.append(lpips_distances(self.net, images_a, images_b, self.batch_size))

    def _all(self) -> Tensor:
        if isinstance(self.values, list) and not self.values:
            raise RuntimeError("LPIPSMean: no pairs were added (call update first)")
        return dim_zero_cat(self.values)

    def compute(self) -> Tensor:
        return self._all().mean()

    def compute_std(self) -> Tensor:
        """Standard deviation (ddof 1) of this process's per-pair distances (not
        synchronised across DDP ranks; :meth:`compute` is)."""
        v = self._all()
        return v.std() if v.numel() > 1 else torch.tensor(float("nan"))


class FIDLowRank(Metric):
    """FID between ``real`` and ``fake`` images with the exact low-rank formula
    (module docstring). ``update(real, fake)`` adds Inception features of either side
    (one may be ``None``); ``compute()`` returns the mean FID over ``num_sets`` seeded
    draws of ``set_size`` samples per side (the paper: N = 128; ``None``: all samples).

    Features are kept per sample (``dist_reduce_fx="cat"``) because the low-rank form
    needs them, not only their sums; 2048 floats per frame. Pass ``feature_extractor``
    to share one Inception between metrics (default: :func:`load_inception`); it follows
    ``.to()`` but is not in ``state_dict()``.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False
    inception: nn.Module  # set by _attach_frozen
    # Metric states: the batches' features (one tensor each once synchronised).
    real_features: list[Tensor] | Tensor
    fake_features: list[Tensor] | Tensor

    def __init__(
        self,
        feature_extractor: nn.Module | None = None,
        set_size: int | None = FID_SET_SIZE,
        num_sets: int = 1,
        seed: int = 0,
        batch_size: int = 32,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        _attach_frozen(self, "inception", load_inception() if feature_extractor is None else feature_extractor)
        self.set_size, self.num_sets, self.seed, self.batch_size = set_size, num_sets, seed, batch_size
        self.add_state("real_features", default=[], dist_reduce_fx="cat")
        self.add_state("fake_features", default=[], dist_reduce_fx="cat")

    def _apply(self, fn, *args, **kwargs):  # .to(device) etc. also move the frozen network
        out = super()._apply(fn, *args, **kwargs)
        self.inception._apply(fn)
        return out

    def features(self, images: ImagesLike) -> Tensor:
        return inception_features(self.inception, images, self.batch_size)

    def update(self, real: ImagesLike | None, fake: ImagesLike | None) -> None:
        self.update_features(
            None if real is None else self.features(real), None if fake is None else self.features(fake)
        )

    def update_features(self, real: Tensor | None, fake: Tensor | None) -> None:
        """Add precomputed features (:meth:`features`), e.g. one reference set shared by
        several metrics, so Inception runs once per frame."""
        if real is not None:
            assert isinstance(self.real_features, list)  # a list between synchronisations
            self.real_features.append(real)
        if fake is not None:
            assert isinstance(self.fake_features, list)
            self.fake_features.append(fake)

    def compute_all(self) -> Tensor:
        """FID of every draw, float64 ``(num_sets,)``, from this process's states (not
        synchronised across DDP ranks and not cached; :meth:`compute` is both)."""
        if any(isinstance(s, list) and not s for s in (self.real_features, self.fake_features)):
            raise RuntimeError("FIDLowRank: both real and fake features are needed (call update first)")
        x, y = dim_zero_cat(self.real_features), dim_zero_cat(self.fake_features)
        return fid_sets(x.cpu(), y.cpu(), self.set_size, self.num_sets, self.seed)

    def compute(self) -> Tensor:
        return self.compute_all().mean()
