"""Comparing facial-analysis time series: DTW distance and MAPE at the best shift.

Paper Sec. 4.3: py-feat gives one time series per Action Unit and per emotion for every
video; two videos of the same task (N1 vs N2, N vs S, N vs C) are compared per series
with dynamic time warping (``dtaidistance``, C implementation) and with the mean absolute
percentage error at the best temporal shift within ±20 s (the subject does not start the
tasks at the same moment in two videos). AU43 (blink) is excluded from AU averages.

NaN rule (frames where py-feat found no face). Both measures first fill *short* gaps by
linear interpolation (runs of at most ``max_gap_frames`` NaNs with valid frames on both
sides; default 5 frames, 1/6 s at 30 fps, shorter than a blink). What stays NaN is then
handled per measure:

* DTW drops the remaining NaN frames (DTW is elastic, so a dropped run is simply not
  matched); series left with fewer than 2 frames give NaN.
* MAPE keeps frame positions (a shift needs the time axis) and leaves remaining NaN
  frames out of the mean for every shift; the overlap of a shift counts only frames valid
  in both series.

:func:`clean_series` reports how many frames were interpolated and dropped so that the
counts can go into the results.

MAPE definition: ``mean_t |ref[t] - other[t + s]| / max(|ref[t]|, eps)`` over the
frames ``t`` of the reference segment at shift ``s`` (``s > 0``: ``other`` lags ``ref`` by
``s`` frames), as a fraction (multiply by 100 for percent). AU and emotion values from
py-feat are probabilities in [0, 1] that are often ~0, where a plain percentage error
explodes; ``eps`` (default 0.01, i.e. 1 % of the probability scale) bounds the
denominator.

Full segment at every shift (ours).
Comparing only the ``L − |s|`` frames that stay inside both segments makes the minimum
over ±20 s favour large shifts with short overlaps: a mean over fewer frames scatters
more, and the search picks the low outliers (on unrelated noise series of L = 1,200
frames and ±600 shifts, 66 % of the picks had |s| >= 500; docs/fidelity.md has the
measurements). So the partner series is read *outside* its segment — the whole video's
series is there (``other_context`` / ``other_start`` of :func:`compare_series` and
:func:`shift_curve`) — and every shift compares all ``L`` frames of the reference
segment. Only where a shift reaches past the partner video's first or last frame does
the comparison fall back to the frames that exist; a shift must still cover
``min_overlap`` (default :data:`MIN_OVERLAP` = half) of the reference segment's valid
frames. The frames used at the chosen shift are reported (``overlap``; ``n`` of the
``mape`` rows in ``results.csv``).

Why ``eps = 0.01``: the paper does not say how it treats reference values at or near
zero. A floor of one hundredth of the probability scale leaves the errors of clearly
active series plain relative errors, while a resting AU at 0.001 no longer turns a 0.01
deviation into a 1,000 % error. ``tests/test_timeseries.py`` checks that the ranking
N–C < N–S holds for every ``eps`` in [1e-3, 1e-1] on series the project produces (the
landmark geometry of the synthetic subject's normal, sensor and ground-truth videos).

Shift (:data:`SHIFT_MODES`). The delay between two recordings is one number, so by
default one shift per compared pair is chosen *jointly*: the shift that minimises the
mean of the per-series MAPE curves (:func:`joint_best_shift`) over exactly the series
that a table averages (``shift_features`` of :func:`compare_series`: the AUs without
AU43 for Table 2, the emotions for Table 3, the geometry features for the landmark
table), applied to every series of that group. Searching each series on its own
(``shift="per_series"``, an option) fits noise and flatters worse videos.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

#: Paper Sec. 4.3: the tasks are compared within ±20 s.
MAX_SHIFT_S: float = 20.0
#: Denominator floor of the MAPE (see module docstring).
MAPE_EPS: float = 0.01
#: Longest NaN run (frames) that is filled by linear interpolation.
MAX_GAP_FRAMES: int = 5
#: How the MAPE shift is chosen: one per pair (``joint``, the default) or per series.
SHIFT_MODES: tuple[str, ...] = ("joint", "per_series")
#: Fraction of the reference segment's valid frames that a shift must compare (ours; only
#: shifts past the partner video's ends compare fewer than all of them).
MIN_OVERLAP: float = 0.5
#: The blink AU, excluded from AU averages (paper Sec. 4.3).
EXCLUDED_AUS: tuple[str, ...] = ("AU43",)

_AU_RE = re.compile(r"^AU\d+$")
# Rows of the error matrix per block: keeps the (block x length) temporaries in cache.
_BLOCK_ELEMS = 1 << 16


def is_au(feature: str) -> bool:
    """True for Action Unit columns (``AU01`` ... ``AU43``)."""
    return bool(_AU_RE.match(str(feature)))


def au_features_for_average(features: Sequence[str]) -> list[str]:
    """The AU columns that enter AU averages: all AUs except AU43 (blink), as in the paper."""
    return [f for f in features if is_au(f) and f not in EXCLUDED_AUS]


@dataclass(frozen=True)
class CleanedSeries:
    """A series after the NaN rule: ``values`` (NaNs left only in long gaps), and counts."""

    values: np.ndarray
    n_nan: int  # NaN frames in the input
    n_interpolated: int  # filled by interpolation
    n_remaining: int  # still NaN (dropped by DTW, left out by MAPE)


def clean_series(x: np.ndarray | Sequence[float], max_gap_frames: int = MAX_GAP_FRAMES) -> CleanedSeries:
    """Fill NaN runs of at most ``max_gap_frames`` frames that have valid frames on both
    sides by linear interpolation; leave longer runs and leading/trailing runs NaN."""
    v = np.array(x, dtype=np.float64, copy=True).ravel()
    nan = np.isnan(v)
    n_nan = int(nan.sum())
    if n_nan == 0 or n_nan == v.size or max_gap_frames <= 0:
        return CleanedSeries(v, n_nan, 0, n_nan)
    # Runs of NaN: starts and ends (exclusive).
    d = np.diff(np.concatenate(([0], nan.view(np.int8), [0])))
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    valid_idx = np.flatnonzero(~nan)
    filled = 0
    for s, e in zip(starts, ends, strict=True):  # loop over gaps, not frames
        if s == 0 or e == v.size or e - s > max_gap_frames:
            continue
        t = np.arange(s, e)
        v[s:e] = np.interp(t, valid_idx, v[valid_idx])
        filled += e - s
    return CleanedSeries(v, n_nan, filled, n_nan - filled)


def dtw_distance(
    a: np.ndarray | Sequence[float],
    b: np.ndarray | Sequence[float],
    *,
    max_gap_frames: int = MAX_GAP_FRAMES,
    window: int | None = None,
) -> float:
    """DTW distance between two series (``dtaidistance.dtw.distance_fast``: the C
    implementation; the distance is the square root of the summed squared differences
    along the optimal warping path).

    NaN frames: short gaps interpolated, the rest dropped (module docstring). ``window``
    (frames) is an optional Sakoe-Chiba band; ``None`` (default) is unconstrained DTW,
    as dtaidistance's default. Returns NaN if a series has fewer than 2 valid frames.
    """
    from dtaidistance import dtw

    ca = clean_series(a, max_gap_frames).values
    cb = clean_series(b, max_gap_frames).values
    ca = np.ascontiguousarray(ca[~np.isnan(ca)], dtype=np.float64)
    cb = np.ascontiguousarray(cb[~np.isnan(cb)], dtype=np.float64)
    if ca.size < 2 or cb.size < 2:
        return math.nan
    kwargs = {} if window is None else {"window": int(window)}
    return float(dtw.distance_fast(ca, cb, use_pruning=True, **kwargs))


@dataclass(frozen=True)
class ShiftCurve:
    """MAPE for every shift: ``shifts`` (frames), ``mape`` (NaN where a shift compares
    fewer than the minimum overlap) and ``overlap`` (frames compared at each shift)."""

    shifts: np.ndarray
    mape: np.ndarray
    overlap: np.ndarray


def shift_curve(
    reference: np.ndarray | Sequence[float],
    other: np.ndarray | Sequence[float],
    max_shift_frames: int,
    *,
    eps: float = MAPE_EPS,
    max_gap_frames: int = MAX_GAP_FRAMES,
    min_overlap: float = MIN_OVERLAP,
    other_start: int = 0,
) -> ShiftCurve:
    """MAPE for every shift ``s`` in ``[-max_shift_frames, max_shift_frames]``:
    ``reference[t]`` against ``other[other_start + t + s]`` for every frame ``t`` of the
    reference. Pass the partner's *whole* series as ``other`` and its segment's first
    frame as ``other_start`` so that every shift compares the full segment (module
    docstring); with ``other`` cut to the segment and ``other_start = 0`` a shift
    compares only the frames that stay inside it.

    A shift counts when it compares at least ``min_overlap`` times the valid frames of the
    shorter of ``reference`` and ``other``. Vectorised: the shifted copies of ``other``
    are a strided view (``sliding_window_view`` over a padded copy), evaluated in blocks
    of shifts sized to stay in cache; there is no Python loop over shifts.
    """
    r = clean_series(reference, max_gap_frames).values
    o = clean_series(other, max_gap_frames).values
    S = int(max_shift_frames)
    if S < 0:
        raise ValueError(f"max_shift_frames must be >= 0, got {S}")
    if eps <= 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    lr, lo = r.size, o.size
    shifts = np.arange(-S, S + 1)
    if lr == 0 or lo == 0:
        return ShiftCurve(shifts, np.full(shifts.size, np.nan), np.zeros(shifts.size, np.int64))
    # pad[j] = other[j + other_start - S]; window k (shift s = k - S) is pad[k : k + lr].
    n = lr + 2 * S
    first = int(other_start) - S  # index into other of pad[0]
    lo_i, hi_i = max(0, first), min(lo, first + n)
    r_valid = ~np.isnan(r)
    o_valid = ~np.isnan(o)
    pad = np.zeros(n, np.float32)
    valid = np.zeros(n, np.float32)
    if hi_i > lo_i:
        pad[lo_i - first : hi_i - first] = np.where(o_valid[lo_i:hi_i], o[lo_i:hi_i], 0.0)
        valid[lo_i - first : hi_i - first] = o_valid[lo_i:hi_i]
    windows = sliding_window_view(pad, lr)
    vwindows = sliding_window_view(valid, lr)
    # Weights 1/max(|ref|, eps), zero where ref is NaN.
    w = np.where(r_valid, 1.0 / np.maximum(np.abs(np.nan_to_num(r)), eps), 0.0).astype(np.float32)
    r32 = np.nan_to_num(r).astype(np.float32)
    sums = np.empty(shifts.size, np.float64)
    if r_valid.all() and o_valid.all():  # frames inside the partner video, in closed form
        starts = int(other_start) + shifts  # index into other of reference[0]
        counts = np.minimum(lr, lo - starts) - np.maximum(0, -starts)
    else:  # frames valid in both series, per shift: a correlation of the validity masks
        counts = np.correlate(valid.astype(np.float64), r_valid.astype(np.float64), mode="valid")
    block = max(1, _BLOCK_ELEMS // max(lr, 1))
    for i in range(0, shifts.size, block):  # loop over blocks of shifts, not shifts
        e = np.abs(windows[i : i + block] - r32)
        e *= w
        e *= vwindows[i : i + block]
        sums[i : i + block] = e.sum(axis=1, dtype=np.float64)
    counts = np.rint(np.clip(counts, 0, None)).astype(np.int64)
    need = max(1, int(math.ceil(min_overlap * min(int(r_valid.sum()), int(o_valid.sum())))))
    with np.errstate(invalid="ignore", divide="ignore"):
        mape = np.where(counts >= need, sums / np.maximum(counts, 1), np.nan)
    return ShiftCurve(shifts, mape, counts)


def mape_by_shift(
    reference: np.ndarray | Sequence[float],
    other: np.ndarray | Sequence[float],
    max_shift_frames: int,
    *,
    eps: float = MAPE_EPS,
    max_gap_frames: int = MAX_GAP_FRAMES,
    min_overlap: float = MIN_OVERLAP,
    other_start: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """``(shifts, mape)`` of :func:`shift_curve` (same arguments)."""
    c = shift_curve(
        reference, other, max_shift_frames, eps=eps, max_gap_frames=max_gap_frames, min_overlap=min_overlap,
        other_start=other_start,
    )  # fmt: skip
    return c.shifts, c.mape


def mape_best_shift(
    reference: np.ndarray | Sequence[float],
    other: np.ndarray | Sequence[float],
    max_shift_frames: int,
    *,
    eps: float = MAPE_EPS,
    max_gap_frames: int = MAX_GAP_FRAMES,
    min_overlap: float = MIN_OVERLAP,
    other_start: int = 0,
) -> tuple[float, int]:
    """The smallest MAPE over all shifts within ``±max_shift_frames`` and its shift
    (frames; positive: ``other`` lags ``reference``). ``(nan, 0)`` when no shift has
    enough overlap. See :func:`shift_curve` and the module docstring for the rules."""
    shifts, mape = mape_by_shift(
        reference,
        other,
        max_shift_frames,
        eps=eps,
        max_gap_frames=max_gap_frames,
        min_overlap=min_overlap,
        other_start=other_start,
    )
    k = _argmin_smallest_shift(shifts, mape)  # ties (e.g. constant series): smallest |shift|
    if k is None:
        return math.nan, 0
    return float(mape[k]), int(shifts[k])


def _argmin_smallest_shift(shifts: np.ndarray, values: np.ndarray) -> int | None:
    """Index of the smallest finite value; ties go to the smallest ``|shift|``."""
    if np.all(np.isnan(values)):
        return None
    order = np.argsort(np.abs(shifts), kind="stable")
    return int(order[np.nanargmin(values[order])])


def joint_best_shift(curves: Sequence[np.ndarray], shifts: np.ndarray) -> int | None:
    """The one shift of a recording pair: the index into ``shifts`` that minimises the
    mean of the per-series MAPE curves (:func:`mape_by_shift`). Only shifts at which
    every series has a value count (series with no value at any shift, e.g. a feature
    that is NaN throughout, are left out), so that a shift cannot win by dropping the
    series it fits badly. ``None`` when no shift qualifies. Ties go to the smallest
    ``|shift|``."""
    stack = [np.asarray(c, dtype=np.float64) for c in curves]
    stack = [c for c in stack if not np.all(np.isnan(c))]
    if not stack:
        return None
    return _argmin_smallest_shift(shifts, np.vstack(stack).mean(axis=0))


def max_shift_frames(fps: float, max_shift_s: float = MAX_SHIFT_S) -> int:
    """The shift range in frames for ``fps`` (paper: ±20 s)."""
    return int(round(max_shift_s * fps))


#: Columns of :func:`compare_series`.
COMPARE_COLUMNS: tuple[str, ...] = (
    "feature",
    "dtw",
    "mape",
    "best_shift_frames",
    "best_shift_s",
    "overlap",
    "n_ref",
    "n_other",
    "nan_ref",
    "nan_other",
)


def compare_series(
    df_ref: pd.DataFrame,
    df_other: pd.DataFrame,
    fps: float,
    features: Sequence[str],
    *,
    max_shift_s: float = MAX_SHIFT_S,
    eps: float = MAPE_EPS,
    max_gap_frames: int = MAX_GAP_FRAMES,
    min_overlap: float = MIN_OVERLAP,
    dtw_window_s: float | None = None,
    shift: str = "joint",
    shift_features: Sequence[str] | None = None,
    other_context: pd.DataFrame | None = None,
    other_start: int = 0,
) -> pd.DataFrame:
    """DTW and best-shift MAPE per feature between two per-frame tables (rows = frames of
    one segment, columns = AU / emotion series).

    ``other_context``: the partner's whole series that ``df_other`` was cut from, with
    ``df_other`` starting at its row ``other_start``; the MAPE then reads the partner
    outside its segment so that every shift compares the full reference segment (module
    docstring). Without it only ``df_other`` is read. DTW always compares the two
    segments.

    ``shift="joint"`` (default): one shift for the pair, chosen by
    :func:`joint_best_shift` over ``shift_features`` (default: all ``features``; pass
    exactly the series the table averages), and every feature's MAPE is taken at it (so
    ``best_shift_frames`` is the same in every row); ``"per_series"``: each feature at
    its own best shift.

    Returns one row per feature with :data:`COMPARE_COLUMNS` (``overlap``: frames the
    MAPE compared at its shift; ``nan_*``: NaN frames in the input, i.e. frames without a
    face, before interpolation). ``fps`` sets the shift range (``max_shift_s`` seconds,
    paper: 20). Missing feature columns raise KeyError.
    """
    context = df_other if other_context is None else other_context
    start = 0 if other_context is None else int(other_start)
    missing = [f for f in features if f not in df_ref.columns or f not in df_other.columns or f not in context.columns]
    if missing:
        raise KeyError(f"feature column(s) {missing} missing from the facial-analysis tables")
    if shift not in SHIFT_MODES:
        raise ValueError(f"shift must be one of {SHIFT_MODES}, got {shift!r}")
    steer = list(features) if shift_features is None else list(shift_features)
    if shift == "joint" and not set(steer) <= set(features):
        raise ValueError(f"shift_features {sorted(set(steer) - set(features))} are not among the compared features")
    S = max_shift_frames(fps, max_shift_s)
    window = None if dtw_window_s is None else max(1, int(round(dtw_window_s * fps)))
    curves = {
        f: shift_curve(
            df_ref[f].to_numpy(np.float64),
            context[f].to_numpy(np.float64),
            S,
            eps=eps,
            max_gap_frames=max_gap_frames,
            min_overlap=min_overlap,
            other_start=start,
        )
        for f in features
    }
    joint = joint_best_shift([curves[f].mape for f in steer], np.arange(-S, S + 1)) if shift == "joint" else None
    rows = []
    for f in features:
        a = df_ref[f].to_numpy(dtype=np.float64)
        b = df_other[f].to_numpy(dtype=np.float64)
        c = curves[f]
        k = joint if shift == "joint" else _argmin_smallest_shift(c.shifts, c.mape)
        mape, shift_frames, overlap = (
            (math.nan, 0, 0) if k is None else (float(c.mape[k]), int(c.shifts[k]), int(c.overlap[k]))
        )
        rows.append(
            {
                "feature": f,
                "dtw": dtw_distance(a, b, max_gap_frames=max_gap_frames, window=window),
                "mape": mape,
                "best_shift_frames": shift_frames,
                "best_shift_s": shift_frames / fps,
                "overlap": overlap,
                "n_ref": int(a.size),
                "n_other": int(b.size),
                "nan_ref": int(np.isnan(a).sum()),
                "nan_other": int(np.isnan(b).sum()),
            }
        )
    return pd.DataFrame(rows, columns=list(COMPARE_COLUMNS))
