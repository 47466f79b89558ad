"""Rendering the synthetic recordings in memory: the sessions (lighting, background,
sensor placement), one frame with and without sensors, and the per-recording plans
seeded so that rendering one recording never depends on rendering another.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from sensor_removal.synthetic.arguments import (
    DEFAULT_FPS,
    DEFAULT_SECONDS,
    DEFAULT_SIZE,
    SynthError,
    _check_args,
)
from sensor_removal.synthetic.faces import (
    _affine,
    _Canvas,
    _draw_dynamic,
    _Identity,
    _make_canvas,
    _make_identity,
    _static_layer,
)
from sensor_removal.synthetic.script import _make_take, _Take
from sensor_removal.synthetic.sensors import _draw_sensors, _make_sensors, _Sensors

SESSIONS = 2
SENSOR_TAKES = ("a", "b")


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
    shirts = np.array([[58, 78, 128], [105, 108, 115], [56, 98, 80], [44, 44, 56], [92, 74, 110]], float)
    premul, alpha = _static_layer(cv, ident, shirts[rng.integers(len(shirts))])
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    xn, yn = xx / w - 0.5, yy / h - 0.5
    wall = np.array([150, 156, 166], np.float32) + rng.normal(0, 4, 3).astype(np.float32)
    bg = wall[None, None, :] * (1.0 - 0.18 * yn[..., None] - 0.25 * (xn**2 + yn**2)[..., None])
    # session 1: neutral; session 2 (and later): brighter and warmer, light from the other side
    tint = np.array([1.0, 1.0, 1.0], np.float32) if k == 1 else np.array([1.14, 1.08, 0.96], np.float32)
    tint = tint * (1.0 + rng.normal(0, 0.01, 3)).astype(np.float32)
    direction = (-1.0 if k % 2 else 1.0) * rng.uniform(0.08, 0.14)
    gain = tint[None, None, :] * (1.0 + direction * xn - 0.05 * yn)[..., None]
    return _Session(k, premul, alpha, bg.astype(np.float32), gain.astype(np.float32), _make_sensors(rng))


def _render(
    cv: _Canvas, ident: _Identity, sess: _Session, take: _Take, i: int, sensors: bool
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Frame ``i``: (ground truth frame, sensor frame or None, mask or None)."""
    layer = sess.premul.copy()
    s = take.signals[i]
    _draw_dynamic(layer, cv, ident, s, take.gaze[i])
    m = _affine(cv, take.head[i])
    size = (cv.width, cv.height)
    warped = cv2.warpAffine(layer, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    a = cv2.warpAffine(sess.alpha, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    unlit = warped.astype(np.float32) + (1.0 - a)[..., None] * sess.background
    gt = np.clip(unlit * sess.gain + 0.5, 0, 255).astype(np.uint8)
    if not sensors:
        return gt, None, None
    ov = _draw_sensors(cv, sess.sensors, s, m, ident.mouth_w)
    sa = ov[..., 3]
    mask = sa > 0
    lit = (ov[..., :3].astype(np.float32) + (1.0 - sa.astype(np.float32) / 255.0)[..., None] * unlit) * sess.gain
    sensor = gt.copy()
    sensor[mask] = np.clip(lit[mask] + 0.5, 0, 255).astype(np.uint8)
    return gt, sensor, mask


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
        gt, sensor, mask = _render(plan.canvas, plan.identity, plan.session, plan.take, i, plan.sensors)
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
