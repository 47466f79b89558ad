"""The side-by-side picture of a cleaning: sensor | full repaint | composited | ground truth.

One look tells a reader what compositing (our extension, :mod:`sensor_removal.cleaning.mask`)
buys: the repaint column shows what the paper's generator does to the whole face (blur,
colour shifts, eyes and mouth repainted), the composited column keeps every pixel the
sensors did not touch. Rows are frames spread evenly over a sensor recording; columns
are labelled. The ground-truth column exists only for synthetic subjects.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from sensor_removal.core.manifest import Recording
from sensor_removal.core.video import crop_resize, probe, read_frames, sibling_path
from sensor_removal.training.callbacks import save_png, tile

__all__ = ["comparison_columns", "labelled", "save_comparison"]


def labelled(grid: np.ndarray, labels: list[str], cell: int, pad: int = 2) -> np.ndarray:
    """``grid`` (from :func:`sensor_removal.training.callbacks.tile`, cells ``cell`` px wide) with a
    white header strip naming each column."""
    scale = max(0.3, cell / 200)
    height = int(22 * scale) + 8
    head = np.full((height, grid.shape[1], 3), 255, np.uint8)
    for j, text in enumerate(labels):
        x = pad + j * (cell + pad) + 2
        cv2.putText(head, text, (x, height - 6), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([head, grid], axis=0)


def comparison_columns(sensor: Recording, cleaned: Path, frames: int = 3) -> tuple[list[str], list[np.ndarray]]:
    """Column labels and rows ``(cols, S, S, 3)`` for ``frames`` frames of ``sensor`` and
    its cleaned crop video ``cleaned`` (with ``NAME.repaint.mp4`` next to it when it was
    composited; the ground truth when the recording has one)."""
    size = probe(cleaned).width
    n = probe(cleaned).frame_count
    idx = np.linspace(0, n - 1, min(frames, n)).round().astype(int).tolist()
    columns: list[tuple[str, np.ndarray]] = [
        ("sensor", np.stack([crop_resize(f, sensor.bbox, size) for f in read_frames(sensor.path, idx)]))
    ]
    repaint = sibling_path(cleaned, "repaint")
    if repaint.is_file():
        columns += [("repaint", read_frames(repaint, idx)), ("composited", read_frames(cleaned, idx))]
    else:
        columns.append(("repaint", read_frames(cleaned, idx)))
    if sensor.ground_truth is not None:
        gt = read_frames(sensor.ground_truth, idx)
        columns.append(("ground truth", np.stack([crop_resize(f, sensor.bbox, size) for f in gt])))
    labels = [name for name, _ in columns]
    rows = [np.stack([col[i] for _, col in columns]) for i in range(len(idx))]
    return labels, rows


def save_comparison(sensor: Recording, cleaned: Path, out: Path, frames: int = 3, min_cell: int = 160) -> Path:
    """Write the labelled comparison picture of one recording as PNG; small crops are
    enlarged (nearest neighbour) to ``min_cell`` px so the labels fit. Returns its path."""
    labels, rows = comparison_columns(sensor, cleaned, frames)
    size = rows[0].shape[1]
    k = max(1, -(-min_cell // size))
    if k > 1:
        rows = [np.stack([cv2.resize(c, None, fx=k, fy=k, interpolation=cv2.INTER_NEAREST) for c in r]) for r in rows]
    return save_png(out, labelled(tile(rows), labels, size * k))
