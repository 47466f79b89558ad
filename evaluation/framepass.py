"""One decoding pass per video that feeds every metric family.

Decoding dominates a CPU evaluation of long recordings: a 5-minute 720p video at 30 fps
is 9,000 frames, and every family (LPIPS/FID on sampled frames, py-feat on every
``stride``-th frame, and any family added later) used to decode it again. Here each
video is decoded once (:func:`sensor_removal.video.iter_frames`, sequential, frames no
family wants are only grabbed), every wanted frame is cut with the recording's fixed
bbox and resized to one crop size once (:func:`sensor_removal.video.crop_resize`; the
same resolution for normal, sensor and cleaned videos, so every model sees comparable
faces), and handed to each family that asked for it.

A metric family plugs in by implementing :class:`FrameConsumer`: it says which frames
of a recording it needs, receives them in increasing frame order, and is told when the
recording is done (to flush a batch, or finish a series).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from typing import Protocol

import numpy as np

from sensor_removal.manifest import Recording
from sensor_removal.video import crop_resize, iter_frames


class FrameConsumer(Protocol):
    """One metric family's view of the shared decoding pass."""

    #: Short name for logs (``perceptual``, ``facial:xgb``, ...).
    family: str

    def frames_wanted(self, rec: Recording) -> Collection[int]:
        """The frame numbers of ``rec`` this family needs (empty: none, e.g. a cache hit)."""
        ...

    def consume(self, rec: Recording, index: int, crop: np.ndarray) -> None:
        """Frame ``index`` of ``rec`` as an RGB uint8 ``crop_size`` x ``crop_size`` crop."""
        ...

    def video_done(self, rec: Recording) -> None:
        """Every wanted frame of ``rec`` has been passed (called even when none was)."""
        ...


def decode_once(
    videos: Sequence[Recording],
    consumers: Sequence[FrameConsumer],
    crop_size: int,
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, int]:
    """Decode each of ``videos`` once and feed every consumer the frames it wants.
    Returns the number of frames decoded (cut and resized) per video."""
    decoded: dict[str, int] = {}
    for number, rec in enumerate(videos, 1):
        wants = [(c, set(int(i) for i in c.frames_wanted(rec))) for c in consumers]
        wants = [(c, w) for c, w in wants if w]
        need = set().union(*(w for _, w in wants)) if wants else set()
        t0 = time.perf_counter()
        n = 0
        if need:
            for index, frame in iter_frames(rec.path, need):
                crop = crop_resize(frame, rec.bbox, crop_size)
                n += 1
                for consumer, wanted in wants:
                    if index in wanted:
                        consumer.consume(rec, index, crop)
        for consumer in consumers:
            consumer.video_done(rec)
        decoded[rec.name] = n
        families = ", ".join(c.family for c, _ in wants) or "nothing (cached)"
        log(f"  ({number}/{len(videos)}) {rec.name}: {n} frames decoded once for {families} in {time.perf_counter() - t0:.1f} s")
    return decoded
