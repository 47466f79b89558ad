"""Putting the sEMG clock onto the video's: a trigger pulse, or cross-correlation.

Two numbers matter (docs/emg.md): the *clock offset* (sEMG time of the video's first
frame) and the *physiological lag* (the muscle fires before the movement shows:
100-300 ms for the zygomaticus). A trigger pulse at a known video frame gives the
offset; the lag is then the shift at which the envelopes best explain the video's
expression series. Without a trigger, that best shift is all one can measure: it is
``offset - lag``, which is exactly what aligns muscle activity with the movement it
causes (the split needs a trigger or a known lag).

Cross-correlation with many channels and many expression series: for every candidate
shift, each envelope is regressed on all video series at once (least squares with an
intercept) and the explained variances are summed over channels; the shift with the
largest sum wins. This needs no prior muscle-to-feature pairing and is one QR
decomposition plus a matrix product per shift.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


class SyncError(ValueError):
    """The sEMG cannot be synchronised (no pulse, no usable overlap)."""


def trigger_time(trigger: np.ndarray, rate_hz: float, label: str = "trigger") -> float:
    """Time (s from the first sample) of the first rising edge through half the range."""
    x = np.asarray(trigger, dtype=np.float64)
    lo, hi = np.nanmin(x), np.nanmax(x)
    if not np.isfinite(hi - lo) or hi - lo <= 0:
        raise SyncError(f"channel {label!r} is flat: no trigger pulse")
    above = x > lo + 0.5 * (hi - lo)
    edges = np.flatnonzero(above[1:] & ~above[:-1]) + 1
    if above[0]:
        raise SyncError(
            f"channel {label!r} starts above the pulse threshold: no rising edge before the recording starts"
        )
    if edges.size == 0:
        raise SyncError(f"channel {label!r} has no rising edge")
    return float(edges[0]) / rate_hz


def offset_from_trigger(trigger: np.ndarray, rate_hz: float, frame: int, fps: float, label: str = "trigger") -> float:
    """Clock offset: sEMG time of video frame 0, from a pulse that marks ``frame``."""
    return trigger_time(trigger, rate_hz, label) - frame / fps


@dataclass(frozen=True)
class ShiftScan:
    """Explained variance (summed over channels) per candidate ``shifts_s``; ``best_s``."""

    shifts_s: np.ndarray
    score: np.ndarray

    @property
    def best_s(self) -> float:
        return float(self.shifts_s[int(np.nanargmax(self.score))])


def _projector(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f = np.asarray(features, dtype=np.float64)
    valid: np.ndarray = np.asarray(np.isfinite(f).all(axis=1))
    z = f[valid] - f[valid].mean(axis=0)
    std = z.std(axis=0)
    z = z[:, std > 1e-12] / std[std > 1e-12]
    q, _ = np.linalg.qr(z)
    return q, valid


def scan_shifts(
    envelope_at: Callable[[np.ndarray], np.ndarray],
    features: np.ndarray,
    fps: float,
    centre_s: float,
    max_lag_s: float,
    step_s: float | None = None,
    bounds_s: tuple[float, float] | None = None,
) -> ShiftScan:
    """Score shifts ``centre_s ± max_lag_s``: ``envelope_at(times_s)`` gives envelopes
    ``(len(times), C)`` on the sEMG clock; ``features`` ``(T, F)`` are the video's
    series at frame ``t`` (time ``t / fps``). The envelope for frame ``t`` under shift
    ``s`` is read at ``s + t / fps``. Default step: a fifth of a frame. ``bounds_s``: the shifts at which
    the whole video lies inside the sEMG file (others are not scored)."""
    q, valid = _projector(features)
    if q.shape[0] < 3 or q.shape[1] == 0:
        raise SyncError("the video's expression series have too few valid frames to cross-correlate")
    step = 1.0 / (5.0 * fps) if step_s is None else step_s
    shifts = centre_s + np.arange(-max_lag_s, max_lag_s + step / 2, step)
    if bounds_s is not None:
        shifts = shifts[(shifts >= bounds_s[0] - 1e-9) & (shifts <= bounds_s[1] + 1e-9)]
    if shifts.size == 0:
        raise SyncError(f"no shift within {centre_s:g} ± {max_lag_s:g} s keeps the video inside the sEMG file")
    t = np.flatnonzero(valid) / fps
    score = np.empty(len(shifts))
    for i, s in enumerate(shifts):
        y = envelope_at(s + t)
        y = y - y.mean(axis=0)
        total = (y * y).sum(axis=0)
        explained = ((q.T @ y) ** 2).sum(axis=0)
        score[i] = float(np.sum(explained[total > 0] / total[total > 0]))
    return ShiftScan(shifts, score)
