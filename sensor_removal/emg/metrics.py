"""Scores of a mapping per channel: Pearson r, R², lag of the peak cross-correlation,
and DTW (the project's :func:`evaluation.metrics.timeseries.dtw_distance`).

R² is ``1 - SS_res / SS_tot`` on the held-out frames (it can be negative: worse than
predicting the mean), as in the literature that predicted EMG RMS from OpenFace AUs
(R² 0.72-0.79). The lag is the shift (s) at which the prediction correlates best with
the measurement; positive: the prediction lags. DTW runs on both series divided by the
measured series' standard deviation, so that channels of different µV scale compare.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: Search range of the lag (s).
MAX_LAG_S = 1.0


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, float) - np.mean(a), np.asarray(b, float) - np.mean(b)
    den = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else math.nan


def r2(measured: np.ndarray, predicted: np.ndarray) -> float:
    y = np.asarray(measured, float)
    tot = float(((y - y.mean()) ** 2).sum())
    return 1.0 - float(((y - np.asarray(predicted, float)) ** 2).sum()) / tot if tot > 0 else math.nan


def peak_lag_s(measured: np.ndarray, predicted: np.ndarray, fps: float, max_lag_s: float = MAX_LAG_S) -> float:
    """Shift (s) of ``predicted`` against ``measured`` with the highest correlation."""
    n = len(measured)
    best, lag = -np.inf, math.nan
    for k in range(-int(max_lag_s * fps), int(max_lag_s * fps) + 1):
        a, b = (measured[: n - k], predicted[k:]) if k >= 0 else (measured[-k:], predicted[: n + k])
        if len(a) < 3:
            continue
        r = pearson(a, b)
        if np.isfinite(r) and r > best:
            best, lag = r, k / fps
    return lag


def dtw_scaled(measured: np.ndarray, predicted: np.ndarray) -> float:
    from evaluation.metrics.timeseries import dtw_distance

    s = float(np.std(measured)) or 1.0
    return dtw_distance(np.asarray(measured) / s, np.asarray(predicted) / s)


def channel_scores(
    measured: Sequence[np.ndarray],
    predicted: Sequence[np.ndarray],
    names: Sequence[str],
    fps: float,
    valid: Sequence[np.ndarray] | None = None,
) -> list[dict]:
    """One row per channel over all held-out takes: r and R² on the pooled valid frames,
    lag and DTW per take then averaged (a lag does not cross take boundaries)."""
    rows = []
    for c, name in enumerate(names):
        ms = [np.asarray(m)[:, c] for m in measured]
        ps = [np.asarray(p)[:, c] for p in predicted]
        vs = [np.ones(len(m), bool) for m in ms] if valid is None else [np.asarray(v, bool) for v in valid]
        m_all = np.concatenate([m[v] for m, v in zip(ms, vs, strict=True)])
        p_all = np.concatenate([p[v] for p, v in zip(ps, vs, strict=True)])
        rows.append(
            {
                "channel": name,
                "r": pearson(m_all, p_all),
                "r2": r2(m_all, p_all),
                "lag_s": float(np.nanmean([peak_lag_s(m, p, fps) for m, p in zip(ms, ps, strict=True)])),
                "dtw": float(np.nanmean([dtw_scaled(m, p) for m, p in zip(ms, ps, strict=True)])),
            }
        )
    return rows
