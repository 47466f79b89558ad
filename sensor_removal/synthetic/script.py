"""The expression script of a synthetic recording: per-frame signals (:data:`SIGNALS`)
that follow the paper's three tasks (Schaede's mimic tasks, read sentences, emotions),
plus blinks, gaze and head motion, with per-take jitter of timing and intensity.

Why a script of signals and not drawn frames: the face (:mod:`.faces`) and the
electrodes glued to it (:mod:`.sensors`) both move by the same signals, and the
signals are written next to each video (``<name>.expr.csv``) as its expression truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sensor_removal.core.manifest import TASKS

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
    return {task: (round(bounds[i] / fps, 6), round(bounds[i + 1] / fps, 6)) for i, task in enumerate(TASKS)}


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


def _speech(sig: np.ndarray, t: np.ndarray, start: float, end: float, rng: np.random.Generator) -> None:
    """Read sentences: syllables of 0.16-0.28 s (fast mouth open/close), words, pauses."""
    mouth, pucker, smile, brow = (sig[:, _SIG[k]] for k in ("mouth_open", "lip_pucker", "smile", "brow_raise"))
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
        blink = np.maximum(blink, np.where((u >= 0) & (u <= 1), np.sin(np.pi * np.clip(u, 0, 1)) ** 2, 0.0))
        tb += d + 1.0 + rng.exponential(2.5)
    sig[:, _SIG["eye_close"]] = np.maximum(sig[:, _SIG["eye_close"]], blink)
    # small involuntary activity on every signal
    for j in range(len(SIGNALS)):
        sig[:, j] += 0.03 * np.abs(_smooth_noise(n, fps, 0.6, rng))
    sig = np.clip(sig, 0.0, 1.0)
    gaze = np.stack([0.02 * _smooth_noise(n, fps, 0.4, rng), 0.008 * _smooth_noise(n, fps, 0.4, rng)], axis=1)
    m = min(size)
    offset = rng.normal(0.0, 0.006 * m, 2)  # the subject sits slightly differently each take
    head = np.stack(
        [
            offset[0] + 0.012 * m * _smooth_noise(n, fps, 1.2, rng),
            offset[1] + 0.010 * m * _smooth_noise(n, fps, 1.2, rng) + 0.006 * m * sig[:, _SIG["mouth_open"]],
            2.5 * _smooth_noise(n, fps, 1.5, rng),
        ],
        axis=1,
    )
    return _Take(signals=sig, gaze=gaze, head=head, segments=segments)
