"""Expression features of a video for the mapping: dlib 68-point landmarks, Procrustes
normalised, plus the project's landmark geometry series.

Why landmarks and not a 3DMM: EIFER fits FLAME expression parameters (via SMIRK), whose
weights cannot be had offline; dlib's 68 points (:mod:`evaluation.metrics.landmarks`) ship in a
wheel. Each frame's points are aligned to the video's mean shape by a similarity
transform (translation, scale, rotation: ordinary Procrustes), which removes head motion
and leaves the shape the muscles change; the geometry series
(:func:`evaluation.metrics.face_geometry.geometry_features`) add the distances the AUs move.
NaN frames (no face) are filled by linear interpolation and reported in ``valid``.

Ours: dlib's points jitter from frame to frame by about a pixel, which on the small
movements of the lips (pucker, lip-corner depression) is as large as the movement
itself; a Savitzky-Golay filter (:data:`SMOOTH_FRAMES` frames, order 2, i.e. ~0.7 s at
15 fps, shorter than the 0.5 s RMS envelope plus the movement's rise) over the filled
series removes the jitter and keeps the expression's time course (docs/emg.md: it lifts
EMG2Exp, whose targets are these series, from 0.57 to 0.73 on the synthetic subject).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.signal import savgol_filter

from evaluation.metrics.face_geometry import GEOMETRY_FEATURES, N_POINTS, geometry_features

#: Savitzky-Golay window (frames, odd) over the landmark features; 0 or 1 = none (ours).
SMOOTH_FRAMES = 11


@dataclass(frozen=True)
class FeatureSeries:
    """Per-frame features ``values`` ``(T, F)`` named ``names``; ``valid`` ``(T,)``: the
    frame had a face (others are interpolated)."""

    values: np.ndarray
    names: tuple[str, ...]
    valid: np.ndarray

    def select(self, names: Sequence[str]) -> np.ndarray:
        return self.values[:, [self.names.index(n) for n in names]]


def _normalise(shape: np.ndarray) -> np.ndarray:
    c = shape - shape.mean(axis=0)
    return c / np.sqrt((c * c).sum())


def procrustes_points(points: np.ndarray) -> np.ndarray:
    """``(T, 68, 2)`` landmarks aligned by a similarity transform to the (unit-size,
    eye-line horizontal) mean shape of the valid frames; NaN frames stay NaN."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, N_POINTS, 2)
    ok = np.isfinite(p).all(axis=(1, 2))
    out = np.full_like(p, np.nan)
    if not ok.any():
        return out
    ref = _normalise(np.mean([_normalise(f) for f in p[ok]], axis=0))
    eye = ref[45] - ref[36]
    a = -np.arctan2(eye[1], eye[0])
    ref = ref @ np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
    for i in np.flatnonzero(ok):
        x = _normalise(p[i])
        u, _, vt = np.linalg.svd(x.T @ ref)
        out[i] = x @ (u @ vt)
    return out


def _fill(values: np.ndarray) -> np.ndarray:
    out = values.copy()
    t = np.arange(len(out))
    for j in range(out.shape[1]):
        col = out[:, j]
        ok = np.isfinite(col)
        if ok.any() and not ok.all():
            out[:, j] = np.interp(t, t[ok], col[ok])
        elif not ok.any():
            out[:, j] = 0.0
    return out


def smoothed(values: np.ndarray, frames: int = SMOOTH_FRAMES) -> np.ndarray:
    """Savitzky-Golay (order 2) along time of filled ``(T, F)`` series; ``frames`` <= 1
    (or a take shorter than the window) leaves them as they are."""
    if frames <= 1 or len(values) < frames:
        return values
    if frames % 2 == 0:
        raise ValueError(f"the landmark smoothing window must be an odd number of frames, got {frames}")
    return savgol_filter(values, frames, 2, axis=0)


def landmark_features(points: np.ndarray, smooth_frames: int = SMOOTH_FRAMES) -> FeatureSeries:
    """Features of landmarks ``(T, 68, 2)``: the geometry series then the aligned points,
    each smoothed over ``smooth_frames`` frames (:func:`smoothed`)."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, N_POINTS, 2)
    geo = geometry_features(p)
    aligned = procrustes_points(p).reshape(len(p), -1)
    values = np.concatenate([np.stack([geo[k] for k in GEOMETRY_FEATURES], axis=1), aligned], axis=1)
    names = (*GEOMETRY_FEATURES, *(f"p{i:02d}{ax}" for i in range(N_POINTS) for ax in "xy"))
    valid = np.isfinite(values).all(axis=1)
    return FeatureSeries(smoothed(_fill(values), smooth_frames), names, valid)


def video_landmark_points(
    video: Path, bbox: Sequence[int], cache: Path | None = None, boxes: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """dlib landmarks ``(T, 68, 2)`` and face boxes ``(T, 4)`` of a video
    (:mod:`evaluation.metrics.landmarks`), cached in ``cache`` (an ``.npz``) when given.

    ``boxes``: run the predictor in these face boxes (e.g. those found on the
    ground-truth or cleaned video of the same frames) instead of the detector's: on a
    sensor video the detector often finds no face at all, and the mapping then measures
    what the pixels inside the face show, not whether the face was found."""
    if cache is not None and cache.is_file():
        with np.load(cache) as z:
            return z["points"], z["boxes"]
    from evaluation.metrics.landmarks import LandmarkDetector, video_landmarks
    from sensor_removal.core.video import atomic_output

    lm = video_landmarks(video, bbox, LandmarkDetector(), boxes=boxes)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(cache) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, points=lm.points, boxes=lm.boxes)
    return lm.points, lm.boxes


def au_features(
    video: Path, bbox: Sequence[int] | None, analyzer: object, cache_dir: Path | None = None
) -> FeatureSeries:
    """py-feat's AU series of a video (``analyzer``: an
    :class:`evaluation.metrics.facial.FacialAnalyzer`; its weights must be present — a missing
    file is its clear error, never a silent fallback), NaN frames interpolated."""
    from evaluation.metrics.landmarks import ANALYSIS_SIZE

    series = analyzer.analyze_video(  # type: ignore[attr-defined]
        video, tuple(bbox) if bbox is not None else None, cache_dir=cache_dir, size=ANALYSIS_SIZE
    )
    cols = [c for c in series.values.columns if str(c).startswith("AU")]
    values = series.values[cols].to_numpy(dtype=np.float64)
    return FeatureSeries(_fill(values), tuple(cols), np.isfinite(values).all(axis=1))


def joined(a: FeatureSeries, b: FeatureSeries) -> FeatureSeries:
    """Columns of ``a`` then ``b`` over their common frames; valid where both are."""
    n = min(len(a.values), len(b.values))
    return FeatureSeries(
        np.concatenate([a.values[:n], b.values[:n]], axis=1), (*a.names, *b.names), a.valid[:n] & b.valid[:n]
    )
