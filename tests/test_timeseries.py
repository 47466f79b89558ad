"""DTW and best-shift MAPE of facial time series (paper Sec. 4.3)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from evaluation.timeseries import (
    au_features_for_average,
    clean_series,
    compare_series,
    dtw_distance,
    mape_best_shift,
    mape_by_shift,
    max_shift_frames,
)


def _loop_mape(ref: np.ndarray, oth: np.ndarray, S: int, eps: float, min_overlap: float) -> np.ndarray:
    """The straightforward definition, one shift at a time (reference for the vectorised one)."""
    r, o = clean_series(ref).values, clean_series(oth).values
    need = max(1, math.ceil(min_overlap * min((~np.isnan(r)).sum(), (~np.isnan(o)).sum())))
    out = []
    for s in range(-S, S + 1):
        t0, t1 = max(0, -s), min(len(r), len(o) - s)
        if t1 <= t0:
            out.append(np.nan)
            continue
        a, b = r[t0:t1], o[t0 + s : t1 + s]
        m = ~np.isnan(a) & ~np.isnan(b)
        out.append(np.mean(np.abs(a[m] - b[m]) / np.maximum(np.abs(a[m]), eps)) if m.sum() >= need else np.nan)
    return np.array(out)


def test_dtw_hand_computed() -> None:
    # a = [1, 3, 4], b = [1, 2, 4, 6]; squared differences and the cumulative DP table:
    #        1   2   4   6            1   2   4   6
    #   1 [  0   1   9  25 ]   1 [   0   1  10  35 ]
    #   3 [  4   1   1   9 ]   3 [   4   1   2  11 ]
    #   4 [  9   4   0   4 ]   4 [  13   5   1   5 ]
    # dtaidistance returns sqrt of the path cost: sqrt(5).
    assert dtw_distance([1, 3, 4], [1, 2, 4, 6]) == pytest.approx(math.sqrt(5), rel=1e-12)
    assert dtw_distance([0, 1, 2], [0, 1, 2]) == 0.0
    # Elastic: a stretched copy has distance 0.
    assert dtw_distance([0, 1, 2, 1], [0, 0, 1, 1, 2, 2, 1]) == 0.0


def test_dtw_nan_rule() -> None:
    a = np.array([0.0, 1.0, np.nan, 3.0, 4.0])  # short gap: interpolated to 2.0
    assert dtw_distance(a, [0, 1, 2, 3, 4]) == 0.0
    long_gap = np.array([0.0, 1.0] + [np.nan] * 10 + [5.0])  # dropped: [0, 1, 5]
    assert dtw_distance(long_gap, [0, 1, 5], max_gap_frames=5) == 0.0
    assert math.isnan(dtw_distance([np.nan, np.nan, 1.0], [1.0, 2.0]))
    c = clean_series(long_gap, max_gap_frames=5)
    assert (c.n_nan, c.n_interpolated, c.n_remaining) == (10, 0, 10)
    c = clean_series(a)
    assert (c.n_nan, c.n_interpolated, c.n_remaining) == (1, 1, 0) and c.values[2] == 2.0


@pytest.mark.parametrize("k", [0, 7, -13, 40])
def test_mape_recovers_shift(k: int) -> None:
    rng = np.random.default_rng(3)
    base = np.abs(np.cumsum(rng.normal(size=700))) * 0.02 + 0.05
    ref = base[100:600]
    other = base[100 - k : 600 - k]  # other[t] = base[100 + t - k]: lags ref by k frames
    mape, shift = mape_best_shift(ref, other, max_shift_frames=60)
    assert shift == k
    assert mape == pytest.approx(0.0, abs=1e-6)
    shifts, all_mape = mape_by_shift(ref, other, 60)
    assert shifts[0] == -60 and shifts[-1] == 60 and all_mape.shape == (121,)
    assert np.nanmin(all_mape[shifts != k]) > 1e-3


def test_mape_matches_loop_with_nans_and_unequal_lengths() -> None:
    rng = np.random.default_rng(5)
    for lr, lo in [(300, 300), (250, 400), (400, 260)]:
        r = np.abs(np.cumsum(rng.normal(size=lr))) * 0.05
        o = np.abs(np.cumsum(rng.normal(size=lo))) * 0.05
        r[rng.random(lr) < 0.05] = np.nan
        o[50:70] = np.nan
        shifts, m = mape_by_shift(r, o, 120)
        np.testing.assert_allclose(m, _loop_mape(r, o, 120, 0.01, 0.5), rtol=1e-5, equal_nan=True)


def test_mape_epsilon_rule_on_zeros() -> None:
    ref = np.zeros(50)
    other = np.full(50, 0.02)
    # |0 - 0.02| / max(|0|, eps) = 0.02 / eps
    assert mape_best_shift(ref, other, 5, eps=0.01)[0] == pytest.approx(2.0)
    assert mape_best_shift(ref, other, 5, eps=0.1)[0] == pytest.approx(0.2)
    # Above eps the plain relative error applies.
    assert mape_best_shift(np.full(50, 0.5), np.full(50, 0.6), 5)[0] == pytest.approx(0.2)
    # Constant series: ties go to shift 0.
    assert mape_best_shift(np.full(50, 0.5), np.full(50, 0.6), 5)[1] == 0
    with pytest.raises(ValueError):
        mape_best_shift(ref, other, 5, eps=0.0)


def test_min_overlap_excludes_far_shifts() -> None:
    ref = np.linspace(0.1, 1.0, 100)
    _, m = mape_by_shift(ref, ref, 80, min_overlap=0.5)
    shifts = np.arange(-80, 81)
    assert np.isnan(m[np.abs(shifts) > 50]).all()
    assert np.isfinite(m[np.abs(shifts) <= 50]).all()


def test_shift_range_from_fps_and_au43_excluded() -> None:
    assert max_shift_frames(30.0) == 600
    assert max_shift_frames(15.0, 20.0) == 300
    assert au_features_for_average(["AU01", "AU43", "happiness", "AU12"]) == ["AU01", "AU12"]


def test_compare_series_per_feature() -> None:
    fps = 10.0
    t = np.arange(400)
    ref = pd.DataFrame({"AU01": 0.5 + 0.4 * np.sin(t / 9.0), "happiness": 0.5 + 0.4 * np.cos(t / 13.0)})
    other = ref.shift(12).bfill()  # 1.2 s later
    other.loc[200:202, "AU01"] = np.nan
    out = compare_series(ref, other, fps, ["AU01", "happiness"])
    assert list(out["feature"]) == ["AU01", "happiness"]
    assert list(out.columns[:5]) == ["feature", "dtw", "mape", "best_shift_frames", "best_shift_s"]
    assert (out["best_shift_frames"] == 12).all()
    assert out["best_shift_s"].tolist() == pytest.approx([1.2, 1.2])
    assert out.loc[0, "nan_other"] == 3 and out.loc[1, "nan_other"] == 0
    assert (out["mape"] < 0.01).all()
    with pytest.raises(KeyError):
        compare_series(ref, other, fps, ["AU02"])


def test_dtw_window_constrains_warping() -> None:
    a = np.r_[np.zeros(10), 1.0, np.zeros(10)]
    b = np.r_[np.zeros(16), 1.0, np.zeros(4)]  # the peak 6 frames later
    assert dtw_distance(a, b) == 0.0  # free warping aligns the peaks
    assert dtw_distance(a, b, window=2) > 0.0  # a 2-frame band cannot
