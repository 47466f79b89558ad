"""One decoding pass per video that feeds every metric family.

Decoding dominates a CPU evaluation of long recordings: a 5-minute 720p video at 30 fps
is 9,000 frames, and every family (LPIPS/FID on sampled frames, py-feat on every
``stride``-th frame, and any family added later) used to decode it again. Here each
video is decoded once (:func:`sensor_removal.core.video.iter_frames`, sequential, frames no
family wants are only grabbed), every wanted frame is cut with the recording's fixed
bbox and resized to one crop size once (:func:`sensor_removal.core.video.crop_resize`; the
same resolution for normal, sensor and cleaned videos, so every model sees comparable
faces), and handed to each family that asked for it.

A metric family (:class:`evaluation.family.MetricFamily`) takes part in the pass through
the :class:`FrameConsumer` objects it hands out: each says which frames
of a recording it needs, receives them in increasing frame order, and is told when the
recording is done (to flush a batch, or finish a series). A family whose model needs
its own crop size (the ``landmarks`` family: dlib at 256 px in every run) says so in
``crop_size``; each frame is cut once per size asked for. A pass may decode videos that
only some families need (the ground-truth videos of the landmarks family):
:class:`OnlyVideos` keeps the others to their own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from typing import Protocol

import numpy as np

from sensor_removal.core.manifest import Recording
from sensor_removal.core.video import crop_resize, iter_frames


class FrameConsumer(Protocol):
    """One metric family's view of the shared decoding pass."""

    #: Short name for logs (``perceptual``, ``facial:xgb``, ...).
    family: str
    #: Side of the crops this family receives; None: the pass's ``crop_size``.
    crop_size: int | None

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
    """Decode each of ``videos`` once and feed every consumer the frames it wants, cut
    to ``crop_size`` (or the consumer's own ``crop_size``). Returns the number of frames
    decoded per video."""
    decoded: dict[str, int] = {}
    for number, rec in enumerate(videos, 1):
        wants = [(c, set(int(i) for i in c.frames_wanted(rec))) for c in consumers]
        wants = [(c, w) for c, w in wants if w]
        need = set().union(*(w for _, w in wants)) if wants else set()
        t0 = time.perf_counter()
        n = 0
        if need:
            for index, frame in iter_frames(rec.path, need):
                crops: dict[int, np.ndarray] = {}  # size -> this frame's crop
                n += 1
                for consumer, wanted in wants:
                    if index in wanted:
                        size = consumer.crop_size or crop_size
                        if size not in crops:
                            crops[size] = crop_resize(frame, rec.bbox, size)
                        consumer.consume(rec, index, crops[size])
        for consumer in consumers:
            consumer.video_done(rec)
        decoded[rec.name] = n
        families = ", ".join(c.family for c, _ in wants) or "nothing (cached)"
        log(
            f"  ({number}/{len(videos)}) {rec.name}: {n} frames decoded once for {families} "
            f"in {time.perf_counter() - t0:.1f} s"
        )
    return decoded


class OnlyVideos:
    """``consumer`` limited to the videos named in ``names``: asked for no frames of the
    others and not told when they are done (e.g. a py-feat family in a pass that also
    decodes the ground truths the landmarks family measures against)."""

    def __init__(self, consumer: FrameConsumer, names: Collection[str]) -> None:
        self.consumer, self.names = consumer, set(names)
        self.family, self.crop_size = consumer.family, consumer.crop_size

    def frames_wanted(self, rec: Recording) -> Collection[int]:
        return self.consumer.frames_wanted(rec) if rec.name in self.names else ()

    def consume(self, rec: Recording, index: int, crop: np.ndarray) -> None:
        self.consumer.consume(rec, index, crop)

    def video_done(self, rec: Recording) -> None:
        if rec.name in self.names:
            self.consumer.video_done(rec)
