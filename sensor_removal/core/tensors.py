"""Frames between numpy and torch: uint8 RGB ``(N, H, W, 3)`` <-> float ``(N, 3, H, W)`` in [-1, 1],
the generator's range (tanh output, paper Sec. 3). Used by training, cleaning and the
evaluation alike, so it lives below all of them (it needs neither Lightning nor a model).
"""

from __future__ import annotations

import numpy as np
import torch


def to_tensor(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 RGB ``(H, W, 3)`` or ``(N, H, W, 3)`` → float ``(N, 3, H, W)`` in [-1, 1]."""
    if isinstance(frames, np.ndarray) and not frames.flags.writeable:
        frames = np.array(frames)  # memory-mapped cache rows are read-only
    t = torch.as_tensor(frames)
    if t.ndim == 3:
        t = t.unsqueeze(0)
    return to_unit_range(t.permute(0, 3, 1, 2))


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``(..., 3, H, W)`` → float32 in [-1, 1], same shape and memory layout.

    Training batches travel as uint8 (a quarter of the bytes of float32 through the
    DataLoader's shared memory and the host-to-GPU copy) and are converted here, on the
    device, by ``CycleGAN.on_after_batch_transfer``."""
    return images.float().div_(127.5).sub_(1.0)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """float ``(N, 3, H, W)`` in [-1, 1] → uint8 RGB ``(N, H, W, 3)`` (rounded, clipped)."""
    x = images.detach().float().add(1.0).mul_(127.5).round_().clamp_(0, 255)
    return x.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
