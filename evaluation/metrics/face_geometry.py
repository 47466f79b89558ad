"""Expression geometry and landmark error from 68-point landmarks (iBUG 300-W scheme).

The 68 points (0-based, the subject's right side is the image's left):

====================  =======  ====================  =======
jaw line              0–16     nose bridge / tip     27–30
right brow            17–21    nose base             31–35
left brow             22–26    right eye             36–41
outer lips            48–59    left eye              42–47
inner lips            60–67
====================  =======  ====================  =======

Why these features: the paper compares AU time series (Sec. 4.3); py-feat's AU models
read the same 68-landmark family, so distances between landmarks that the facial muscles
move are a direct, model-light view of the same expressions. Each distance is divided by
the inter-ocular distance of the same frame (outer eye corners 36–45, the 300-W
normalisation), which removes the face's size and the crop's scale; the eye aspect ratio
(Soukupová & Čech, 2016) is scale-free by construction.

Features (:data:`GEOMETRY_FEATURES`), per frame:

* ``mouth_open`` — inner lips, top to bottom (62–66): jaw drop (AU25/26/27);
* ``lip_corner_width`` — mouth corners (48–54): smile widens, pucker narrows (AU12, AU18);
* ``inner_brow_height`` — inner brow ends above the inner eye corners (21–39, 22–42),
  mean of both sides: inner brow raiser / lowerer (AU1, AU4);
* ``outer_brow_height`` — outer brow ends above the outer eye corners (17–36, 26–45):
  outer brow raiser (AU2);
* ``ear_right`` / ``ear_left`` — eye aspect ratio ``(|p2−p6| + |p3−p5|) / (2 |p1−p4|)``
  (36–41, 42–47): lid closure and blinks (AU43/45);
* ``nose_lip`` — nose base to the top of the upper lip (33–51): nose wrinkler / upper
  lip raiser shorten it (AU9, AU10).

A frame without landmarks (NaN points) gives NaN features; NaNs are then handled by the
time-series rules of :mod:`evaluation.metrics.timeseries`.
"""

from __future__ import annotations

import numpy as np

N_POINTS = 68
#: Outer eye corners: the inter-ocular distance of the 300-W benchmark.
OUTER_EYE_CORNERS: tuple[int, int] = (36, 45)
GEOMETRY_FEATURES: tuple[str, ...] = (
    "mouth_open",
    "lip_corner_width",
    "inner_brow_height",
    "outer_brow_height",
    "ear_right",
    "ear_left",
    "nose_lip",
)
_RIGHT_EYE = (36, 37, 38, 39, 40, 41)
_LEFT_EYE = (42, 43, 44, 45, 46, 47)


def _as_frames(points: np.ndarray) -> np.ndarray:
    p = np.asarray(points, dtype=np.float64)
    if p.shape[-2:] != (N_POINTS, 2):
        raise ValueError(f"landmarks must have shape (..., {N_POINTS}, 2), got {p.shape}")
    return p.reshape(-1, N_POINTS, 2)


def _dist(p: np.ndarray, i: int, j: int) -> np.ndarray:
    return np.linalg.norm(p[:, i] - p[:, j], axis=-1)


def interocular(points: np.ndarray) -> np.ndarray:
    """Distance between the outer eye corners per frame, ``(T,)`` (NaN without a face)."""
    p = _as_frames(points)
    return _dist(p, *OUTER_EYE_CORNERS)


def eye_aspect_ratio(points: np.ndarray, eye: tuple[int, ...]) -> np.ndarray:
    """Soukupová & Čech's eye aspect ratio of the six points ``eye`` (p1..p6), ``(T,)``."""
    p = _as_frames(points)
    p1, p2, p3, p4, p5, p6 = eye
    with np.errstate(invalid="ignore", divide="ignore"):
        return (_dist(p, p2, p6) + _dist(p, p3, p5)) / (2.0 * _dist(p, p1, p4))


def geometry_features(points: np.ndarray) -> dict[str, np.ndarray]:
    """The :data:`GEOMETRY_FEATURES` of landmarks ``(T, 68, 2)`` (or one ``(68, 2)``
    frame), each ``(T,)``; see the module docstring."""
    p = _as_frames(points)
    iod = interocular(p)
    with np.errstate(invalid="ignore", divide="ignore"):
        iod = np.where(iod > 0, iod, np.nan)
        return {
            "mouth_open": _dist(p, 62, 66) / iod,
            "lip_corner_width": _dist(p, 48, 54) / iod,
            "inner_brow_height": (_dist(p, 21, 39) + _dist(p, 22, 42)) / (2 * iod),
            "outer_brow_height": (_dist(p, 17, 36) + _dist(p, 26, 45)) / (2 * iod),
            "ear_right": eye_aspect_ratio(p, _RIGHT_EYE),
            "ear_left": eye_aspect_ratio(p, _LEFT_EYE),
            "nose_lip": _dist(p, 33, 51) / iod,
        }


def normalised_mean_error(predicted: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per-frame NME: the mean over the 68 points of the distance between ``predicted``
    and ``reference``, divided by the reference's inter-ocular distance (300-W).

    ``(T,)``; NaN where either side has no landmarks."""
    a, b = _as_frames(predicted), _as_frames(reference)
    if a.shape != b.shape:
        raise ValueError(f"landmark arrays differ in shape: {a.shape} vs {b.shape}")
    iod = interocular(b)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.linalg.norm(a - b, axis=-1).mean(axis=1) / np.where(iod > 0, iod, np.nan)
