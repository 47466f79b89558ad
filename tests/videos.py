"""Small videos for tests: frames whose pixels encode their own index, so a test can
tell exactly which frame it got back."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sensor_removal.core.video import write_video


def indexed_frames(n: int, width: int = 64, height: int = 48, seed: int = 0) -> np.ndarray:
    """``n`` RGB frames: a smooth random texture plus a bright band whose position
    encodes the frame index."""
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 200, size=(height // 8 + 1, width // 8 + 1, 3)).astype(np.float32)
    base = np.kron(base, np.ones((8, 8, 1)))[:height, :width]
    frames = np.empty((n, height, width, 3), np.uint8)
    for i in range(n):
        f = base.copy()
        x = (i * 3) % width
        f[:, x : x + 3] = 250.0
        f[..., 0] = (f[..., 0] + i * 5) % 256
        frames[i] = f.astype(np.uint8)
    return frames


def make_video(
    path: Path,
    n: int = 20,
    width: int = 64,
    height: int = 48,
    fps: float = 10.0,
    seed: int = 0,
    codec: str = "h264-lossless",
) -> np.ndarray:
    """Write ``n`` indexed frames to ``path`` (lossless by default) and return them."""
    frames = indexed_frames(n, width, height, seed)
    write_video(path, frames, fps=fps, codec=codec)
    return frames
