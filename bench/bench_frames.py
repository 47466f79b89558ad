"""Frame preparation vs a plain sequential decode of the same videos (issue: foundation).

Frame preparation = sample 2 % (or --fraction) of each domain's frames, decode each video
once, crop + resize to 286 and write the uint8 cache. The baseline decodes every frame of
the same videos sequentially with OpenCV and does nothing else. Target: ratio <= 1.3.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
from common import frame_size, subject_arguments, synthetic_subject

from sensor_removal.training.frame_cache import build_frame_cache


def plain_decode(paths: list[Path]) -> int:
    """Decode every frame of every video, one after the other (the baseline)."""
    n = 0
    for p in paths:
        cap = cv2.VideoCapture(str(p))
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            n += 1
        cap.release()
    return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    subject_arguments(ap, seconds=20.0)
    ap.add_argument("--fraction", type=float, default=0.02)
    args = ap.parse_args(argv)
    w, h = frame_size(args, quick_seconds=10.0)
    with synthetic_subject(args.seconds, args.fps, (w, h)) as (tmp, subject):
        paths = [r.path for r in subject.recordings if r.condition in ("normal", "sensor")]
        plain_decode(paths[:1])  # warm the file cache and the decoder
        t0 = time.perf_counter()
        frames = plain_decode(paths)
        t_plain = time.perf_counter() - t0
        t0 = time.perf_counter()
        build_frame_cache(subject, tmp / "cache1", args.fraction, 0, 286, workers=1)
        t_prep1 = time.perf_counter() - t0
        t0 = time.perf_counter()
        cache = build_frame_cache(subject, tmp / "cache", args.fraction, 0, 286)
        t_prep = time.perf_counter() - t0
        t0 = time.perf_counter()
        build_frame_cache(subject, tmp / "cache", args.fraction, 0, 286)
        t_reuse = time.perf_counter() - t0
    sampled = sum(len(v) for v in cache.refs.values())
    print(f"frame preparation: {len(paths)} videos, {frames} frames {w}x{h}, {sampled} sampled")
    print(f"  plain sequential decode : {t_plain:7.2f} s  ({frames / t_plain:6.0f} frames/s)")
    print(f"  prepare, 1 decode thread : {t_prep1:7.2f} s  (ratio {t_prep1 / t_plain:.2f})")
    print(f"  prepare, 2 decode threads: {t_prep:7.2f} s")
    print(f"  reuse existing cache     : {t_reuse:7.3f} s")
    print(f"  ratio prepare/plain      : {t_prep / t_plain:7.2f}   (target <= 1.3)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
