"""Temporal stability: does a cleaned video flicker where the sensors were?

A generator applied frame by frame has no memory, so what it paints over an electrode may
change from one frame to the next although the face did not (the most common complaint
about CycleGAN on video); a per-frame mask can add its own blinking edges. Frame-wise
fidelity (PSNR/SSIM) does not see this. Two figures (our extension, not in the paper):

* :func:`flicker` — with a ground truth (synthetic subjects): the frame-to-frame change of
  the video that the ground truth does not have,
  ``mean |(V_t − V_{t−1}) − (G_t − G_{t−1})|`` over the pixels of a region (the true
  sensor area of both frames), in 8-bit levels. 0 when the video changes exactly as the
  ground truth does — in particular for a static video with a static truth; it grows with
  any added flicker; a constant brightness offset of the whole video cancels out.
* :func:`frame_change` — without a ground truth (real subjects): the mean absolute
  frame-to-frame change of one video, ``mean |V_t − V_{t−1}|``. The protocol compares a
  cleaned video's with the normal video's of the same session (``temporal`` /
  ``excess``: C − N, in 8-bit levels): a cleaning that flickers moves more than the
  recorded face does.

Everything here is arithmetic on uint8 frames; the protocol feeds :func:`frame_change`
from its shared decoding pass (:class:`evaluation.families.TemporalFrames`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["flicker", "frame_change", "video_changes"]


def frame_change(previous: np.ndarray, current: np.ndarray, region: np.ndarray | None = None) -> float:
    """Mean absolute change between two uint8 frames ``(H, W, 3)``, over ``region``
    ``(H, W)`` bool if given (NaN for an empty region)."""
    d = np.abs(current.astype(np.float32) - previous.astype(np.float32)).mean(axis=-1)
    if region is None:
        return float(d.mean())
    return float(d[region].mean()) if region.any() else float("nan")


def flicker(
    previous: np.ndarray,
    current: np.ndarray,
    truth_previous: np.ndarray,
    truth_current: np.ndarray,
    region: np.ndarray | None = None,
) -> float:
    """Excess temporal change of a video against its ground truth between two frames:
    ``mean |ΔV − ΔG|`` over ``region`` (NaN for an empty region). See the module doc."""
    dv = current.astype(np.float32) - previous.astype(np.float32)
    dg = truth_current.astype(np.float32) - truth_previous.astype(np.float32)
    e = np.abs(dv - dg).mean(axis=-1)
    if region is None:
        return float(e.mean())
    return float(e[region].mean()) if region.any() else float("nan")


def video_changes(frames: np.ndarray, previous: np.ndarray | None = None) -> np.ndarray:
    """:func:`frame_change` of each frame of ``(T, H, W, 3)`` against the one before
    (``previous``: the frame before the first, e.g. from the last batch; without it the
    first value is NaN)."""
    out = np.full(len(frames), np.nan)
    for i, frame in enumerate(frames):
        before = frames[i - 1] if i else previous
        if before is not None:
            out[i] = frame_change(before, frame)
    return out
