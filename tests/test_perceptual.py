"""LPIPS and the fast FID (paper Sec. 4.2), and their offline weights.

The networks load stand-in weights (``fake_torch_weights`` in conftest) through the real
lpips / torchvision / torchmetrics / torch-fidelity code; the numbers are meaningless,
the plumbing and shapes are not.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch

from evaluation import available_metrics
from evaluation.metrics.perceptual import (
    FIDLowRank,
    LPIPSMean,
    fid_exact,
    fid_lowrank,
    fid_sets,
    inception_features,
    load_inception,
    load_lpips,
    to_float_images,
    to_uint8_images,
)
from evaluation.weight_files import MissingWeightsError, WeightsError
from evaluation.weights import check_weights, fetch_weights, required_weights

pytestmark = pytest.mark.usefixtures("single_thread")


def _features(n: int, m: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = rng.normal(size=(m, d)) * 1.3 + 0.2
    y[:, :10] += rng.normal(size=(m, 10)) * 3  # a few strongly different directions
    return x, y


def _scipy_fid(x: np.ndarray, y: np.ndarray) -> float:
    cx, cy = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean = scipy.linalg.sqrtm(cx @ cy)
    return float(((x.mean(0) - y.mean(0)) ** 2).sum() + np.trace(cx) + np.trace(cy) - 2 * np.trace(covmean).real)


# ------------------------------------------------------------------------ fast FID


@pytest.mark.numerics
def test_fid_lowrank_equals_exact_n128_d2048() -> None:
    """The paper's setting: two sets of 128 Inception-sized (2048-d) features."""
    x, y = _features(128, 128, 2048)
    fast = fid_lowrank(x, y)
    exact = fid_exact(x, y)  # torchmetrics' _compute_fid on the d x d covariances
    assert fast == pytest.approx(exact, rel=1e-4)
    assert fast > 0


@pytest.mark.numerics
def test_fid_lowrank_equals_exact_unequal_sizes() -> None:
    x, y = _features(60, 90, 256, seed=1)
    fast = fid_lowrank(x, y)
    assert fast == pytest.approx(fid_exact(x, y), rel=1e-4)
    assert fast == pytest.approx(_scipy_fid(x, y), rel=1e-4)
    # Symmetric, zero for identical sets, and independent of the input dtype.
    assert fid_lowrank(y, x) == pytest.approx(fast, rel=1e-10)
    assert abs(fid_lowrank(x, x)) < 1e-8 * fast
    assert fid_lowrank(torch.from_numpy(x).float(), torch.from_numpy(y).float()) == pytest.approx(fast, rel=1e-5)


@pytest.mark.numerics
def test_fid_lowrank_equals_exact_unequal_sizes_d2048() -> None:
    x, y = _features(100, 160, 2048, seed=2)
    assert fid_lowrank(x, y) == pytest.approx(fid_exact(x, y), rel=1e-4)


def test_fid_sets_draws_are_seeded() -> None:
    x, y = (torch.from_numpy(a) for a in _features(40, 50, 16, seed=3))
    a = fid_sets(x, y, set_size=8, num_sets=4, seed=1)
    assert a.shape == (4,) and a.dtype == torch.float64
    assert torch.equal(a, fid_sets(x, y, set_size=8, num_sets=4, seed=1))
    assert not torch.equal(a, fid_sets(x, y, set_size=8, num_sets=4, seed=2))
    assert fid_sets(x, y, set_size=None).item() == pytest.approx(fid_lowrank(x, y))
    with pytest.raises(ValueError, match="at least 2"):
        fid_lowrank(x[:1], y)


# ---------------------------------------------------------------------- conversions


@pytest.mark.numerics
def test_image_conventions() -> None:
    frames = np.random.default_rng(0).integers(0, 256, size=(3, 8, 10, 3), dtype=np.uint8)
    f = to_float_images(frames)
    assert f.shape == (3, 3, 8, 10) and f.min() >= -1 and f.max() <= 1
    assert torch.equal(to_uint8_images(f), to_uint8_images(frames))  # round trip is exact
    assert to_uint8_images(frames[0]).shape == (1, 3, 8, 10)
    with pytest.raises(ValueError, match="N, H, W, 3"):
        to_float_images(np.zeros((2, 3, 8, 8), np.uint8))  # uint8 must be channel-last
    with pytest.raises(ValueError, match="N, 3, H, W"):
        to_float_images(torch.zeros(2, 8, 8, 3))  # floats must be channel-first


# -------------------------------------------------------------------------- weights


def test_missing_weights_name_file_and_command(torch_home: Path) -> None:
    with pytest.raises(MissingWeightsError) as err:
        load_lpips()
    msg = str(err.value)
    assert str(torch_home / "alexnet-owt-7be5be79.pth") in msg
    assert "python -m evaluation fetch-weights --metrics lpips" in msg
    with pytest.raises(MissingWeightsError) as err:
        check_weights(["lpips", "fid"])
    msg = str(err.value)
    assert str(torch_home / "weights-inception-2015-12-05-6726825d.pth") in msg
    assert "--metrics lpips,fid" in msg
    assert {w.path.name for w in err.value.missing} == {
        "alexnet-owt-7be5be79.pth",
        "weights-inception-2015-12-05-6726825d.pth",
    }
    assert "lpips" not in available_metrics() and "fid" not in available_metrics()
    with pytest.raises(MissingWeightsError):
        FIDLowRank()
    check_weights(["groundtruth"])  # needs nothing


def test_stand_in_weights_are_found_but_refused_by_fetch(fake_torch_weights: Path) -> None:
    files = check_weights(["lpips", "fid"])
    assert {f.path.name for f in files} >= {"alexnet-owt-7be5be79.pth", "weights-inception-2015-12-05-6726825d.pth"}
    assert {"lpips", "fid"} <= set(available_metrics())
    assert all(w.path.parent == fake_torch_weights for w in required_weights("fid"))
    # fetch-weights verifies present files by the sha256 in their name: stand-ins fail
    # loudly (and nothing is downloaded).
    with pytest.raises(WeightsError, match="stand-in or corrupt"):
        fetch_weights(["fid"], log=lambda _: None)


# --------------------------------------------------------------- networks, metrics


def test_lpips_mean_through_real_loading(fake_torch_weights: Path) -> None:
    net = load_lpips()
    assert not any(p.requires_grad for p in net.parameters())
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, size=(5, 32, 32, 3), dtype=np.uint8)
    b = rng.integers(0, 256, size=(5, 32, 32, 3), dtype=np.uint8)
    metric = LPIPSMean(net=net, batch_size=2)
    metric.update(a, b)
    metric.update(to_float_images(a[:2]), to_float_images(a[:2]))  # identical pairs: 0
    assert metric.values[0].shape == (5,) and torch.all(metric.values[1] == 0)
    value = metric.compute()
    assert value.ndim == 0 and torch.isfinite(value)
    assert value.item() == pytest.approx(torch.cat(metric.values).mean().item())
    assert metric.compute_std() > 0
    assert metric._reductions["values"].__name__ == "dim_zero_cat"  # DDP: gather every pair
    # The frozen network follows .to() but stays out of checkpoints.
    assert not any(k.startswith("net.") for k in metric.state_dict())
    assert metric.to(torch.float64).net.lin0.model[-1].weight.dtype == torch.float64
    metric.to(torch.float32)
    with pytest.raises(ValueError, match="equal shapes"):
        metric.update(a, b[:3])


def test_lpips_all_pairs_equals_the_mean_over_every_pair(fake_torch_weights: Path) -> None:
    """The moment form of the all-pairs mean LPIPS equals the brute-force mean over all
    n_a x n_b pairs, also when a set is fed in batches."""
    from evaluation.metrics.perceptual import add_moments, lpips_all_pairs, lpips_distances, lpips_moments

    net = load_lpips()
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, size=(5, 48, 48, 3), dtype=np.uint8)
    b = rng.integers(0, 256, size=(4, 48, 48, 3), dtype=np.uint8)
    ia, ib = np.meshgrid(np.arange(5), np.arange(4), indexing="ij")
    brute = lpips_distances(net, a[ia.ravel()], b[ib.ravel()], batch_size=8).double().mean().item()
    ma = add_moments(lpips_moments(net, a[:2]), lpips_moments(net, a[2:], batch_size=2))
    value = lpips_all_pairs(net, ma, lpips_moments(net, b))
    assert value == pytest.approx(brute, rel=1e-5) and value > 0
    assert lpips_all_pairs(net, lpips_moments(net, a[:1]), lpips_moments(net, a[:1])) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_fid_metric_through_real_loading(fake_torch_weights: Path) -> None:
    # Inception runs at 299 px: keep the frame count tiny (9 forward passes in all).
    net = load_inception()
    rng = np.random.default_rng(1)
    real = rng.integers(0, 256, size=(3, 24, 24, 3), dtype=np.uint8)
    fake = np.clip(real.astype(int) + 60, 0, 255).astype(np.uint8)
    feats = inception_features(net, real)
    assert feats.shape == (3, 2048) and feats.dtype == torch.float64
    metric = FIDLowRank(feature_extractor=net, set_size=2, num_sets=2, seed=0, batch_size=2)
    metric.update(real, None)
    metric.update(None, to_float_images(fake))  # [-1, 1] tensors are accepted too
    assert torch.allclose(metric.real_features[0], feats)
    per_draw = metric.compute_all()
    assert per_draw.shape == (2,)
    assert metric.compute().item() == pytest.approx(per_draw.mean().item())
    assert metric._reductions["real_features"].__name__ == "dim_zero_cat"
    assert not any(k.startswith("inception.") for k in metric.state_dict())
    metric.set_size = None  # all samples, one set (compute() caches; compute_all() does not)
    assert metric.compute_all().item() == pytest.approx(fid_lowrank(feats, metric.fake_features[0]))
    assert metric.compute_all().item() > 0
    assert abs(fid_lowrank(feats, feats)) < 1e-9
    metric.reset()
    with pytest.raises(RuntimeError, match="call update first"):
        metric.compute()
