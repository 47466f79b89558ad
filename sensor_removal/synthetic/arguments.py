"""The synthetic subject's rendering arguments: their defaults, their check, and the
error every part of the package raises for bad input (one message style for the
library and the ``synth`` command).
"""

from __future__ import annotations

import math

import numpy as np

from sensor_removal.core.manifest import TASKS

DEFAULT_SECONDS = 20.0
DEFAULT_FPS = 15.0
DEFAULT_SIZE: tuple[int, int] = (256, 256)  # (width, height)


class SynthError(ValueError):
    """Invalid arguments for the synthetic subject; ``str(err)`` is the user's message."""


def _check_args(seconds: float, fps: float, size: tuple[int, int], seed: int) -> int:
    """Check the rendering arguments; return the frame count per video."""
    if not isinstance(size, (tuple, list)) or len(size) != 2:
        raise SynthError(f"size must be (width, height), got {size!r}")
    for name, v in zip(("width", "height"), size, strict=True):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise SynthError(f"size: {name} must be an integer, got {v!r}")
        if v < 64 or v % 2:
            raise SynthError(f"size: {name} must be even and >= 64 (H.264 needs even sizes), got {v}")
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps) or fps <= 0:
        raise SynthError(f"fps must be a number > 0, got {fps!r}")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds <= 0:
        raise SynthError(f"seconds must be a number > 0, got {seconds!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise SynthError(f"seed must be a non-negative integer, got {seed!r}")
    n = int(round(seconds * fps))
    if n < 3:
        raise SynthError(
            f"seconds x fps = {seconds} x {fps} gives {n} frame(s); need at least 3 (one per task: {', '.join(TASKS)})"
        )
    return n
