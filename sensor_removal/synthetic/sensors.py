"""The sEMG sensors of a synthetic session: ~60 electrodes in the fixed anatomical layout
of high-resolution facial sEMG, cables leading off the face and a few swabs, placed
once per session and drawn per frame on the deformed face (glued to the skin).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from sensor_removal.synthetic.faces import _AA, _ONE, _SHIFT, _apply, _Canvas, _deform

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
    direction[lips] = np.stack([np.where(pts[lips, 0] < 0, -1.0, 1.0), np.full(int(lips.sum()), 0.35)], 1)
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


def _draw_sensors(cv: _Canvas, sens: _Sensors, s: np.ndarray, m: np.ndarray, mouth_w: float) -> np.ndarray:
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
    ctrl = (pos + end) / 2 + np.stack([np.zeros(len(pos)), sens.sag * np.linalg.norm(end - pos, axis=1)], 1)
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
        np.round(_apply(m, cv.center + cv.scale * _deform(p, s, mouth_w)) * _ONE).astype(np.int32) for p in sens.swabs
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
        polys = np.round((pos[:, None] + (frac * r_px)[:, None, None] * disk[None]) * _ONE).astype(np.int32)
        cv2.fillPoly(ov, list(polys), color, _AA, _SHIFT)
    return ov
