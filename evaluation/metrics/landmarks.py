"""68-point facial landmarks with dlib's real pretrained models, per frame of a video.

Why: every other downstream measure of the evaluation (LPIPS's AlexNet, FID's
Inception, py-feat) needs weights that must be fetched first. dlib's HOG frontal face
detector (built into dlib) and its 68-point shape predictor (iBUG 300-W scheme, the
landmark family py-feat's AU models read) ship inside two packages from the package
index, ``dlib-bin`` and ``face-recognition-models``, so a real facial-analysis model
runs on every machine, in every demo and in CI. It is an additional, paper-adjacent
measure (ours), not a replacement for py-feat: see ``docs/landmarks.md``.

Model files are read from the installed ``face_recognition_models`` package's own
``models/`` folder (:func:`model_dir`). The folder is located with
``importlib.util.find_spec`` instead of the package's location functions: those import
``pkg_resources``, which current setuptools no longer ships, so importing the package
fails on a fresh install while its files are fine.

Frames: each frame is cut with the recording's bbox and resized to
:data:`ANALYSIS_SIZE` px (:func:`sensor_removal.core.video.crop_resize`), so normal, sensor,
ground-truth and cleaned videos (whose bbox is the whole, smaller frame) are measured in
one coordinate frame. The detector runs without upsampling (:data:`UPSAMPLE`): faces in
a 256-px face crop are far above its ~80-px minimum. Where several faces are found the
largest is kept; where none is found the frame's 68 points are NaN and counted.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from evaluation.metrics.face_geometry import GEOMETRY_FEATURES, N_POINTS, geometry_features
from evaluation.weight_files import MissingWeightsError, WeightFile, WeightsError
from sensor_removal.core.video import atomic_output, crop_resize, iter_frames, probe

#: The package on the index that ships dlib's model files.
MODEL_PACKAGE = "face_recognition_models"
#: dlib's 68-point shape predictor (iBUG 300-W), inside ``MODEL_PACKAGE``'s ``models/``.
PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"
#: Side of the face crop the models see (px).
ANALYSIS_SIZE = 256
#: Detector upsampling steps (0: the image as it is).
UPSAMPLE = 0
#: Column names of the points in the per-video CSV: x00..x67, y00..y67.
POINT_COLUMNS: tuple[str, ...] = tuple(f"x{i:02d}" for i in range(N_POINTS)) + tuple(
    f"y{i:02d}" for i in range(N_POINTS)
)
INSTALL_HINT = "pip install 'dlib-bin>=19.24,<21' 'face-recognition-models>=0.3,<0.4'"

Box = tuple[int, int, int, int]  # x, y, w, h


def model_dir() -> Path:
    """``models/`` of the installed ``face_recognition_models`` package (not imported;
    a placeholder path that does not exist when the package is not installed)."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return Path(f"<{MODEL_PACKAGE} is not installed>") / "models"
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def _predictor_weight(path: Path) -> WeightFile:
    return WeightFile(
        "landmarks", path, f"dlib 68-point shape predictor (ships with {MODEL_PACKAGE}; {INSTALL_HINT})", bundled=True
    )


def weight_files() -> list[WeightFile]:
    """The model file the ``landmarks`` metric loads (the HOG detector is built into dlib)."""
    return [_predictor_weight(model_dir() / PREDICTOR_FILE)]


@dataclass(frozen=True)
class Face:
    """One frame's result: the face box (crop px) and the 68 points, or NaN without a face."""

    box: Box | None
    points: np.ndarray  # (68, 2) float64


class LandmarkDetector:
    """dlib's HOG frontal face detector and 68-point shape predictor.

    ``faces(rgb)`` lists face boxes; ``landmarks(rgb)`` gives the largest face's points;
    ``landmarks_in_box(rgb, box)`` runs the predictor on a given box (e.g. the box found
    on the ground-truth frame, which measures localisation apart from detection)."""

    def __init__(self, upsample: int = UPSAMPLE) -> None:
        try:
            import dlib
        except ImportError as exc:
            raise WeightsError(f"landmarks: dlib cannot be imported ({exc}); install it with: {INSTALL_HINT}") from None
        files = weight_files()
        missing = [w for w in files if not w.present]
        if missing:
            raise MissingWeightsError(missing, ["landmarks"])
        self._dlib = dlib
        self.upsample = int(upsample)
        self.predictor_path = files[0].path
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(self.predictor_path))

    def faces(self, rgb: np.ndarray) -> list[Box]:
        """Face boxes ``(x, y, w, h)`` in ``rgb`` (uint8 ``(H, W, 3)``), largest first."""
        rects = self._detector(np.ascontiguousarray(rgb), self.upsample)
        boxes = [(r.left(), r.top(), r.width(), r.height()) for r in rects]
        return sorted(boxes, key=lambda b: b[2] * b[3], reverse=True)

    def landmarks_in_box(self, rgb: np.ndarray, box: Box) -> np.ndarray:
        """The 68 points ``(68, 2)`` the predictor places in ``box``."""
        x, y, w, h = (int(v) for v in box)
        shape = self._predictor(np.ascontiguousarray(rgb), self._dlib.rectangle(x, y, x + w - 1, y + h - 1))
        return np.array([(shape.part(i).x, shape.part(i).y) for i in range(N_POINTS)], dtype=np.float64)

    def landmarks(self, rgb: np.ndarray, box: Sequence[float] | np.ndarray | None = None) -> Face:
        """The largest face's box and points (NaN points when there is none). With
        ``box``, the predictor runs in that box instead of the detector's; a NaN box
        (no face there) gives NaN points."""
        if box is None:
            found = self.faces(rgb)
            use = found[0] if found else None
        elif np.isnan(np.asarray(box, dtype=np.float64)).any():
            use = None
        else:
            x, y, w, h = (int(v) for v in box)
            use = (x, y, w, h)
        if use is None:
            return Face(None, np.full((N_POINTS, 2), np.nan))
        return Face(use, self.landmarks_in_box(rgb, use))


@dataclass
class VideoLandmarks:
    """Landmarks of every frame of one video: ``points`` ``(T, 68, 2)`` in
    :data:`ANALYSIS_SIZE` crop pixels (NaN rows: no face), ``boxes`` ``(T, 4)`` (NaN
    without a face), ``fps``; ``seconds`` is the time decoding and the models took."""

    points: np.ndarray
    boxes: np.ndarray
    fps: float
    seconds: float = 0.0

    @property
    def detected(self) -> np.ndarray:
        """``(T,)`` bool: a face was found in the frame."""
        return ~np.isnan(self.points).any(axis=(1, 2))

    def detection_rate(self, start: int = 0, stop: int | None = None) -> float:
        """Frames with a face / frames, in ``[start, stop)``."""
        d = self.detected[start:stop]
        return float(d.mean()) if d.size else float("nan")

    def geometry(self) -> pd.DataFrame:
        """The expression geometry series (:data:`GEOMETRY_FEATURES`), indexed by frame."""
        return pd.DataFrame(geometry_features(self.points), index=pd.RangeIndex(len(self.points), name="frame"))

    def table(self) -> pd.DataFrame:
        """Everything per frame: ``time_s``, ``face`` (0/1), the geometry, x00..y67."""
        t = self.geometry()
        t.insert(0, "face", self.detected.astype(int))
        t.insert(0, "time_s", t.index.to_numpy() / self.fps)
        pts = pd.DataFrame(
            np.concatenate([self.points[:, :, 0], self.points[:, :, 1]], axis=1),
            columns=list(POINT_COLUMNS),
            index=t.index,
        )
        return pd.concat([t, pts], axis=1)


class LandmarkSeries:
    """Frame-by-frame landmarks of one video, as its frames arrive (from
    :func:`video_landmarks` or the protocol's shared decoding pass): one place where a
    crop becomes a row of :class:`VideoLandmarks`.

    With ``boxes`` ``(T, 4)`` (e.g. the face boxes found on the ground-truth video) the
    predictor runs in the given box of each frame instead of the detector's (NaN boxes,
    and frames past the end of ``boxes``, give NaN points)."""

    def __init__(self, detector: LandmarkDetector, boxes: np.ndarray | None = None) -> None:
        self.detector, self.boxes = detector, boxes
        self._points: list[np.ndarray] = []
        self._found: list[Sequence[float]] = []

    def add(self, crop: np.ndarray) -> None:
        """The next frame's :data:`ANALYSIS_SIZE` crop."""
        i = len(self._points)
        box = None
        if self.boxes is not None:
            box = self.boxes[i] if i < len(self.boxes) else np.full(4, np.nan)
        face = self.detector.landmarks(crop, box)
        self._points.append(face.points)
        self._found.append(face.box if face.box is not None else (np.nan,) * 4)

    def finish(self, fps: float, seconds: float) -> VideoLandmarks:
        """Every frame added so far as :class:`VideoLandmarks`."""
        points = np.stack(self._points) if self._points else np.zeros((0, N_POINTS, 2))
        return VideoLandmarks(points, np.array(self._found, dtype=np.float64).reshape(-1, 4), fps, seconds)


def video_landmarks(
    path: str | Path,
    bbox: Sequence[int],
    detector: LandmarkDetector,
    boxes: np.ndarray | None = None,
    size: int = ANALYSIS_SIZE,
) -> VideoLandmarks:
    """Landmarks of every frame of ``path`` (face crop ``bbox`` → ``size`` px), decoded
    here: for one video on its own (the protocol feeds :class:`LandmarkSeries` from its
    shared decoding pass instead). ``boxes``: as :class:`LandmarkSeries`."""
    info = probe(path)
    t0 = time.perf_counter()
    series = LandmarkSeries(detector, boxes)
    box = tuple(int(v) for v in bbox)
    for _, frame in iter_frames(path):
        series.add(crop_resize(frame, box, size))  # type: ignore[arg-type]
    return series.finish(info.fps, time.perf_counter() - t0)


def write_table(lm: VideoLandmarks, path: Path) -> Path:
    """The per-frame table (:meth:`VideoLandmarks.table`) as CSV, atomically."""
    with atomic_output(path) as tmp:
        lm.table().to_csv(tmp, index=True, index_label="frame")
    return path


__all__ = [
    "ANALYSIS_SIZE",
    "GEOMETRY_FEATURES",
    "Face",
    "LandmarkDetector",
    "LandmarkSeries",
    "VideoLandmarks",
    "model_dir",
    "video_landmarks",
    "weight_files",
    "write_table",
]
