"""The crops the ``reference`` compositing mask compares against (ours), cut where both
the fit (to store them in the checkpoint) and the cleaner (for older checkpoints) can
reach them: the subject's normal recordings, frames spread evenly over them, cut finer
than the model works (:func:`reference_size`) so the mask can count which part of each
crop pixel a sensor covers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sensor_removal.core.manifest import Recording

#: How much finer than the crop the reference mask is cut, by default (docs/compositing.md).
DEFAULT_DETAIL = 3.0
#: Normal-recording frames a reference keeps.
REFERENCE_FRAMES = 60


def reference_size(crop_size: int, bboxes: Sequence[Sequence[int]], detail: float = DEFAULT_DETAIL) -> int:
    """The side at which the ``reference`` mask is cut: ``detail`` × the crop side, but
    never finer than the recordings themselves (the smallest bbox side) nor coarser than
    the crop."""
    finest = min((min(int(b[2]), int(b[3])) for b in bboxes), default=crop_size)
    return max(int(crop_size), min(int(round(detail * crop_size)), finest))


def reference_crops(recordings: Sequence[Recording], size: int, count: int = REFERENCE_FRAMES) -> np.ndarray:
    """``(K, size, size, 3)`` uint8: about ``count`` frames spread evenly over the
    ``recordings`` (normal ones), each cut with its bbox to ``size``."""
    from sensor_removal.core.video import crop_resize, iter_frames, probe

    if not recordings:
        raise ValueError("the subject has no normal recordings to take reference colours from")
    per = max(1, -(-count // len(recordings)))
    crops = []
    for rec in recordings:
        total = probe(rec.path).frame_count
        want = set(np.linspace(0, max(total - 1, 0), min(per, max(total, 1))).round().astype(int).tolist())
        crops += [crop_resize(f, rec.bbox, size) for _, f in iter_frames(rec.path, sorted(want))]
    return np.stack(crops)
