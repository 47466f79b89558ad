"""How to clean: one frozen :class:`CleanOptions` that the ``clean`` command and the
post-fit hook build once and hand down through :func:`~sensor_removal.cleaning.clean_subject`,
:func:`~sensor_removal.cleaning.clean_recordings` and :func:`~sensor_removal.cleaning.clean_video`,
instead of the same keywords spelled out at every level.

Each settings class validates its own fields once, when it is built: the compositing mask
(:class:`~sensor_removal.cleaning.mask.MaskSettings`), the steady fill
(:class:`~sensor_removal.cleaning.steady.SteadySettings`) and the options here, so a bad
value is refused before any video is opened.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from sensor_removal.cleaning.mask import MaskSettings
from sensor_removal.cleaning.settings import (
    DEFAULT_COMPOSITE,
    DEFAULT_FEATHER,
    DEFAULT_MASK_METHOD,
    DEFAULT_STEADY,
    CleanError,
    Composite,
    Precision,
)
from sensor_removal.cleaning.steady import SteadySettings
from sensor_removal.core.video import MAX_CRF, Codec

__all__ = ["CleanOptions", "check_crf"]


def check_crf(crf: int) -> None:
    """Refuse an H.264 quality outside ``0..MAX_CRF`` (:class:`CleanError`)."""
    if not 0 <= int(crf) <= MAX_CRF:
        raise CleanError(f"crf must be between 0 and {MAX_CRF} (H.264 quality; lower is better), got {crf}")


@dataclass(frozen=True)
class CleanOptions:
    """Everything about *how* videos are cleaned that is the same for every video of a run.

    Args:
        paste_back: also write ``NAME.full.mp4``, the full frame with the cleaned crop
            blended into the bbox.
        batch_size: frames per generator call (None: :func:`~sensor_removal.cleaning.default_batch_size`).
        device: ``auto`` (CUDA when present), ``cpu``, ``cuda`` or a :class:`torch.device`.
        precision: ``auto`` (bf16 on CUDA, fp32 on CPU), ``fp32`` or ``bf16``.
        codec: ``h264``, ``h264-lossless`` or ``mp4v``.
        crf: H.264 quality ``0..MAX_CRF`` (lower is better; 12 is near-lossless).
        feather: paste-back blend ramp, pixels of the full frame.
        progress: show a progress bar / progress lines.
        composite: ``auto`` (ours; default): ``M·G(S) + (1 − M)·S`` with the sensor mask;
            ``off``: the paper's full repaint.
        mask: how the compositing mask is cut (used with ``composite="auto"``; default
            method ``reference``).
        mask_video: with compositing, also write ``NAME.mask.mp4``.
        keep_repaint: with compositing or the steady fill, also write ``NAME.repaint.mp4``.
        detail_video: with the sub-pixel composite (mask method ``reference``), also write
            ``NAME.detail.mp4``: the composite at the mask's finer size (up to the bbox's
            own resolution), whose pixels away from the sensors are the recording's
            rather than its downscaled crop (ours; :func:`~sensor_removal.cleaning.mask.composite_detail`).
            The paste-back then uses it too. Not written where that size is the crop's.
        overwrite: replace existing outputs (never the inputs).
        steady: the motion-adaptive steady fill (ours). None (default): strength 0.9 with
            compositing, off with ``composite="off"`` — so ``off`` alone is the paper's
            frame-by-frame full repaint.
        mask_fallback: with mask method ``reference`` and no reference to use (a
            checkpoint from before it was stored, a lone video), cut the mask with
            ``change`` instead and say so; False (the CLI when ``--mask-method`` is
            given): refuse with :class:`CleanError`.

    The defaults are the product (the best video for downstream tools, measured in
    docs/compositing.md); the paper's method is ``composite="off"``.
    """

    paste_back: bool = False
    batch_size: int | None = None
    device: str | torch.device = "auto"
    precision: Precision = "auto"
    codec: Codec = "h264"
    crf: int = 12
    feather: int = DEFAULT_FEATHER
    progress: bool = True
    composite: Composite = DEFAULT_COMPOSITE
    mask: MaskSettings = field(default_factory=lambda: MaskSettings(method=DEFAULT_MASK_METHOD))
    mask_video: bool = False
    keep_repaint: bool = False
    detail_video: bool = True
    overwrite: bool = False
    steady: SteadySettings | None = None
    mask_fallback: bool = True

    def __post_init__(self) -> None:
        if self.batch_size is not None and int(self.batch_size) < 1:
            raise CleanError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.composite not in ("auto", "off"):
            raise CleanError(f"composite must be 'auto' or 'off', got {self.composite!r}")
        check_crf(self.crf)
        if self.steady is None:  # frozen: set once, here
            strength = DEFAULT_STEADY if self.composite == "auto" else 0.0
            object.__setattr__(self, "steady", SteadySettings(strength=strength))

    @property
    def compositing(self) -> bool:
        return self.composite == "auto"

    @property
    def steadied(self) -> bool:
        assert self.steady is not None  # set in __post_init__
        return self.steady.on
