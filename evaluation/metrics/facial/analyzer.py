"""FacialAnalyzer (py-feat over videos, cached series) and SeriesBuilder."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from dataclasses import InitVar, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from evaluation.metrics.facial.fastpaths import (
    FaceDetectorPool,
    _run_networks_in_bf16,
    _to_channels_last,
    fold_batchnorm_on_first_call,
)
from evaluation.metrics.facial.models import (
    _FACE_FILES,
    _MULTITASK_FILE,
    AU_COLUMNS,
    CACHE_VERSION,
    EMOTION_COLUMNS,
    FACE_COLUMNS,
    AUModel,
    EmotionModel,
    FaceModel,
    FacialError,
    FeatModelSet,
    HubFile,
    LandmarkModel,
    ModelSetLike,
    _model_set,
)
from evaluation.metrics.facial.runtime import (
    BACKENDS,
    DEFAULT_BACKEND,
    GRAPH_DIR,
    FacialBackend,
    run_networks_in_runtime,
)
from evaluation.metrics.facial.series import FacialSeries, _normalise_columns, select_face, video_content_id
from evaluation.metrics.facial.weights import feat_cache_dir, feat_hub_offline, require_feat_weights
from sensor_removal.core.video import atomic_output, iter_frames, probe

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- analyzer


@dataclass(frozen=True)
class FacialAnalyzer:
    """Runs py-feat over videos and caches the per-frame series (the paper's AU and
    emotion tables compare these series).

    ``detector`` and the ``*_model`` names choose py-feat's detector and models (py-feat's
    own option names; see :class:`FeatModelSet`); ``model_set`` (``"v1"``, an
    :data:`AU_MODELS` name or a :class:`FeatModelSet`; init only), when given, sets all
    five at once.
    :attr:`feat_models` is the resulting :class:`FeatModelSet`. ``batch_size``: frames
    per forward pass. ``device``: ``"auto"`` (CUDA, else MPS, else CPU), ``"cpu"``,
    ``"cuda"``, ... ``stride``: analyse every ``stride``-th frame. ``face_threshold``:
    py-feat's face detection threshold. ``weights_dir``: the py-feat weights folder
    (None: see :func:`feat_cache_dir`). ``channels_last`` (ours, default on): py-feat's
    torch models (face, landmark, emotion nets) run with NHWC weights, which oneDNN and
    cuDNN convolve faster; values change only by float summation order.
    ``fold_batchnorm`` (ours, default on): each BatchNorm is folded into the convolution
    feeding it (checked against the unfolded network on the first batch; float rounding
    only, see :func:`~evaluation.metrics.facial.fastpaths.fold_batchnorm_on_first_call`).
    ``face_detectors`` (ours; the evaluation hands its AU models one
    :class:`~evaluation.metrics.facial.fastpaths.FaceDetectorPool`): analyzers given the same
    pool and the same RetinaFace weights and options share one RetinaFace, which answers
    a batch of frames it has already seen from memory, so a second AU model over the same
    frames (the evaluation's ``xgb`` + ``v2``) gets bit-identical faces without detecting
    them again (:class:`~evaluation.metrics.facial.fastpaths.SharedFaceDetector`); without a pool
    (None) an analyzer keeps its own RetinaFace. Neither these fast paths nor the pool
    changes the cache key: the series agree with the plain path within float rounding (a
    test holds them to 1e-4).
    ``precision="bf16"`` (ours, opt in): detection runs under bf16 autocast — faster on
    GPUs and on CPUs with AVX-512 BF16/AMX, but AU and emotion values move slightly, so the
    paper's float32 stays the default (the cache key records it). The py-feat detector is built on the first
    analysis that needs one (not on a cache hit) and reused by later ones.
    ``backend`` (ours, default ``"openvino"``; ``"onnxruntime"``; ``"torch"`` opts out):
    py-feat's networks run as exported ONNX graphs in that inference runtime on the CPU,
    float32, each checked against torch on its first call (within 1e-4 of its scale) and
    left on torch, with one warning saying why, where the runtime is missing or disagrees
    (:mod:`evaluation.metrics.facial.runtime`). Like the other fast paths it keeps the cache key.
    With ``precision="bf16"`` or on a GPU the networks stay on torch.
    """

    detector: Literal["v1", "v2"] = "v1"
    face_model: FaceModel = "retinaface"
    landmark_model: LandmarkModel = "mobilefacenet"
    au_model: AUModel = "xgb"
    emotion_model: EmotionModel = "resmasknet"
    batch_size: int = 16
    device: str = "auto"
    stride: int = 1
    face_threshold: float = 0.5
    weights_dir: Path | None = None
    channels_last: bool = True
    precision: Literal["32", "bf16"] = "32"
    fold_batchnorm: bool = True
    backend: FacialBackend = DEFAULT_BACKEND
    face_detectors: FaceDetectorPool | None = field(default=None, compare=False, repr=False)
    model_set: InitVar[FeatModelSet | str | None] = None
    _feat_detector: object = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self, model_set: FeatModelSet | str | None) -> None:
        if model_set is not None:
            ms = _model_set(model_set)
            for name in ("detector", "face_model", "landmark_model", "au_model", "emotion_model"):
                object.__setattr__(self, name, getattr(ms, name))
        _ = self.feat_models  # building it validates the names
        if self.weights_dir is not None:
            object.__setattr__(self, "weights_dir", Path(self.weights_dir))
        if self.batch_size < 1:
            raise ValueError(f"facial analysis: batch_size must be >= 1, got {self.batch_size}")
        if self.stride < 1:
            raise ValueError(f"facial analysis: stride must be >= 1, got {self.stride}")
        if self.precision not in ("32", "bf16"):
            raise ValueError(f"facial analysis: precision must be '32' or 'bf16', got {self.precision!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"facial analysis: backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if not 0.0 < self.face_threshold < 1.0:
            raise ValueError(f"facial analysis: face_threshold must lie in (0, 1), got {self.face_threshold}")

    @property
    def feat_models(self) -> FeatModelSet:
        """The py-feat detector and models this analyzer runs."""
        return FeatModelSet(self.detector, self.face_model, self.landmark_model, self.au_model, self.emotion_model)

    # -- weights / detector

    def require_weights(self) -> dict[HubFile, Path]:
        """Local paths of all weight files; raises :class:`FacialWeightsMissing`."""
        return require_feat_weights(self.feat_models, self.weights_dir)

    def _weights_id(self, paths: dict[HubFile, Path]) -> list[str]:
        return [
            f"{repo}/{name}@{path.parent.name}:{path.stat().st_size}" for (repo, name), path in sorted(paths.items())
        ]

    def _build_detector(self):
        """Build the py-feat detector offline from the weights folder (real constructors)."""
        import torch

        paths = self.require_weights()
        ms = self.feat_models
        with feat_hub_offline(self.weights_dir), torch.no_grad(), warnings.catch_warnings():
            # torch.no_grad() also restores the grad mode that py-feat's RetinaFace
            # switches off globally (torch.set_grad_enabled(False) in its __init__).
            warnings.filterwarnings("ignore", message=".*does not regress 6DoF head pose.*")
            if ms.detector == "v2":
                from feat import Detectorv2

                return Detectorv2(
                    device=self.device,
                    face_detection_threshold=self.face_threshold,
                    identity_model=None,
                    multitask_weights=str(paths[_MULTITASK_FILE]),
                )
            from feat import Detectorv1

            return Detectorv1(
                face_model=ms.face_model,
                landmark_model=ms.landmark_model,
                au_model=ms.au_model,
                emotion_model=ms.emotion_model,
                identity_model=None,
                gaze_model=None,
                device=self.device,
            )

    def _get_detector(self):
        if self._feat_detector is None:  # built lazily; the config itself is frozen
            detector = self._build_detector()
            if self.channels_last:
                _to_channels_last(detector)
            if self.fold_batchnorm:
                fold_batchnorm_on_first_call(detector)
            if self.precision == "bf16":
                _run_networks_in_bf16(detector, str(getattr(detector, "device", "cpu")).split(":")[0])
            elif self.backend != "torch":  # fp32 only: the runtime replaces torch's float32 kernels
                graphs = feat_cache_dir(self.weights_dir) / GRAPH_DIR
                run_networks_in_runtime(
                    detector, self.backend, graphs, str(getattr(detector, "device", None) or self.device)
                )
            if self.face_detectors is not None:
                self.face_detectors.share(detector, self._face_detector_key(detector))
            object.__setattr__(self, "_feat_detector", detector)
        return self._feat_detector

    def _face_detector_key(self, detector: object) -> tuple:
        """Everything that makes two analyzers' RetinaFace compute the same function."""
        ms = self.feat_models
        face = _FACE_FILES[ms.face_model][-1]
        path = require_feat_weights(ms, self.weights_dir)[face]
        device = str(getattr(detector, "device", None) or self.device)
        return (
            ms.face_model,
            str(path.resolve()),
            device,
            self.channels_last,
            self.fold_batchnorm,
            self.precision,
            self.backend,
        )

    # -- cache

    def cache_key(
        self, path: Path, bbox: tuple[int, int, int, int] | None, weights: dict[HubFile, Path], size: int | None = None
    ) -> str:
        from importlib.metadata import version

        identity = {
            "version": CACHE_VERSION,
            "video": video_content_id(path),
            "bbox": None if bbox is None else [int(v) for v in bbox],
            "stride": self.stride,
            "face_threshold": self.face_threshold,
            **({"precision": self.precision} if self.precision != "32" else {}),
            "models": self.feat_models.describe(),
            "weights": self._weights_id(weights),
            "py-feat": version("py-feat"),
        }
        if size is not None:  # keys of unresized analyses stay what they were
            identity["size"] = int(size)
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]

    def cache_file(
        self,
        path: str | os.PathLike,
        bbox: tuple[int, int, int, int] | None,
        size: int | None,
        cache_dir: str | os.PathLike,
    ) -> Path:
        """Where the series of ``path`` (cut to ``bbox``, resized to ``size``) is cached."""
        path = Path(path)
        return Path(cache_dir) / f"{path.stem}-{self.cache_key(path, bbox, self.require_weights(), size)}.csv"

    # -- analysis

    def analyze_video(
        self,
        path: str | os.PathLike,
        bbox: tuple[int, int, int, int] | None = None,
        frame_range: tuple[int, int] | None = None,
        cache_dir: str | os.PathLike | None = None,
        size: int | None = None,
    ) -> FacialSeries:
        """AU and emotion series of the video at ``path``.

        ``bbox`` (x, y, w, h): analyse only this region of each frame (the recording's
        fixed face box; leave None for videos that are already crops, e.g. cleaned
        ones). ``size``: resize that region to ``size`` x ``size`` first
        (:func:`sensor_removal.core.video.crop_resize`), so that normal, sensor and cleaned
        videos show py-feat faces of one resolution (the evaluation uses the cleaned
        crop size). ``frame_range`` (start, stop): return only frames
        ``start <= f < stop``; the whole video is analysed and cached regardless.
        ``cache_dir``: where series are cached (None: no cache). Raises
        :class:`FacialWeightsMissing` before any decoding when weights are absent,
        :class:`sensor_removal.core.video.VideoError` for unreadable videos.
        """
        from sensor_removal.core.video import crop_resize

        path = Path(path)
        self.require_weights()
        info = probe(path)
        if bbox is not None:
            from sensor_removal.core.video import check_bbox

            problem = check_bbox(bbox, info.width, info.height)
            if problem:
                raise FacialError(f"{path}: bbox: {problem}")
        cache_file = self.cache_file(path, bbox, size, cache_dir) if cache_dir is not None else None
        series = self.load_series(cache_file, info.fps, path) if cache_file is not None else None
        if series is None:
            box = bbox if bbox is not None else (0, 0, info.width, info.height)
            builder = self.series_builder(path, info.fps, total=len(range(0, info.frame_count, self.stride)))
            for number, frame in iter_frames(path, range(0, info.frame_count, self.stride)):
                if size is not None:
                    frame = crop_resize(frame, box, size)
                elif bbox is not None:
                    x, y, w, h = (int(v) for v in bbox)
                    frame = frame[y : y + h, x : x + w]
                builder.add(number, frame)
            series = builder.finish()
            if cache_file is not None:
                self.save_series(series, cache_file)
        if frame_range is not None:
            series = series.slice(*frame_range)
        return series

    def series_builder(self, path: Path, fps: float, total: int | None = None) -> SeriesBuilder:
        """A :class:`SeriesBuilder` for the frames of ``path``, pushed one at a time (the
        evaluation's single decoding pass feeds several metric families this way)."""
        return SeriesBuilder(self, Path(path), fps, total)

    def save_series(self, series: FacialSeries, cache_file: Path) -> None:
        """Write ``series`` to ``cache_file`` (atomically)."""
        self._save(series, cache_file)

    def load_series(self, cache_file: Path, fps: float, path: Path) -> FacialSeries | None:
        """The cached series in ``cache_file``, or None when absent or stale."""
        return self._load(cache_file, fps, path)

    def _save(self, series: FacialSeries, cache_file: Path) -> None:
        table = pd.concat([series.values, series.faces], axis=1)
        with atomic_output(cache_file) as tmp:
            table.to_csv(tmp, index=True)

    def _load(self, cache_file: Path, fps: float, path: Path) -> FacialSeries | None:
        if not cache_file.is_file():
            return None
        table = pd.read_csv(cache_file, index_col="frame", float_precision="round_trip")
        expected = list(AU_COLUMNS) + list(EMOTION_COLUMNS) + list(FACE_COLUMNS)
        if list(table.columns) != expected:
            log.warning("%s: unexpected columns, recomputing", cache_file)
            return None
        table.index = table.index.astype("int64")
        return FacialSeries(
            values=table[list(AU_COLUMNS) + list(EMOTION_COLUMNS)].astype(float),
            faces=table[list(FACE_COLUMNS)].astype(float),
            stride=self.stride,
            fps=fps,
            path=path,
        )


class SeriesBuilder:
    """Collects frames of one video pushed one at a time (``add(number, frame)``, RGB
    uint8, already cut and resized) and runs py-feat on them in chunks of
    ``batch_size * 4`` frames; :meth:`finish` returns the :class:`FacialSeries`."""

    def __init__(self, analyzer: FacialAnalyzer, path: Path, fps: float, total: int | None = None) -> None:
        self.analyzer, self.path, self.fps, self.total = analyzer, path, fps, total
        self.rows: dict[int, pd.Series | None] = {}
        self.batch: list[np.ndarray] = []
        self.numbers: list[int] = []

    def add(self, number: int, frame: np.ndarray) -> None:
        self.batch.append(frame)
        self.numbers.append(int(number))
        if len(self.batch) == self.analyzer.batch_size * 4:  # frames per detect() call (py-feat batches within it)
            self._flush()
            log.info("%s: analysed %d / %s frames", self.path.name, len(self.rows), self.total or "?")

    def _flush(self) -> None:
        import torch

        a = self.analyzer
        detector = a._get_detector()
        tensor = torch.from_numpy(np.stack(self.batch)).permute(0, 3, 1, 2).contiguous()
        with feat_hub_offline(a.weights_dir), torch.no_grad():
            fex = detector.detect(
                tensor,
                data_type="tensor",
                batch_size=a.batch_size,
                face_detection_threshold=a.face_threshold,
                progress_bar=False,
            )
        fex = _normalise_columns(pd.DataFrame(fex), a.feat_models.detector)
        for position, number in enumerate(self.numbers):
            self.rows[number] = select_face(fex.loc[fex["frame"] == position])
        self.batch.clear()
        self.numbers.clear()

    def finish(self) -> FacialSeries:
        if self.batch:
            self._flush()
        rows = self.rows
        columns = list(AU_COLUMNS) + list(EMOTION_COLUMNS) + list(FACE_COLUMNS)
        table = np.full((len(rows), len(columns)), np.nan)
        for i, number in enumerate(sorted(rows)):
            face = rows[number]
            if face is not None:
                table[i] = face[columns].to_numpy(dtype=float)
        frame_index = pd.Index(sorted(rows), name="frame", dtype="int64")
        data = pd.DataFrame(table, index=frame_index, columns=columns)
        series = FacialSeries(
            values=data[list(AU_COLUMNS) + list(EMOTION_COLUMNS)],
            faces=data[list(FACE_COLUMNS)],
            stride=self.analyzer.stride,
            fps=self.fps,
            path=self.path,
        )
        if series.no_face_frames:
            log.warning(
                "%s: no face in %d of %d analysed frames (NaN rows)", self.path, series.no_face_frames, series.frames
            )
        return series


def verify_feat_weights(
    model_set: ModelSetLike = "v1", cache_dir: str | os.PathLike | None = None, device: str = "cpu"
) -> None:
    """Build the py-feat detector from the weights folder, offline, through its real
    loading code (raises on a missing, truncated or mismatched file)."""
    weights_dir = None if cache_dir is None else Path(cache_dir)
    FacialAnalyzer(model_set=model_set, device=device, weights_dir=weights_dir)._build_detector()
