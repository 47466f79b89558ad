"""Paste-back: the cleaned face crop resized into its bbox of the full frame with a
feathered edge (:func:`paste_back`), so the cleaned crop fades into the recorded
frame instead of leaving a seam; and where the pasted-back video goes.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from sensor_removal.cleaning.settings import DEFAULT_FEATHER
from sensor_removal.core.video import check_bbox, sibling_path


def feather_alpha(width: int, height: int, feather: int = DEFAULT_FEATHER) -> np.ndarray:
    """Blend weight ``(height, width, 1)`` float32 for pasting a crop into its bbox.

    1 in the interior, a linear ramp over the ``feather`` outermost pixels inside the bbox
    border (the outermost pixel gets ``1 / (feather + 1)``), so the cleaned crop fades into
    the original frame instead of leaving a visible seam. ``feather=0`` gives a hard paste.
    """
    feather = max(0, min(int(feather), (min(width, height) - 1) // 2))

    def ramp(n: int) -> np.ndarray:
        d = np.minimum(np.arange(n), np.arange(n)[::-1]).astype(np.float32)
        return np.clip((d + 1.0) / (feather + 1.0), 0.0, 1.0)

    alpha = np.minimum(ramp(height)[:, None], ramp(width)[None, :])
    return alpha[:, :, None].astype(np.float32)


def paste_back(
    frame: np.ndarray,
    crop: np.ndarray,
    bbox: tuple[int, int, int, int],
    alpha: np.ndarray | None = None,
    *,
    feather: int = DEFAULT_FEATHER,
) -> np.ndarray:
    """Return a copy of ``frame`` with ``crop`` (the cleaned ``crop_size`` face crop)
    resized back into ``bbox`` = (x, y, w, h) and blended with :func:`feather_alpha`.

    Pixels outside the bbox are the input's bytes, unchanged. ``alpha`` (from
    :func:`feather_alpha` for the bbox's w, h) can be passed to avoid recomputing it.
    Resizing mirrors :func:`crop_resize` (area when shrinking, cubic when enlarging).
    """
    x, y, w, h = (int(v) for v in bbox)
    why = check_bbox((x, y, w, h), frame.shape[1], frame.shape[0])
    if why:
        raise ValueError(f"paste_back: {why}")
    if crop.shape[0] == h and crop.shape[1] == w:
        back = crop
    else:
        shrink = crop.shape[0] >= h and crop.shape[1] >= w
        back = cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
    if alpha is None:
        alpha = feather_alpha(w, h, feather)
    out = frame.copy()
    region = out[y : y + h, x : x + w]
    blended = region.astype(np.float32)
    blended += alpha * (back.astype(np.float32) - blended)
    np.rint(blended, out=blended)
    region[...] = np.clip(blended, 0, 255).astype(np.uint8)
    return out


def full_output_path(out: Path) -> Path:
    """``DIR/name.mp4`` → ``DIR/name.full.mp4`` (the pasted-back full-frame video)."""
    return sibling_path(out, "full")
