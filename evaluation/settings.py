"""What changes the evaluation's numbers: :class:`ProtocolSettings`, validated once, written to
``summary.json`` by :func:`evaluation.protocol.run_protocol` and read by every metric
family (defaults: the paper's, Sec. 4).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from evaluation.metrics.facial import AU_MODELS, DEFAULT_AU_MODELS
from evaluation.metrics.timeseries import MAPE_EPS, MAX_GAP_FRAMES, MAX_SHIFT_S, SHIFT_MODES
from evaluation.pairs import SEGMENTS
from evaluation.weight_files import METRICS

if TYPE_CHECKING:
    from evaluation.metrics.facial.runtime import FacialBackend


@dataclass(frozen=True)
class ProtocolSettings:
    """Everything that changes the numbers (written to ``summary.json``).

    ``metrics``: any of ``lpips, fid, facial, groundtruth, landmarks``. ``lpips_pairs``: frame pairs
    per comparison. ``fid_sets``/``fid_set_size``: FID draws and their size (paper:
    N = 128). ``crop_size``: face-crop side for LPIPS/FID/ground truth (None: the
    cleaned videos' size, else 256). ``device``: ``cpu``, ``cuda``, ``auto``.
    ``au_models``: the py-feat AU models to run (:data:`evaluation.metrics.facial.AU_MODELS`;
    default one classical and one deep model, as the paper's Table 2).
    ``facial_*``: stride, cache folder (None: ``RESULTS/facial_cache``).
    ``max_shift_s``, ``mape_eps``, ``max_gap_frames``: :mod:`evaluation.metrics.timeseries`;
    ``shift``: ``joint`` (one MAPE shift per pair, the default) or ``per_series``.
    ``dtw_window_s``: Sakoe-Chiba band of the DTW in seconds (None: unconstrained, the
    default; a band of ±20 s makes 3,000-frame DTWs ~3x faster but changes the values).
    """

    metrics: tuple[str, ...] = METRICS
    segments: tuple[str, ...] = SEGMENTS
    seed: int = 0
    lpips_pairs: int = 100
    #: LPIPS over all frame pairs of the two segments (the paper's rule) instead of
    #: ``lpips_pairs`` seeded pairs; costs one AlexNet pass per frame of every segment.
    lpips_all_pairs: bool = False
    fid_sets: int = 5
    fid_set_size: int = 128
    crop_size: int | None = None
    device: str = "auto"
    batch_size: int = 16
    au_models: tuple[str, ...] = DEFAULT_AU_MODELS
    facial_stride: int = 1
    facial_cache: Path | None = None
    #: Ours: a folder of finished dlib landmark series keyed by video content
    #: (:class:`evaluation.landmark_rows.LandmarkCache`); None: none kept.
    landmark_cache: Path | None = None
    #: Ours: where py-feat's networks run (:mod:`evaluation.metrics.facial.runtime`): an inference
    #: runtime checked against torch within 1e-4 on the first batch, or torch itself.
    facial_backend: FacialBackend = "openvino"
    max_shift_s: float = MAX_SHIFT_S
    mape_eps: float = MAPE_EPS
    max_gap_frames: int = MAX_GAP_FRAMES
    dtw_window_s: float | None = None
    shift: str = "joint"
    #: Evaluate although some sensor recordings have no cleaned version (listed in
    #: ``summary.json`` as ``missing_cleaned``); without it that is an error.
    allow_missing: bool = False

    def __post_init__(self) -> None:
        if (
            not self.au_models
            or any(m not in AU_MODELS for m in self.au_models)
            or len(set(self.au_models)) < len(self.au_models)
        ):
            raise ValueError(
                f"au_models must be distinct names out of {', '.join(AU_MODELS)}, got {list(self.au_models)}"
            )
        if self.shift not in SHIFT_MODES:
            raise ValueError(f"shift must be one of {', '.join(SHIFT_MODES)}, got {self.shift!r}")
        bad = [m for m in self.metrics if m not in METRICS]
        if bad:
            raise ValueError(f"unknown metric(s) {bad}; expected some of {', '.join(METRICS)}")
        for name in ("lpips_pairs", "fid_sets", "batch_size", "facial_stride"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.fid_set_size < 2:
            raise ValueError(f"fid_set_size must be >= 2, got {self.fid_set_size}")
