"""One decoding pass per video for all metric families vs one pass per family.

`evaluation run` used to decode every video once per metric family: once for the
LPIPS/FID draws and once per py-feat AU model (two by default, as the paper's Table 2).
Now :func:`evaluation.framepass.decode_once` decodes each video once, cuts and resizes
each wanted frame once and hands it to every family. Both sides here use the same
frame choices (the protocol's seeded LPIPS/FID draws, every frame for each AU model)
and the same crop + resize; the families only touch the crops (the networks cost the
same either way), so the ratio is the decoding saving alone.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Collection

import numpy as np
from common import frame_size, subject_arguments, synthetic_subject

from evaluation.framepass import decode_once
from evaluation.pairs import build_pairs
from evaluation.protocol import draw_frames
from evaluation.settings import ProtocolSettings
from sensor_removal.core.manifest import Recording
from sensor_removal.core.video import crop_resize, iter_frames, probe


class Touch:
    """A family that wants ``frames[rec.name]`` and sums what it receives."""

    def __init__(self, family: str, frames: dict[str, Collection[int]]) -> None:
        self.family, self.frames, self.total = family, frames, 0

    crop_size: int | None = None  # the pass's

    def frames_wanted(self, rec: Recording) -> Collection[int]:
        return self.frames[rec.name]

    def consume(self, rec: Recording, index: int, crop: np.ndarray) -> None:
        self.total += int(crop[0, 0, 0])

    def video_done(self, rec: Recording) -> None:
        pass


def per_family(videos: list[Recording], families: list[Touch], crop: int) -> int:
    """The old way: every family decodes the videos itself."""
    n = 0
    for fam in families:
        for rec in videos:
            for index, frame in iter_frames(rec.path, fam.frames_wanted(rec)):
                fam.consume(rec, index, crop_resize(frame, rec.bbox, crop))
                n += 1
    return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    subject_arguments(ap, seconds=60.0)
    ap.add_argument("--crop", type=int, default=286)
    args = ap.parse_args(argv)
    w, h = frame_size(args, quick_seconds=10.0)
    with synthetic_subject(args.seconds, args.fps, (w, h)) as (_, subject):
        plan = build_pairs(subject)
        videos = plan.videos()
        draws = draw_frames(plan, ProtocolSettings(metrics=("lpips", "fid")))
        perceptual = {
            rec.name: {int(i) for (v, _), idx in draws.lpips.items() if v == rec.name for i in idx}
            | {int(i) for (v, _), sets in draws.fid.items() if v == rec.name for s in sets for i in s}
            for rec in videos
        }
        every = {rec.name: range(probe(rec.path).frame_count) for rec in videos}

        def families() -> list[Touch]:
            return [Touch("lpips/fid", perceptual), Touch("facial:xgb", every), Touch("facial:v2", every)]

        per_family(videos[:1], families()[:1], args.crop)  # warm the file cache and the decoder
        old = families()
        t0 = time.perf_counter()
        n_old = per_family(videos, old, args.crop)
        t_old = time.perf_counter() - t0
        new = families()
        t0 = time.perf_counter()
        decoded = decode_once(videos, new, args.crop)
        t_new = time.perf_counter() - t0
    assert [f.total for f in old] == [f.total for f in new], "both ways must hand the families the same crops"
    frames = sum(len(v) for v in every.values())
    print(
        f"decode once: {len(videos)} videos, {frames} frames {w}x{h}, crop {args.crop}, "
        "3 families (LPIPS/FID draws, 2 AU models)"
    )
    print(f"  one pass per family : {t_old:7.2f} s  ({n_old} frames decoded + cut)")
    print(f"  one pass per video  : {t_new:7.2f} s  ({sum(decoded.values())} frames decoded + cut)")
    print(f"  ratio once/per-family: {t_new / t_old:6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
