"""The per-frame AU/emotion series of one video, face choice, video identity."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from evaluation.metrics.facial.models import (
    _V2_EMOTIONS,
    AU_COLUMNS,
    EMOTION_COLUMNS,
    FACE_COLUMNS,
    FacialError,
)

# --------------------------------------------------------------------------- series


@dataclass
class FacialSeries:
    """Per-frame AU and emotion values of one video.

    ``values``: index ``frame`` (frame number in the video), columns :data:`AU_COLUMNS` +
    :data:`EMOTION_COLUMNS`; NaN rows where no face was found. ``faces``: same index,
    :data:`FACE_COLUMNS` of the kept face (NaN without a face). ``stride``: every
    ``stride``-th frame was analysed. ``fps``: the video's frame rate.
    """

    values: pd.DataFrame
    faces: pd.DataFrame
    stride: int
    fps: float
    path: Path | None = None

    @property
    def no_face_frames(self) -> int:
        """How many analysed frames had no face (their rows are NaN)."""
        return int(self.faces["FaceRectX"].isna().sum())

    @property
    def frames(self) -> int:
        return len(self.values)

    @property
    def aus(self) -> pd.DataFrame:
        return self.values[list(AU_COLUMNS)]

    @property
    def emotions(self) -> pd.DataFrame:
        return self.values[list(EMOTION_COLUMNS)]

    def slice(self, start: int, stop: int) -> FacialSeries:
        """The analysed frames with ``start <= frame < stop``."""
        keep = (self.values.index >= start) & (self.values.index < stop)
        return replace(self, values=self.values.loc[keep], faces=self.faces.loc[keep])


#: Faces whose box areas differ by less than this fraction count as equally large.
SAME_SIZE = 0.05


def select_face(detections: pd.DataFrame) -> pd.Series | None:
    """The face to keep from one frame's py-feat rows: the largest box, where boxes
    within :data:`SAME_SIZE` of the largest count as equally large and the higher
    detection score wins among them. None when no row has a finite box. (Assumes the
    recorded subject is the largest face in the analysed region.)"""
    boxes = detections[list(FACE_COLUMNS[:4])].to_numpy(dtype=float)
    valid = np.isfinite(boxes).all(axis=1)
    if not valid.any():
        return None
    rows = detections.loc[valid]
    area = rows["FaceRectWidth"].to_numpy(float) * rows["FaceRectHeight"].to_numpy(float)
    score = np.nan_to_num(rows["FaceScore"].to_numpy(float), nan=0.0)
    score[area < (1.0 - SAME_SIZE) * area.max()] = -np.inf
    return rows.iloc[int(np.argmax(score))]


def _normalise_columns(fex: pd.DataFrame, detector: str) -> pd.DataFrame:
    if detector == "v2":
        fex = fex.rename(columns=_V2_EMOTIONS)
    needed = list(AU_COLUMNS) + list(EMOTION_COLUMNS) + list(FACE_COLUMNS) + ["frame"]
    absent = [c for c in needed if c not in fex.columns]
    if absent:
        raise FacialError(f"py-feat ({detector}) output lacks columns {absent}; is the installed py-feat 2.1.x?")
    return fex


def video_content_id(path: Path) -> str:
    """SHA-256 of the file size and its first and last MiB: identifies a video by
    content (moving or copying it keeps the id) without reading all of it."""
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
        if size > 2 << 20:
            f.seek(-(1 << 20), os.SEEK_END)
            h.update(f.read(1 << 20))
    return h.hexdigest()
