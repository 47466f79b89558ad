"""The synthetic face: the subject's look (:class:`_Identity`), its canonical placement
in the frame (:class:`_Canvas`), the skin deformation by the expression signals
(:func:`_deform`, which the electrodes follow too), and the drawing of the static head
and of the expression-dependent features, plus head motion and the fixed face bbox.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

# Face geometry, in face units: origin at the face centre, x right, y down, face
# half-width 1 (the face ellipse has half-height _FACE_B).
_FACE_B = 1.3
_HAIR_CENTER, _HAIR_AXES = (0.0, -0.3), (1.12, 1.15)
_FRINGE_CENTER, _FRINGE_AXES = (0.0, -1.3), (0.85, 0.22)
_EAR_CENTER, _EAR_AXES = (1.0, -0.15), (0.13, 0.24)
# Eye half-width (and the mouth width in _make_identity): closer to the proportions of
# dlib's 68-point mean shape. With narrower eyes (0.16) and mouth (0.28) the features were
# small for the face outline and dlib's points sat partly off them, which capped how well
# the landmark geometry follows the expression (docs/emg.md, "The face's proportions").
_EYE_Y, _EYE_HW = -0.3, 0.19
_MOUTH_Y = 0.55
_SCALE = 0.26  # face half-width in px per min(W, H): large faces, as the crop needs
_CENTER_DY = 0.08  # face centre below the frame centre (face units): hair fits on top
# Expression movement sizes at full activation (face units; see _deform and docs/emg.md).
# Before they were re-tuned to real AU sizes: brow raise 0.13, brow lowering 0.08 down /
# 0.045 in, lip-corner depression 0.07 (no lateral part), no upper-lip raise; at those
# sizes the depression was about dlib's jitter and the sEMG mapping could not see it.
# Brow raise 0.15 (~1 cm, the AU1+2 size): at 0.19 the raised brows left the range in
# which dlib's brow points follow them (they fell back towards the eyes).
_BROW_RAISE = 0.15
_BROW_LOWER = 0.13
_BROW_IN = 0.07
_CORNER_DOWN = 0.14
_CORNER_DOWN_OUT = 0.1
_LIP_RAISE = 0.15
# levator labii superioris per expression signal (as synthetic.emg drives it)
_LLS_SMILE, _LLS_FROWN, _LLS_DOWN = 0.3, 0.35, 0.15


_SHIFT = 4  # OpenCV sub-pixel drawing: coordinates in 1/16 px
_ONE = 1 << _SHIFT
_AA = cv2.LINE_AA


# ------------------------------------------------------------------------ face geometry


def _levator(s: np.ndarray) -> float:
    """Activation of levator labii superioris (AU9/AU10) implied by the expression: the
    same mix the synthetic sEMG drives it with (:data:`.emg._DRIVES`), so the upper lip
    rises whenever that muscle fires."""
    _, f, _, sm, _, _, dn = (float(v) for v in s)
    return _LLS_SMILE * sm + _LLS_FROWN * f + _LLS_DOWN * dn


def _deform(p: np.ndarray, s: np.ndarray, mouth_w: float) -> np.ndarray:
    """Move skin points ``p`` (N, 2; face units) by the expression ``s`` (one row of
    signals). The same displacements the feature drawing uses, so electrodes stay glued.

    Movement sizes at full activation (face units; x 66.6 = px at 256 x 256, x ~7 = mm
    on a 14 cm wide face), chosen at the size of the real AU movements (FACS manual;
    Ekman, Friesen & Hager 2002) so that each is several pixels, above dlib's ~1 px
    jitter (docs/emg.md lists them in px and mm)."""
    b, f, c, sm, o, pk, dn = (float(v) for v in s)
    lls = _levator(s)
    x, y = p[:, 0], p[:, 1]
    ax, sx = np.abs(x), np.where(x < 0, -1.0, 1.0)
    dx = np.zeros_like(x)
    dy = np.zeros_like(y)
    # frontalis lifts brows and forehead skin (the top of the forehead moves less)
    up = np.clip((-0.3 - y) / 0.25, 0, 1)
    dy -= _BROW_RAISE * b * up * (1 - 0.6 * np.clip((-0.6 - y) / 0.5, 0, 1))
    # corrugator pulls the brow region down and medially
    wc = up * np.clip((0.75 - ax) / 0.4, 0, 1) * np.clip((y + 1.05) / 0.3, 0, 1)
    dy += _BROW_LOWER * f * wc
    dx -= _BROW_IN * f * wc * sx * np.clip((0.7 - ax) / 0.5, 0, 1)
    # orbicularis oculi: skin around the eyes contracts slightly towards the eye
    for side in (-1.0, 1.0):
        ex, ey = side * 0.38, _EYE_Y
        w = np.exp(-(((x - ex) ** 2 + (y - ey) ** 2) / 0.22**2))
        dx += (ex - x) * 0.08 * c * w
        dy += (ey - y) * 0.08 * c * w
        # zygomaticus: mouth corners out and up, cheeks up; depressor: corners down, a little out
        cx = side * mouth_w
        wq = np.exp(-(((x - cx) ** 2 + (y - _MOUTH_Y) ** 2) / 0.2**2)) * (sx == side)
        dx += side * mouth_w * _corner_out(sm, o, pk, dn) * wq
        dy += _corner_dy(sm, o, dn) * wq
        wk = np.exp(-(((x - side * 0.45) ** 2 + (y - 0.15) ** 2) / 0.3**2))
        dy -= 0.04 * sm * wk
    # levator labii superioris: the skin between nose and upper lip goes up
    dy -= _LIP_RAISE * lls * np.exp(-((x**2 + (y - 0.47) ** 2) / 0.16**2))
    # jaw drop: everything below the lips goes down
    dy += 0.2 * o * np.clip((y - 0.58) / 0.15, 0, 1) * np.clip((1.0 - ax) / 0.4, 0, 1)
    # pucker: the skin around the mouth gathers towards its centre
    wp = np.exp(-((x**2 + (y - 0.56) ** 2) / 0.28**2))
    dx -= 0.35 * pk * x * wp
    dy -= 0.15 * pk * (y - 0.56) * wp
    return np.stack([x + dx, y + dy], axis=1)


def _corner_out(sm: float, o: float, pk: float, dn: float) -> float:
    """Lip-corner displacement along x, in mouth half-widths (out > 0)."""
    return 0.3 * sm - 0.4 * pk - 0.05 * o + _CORNER_DOWN_OUT * dn


def _corner_dy(sm: float, o: float, dn: float) -> float:
    """Lip-corner displacement along y (face units, down > 0)."""
    return -0.07 * sm + _CORNER_DOWN * dn + 0.02 * o


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
    skins = np.array([[236, 200, 170], [224, 178, 145], [198, 146, 110], [160, 112, 82], [122, 84, 62]], float)
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
        mouth_w=0.322 + rng.uniform(-0.023, 0.023),
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


def _static_layer(cv: _Canvas, ident: _Identity, shirt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
    for side in (-1.0, 1.0):
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
    noise = cv2.GaussianBlur(tex_rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), max(0.6, 0.02 * cv.scale))
    noise *= 2.0 / max(float(noise.std()), 1e-6)  # type: ignore[arg-type]  # a float32 array (cv2 stubs: integer)
    skin_like = np.abs(rgb.astype(np.float32) - skin.astype(np.float32)).sum(-1) < 60
    face = rgb.astype(np.float32) * shade[..., None]
    face += np.where(skin_like, noise, 0)[..., None]
    # cheeks: a little warmer
    for side in (-1.0, 1.0):
        d2 = (u - side * 0.5) ** 2 + (v - 0.2) ** 2
        face[..., 0] += 10.0 * np.exp(-d2 / 0.08) * skin_like
    rgb = np.clip(face + 0.5, 0, 255).astype(np.uint8)

    # hair fringe over the top of the forehead (part of the silhouette already)
    _ellipse(rgb, cv, _FRINGE_CENTER, _FRINGE_AXES, _col(hair))
    # nose: bridge sides, alae, nostrils, a highlight on the tip
    for side in (-1.0, 1.0):
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
            cv2.circle(eye, (int(c[0]), int(c[1])), cv.r(0.058), _col(ident.iris, 0.6), 1, _AA, _SHIFT)
            cv2.circle(eye, (int(c[0]), int(c[1])), cv.r(0.025), (15, 12, 12), -1, _AA, _SHIFT)
            hl = cv.fx(ic + np.array([0.018, -0.018]), org)
            cv2.circle(eye, (int(hl[0]), int(hl[1])), cv.r(0.011), (250, 250, 250), -1, _AA, _SHIFT)
            m = np.zeros(roi.shape[:2], np.uint8)
            cv2.fillPoly(m, [cv.fx(opening, org)], 255, _AA, _SHIFT)
            mf = (m.astype(np.float32) / 255.0)[..., None]
            roi[:] = np.clip(roi * (1 - mf) + eye * mf + 0.5, 0, 255).astype(np.uint8)
    thick = max(1, int(round(0.022 * cv.scale)))
    cv2.polylines(img, [cv.fx(np.stack([xs, upper], 1))], False, _col(ident.hair, 0.5), thick, _AA, _SHIFT)
    cv2.polylines(img, [cv.fx(np.stack([xs, lower], 1)[1:-1])], False, _col(skin, 0.72), 1, _AA, _SHIFT)


def _draw_dynamic(img: np.ndarray, cv: _Canvas, ident: _Identity, s: np.ndarray, gaze: np.ndarray) -> None:
    """Brows, eyes, mouth and expression creases for one frame (canonical placement)."""
    b, f, c, sm, o, pk, dn = (float(v) for v in s)
    skin = ident.skin
    mw = ident.mouth_w

    # forehead wrinkles (brow raise), frown lines (brow lower), crow's feet (smile)
    lift = 0.5 * _BROW_RAISE * b
    for k, yw in enumerate((-0.8, -0.9, -1.0)):
        xw = np.linspace(-0.42 + 0.05 * k, 0.42 - 0.05 * k, 9)
        _blend_line(img, cv, np.stack([xw, yw - lift + 0.03 * (xw / 0.42) ** 2], 1), skin, 0.2 * b)
    for side in (-1.0, 1.0):
        _blend_line(img, cv, np.array([[side * 0.05, -0.62], [side * 0.045, -0.47]]), skin, 0.22 * f)
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
        base = np.array([[0.12, ident.brow_y], [0.36, ident.brow_y - 0.07], [0.62, ident.brow_y - 0.01]])
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
    half = mw * (1 + _corner_out(sm, o, pk, dn))
    cy = _MOUTH_Y + _corner_dy(sm, o, dn)
    raise_ = _LIP_RAISE * _levator(s)  # upper lip up (AU10), as _deform moves the skin above it
    full = 1.0 + 0.4 * pk
    xs = np.linspace(-half, half, 15)
    q = 1.0 - (xs / half) ** 2

    def contour(mid: float, power: float) -> np.ndarray:
        return np.stack([xs, cy + (mid - cy) * q**power], 1)

    upper_out = contour(_MOUTH_Y - 0.065 * full - 0.015 * o - raise_, 0.5)
    upper_out[:, 1] += 0.012 * np.exp(-((xs / (0.12 * mw)) ** 2)) - 0.008 * np.exp(
        -(((np.abs(xs) - 0.3 * mw) / (0.15 * mw)) ** 2)
    )
    upper_in = contour(_MOUTH_Y - 0.004 - 0.02 * o - 0.5 * raise_, 1.0 - 0.4 * pk)
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
        cv2.fillPoly(img, [cv.fx(np.concatenate([upper_in, lower_in[::-1]]))], (70, 22, 28), _AA, _SHIFT)
        teeth_h = min(0.045, gap * 0.6)
        teeth = np.concatenate([upper_in, (upper_in + np.array([0.0, teeth_h]))[::-1]])
        teeth = teeth[(np.abs(teeth[:, 0]) <= 0.75 * half)]
        if len(teeth) >= 3:
            cv2.fillPoly(img, [cv.fx(teeth)], (236, 232, 220), _AA, _SHIFT)
    cv2.fillPoly(img, [cv.fx(np.concatenate([upper_out, upper_in[::-1]]))], _col(ident.lips), _AA, _SHIFT)
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
    for side in (-1.0, 1.0):
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
