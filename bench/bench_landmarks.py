"""Landmark frames/s of the ``landmarks`` metric vs a plain dlib loop, side by side.

Ours (:func:`evaluation.metrics.landmarks.video_landmarks`): decode, cut the recording's bbox,
resize to 256 px, HOG detector without upsampling, 68-point predictor. The baseline is
the way dlib's examples (and ``face_recognition.face_landmarks``) are usually called:
the whole frame, detector with one upsampling step, predictor. Both run on the same
videos of the synthetic subject (normal, ground truth: faces to find; sensor: electrodes
hide the face, the detector's worst case) in one run; the ratio is what to compare.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from common import frame_size, subject_arguments, synthetic_subject

from evaluation.metrics.landmarks import LandmarkDetector, video_landmarks
from sensor_removal.core.video import iter_frames


def plain_loop(path: Path, det: LandmarkDetector) -> tuple[int, int]:
    """Whole frames, detector with one upsampling step, predictor on the largest face."""
    n = found = 0
    for _, frame in iter_frames(path):
        rects = det._detector(frame, 1)
        if len(rects):
            r = max(rects, key=lambda r: r.width() * r.height())
            shape = det._predictor(frame, r)
            np.array([(shape.part(i).x, shape.part(i).y) for i in range(68)])
            found += 1
        n += 1
    return n, found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    subject_arguments(ap, seconds=10.0, fps=None)
    args = ap.parse_args(argv)
    w, h = frame_size(args, quick_seconds=3.0)
    det = LandmarkDetector()
    with synthetic_subject(args.seconds, 15.0, (w, h)) as (_, subject):
        sensor = subject.by_condition("sensor")[0]
        videos = [
            ("normal", subject.by_condition("normal")[0].path, subject.by_condition("normal")[0].bbox),
            ("ground truth", sensor.ground_truth, sensor.bbox),
            ("sensor", sensor.path, sensor.bbox),
        ]
        print(f"landmarks: synthetic {w}x{h} videos, {args.seconds:g} s at 15 fps")
        total = {"ours": 0.0, "plain": 0.0}
        frames = 0
        for name, path, box in videos:
            t0 = time.perf_counter()
            lm = video_landmarks(path, box, det)
            t_ours = time.perf_counter() - t0
            t0 = time.perf_counter()
            n, found = plain_loop(path, det)
            t_plain = time.perf_counter() - t0
            total["ours"] += t_ours
            total["plain"] += t_plain
            frames += n
            print(
                f"  {name:12s}: ours {n / t_ours:6.1f} frames/s (face on {int(lm.detected.sum())}/{n})   "
                f"plain {n / t_plain:6.1f} frames/s (face on {found}/{n})   "
                f"ratio ours/plain time {t_ours / t_plain:.2f}"
            )
    print(
        f"  all videos  : ours {frames / total['ours']:6.1f} frames/s, plain {frames / total['plain']:6.1f} frames/s, "
        f"speed-up {total['plain'] / total['ours']:.2f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
