"""The built-in synthetic subject: procedural face videos with and without sEMG sensors.

Why it exists: the paper's recordings (Büchner et al., VISAPP 2023, Sec. 3.1) cannot be
shipped, yet every stage of the pipeline (frames, fit, clean, evaluate) needs a subject
to run on, and the cleaning needs a *ground truth* that real data never has. This module
draws one subject from scratch (numpy + OpenCV primitives, no photos):

* a face with skin, hair, brows, eyes with lids, nose and mouth, animated by per-frame
  expression signals (:data:`SIGNALS`) that follow the paper's three tasks in
  consecutive segments (:data:`sensor_removal.manifest.TASKS`): Schaede's mimic tasks
  (held isolated movements), read sentences (fast mouth movement) and emotional
  expressions; plus blinks, small head motion and gaze;
* two sessions, each with one ``normal`` and two ``sensor`` recordings, so that the
  evaluation protocol (N1-N2, Nk-Sk, Nk-Ck; docs/evaluation.md) has every
  pair it compares. Recordings of a session share identity, clothing and lighting;
  session 2 is brighter and warmer. Each recording has its own expression timing and
  intensity (seeded jitter), like a real second take;
* sensor recordings carry ~60 white round electrodes in the fixed anatomical layout of
  high-resolution facial sEMG (forehead, brows, around the eyes, cheeks, nose, around the
  mouth, chin), which move with the face, each with a thin red or white cable leading
  off the face (roughly radially, as taped in real recordings) to the image edge, and a
  few white swabs. For every sensor recording the same
  frames *without* sensors (``<name>.gt.mp4``) and the per-frame sensor mask
  (``<name>.mask.npz``, read with :func:`load_mask`) are written, so that a cleaned video
  can be compared with what is really under the sensors.

Outputs (all written atomically; ``manifest.yaml`` last, so its presence means the set is
complete)::

    DIR/manifest.yaml                 subject, 6 recordings (docs/data.md)
    DIR/s{k}_normal.mp4               k = 1, 2
    DIR/s{k}_sensor_{a,b}.mp4         the sensor recordings
    DIR/s{k}_sensor_{a,b}.gt.mp4      the same frames without sensors
    DIR/s{k}_sensor_{a,b}.mask.npz    keys ``packed`` (np.packbits of the (T, H, W) bool
                                      mask along W) and ``shape`` ([T, H, W])
    DIR/<name>.expr.csv               frame, time_s, one column per signal in SIGNALS

Command line: ``python -m sensor_removal synth --out DIR [--seconds S] [--fps F]
[--size WxH] [--seed N]``.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from sensor_removal.argtypes import int_at_least
from sensor_removal.manifest import TASKS, Recording, Subject, save_manifest
from sensor_removal.video import VideoWriter, atomic_output

__all__ = [
    "SIGNALS",
    "MASK_KEYS",
    "DEFAULT_SECONDS",
    "DEFAULT_FPS",
    "DEFAULT_SIZE",
    "SynthError",
    "RECORDINGS",
    "SynthFrame",
    "make_subject",
    "render_recording",
    "load_mask",
    "load_expressions",
    "main",
]

#: Expression signals, each in [0, 1], one column each in ``<name>.expr.csv``.
SIGNALS: tuple[str, ...] = (
    "brow_raise",  # frontalis (AU1+2)
    "brow_lower",  # corrugator, frown (AU4)
    "eye_close",  # orbicularis oculi / lid closure incl. blinks (AU43/45)
    "smile",  # zygomaticus major, cheek raise (AU12, AU6)
    "mouth_open",  # jaw drop (AU26/27)
    "lip_pucker",  # orbicularis oris (AU18)
    "lip_corner_down",  # depressor anguli oris (AU15)
)
#: Keys of the ``.mask.npz`` files (see :func:`load_mask`).
MASK_KEYS: tuple[str, str] = ("packed", "shape")

DEFAULT_SECONDS = 20.0
DEFAULT_FPS = 15.0
DEFAULT_SIZE: tuple[int, int] = (256, 256)  # (width, height)
SESSIONS = 2
SENSOR_TAKES = ("a", "b")
CRF = 10  # near-lossless: the ground truth must stay comparable pixel by pixel

_SIG = {name: i for i, name in enumerate(SIGNALS)}
#: Share of the video per task (the paper's recordings: long mimic block, short reading,
#: emotions); boundaries are jittered per recording.
_TASK_SHARE = (0.52, 0.18, 0.30)

# Schaede's mimic tasks (Schaede et al. 2017): held isolated movements, most distinct first.
_SCHAEDE: tuple[tuple[str, dict[str, float]], ...] = (
    ("raise_brows", {"brow_raise": 1.0}),
    ("close_eyes", {"eye_close": 1.0}),
    ("smile", {"smile": 0.9}),
    ("pucker", {"lip_pucker": 1.0}),
    ("frown", {"brow_lower": 1.0}),
    ("open_mouth", {"mouth_open": 0.9}),
    ("show_teeth", {"smile": 1.0, "mouth_open": 0.35}),
    ("close_eyes_tight", {"eye_close": 1.0, "brow_lower": 0.5, "smile": 0.25}),
    ("depress_lower_lip", {"lip_corner_down": 0.9, "mouth_open": 0.2}),
)
_SCHAEDE_SLOT_S = 1.5  # ramp, ~0.8 s hold, ramp, rest
_EMOTIONS: tuple[tuple[str, dict[str, float]], ...] = (
    ("happiness", {"smile": 1.0, "mouth_open": 0.3, "eye_close": 0.25}),
    ("surprise", {"brow_raise": 1.0, "mouth_open": 0.75}),
    ("anger", {"brow_lower": 1.0, "lip_pucker": 0.35, "eye_close": 0.15}),
    ("sadness", {"lip_corner_down": 0.9, "brow_raise": 0.3, "brow_lower": 0.3}),
    ("disgust", {"brow_lower": 0.6, "lip_corner_down": 0.5, "eye_close": 0.3}),
    ("fear", {"brow_raise": 0.8, "mouth_open": 0.45, "lip_corner_down": 0.3}),
)
_EMOTION_SLOT_S = 1.0

# Face geometry, in face units: origin at the face centre, x right, y down, face
# half-width 1 (the face ellipse has half-height _FACE_B).
_FACE_B = 1.3
_HAIR_CENTER, _HAIR_AXES = (0.0, -0.3), (1.12, 1.15)
_FRINGE_CENTER, _FRINGE_AXES = (0.0, -1.3), (0.85, 0.22)
_EAR_CENTER, _EAR_AXES = (1.0, -0.15), (0.13, 0.24)
_EYE_Y, _EYE_HW = -0.3, 0.16
_MOUTH_Y = 0.55
_SCALE = 0.26  # face half-width in px per min(W, H): large faces, as the crop needs
_CENTER_DY = 0.08  # face centre below the frame centre (face units): hair fits on top

# fmt: off
# Fixed electrode layout of high-resolution facial sEMG (one side; mirrored), face units.
_ELECTRODES_SIDE: tuple[tuple[float, float], ...] = (
    # frontalis: two rows above the brows, staggered
    (0.12, -1.02), (0.36, -1.02), (0.24, -0.86), (0.48, -0.86), (0.72, -0.80),
    # brow row (corrugator medial, frontalis/orbicularis lateral)
    (0.12, -0.66), (0.34, -0.74), (0.60, -0.70),
    # orbicularis oculi around the eye
    (0.66, -0.30), (0.70, -0.46), (0.64, -0.14), (0.44, -0.14), (0.26, -0.14),
    # temple
    (0.84, -0.62),
    # nose: nasalis, levator labii superioris alaeque nasi
    (0.12, -0.02), (0.24, 0.12),
    # cheek: zygomaticus minor/major, masseter, buccinator
    (0.40, 0.16), (0.58, 0.24), (0.72, 0.06), (0.90, 0.10), (0.86, 0.30), (0.82, 0.62),
    (0.56, 0.50),
    # around the mouth: orbicularis oris, risorius, depressors, mentalis, jaw
    (0.16, 0.38), (0.42, 0.62), (0.15, 0.73), (0.36, 0.84), (0.14, 0.96), (0.58, 0.86),
)
_ELECTRODES_MID: tuple[tuple[float, float], ...] = ((0.0, -0.92), (0.0, -0.48), (0.0, 0.40), (0.0, 1.10))
_SWAB_SITES: tuple[tuple[float, float], ...] = (
    (-0.55, -1.0), (0.55, -1.0), (-0.93, -0.12), (0.93, -0.12), (-0.70, 0.74), (0.70, 0.74),
)
# fmt: on
_ELECTRODE_R = 0.042  # face units (~4 mm on a ~15 cm wide face)

_SHIFT = 4  # OpenCV sub-pixel drawing: coordinates in 1/16 px
_ONE = 1 << _SHIFT
_AA = cv2.LINE_AA


class SynthError(ValueError):
    """Invalid arguments for the synthetic subject; ``str(err)`` is the user's message."""


# --------------------------------------------------------------------------- validation


def _check_args(seconds: float, fps: float, size: tuple[int, int], seed: int) -> int:
    """Check the rendering arguments; return the frame count per video."""
    if not isinstance(size, (tuple, list)) or len(size) != 2:
        raise SynthError(f"size must be (width, height), got {size!r}")
    for name, v in zip(("width", "height"), size, strict=True):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise SynthError(f"size: {name} must be an integer, got {v!r}")
        if v < 64 or v % 2:
            raise SynthError(
                f"size: {name} must be even and >= 64 (H.264 needs even sizes), got {v}"
            )
    if (
        isinstance(fps, bool)
        or not isinstance(fps, (int, float))
        or not math.isfinite(fps)
        or fps <= 0
    ):
        raise SynthError(f"fps must be a number > 0, got {fps!r}")
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, (int, float))
        or not math.isfinite(seconds)
        or seconds <= 0
    ):
        raise SynthError(f"seconds must be a number > 0, got {seconds!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise SynthError(f"seed must be a non-negative integer, got {seed!r}")
    n = int(round(seconds * fps))
    if n < 3:
        raise SynthError(
            f"seconds x fps = {seconds} x {fps} gives {n} frame(s); need at least 3 "
            f"(one per task: {', '.join(TASKS)})"
        )
    return n


# ------------------------------------------------------------------- expression signals


def _smooth(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _envelope(t: np.ndarray, a: float, b: float, c: float, d: float) -> np.ndarray:
    """0 before a, smooth rise to 1 at b, hold to c, smooth fall to 0 at d."""
    up = _smooth((t - a) / max(b - a, 1e-6))
    down = 1.0 - _smooth((t - c) / max(d - c, 1e-6))
    return np.minimum(up, down)


def _segments(n: int, fps: float, rng: np.random.Generator) -> dict[str, tuple[float, float]]:
    """The three task segments, contiguous, on frame boundaries, covering [0, n / fps]."""
    b1 = int(round(n * (_TASK_SHARE[0] + rng.uniform(-0.03, 0.03))))
    b2 = int(round(n * (_TASK_SHARE[0] + _TASK_SHARE[1] + rng.uniform(-0.03, 0.03))))
    b1 = min(max(b1, 1), n - 2)
    b2 = min(max(b2, b1 + 1), n - 1)
    bounds = (0, b1, b2, n)
    return {
        task: (round(bounds[i] / fps, 6), round(bounds[i + 1] / fps, 6))
        for i, task in enumerate(TASKS)
    }


def _held_moves(
    sig: np.ndarray,
    t: np.ndarray,
    start: float,
    end: float,
    moves: Sequence[tuple[str, dict[str, float]]],
    slot_s: float,
    rng: np.random.Generator,
) -> None:
    """Isolated movements one after the other in [start, end): rise, hold, fall, rest."""
    length = end - start
    n = max(1, int(round(length / slot_s)))
    slots = rng.uniform(0.8, 1.2, n)
    slots = slots / slots.sum() * length
    t0 = start
    for k in range(n):
        _, weights = moves[k % len(moves)]
        d = slots[k]
        a = t0 + d * rng.uniform(0.03, 0.10)
        b = a + d * rng.uniform(0.12, 0.20)
        c = b + d * rng.uniform(0.45, 0.60)
        e = min(c + d * rng.uniform(0.12, 0.20), t0 + d)
        env = _envelope(t, a, b, c, e)
        intensity = rng.uniform(0.7, 1.0)
        for name, w in weights.items():
            sig[:, _SIG[name]] += intensity * w * env
        t0 += d


def _speech(
    sig: np.ndarray, t: np.ndarray, start: float, end: float, rng: np.random.Generator
) -> None:
    """Read sentences: syllables of 0.16-0.28 s (fast mouth open/close), words, pauses."""
    mouth, pucker, smile, brow = (
        sig[:, _SIG[k]] for k in ("mouth_open", "lip_pucker", "smile", "brow_raise")
    )
    smile += 0.12 * _envelope(t, start, start + 0.3, end - 0.3, end)
    emph = rng.uniform(start, max(start, end - 0.6))
    brow += rng.uniform(0.2, 0.4) * _envelope(t, emph, emph + 0.15, emph + 0.35, emph + 0.55)
    tc = start + rng.uniform(0.03, 0.12)
    while tc < end - 0.12:
        for _ in range(int(rng.integers(2, 5))):
            d = rng.uniform(0.16, 0.28)
            if tc + d > end:
                break
            u = (t - tc) / d
            env = np.where((u >= 0) & (u <= 1), np.sin(np.pi * np.clip(u, 0, 1)) ** 2, 0.0)
            mouth += rng.uniform(0.3, 0.85) * env
            if rng.random() < 0.3:
                pucker += rng.uniform(0.4, 0.8) * env
            tc += d
        tc += rng.uniform(0.1, 0.3)


def _smooth_noise(n: int, fps: float, sigma_s: float, rng: np.random.Generator) -> np.ndarray:
    """Low-pass noise with unit peak amplitude (slow drifts)."""
    raw = rng.normal(0.0, 1.0, n + 64)
    sigma = max(sigma_s * fps, 0.5)
    k = np.arange(-int(3 * sigma) - 1, int(3 * sigma) + 2)
    kern = np.exp(-0.5 * (k / sigma) ** 2)
    out = np.convolve(raw, kern / kern.sum(), mode="same")[32 : 32 + n]
    peak = float(np.abs(out).max())
    return out / peak if peak > 0 else out


@dataclass(frozen=True)
class _Take:
    """Everything that changes per frame in one recording."""

    signals: np.ndarray  # (T, len(SIGNALS)) in [0, 1]
    gaze: np.ndarray  # (T, 2) iris offset, face units
    head: np.ndarray  # (T, 3): dx px, dy px, rotation degrees
    segments: dict[str, tuple[float, float]]


def _make_take(n: int, fps: float, size: tuple[int, int], rng: np.random.Generator) -> _Take:
    """Expression signals following the three tasks, blinks, gaze and head motion, with
    per-recording jitter of timing and intensity."""
    t = np.arange(n) / fps
    segments = _segments(n, fps, rng)
    sig = np.zeros((n, len(SIGNALS)))
    _held_moves(sig, t, *segments["schaede"], _SCHAEDE, _SCHAEDE_SLOT_S, rng)
    _speech(sig, t, *segments["sentence"], rng)
    _held_moves(sig, t, *segments["emotion"], _EMOTIONS, _EMOTION_SLOT_S, rng)
    # spontaneous blinks, every ~3-4 s, 0.2-0.3 s long
    blink = np.zeros(n)
    tb = rng.exponential(2.0)
    while tb < n / fps:
        d = rng.uniform(0.2, 0.3)
        u = (t - tb) / d
        blink = np.maximum(
            blink, np.where((u >= 0) & (u <= 1), np.sin(np.pi * np.clip(u, 0, 1)) ** 2, 0.0)
        )
        tb += d + 1.0 + rng.exponential(2.5)
    sig[:, _SIG["eye_close"]] = np.maximum(sig[:, _SIG["eye_close"]], blink)
    # small involuntary activity on every signal
    for j in range(len(SIGNALS)):
        sig[:, j] += 0.03 * np.abs(_smooth_noise(n, fps, 0.6, rng))
    sig = np.clip(sig, 0.0, 1.0)
    gaze = np.stack(
        [0.02 * _smooth_noise(n, fps, 0.4, rng), 0.008 * _smooth_noise(n, fps, 0.4, rng)], axis=1
    )
    m = min(size)
    offset = rng.normal(0.0, 0.006 * m, 2)  # the subject sits slightly differently each take
    head = np.stack(
        [
            offset[0] + 0.012 * m * _smooth_noise(n, fps, 1.2, rng),
            offset[1]
            + 0.010 * m * _smooth_noise(n, fps, 1.2, rng)
            + 0.006 * m * sig[:, _SIG["mouth_open"]],
            2.5 * _smooth_noise(n, fps, 1.5, rng),
        ],
        axis=1,
    )
    return _Take(signals=sig, gaze=gaze, head=head, segments=segments)


# ------------------------------------------------------------------------ face geometry


def _deform(p: np.ndarray, s: np.ndarray, mouth_w: float) -> np.ndarray:
    """Move skin points ``p`` (N, 2; face units) by the expression ``s`` (one row of
    signals). The same displacements the feature drawing uses, so electrodes stay glued."""
    b, f, c, sm, o, pk, dn = (float(v) for v in s)
    x, y = p[:, 0], p[:, 1]
    ax, sx = np.abs(x), np.where(x < 0, -1.0, 1.0)
    dx = np.zeros_like(x)
    dy = np.zeros_like(y)
    # frontalis lifts brows and forehead skin (the top of the forehead moves less)
    up = np.clip((-0.3 - y) / 0.25, 0, 1)
    dy -= 0.13 * b * up * (1 - 0.6 * np.clip((-0.6 - y) / 0.5, 0, 1))
    # corrugator pulls the brow region down and medially
    wc = up * np.clip((0.75 - ax) / 0.4, 0, 1) * np.clip((y + 1.05) / 0.3, 0, 1)
    dy += 0.08 * f * wc
    dx -= 0.045 * f * wc * sx * np.clip((0.7 - ax) / 0.5, 0, 1)
    # orbicularis oculi: skin around the eyes contracts slightly towards the eye
    for side in (-1.0, 1.0):
        ex, ey = side * 0.38, _EYE_Y
        w = np.exp(-(((x - ex) ** 2 + (y - ey) ** 2) / 0.22**2))
        dx += (ex - x) * 0.08 * c * w
        dy += (ey - y) * 0.08 * c * w
        # zygomaticus: mouth corners out and up, cheeks up
        cx = side * mouth_w
        wq = np.exp(-(((x - cx) ** 2 + (y - _MOUTH_Y) ** 2) / 0.2**2)) * (sx == side)
        dx += side * mouth_w * (0.3 * sm - 0.4 * pk - 0.05 * o) * wq
        dy += (-0.07 * sm + 0.07 * dn + 0.02 * o) * wq
        wk = np.exp(-(((x - side * 0.45) ** 2 + (y - 0.15) ** 2) / 0.3**2))
        dy -= 0.04 * sm * wk
    # jaw drop: everything below the lips goes down
    dy += 0.2 * o * np.clip((y - 0.58) / 0.15, 0, 1) * np.clip((1.0 - ax) / 0.4, 0, 1)
    # pucker: the skin around the mouth gathers towards its centre
    wp = np.exp(-((x**2 + (y - 0.56) ** 2) / 0.28**2))
    dx -= 0.35 * pk * x * wp
    dy -= 0.15 * pk * (y - 0.56) * wp
    return np.stack([x + dx, y + dy], axis=1)


def _curve(left: np.ndarray, mid: np.ndarray, right: np.ndarray, n: int = 9) -> np.ndarray:
    """Quadratic curve from ``left`` to ``right`` passing through ``mid`` at u = 0.5."""
    ctrl = 2.0 * mid - 0.5 * (left + right)
    u = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - u) ** 2 * left + 2 * u * (1 - u) * ctrl + u**2 * right


@dataclass(frozen=True)
class _Identity:
    """The subject's look: the same in every recording."""

    skin: np.ndarray  # RGB float
    hair: np.ndarray
    lips: np.ndarray
    iris: np.ndarray
    eye_dx: float
    eye_h: float
    brow_thick: float
    brow_y: float
    mouth_w: float
    texture_seed: int


def _make_identity(rng: np.random.Generator) -> _Identity:
    skins = np.array(
        [[236, 200, 170], [224, 178, 145], [198, 146, 110], [160, 112, 82], [122, 84, 62]], float
    )
    hairs = np.array([[35, 28, 24], [72, 50, 34], [110, 76, 48], [60, 55, 52]], float)
    irises = np.array([[70, 45, 30], [60, 90, 120], [80, 100, 60], [45, 35, 30]], float)
    skin = np.clip(skins[rng.integers(len(skins))] + rng.normal(0, 6, 3), 0, 255)
    lips = np.clip(skin * np.array([0.85, 0.55, 0.55]) + np.array([20, 0, 5]), 0, 255)
    hair = hairs[rng.integers(len(hairs))]
    # hair (and brows) clearly darker than the skin, so hairline and brows read as such
    hair = hair * min(1.0, 0.5 * float(skin.mean()) / float(hair.mean()))
    return _Identity(
        skin=skin,
        hair=hair,
        lips=lips,
        iris=irises[rng.integers(len(irises))],
        eye_dx=0.38 + rng.uniform(-0.02, 0.02),
        eye_h=0.085 + rng.uniform(-0.008, 0.008),
        brow_thick=0.06 + rng.uniform(-0.01, 0.01),
        brow_y=-0.57 + rng.uniform(-0.02, 0.02),
        mouth_w=0.28 + rng.uniform(-0.02, 0.02),
        texture_seed=int(rng.integers(2**31)),
    )


def _col(c: np.ndarray, k: float = 1.0) -> tuple[float, float, float]:
    v = np.clip(np.asarray(c, float) * k, 0, 255)
    return (float(v[0]), float(v[1]), float(v[2]))


@dataclass(frozen=True)
class _Canvas:
    """Canonical (unrotated) face placement: px = center + scale * face units."""

    width: int
    height: int
    center: np.ndarray  # (2,)
    scale: float

    def fx(self, p: np.ndarray, origin: np.ndarray | None = None) -> np.ndarray:
        """Face units -> fixed-point px (for OpenCV drawing with ``shift``)."""
        px = self.center + self.scale * np.asarray(p, float)
        if origin is not None:
            px = px - origin
        return np.round(px * _ONE).astype(np.int32)

    def r(self, radius: float) -> int:
        return max(1, int(round(radius * self.scale * _ONE)))


def _make_canvas(size: tuple[int, int]) -> _Canvas:
    w, h = size
    scale = _SCALE * min(w, h)
    return _Canvas(w, h, np.array([w / 2.0, h / 2.0 + _CENTER_DY * scale]), scale)


def _ellipse(
    img: np.ndarray,
    cv: _Canvas,
    center: Sequence[float],
    axes: Sequence[float],
    color: Sequence[float],
    start: float = 0,
    end: float = 360,
    thickness: int = -1,
) -> None:
    c = cv.fx(np.asarray(center))
    ax = (cv.r(axes[0]), cv.r(axes[1]))
    cv2.ellipse(img, (int(c[0]), int(c[1])), ax, 0, start, end, color, thickness, _AA, _SHIFT)


def _static_layer(
    cv: _Canvas, ident: _Identity, shirt: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The parts of the head that do not change with expression, premultiplied by their
    alpha (uint8 RGB) and the alpha itself (float32 in [0, 1])."""
    w, h = cv.width, cv.height
    rgb = np.zeros((h, w, 3), np.uint8)
    alpha = np.zeros((h, w), np.uint8)
    skin, hair = ident.skin, ident.hair

    def both(draw) -> None:
        draw(rgb, None)
        draw(alpha, (255,))

    both(lambda im, c: _ellipse(im, cv, (0.0, 2.35), (1.9, 0.95), c or _col(shirt)))
    both(
        lambda im, c: cv2.fillPoly(
            im,
            [cv.fx(np.array([[-0.45, 0.8], [0.45, 0.8], [0.5, 1.6], [-0.5, 1.6]]))],
            c or _col(skin, 0.86),
            _AA,
            _SHIFT,
        )
    )
    both(lambda im, c: _ellipse(im, cv, (0.0, 1.55), (0.62, 0.22), c or _col(skin, 0.86)))
    both(lambda im, c: _ellipse(im, cv, _HAIR_CENTER, _HAIR_AXES, c or _col(hair)))
    for side in (-1, 1):
        both(
            lambda im, c, side=side: _ellipse(
                im, cv, (side * _EAR_CENTER[0], _EAR_CENTER[1]), _EAR_AXES, c or _col(skin, 0.93)
            )
        )
    both(lambda im, c: _ellipse(im, cv, (0.0, 0.0), (1.0, _FACE_B), c or _col(skin)))

    # shading: the face darkens towards its rim, plus a faint low-frequency skin texture
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u = (xx - cv.center[0]) / cv.scale
    v = (yy - cv.center[1]) / cv.scale
    rim = np.clip(u**2 + (v / _FACE_B) ** 2, 0, 1)
    shade = 1.0 - 0.14 * rim**2
    tex_rng = np.random.default_rng(ident.texture_seed)
    noise = cv2.GaussianBlur(
        tex_rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), max(0.6, 0.02 * cv.scale)
    )
    noise *= 2.0 / max(float(noise.std()), 1e-6)
    skin_like = np.abs(rgb.astype(np.float32) - skin.astype(np.float32)).sum(-1) < 60
    face = rgb.astype(np.float32) * shade[..., None]
    face += np.where(skin_like, noise, 0)[..., None]
    # cheeks: a little warmer
    for side in (-1, 1):
        d2 = (u - side * 0.5) ** 2 + (v - 0.2) ** 2
        face[..., 0] += 10.0 * np.exp(-d2 / 0.08) * skin_like
    rgb = np.clip(face + 0.5, 0, 255).astype(np.uint8)

    # hair fringe over the top of the forehead (part of the silhouette already)
    _ellipse(rgb, cv, _FRINGE_CENTER, _FRINGE_AXES, _col(hair))
    # nose: bridge sides, alae, nostrils, a highlight on the tip
    for side in (-1, 1):
        bridge = np.array([[side * 0.07, -0.22], [side * 0.085, -0.05], [side * 0.11, 0.09]])
        cv2.polylines(rgb, [cv.fx(bridge)], False, _col(skin, 0.86), 1, _AA, _SHIFT)
        _ellipse(
            rgb,
            cv,
            (side * 0.1, 0.17),
            (0.06, 0.05),
            _col(skin, 0.8),
            start=90 - side * 90 - 60,
            end=90 - side * 90 + 60,
            thickness=1,
        )
        _ellipse(rgb, cv, (side * 0.055, 0.215), (0.035, 0.017), _col(skin, 0.45))
    _ellipse(rgb, cv, (0.0, 0.13), (0.055, 0.045), _col(skin, 1.06))
    # chin crease
    _ellipse(rgb, cv, (0.0, 0.86), (0.12, 0.05), _col(skin, 0.9), start=200, end=340, thickness=1)

    a = alpha.astype(np.float32) / 255.0
    premul = np.clip(rgb.astype(np.float32) * a[..., None] + 0.5, 0, 255).astype(np.uint8)
    return premul, a


def _blend_line(
    img: np.ndarray,
    cv: _Canvas,
    pts: np.ndarray,
    skin: np.ndarray,
    darkness: float,
    thickness: int = 1,
) -> None:
    """A crease line whose contrast to the skin grows with ``darkness`` (0 = invisible)."""
    if darkness <= 0.02:
        return
    cv2.polylines(img, [cv.fx(pts)], False, _col(skin, 1.0 - darkness), thickness, _AA, _SHIFT)


def _draw_eye(
    img: np.ndarray,
    cv: _Canvas,
    ident: _Identity,
    side: float,
    close: float,
    lower_raise: float,
    gaze: np.ndarray,
) -> None:
    cx, cy = side * ident.eye_dx, _EYE_Y
    h0 = ident.eye_h
    u = np.linspace(0.0, 1.0, 13)
    xs = cx + _EYE_HW * (2 * u - 1)
    tilt = -0.015 * side * (xs - cx) / _EYE_HW  # outer corner a little higher
    arc = np.sin(np.pi * u)
    top = cy - h0 * arc + tilt
    bottom = cy + 0.8 * h0 * arc + tilt
    lower = bottom - (bottom - top) * 0.35 * lower_raise
    upper = top + (lower - top) * min(max(close, 0.0), 1.0)
    skin = ident.skin
    # crease above the lid, lower-lid line
    _blend_line(img, cv, np.stack([xs, top - 0.045 * arc - 0.01], 1)[2:-2], skin, 0.15)
    opening = np.concatenate([np.stack([xs, upper], 1), np.stack([xs, lower], 1)[::-1]])
    if float((lower - upper).max()) * cv.scale > 0.35:
        # sclera, iris and pupil, clipped to the lid opening (drawn in a small ROI)
        x0 = int(math.floor(cv.center[0] + cv.scale * (cx - _EYE_HW) - 2))
        y0 = int(math.floor(cv.center[1] + cv.scale * (cy - 1.2 * h0) - 2))
        x1 = int(math.ceil(cv.center[0] + cv.scale * (cx + _EYE_HW) + 3))
        y1 = int(math.ceil(cv.center[1] + cv.scale * (cy + 1.2 * h0) + 3))
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, cv.width), min(y1, cv.height)
        if x1 > x0 and y1 > y0:
            org = np.array([x0, y0], float)
            roi = img[y0:y1, x0:x1]
            eye = np.empty_like(roi)
            eye[:] = _col(np.array([232, 228, 222]) * 0.9 + skin * 0.1)
            ic = np.array([cx + gaze[0], cy + 0.012 + gaze[1]])
            c = cv.fx(ic, org)
            cv2.circle(eye, (int(c[0]), int(c[1])), cv.r(0.058), _col(ident.iris), -1, _AA, _SHIFT)
            cv2.circle(
                eye, (int(c[0]), int(c[1])), cv.r(0.058), _col(ident.iris, 0.6), 1, _AA, _SHIFT
            )
            cv2.circle(eye, (int(c[0]), int(c[1])), cv.r(0.025), (15, 12, 12), -1, _AA, _SHIFT)
            hl = cv.fx(ic + np.array([0.018, -0.018]), org)
            cv2.circle(eye, (int(hl[0]), int(hl[1])), cv.r(0.011), (250, 250, 250), -1, _AA, _SHIFT)
            m = np.zeros(roi.shape[:2], np.uint8)
            cv2.fillPoly(m, [cv.fx(opening, org)], 255, _AA, _SHIFT)
            mf = (m.astype(np.float32) / 255.0)[..., None]
            roi[:] = np.clip(roi * (1 - mf) + eye * mf + 0.5, 0, 255).astype(np.uint8)
    thick = max(1, int(round(0.022 * cv.scale)))
    cv2.polylines(
        img, [cv.fx(np.stack([xs, upper], 1))], False, _col(ident.hair, 0.5), thick, _AA, _SHIFT
    )
    cv2.polylines(
        img, [cv.fx(np.stack([xs, lower], 1)[1:-1])], False, _col(skin, 0.72), 1, _AA, _SHIFT
    )


def _draw_dynamic(
    img: np.ndarray, cv: _Canvas, ident: _Identity, s: np.ndarray, gaze: np.ndarray
) -> None:
    """Brows, eyes, mouth and expression creases for one frame (canonical placement)."""
    b, f, c, sm, o, pk, dn = (float(v) for v in s)
    skin = ident.skin
    mw = ident.mouth_w

    # forehead wrinkles (brow raise), frown lines (brow lower), crow's feet (smile)
    lift = 0.5 * 0.13 * b
    for k, yw in enumerate((-0.8, -0.9, -1.0)):
        xw = np.linspace(-0.42 + 0.05 * k, 0.42 - 0.05 * k, 9)
        _blend_line(img, cv, np.stack([xw, yw - lift + 0.03 * (xw / 0.42) ** 2], 1), skin, 0.2 * b)
    for side in (-1, 1):
        _blend_line(
            img, cv, np.array([[side * 0.05, -0.62], [side * 0.045, -0.47]]), skin, 0.22 * f
        )
        for k in (-1, 0, 1):
            p0 = np.array([side * 0.6, _EYE_Y + 0.05 * k])
            _blend_line(
                img,
                cv,
                np.stack([p0, p0 + np.array([side * 0.1, 0.03 * k])]),
                skin,
                0.18 * max(sm - 0.3, 0) / 0.7,
            )

    # brows: tapered, moved by frontalis and corrugator exactly as _deform moves the skin
    for side in (-1.0, 1.0):
        base = np.array(
            [[0.12, ident.brow_y], [0.36, ident.brow_y - 0.07], [0.62, ident.brow_y - 0.01]]
        )
        base[:, 0] *= side
        moved = _deform(base, s, mw)
        mid = _curve(moved[0], moved[1], moved[2], 11)
        th = ident.brow_thick * np.linspace(1.0, 0.45, 11)
        poly = np.concatenate(
            [
                mid - np.stack([np.zeros(11), th / 2], 1),
                (mid + np.stack([np.zeros(11), th / 2], 1))[::-1],
            ]
        )
        cv2.fillPoly(img, [cv.fx(poly)], _col(ident.hair, 0.9), _AA, _SHIFT)

    # eyes; a smile raises the lower lids (cheek raise, AU6)
    for side in (-1.0, 1.0):
        _draw_eye(img, cv, ident, side, c, sm, gaze)

    # mouth
    half = mw * (1 + 0.3 * sm - 0.4 * pk - 0.05 * o)
    cy = _MOUTH_Y - 0.07 * sm + 0.07 * dn + 0.02 * o
    full = 1.0 + 0.4 * pk
    xs = np.linspace(-half, half, 15)
    q = 1.0 - (xs / half) ** 2

    def contour(mid: float, power: float) -> np.ndarray:
        return np.stack([xs, cy + (mid - cy) * q**power], 1)

    upper_out = contour(_MOUTH_Y - 0.065 * full - 0.015 * o, 0.5)
    upper_out[:, 1] += 0.012 * np.exp(-((xs / (0.12 * mw)) ** 2)) - 0.008 * np.exp(
        -(((np.abs(xs) - 0.3 * mw) / (0.15 * mw)) ** 2)
    )
    upper_in = contour(_MOUTH_Y - 0.004 - 0.02 * o, 1.0 - 0.4 * pk)
    lower_in = contour(_MOUTH_Y + 0.004 + 0.2 * o, 1.0 - 0.4 * pk)
    lower_out = contour(_MOUTH_Y + 0.075 * full + 0.2 * o, 0.6)
    # nasolabial folds deepen with a smile
    for side in (-1.0, 1.0):
        fold = _curve(
            np.array([side * 0.2, 0.14]),
            np.array([side * (0.37 + 0.04 * sm), 0.34 - 0.03 * sm]),
            np.array([side * (half + 0.09), cy + 0.1]),
            9,
        )
        _blend_line(img, cv, fold, skin, 0.04 + 0.16 * sm)
    gap = float((lower_in[:, 1] - upper_in[:, 1]).max())
    if gap * cv.scale > 0.3:
        cv2.fillPoly(
            img, [cv.fx(np.concatenate([upper_in, lower_in[::-1]]))], (70, 22, 28), _AA, _SHIFT
        )
        teeth_h = min(0.045, gap * 0.6)
        teeth = np.concatenate([upper_in, (upper_in + np.array([0.0, teeth_h]))[::-1]])
        teeth = teeth[(np.abs(teeth[:, 0]) <= 0.75 * half)]
        if len(teeth) >= 3:
            cv2.fillPoly(img, [cv.fx(teeth)], (236, 232, 220), _AA, _SHIFT)
    cv2.fillPoly(
        img, [cv.fx(np.concatenate([upper_out, upper_in[::-1]]))], _col(ident.lips), _AA, _SHIFT
    )
    cv2.fillPoly(
        img,
        [cv.fx(np.concatenate([lower_in, lower_out[::-1]]))],
        _col(ident.lips, 1.07),
        _AA,
        _SHIFT,
    )
    cv2.polylines(
        img,
        [cv.fx(upper_in if gap < 0.02 else upper_in[1:-1])],
        False,
        _col(ident.lips, 0.55),
        1,
        _AA,
        _SHIFT,
    )


def _affine(cv: _Canvas, head: np.ndarray) -> np.ndarray:
    """Head motion: rotation about the face centre, then translation (canonical -> image)."""
    dx, dy, deg = (float(v) for v in head)
    m = cv2.getRotationMatrix2D((float(cv.center[0]), float(cv.center[1])), -deg, 1.0)
    m[0, 2] += dx
    m[1, 2] += dy
    return m


def _apply(m: np.ndarray, px: np.ndarray) -> np.ndarray:
    return px @ m[:, :2].T + m[:, 2]


def _face_bbox(cv: _Canvas, heads: Sequence[np.ndarray]) -> tuple[int, int, int, int]:
    """Fixed square box (even side) containing head, hair and ears in every frame of the
    given takes, with a 6 % margin, inside the frame."""
    t = np.linspace(0, 2 * np.pi, 72, endpoint=False)
    outline = [
        np.stack(
            [
                _HAIR_CENTER[0] + _HAIR_AXES[0] * np.cos(t),
                _HAIR_CENTER[1] + _HAIR_AXES[1] * np.sin(t),
            ],
            1,
        ),
        np.stack([np.cos(t), _FACE_B * np.sin(t)], 1),
    ]
    for side in (-1, 1):
        outline.append(
            np.stack(
                [
                    side * _EAR_CENTER[0] + _EAR_AXES[0] * np.cos(t),
                    _EAR_CENTER[1] + _EAR_AXES[1] * np.sin(t),
                ],
                1,
            )
        )
    px = cv.center + cv.scale * np.concatenate(outline)
    lo, hi = np.full(2, np.inf), np.full(2, -np.inf)
    for head in heads:
        for row in head:
            q = _apply(_affine(cv, row), px)
            lo, hi = np.minimum(lo, q.min(0)), np.maximum(hi, q.max(0))
    side = max(hi - lo) * 1.06
    side = min(int(math.ceil(side / 2)) * 2, (min(cv.width, cv.height) // 2) * 2)
    mid = (lo + hi) / 2
    x = int(round(mid[0] - side / 2))
    y = int(round(mid[1] - side / 2))
    x = min(max(x, 0), cv.width - side)
    y = min(max(y, 0), cv.height - side)
    return (x, y, side, side)


# ------------------------------------------------------------------------------ sensors


@dataclass(frozen=True)
class _Sensors:
    """One session's sensor placement (the electrodes are re-glued every session)."""

    electrodes: np.ndarray  # (N, 2) face units
    radius: np.ndarray  # (N,) face units
    red: np.ndarray  # (N,) bool: red cable (else white)
    direction: np.ndarray  # (N, 2) unit vectors, face space: where the cable leaves the face
    sag: np.ndarray  # (N,) cable sag, relative to its length
    swabs: list[np.ndarray]  # polygons, face units


def _make_sensors(rng: np.random.Generator) -> _Sensors:
    side = np.array(_ELECTRODES_SIDE)
    pts = np.concatenate([side, side * np.array([-1.0, 1.0]), np.array(_ELECTRODES_MID)])
    pts = pts + rng.normal(0.0, 0.012, pts.shape)
    n = len(pts)
    # cables lead away from the face, roughly radially (as they are taped in real
    # recordings), so each runs to the image edge nearest along its way off the face;
    # those around the mouth go sideways rather than across lips and chin
    direction = (pts - np.array([0.0, 0.1])) * np.array([1.0, 0.8])
    lips = (np.abs(pts[:, 0]) < 0.45) & (pts[:, 1] > 0.25) & (pts[:, 1] < 0.8)
    direction[lips] = np.stack(
        [np.where(pts[lips, 0] < 0, -1.0, 1.0), np.full(int(lips.sum()), 0.35)], 1
    )
    angle = np.arctan2(direction[:, 1], direction[:, 0]) + rng.normal(0.0, 0.12, n)
    direction = np.stack([np.cos(angle), np.sin(angle)], 1)
    sites = np.array(_SWAB_SITES)
    chosen = sites[rng.choice(len(sites), size=4, replace=False)] + rng.normal(0, 0.015, (4, 2))
    swabs = []
    for c in chosen:
        k = 9
        ang = np.sort(rng.uniform(0, 2 * np.pi, k)) + rng.uniform(0, 2 * np.pi)
        rad = rng.uniform(0.055, 0.075) * rng.uniform(0.65, 1.2, k)
        swabs.append(c + np.stack([rad * np.cos(ang), 0.8 * rad * np.sin(ang)], 1))
    return _Sensors(
        electrodes=pts,
        radius=_ELECTRODE_R * rng.uniform(0.9, 1.1, n),
        red=rng.random(n) < 0.5,
        direction=direction,
        sag=rng.uniform(0.03, 0.15, n),
        swabs=swabs,
    )


_DISK = np.stack(
    [
        np.cos(np.linspace(0, 2 * np.pi, 20, endpoint=False)),
        np.sin(np.linspace(0, 2 * np.pi, 20, endpoint=False)),
    ],
    1,
)
_BEZIER = np.linspace(0.0, 1.0, 12)[:, None]


def _draw_sensors(
    cv: _Canvas, sens: _Sensors, s: np.ndarray, m: np.ndarray, mouth_w: float
) -> np.ndarray:
    """The sensor overlay of one frame in image coordinates: (H, W, 4) uint8, colour
    premultiplied by alpha (anti-aliased drawing onto zeros gives exactly that)."""
    w, h = cv.width, cv.height
    ov = np.zeros((h, w, 4), np.uint8)
    rot = m[:, :2]
    pos = _apply(m, cv.center + cv.scale * _deform(sens.electrodes, s, mouth_w))
    base = _apply(m, cv.center + cv.scale * sens.electrodes)
    # cables: from the electrode along its direction (turning with the head) to just
    # beyond the image edge, sagging downwards
    d = sens.direction @ rot.T
    with np.errstate(divide="ignore", invalid="ignore"):
        tx = np.where(
            d[:, 0] > 0,
            (w + 4 - base[:, 0]) / d[:, 0],
            np.where(d[:, 0] < 0, (-4 - base[:, 0]) / d[:, 0], np.inf),
        )
        ty = np.where(
            d[:, 1] > 0,
            (h + 4 - base[:, 1]) / d[:, 1],
            np.where(d[:, 1] < 0, (-4 - base[:, 1]) / d[:, 1], np.inf),
        )
    end = base + np.minimum(tx, ty)[:, None] * d
    ctrl = (pos + end) / 2 + np.stack(
        [np.zeros(len(pos)), sens.sag * np.linalg.norm(end - pos, axis=1)], 1
    )
    curves = (
        ((1 - _BEZIER) ** 2)[None] * pos[:, None]
        + (2 * _BEZIER * (1 - _BEZIER))[None] * ctrl[:, None]
        + (_BEZIER**2)[None] * end[:, None]
    )
    fixed = np.round(curves * _ONE).astype(np.int32)
    thick = max(1, int(round(min(w, h) / 320)))
    for red, color in ((True, (190, 35, 35, 255)), (False, (232, 232, 228, 255))):
        sel = [fixed[i] for i in np.flatnonzero(sens.red == red)]
        if sel:
            cv2.polylines(ov, sel, False, color, thick, _AA, _SHIFT)
    # swabs: irregular white blobs
    swabs = [
        np.round(_apply(m, cv.center + cv.scale * _deform(p, s, mouth_w)) * _ONE).astype(np.int32)
        for p in sens.swabs
    ]
    cv2.fillPoly(ov, swabs, (236, 234, 226, 255), _AA, _SHIFT)
    cv2.polylines(ov, swabs, True, (214, 212, 204, 255), 1, _AA, _SHIFT)
    # electrodes: light grey rim, white disk, grey centre (the Ag/AgCl contact)
    r_px = sens.radius * cv.scale
    disk = _DISK
    for frac, color in (
        (1.0, (214, 214, 214, 255)),
        (0.78, (250, 250, 250, 255)),
        (0.32, (172, 172, 178, 255)),
    ):
        if frac < 0.5 and float(r_px.mean()) < 2.2:
            continue
        polys = np.round((pos[:, None] + (frac * r_px)[:, None, None] * disk[None]) * _ONE).astype(
            np.int32
        )
        cv2.fillPoly(ov, list(polys), color, _AA, _SHIFT)
    return ov


# -------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class _Session:
    index: int
    premul: np.ndarray  # static head layer, premultiplied, canonical placement
    alpha: np.ndarray
    background: np.ndarray  # (H, W, 3) float32
    gain: np.ndarray  # (H, W, 3) float32 illumination (per pixel and channel)
    sensors: _Sensors


def _make_session(k: int, cv: _Canvas, ident: _Identity, rng: np.random.Generator) -> _Session:
    w, h = cv.width, cv.height
    shirts = np.array(
        [[58, 78, 128], [105, 108, 115], [56, 98, 80], [44, 44, 56], [92, 74, 110]], float
    )
    premul, alpha = _static_layer(cv, ident, shirts[rng.integers(len(shirts))])
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    xn, yn = xx / w - 0.5, yy / h - 0.5
    wall = np.array([150, 156, 166], np.float32) + rng.normal(0, 4, 3).astype(np.float32)
    bg = wall[None, None, :] * (1.0 - 0.18 * yn[..., None] - 0.25 * (xn**2 + yn**2)[..., None])
    # session 1: neutral; session 2 (and later): brighter and warmer, light from the other side
    tint = (
        np.array([1.0, 1.0, 1.0], np.float32)
        if k == 1
        else np.array([1.14, 1.08, 0.96], np.float32)
    )
    tint = tint * (1.0 + rng.normal(0, 0.01, 3)).astype(np.float32)
    direction = (-1.0 if k % 2 else 1.0) * rng.uniform(0.08, 0.14)
    gain = tint[None, None, :] * (1.0 + direction * xn - 0.05 * yn)[..., None]
    return _Session(
        k, premul, alpha, bg.astype(np.float32), gain.astype(np.float32), _make_sensors(rng)
    )


def _render(
    cv: _Canvas, ident: _Identity, sess: _Session, take: _Take, i: int, sensors: bool
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Frame ``i``: (ground truth frame, sensor frame or None, mask or None)."""
    layer = sess.premul.copy()
    s = take.signals[i]
    _draw_dynamic(layer, cv, ident, s, take.gaze[i])
    m = _affine(cv, take.head[i])
    size = (cv.width, cv.height)
    warped = cv2.warpAffine(
        layer, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
    a = cv2.warpAffine(
        sess.alpha, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
    unlit = warped.astype(np.float32) + (1.0 - a)[..., None] * sess.background
    gt = np.clip(unlit * sess.gain + 0.5, 0, 255).astype(np.uint8)
    if not sensors:
        return gt, None, None
    ov = _draw_sensors(cv, sess.sensors, s, m, ident.mouth_w)
    sa = ov[..., 3]
    mask = sa > 0
    lit = (
        ov[..., :3].astype(np.float32) + (1.0 - sa.astype(np.float32) / 255.0)[..., None] * unlit
    ) * sess.gain
    sensor = gt.copy()
    sensor[mask] = np.clip(lit[mask] + 0.5, 0, 255).astype(np.uint8)
    return gt, sensor, mask


def _write_expr(path: Path, take: _Take, fps: float) -> None:
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["frame", "time_s", *SIGNALS])
        for i, row in enumerate(take.signals):
            wr.writerow([i, f"{i / fps:.6f}", *(f"{v:.4f}" for v in row)])


def _write_mask(path: Path, packed: list[np.ndarray], shape: tuple[int, int, int]) -> None:
    with atomic_output(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, packed=np.stack(packed), shape=np.array(shape, np.int64))


def load_mask(path: str | Path) -> np.ndarray:
    """Read a ``.mask.npz`` written by :func:`make_subject`: the per-frame sensor mask as a
    ``(T, H, W)`` bool array (True where electrodes, cables or swabs cover the face).

    The file holds ``packed`` (``np.packbits(mask, axis=-1)``, shape ``(T, H, ceil(W/8))``)
    and ``shape`` (``[T, H, W]``)."""
    path = Path(path)
    try:
        with np.load(path) as z:
            missing = [k for k in MASK_KEYS if k not in z.files]
            if missing:
                raise SynthError(
                    f"{path}: not a sensor mask file (missing key(s) {missing}; expected {list(MASK_KEYS)})"
                )
            packed, shape = z["packed"], tuple(int(v) for v in z["shape"])
    except FileNotFoundError:
        raise SynthError(f"{path}: mask file not found") from None
    except (OSError, ValueError) as exc:
        if isinstance(exc, SynthError):
            raise
        raise SynthError(f"{path}: cannot read mask file ({exc})") from None
    if len(shape) != 3 or packed.shape[:2] != shape[:2]:
        raise SynthError(
            f"{path}: packed mask of shape {packed.shape} does not match shape {list(shape)}"
        )
    return np.unpackbits(packed, axis=-1, count=shape[2]).astype(bool)


def load_expressions(path: str | Path) -> dict[str, np.ndarray]:
    """Read a ``<name>.expr.csv``: ``{"frame": int array, "time_s": ..., signal: ...}``."""
    path = Path(path)
    try:
        data = np.genfromtxt(path, delimiter=",", names=True, dtype=float)
    except OSError:
        raise SynthError(f"{path}: expression file not found or unreadable") from None
    data = np.atleast_1d(data)
    out = {name: np.asarray(data[name]) for name in data.dtype.names}
    out["frame"] = out["frame"].astype(np.int64)
    return out


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), *keys])


#: The recordings of the synthetic subject: (name, session, take index, condition).
RECORDINGS: tuple[tuple[str, int, int, str], ...] = tuple(
    (f"s{k}_{name}", k, j, "normal" if name == "normal" else "sensor")
    for k in range(1, SESSIONS + 1)
    for j, name in enumerate(["normal", *(f"sensor_{t}" for t in SENSOR_TAKES)], start=1)
)


@dataclass(frozen=True)
class SynthFrame:
    """One rendered frame. ``frame`` is what the recording shows; for sensor recordings
    ``ground_truth`` is the same frame without sensors and ``mask`` (H, W) bool marks the
    sensor pixels (electrodes, cables, swabs); both are None for normal recordings."""

    index: int
    frame: np.ndarray
    ground_truth: np.ndarray | None
    mask: np.ndarray | None


@dataclass(frozen=True)
class _Plan:
    """Everything needed to render one recording; built from (seed, size, fps, frames)."""

    canvas: _Canvas
    identity: _Identity
    session: _Session
    take: _Take
    sensors: bool


def _plans(
    n: int, fps: float, size: tuple[int, int], seed: int, names: Sequence[str] | None = None
) -> dict[str, _Plan]:
    """Identity from (seed, 0), session k from (seed, k, 0), take j of session k from
    (seed, k, j): rendering one recording never depends on rendering another."""
    canvas = _make_canvas(size)
    ident = _make_identity(_rng(seed, 0))
    plans: dict[str, _Plan] = {}
    sessions: dict[int, _Session] = {}
    for name, k, j, condition in RECORDINGS:
        if names is not None and name not in names:
            continue
        if k not in sessions:
            sessions[k] = _make_session(k, canvas, ident, _rng(seed, k, 0))
        take = _make_take(n, fps, size, _rng(seed, k, j))
        plans[name] = _Plan(canvas, ident, sessions[k], take, condition == "sensor")
    return plans


def _frames(plan: _Plan) -> Iterator[SynthFrame]:
    for i in range(len(plan.take.signals)):
        gt, sensor, mask = _render(
            plan.canvas, plan.identity, plan.session, plan.take, i, plan.sensors
        )
        if sensor is None:
            yield SynthFrame(i, gt, None, None)
        else:
            yield SynthFrame(i, sensor, gt, mask)


def render_recording(
    name: str,
    seconds: float = DEFAULT_SECONDS,
    fps: float = DEFAULT_FPS,
    size: tuple[int, int] = DEFAULT_SIZE,
    seed: int = 0,
) -> Iterator[SynthFrame]:
    """The frames of recording ``name`` (e.g. ``"s1_sensor_a"``, see :data:`RECORDINGS`)
    in memory, exactly as :func:`make_subject` renders them before encoding: identical
    for identical arguments (the encoded videos carry codec noise on top)."""
    names = [r[0] for r in RECORDINGS]
    if name not in names:
        raise SynthError(f"unknown recording {name!r}; the synthetic subject has {names}")
    n = _check_args(seconds, fps, size, seed)
    plan = _plans(n, float(fps), (int(size[0]), int(size[1])), int(seed), [name])[name]
    return _frames(plan)


def make_subject(
    out: Path,
    seconds: float = DEFAULT_SECONDS,
    fps: float = DEFAULT_FPS,
    size: tuple[int, int] = DEFAULT_SIZE,
    seed: int = 0,
    subject: str = "synth01",
) -> Path:
    """Render the synthetic subject into ``out`` and return the manifest path.

    ``size`` is (width, height), both even and >= 64; every video has
    ``round(seconds * fps)`` frames. Two sessions x (``s{k}_normal``, ``s{k}_sensor_a``,
    ``s{k}_sensor_b``); for the sensor videos also ``.gt.mp4`` and ``.mask.npz``; for all
    an ``.expr.csv``. The rendered frames are a deterministic function of the arguments
    (:func:`render_recording`); the H.264 files are near-identical between runs (libx264
    is not bit-reproducible on every CPU). Raises :class:`SynthError` for invalid
    arguments, before anything is written.
    """
    out = Path(out)
    n = _check_args(seconds, fps, size, seed)
    if not isinstance(subject, str) or not subject or "/" in subject:
        raise SynthError(f"subject must be a non-empty name without '/', got {subject!r}")
    if out.exists() and not out.is_dir():
        raise SynthError(f"output {out} exists and is not a directory")
    w, h = int(size[0]), int(size[1])
    fps = float(fps)
    out.mkdir(parents=True, exist_ok=True)
    out = out.resolve()
    recordings: list[Recording] = []
    plans = _plans(n, fps, (w, h), int(seed))
    for name, k, _, condition in RECORDINGS:
        plan = plans[name]
        video = out / f"{name}.mp4"
        gt_path = out / f"{name}.gt.mp4" if plan.sensors else None
        mask_path = out / f"{name}.mask.npz" if plan.sensors else None
        packed: list[np.ndarray] = []
        with VideoWriter(video, fps, w, h, codec="h264", crf=CRF) as vw:
            gw = VideoWriter(gt_path, fps, w, h, codec="h264", crf=CRF) if gt_path else None
            try:
                for f in _frames(plan):
                    vw.write(f.frame)
                    if gw is not None:
                        gw.write(f.ground_truth)  # type: ignore[arg-type]
                        packed.append(np.packbits(f.mask, axis=-1))  # type: ignore[arg-type]
            except BaseException:
                if gw is not None:
                    gw.abort()
                raise
            if gw is not None:
                gw.close()
        if mask_path is not None:
            _write_mask(mask_path, packed, (n, h, w))
        _write_expr(out / f"{name}.expr.csv", plan.take, fps)
        recordings.append(
            Recording(
                name=name,
                path=video,
                session=k,
                condition=condition,  # type: ignore[arg-type]
                bbox=_face_bbox(plan.canvas, [plan.take.head]),
                segments=dict(plan.take.segments),
                ground_truth=gt_path,
                mask=mask_path,
            )
        )
    manifest = out / "manifest.yaml"
    save_manifest(
        Subject(subject=subject, recordings=tuple(recordings), manifest_path=manifest), manifest
    )
    return manifest


# ---------------------------------------------------------------------------------- CLI


def _size_arg(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"expected WxH in pixels, e.g. 256x256; got {text!r}")
    return int(parts[0]), int(parts[1])


def _positive(kind: type) -> object:
    def parse(text: str) -> float | int:
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if not math.isfinite(v) or v <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return v

    parse.__name__ = kind.__name__
    return parse


_nonneg_int = int_at_least(0)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sensor_removal synth",
        description=(
            "Render the built-in synthetic subject: 2 sessions x (1 normal + 2 sensor) face "
            "videos, sensor-free ground truth, sensor masks, expression signals and a manifest."
        ),
    )
    p.add_argument("--out", type=Path, required=True, help="output directory (created)")
    p.add_argument(
        "--seconds",
        type=_positive(float),
        default=DEFAULT_SECONDS,
        help=f"length of each video (default {DEFAULT_SECONDS:g})",
    )
    p.add_argument(
        "--fps",
        type=_positive(float),
        default=DEFAULT_FPS,
        help=f"frame rate (default {DEFAULT_FPS:g})",
    )
    p.add_argument(
        "--size",
        type=_size_arg,
        default=DEFAULT_SIZE,
        metavar="WxH",
        help=f"frame size, even, >= 64 (default {DEFAULT_SIZE[0]}x{DEFAULT_SIZE[1]})",
    )
    p.add_argument("--seed", type=_nonneg_int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--subject", default="synth01", help="subject name in the manifest (default synth01)"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """``python -m sensor_removal synth``: returns 0 on success, 2 on bad arguments."""
    parser = build_parser()
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:  # argparse has printed usage and the reason
        return 0 if exc.code in (0, None) else 2
    t0 = time.perf_counter()
    try:
        manifest = make_subject(
            args.out,
            seconds=args.seconds,
            fps=args.fps,
            size=args.size,
            seed=args.seed,
            subject=args.subject,
        )
    except SynthError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    from sensor_removal.manifest import load_manifest

    subj = load_manifest(manifest, check_videos=False)
    base = manifest.parent
    n = int(round(args.seconds * args.fps))
    print(
        f"synthetic subject {subj.subject!r}: {len(subj.recordings)} recordings, {n} frames each "
        f"({n / args.fps:g} s at {args.fps:g} fps, {args.size[0]}x{args.size[1]}), "
        f"built in {time.perf_counter() - t0:.1f} s"
    )
    for r in subj.recordings:
        extra = "".join(
            f"  {p.relative_to(base)}" for p in (r.ground_truth, r.mask) if p is not None
        )
        print(
            f"  session {r.session} {r.condition:6s} {r.path.relative_to(base)}{extra}  {r.name}.expr.csv  bbox {list(r.bbox)}"
        )
    print(f"manifest: {manifest}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
