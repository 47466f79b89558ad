"""Which videos are compared with which (docs/evaluation.md; paper Sec. 4).

For every task segment (``schaede``, ``sentence``, ``emotion``, plus ``whole`` = the whole
video):

* ``baseline`` — N1–N2: the normal videos of two different sessions (how much two
  sensor-free recordings of the same person differ anyway);
* ``sensor`` — Nk–Sk: the normal video against each sensor video of the same session k;
* ``clean`` — Nk–Ck: the normal video against each cleaned video whose source sensor
  video is in session k.

Only videos of the same session are compared, besides N1–N2. Each side's frame range is
computed from that video's *own* segments and fps (two takes never have the same
timing). Problems a user can cause (a cleaned video whose source is unknown, subjects
that do not match) raise :class:`PairingError` naming the manifest, the recording and the
field; comparisons that cannot be made because a video lacks a segment are listed in
:attr:`PairPlan.skipped` (and reported), never dropped silently.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Literal

from sensor_removal.core.manifest import TASKS, Recording, Subject
from sensor_removal.core.video import VideoInfo, probe

Kind = Literal["baseline", "sensor", "clean"]
KINDS: tuple[str, ...] = ("baseline", "sensor", "clean")
#: The paper's tasks plus the whole video.
WHOLE = "whole"
SEGMENTS: tuple[str, ...] = (*TASKS, WHOLE)
#: Row labels of the paper's tables.
KIND_LABELS: dict[str, str] = {"baseline": "N1–N2", "sensor": "N–S", "clean": "N–C"}


class PairingError(ValueError):
    """The recordings cannot be paired as the protocol requires; the message names the
    manifest file, the recording and the field."""


@dataclass(frozen=True)
class Pair:
    """One comparison: ``reference`` (always a normal video) against ``other``.

    ``session`` is the session of both videos, or ``None`` for the cross-session
    baseline. Frame ranges are ``[start, stop)`` in each video's own frames.
    """

    subject: str
    kind: Kind
    session: int | None
    segment: str
    reference: Recording
    other: Recording
    reference_frames: tuple[int, int]
    other_frames: tuple[int, int]

    @property
    def session_label(self) -> str:
        """``"1"``, ``"2"``, ... or ``"1-2"`` for the baseline."""
        if self.session is None:
            return f"{self.reference.session}-{self.other.session}"
        return str(self.session)


@dataclass
class PairPlan:
    """All comparisons of one subject, and those that could not be made (with why)."""

    subject: str
    pairs: list[Pair] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    #: Sensor recordings without a cleaned counterpart (only with ``allow_missing``).
    missing: list[str] = field(default_factory=list)

    def videos(self) -> list[Recording]:
        """Every recording that takes part in some pair, in first-use order."""
        seen: dict[str, Recording] = {}
        for p in self.pairs:
            seen.setdefault(p.reference.name, p.reference)
            seen.setdefault(p.other.name, p.other)
        return list(seen.values())


def frame_range(rec: Recording, segment: str, info: VideoInfo) -> tuple[int, int] | None:
    """``[start, stop)`` of ``segment`` in ``rec`` at the video's fps, clipped to its
    frame count; ``whole`` is every frame. ``None`` when the recording lacks the segment
    or the range is empty."""
    if segment == WHOLE:
        return (0, info.frame_count)
    if segment not in rec.segments:
        return None
    start, stop = rec.segment_frames(segment, info.fps)
    start, stop = max(0, start), min(stop, info.frame_count)
    return (start, stop) if stop > start else None


def build_pairs(
    subject: Subject,
    cleaned: Subject | None = None,
    segments: Sequence[str] = SEGMENTS,
    kinds: Sequence[str] = KINDS,
    video_info: Callable[[Recording], VideoInfo] | None = None,
    allow_missing: bool = False,
) -> PairPlan:
    """The comparisons of ``subject`` (and its ``cleaned`` recordings) per segment.

    ``video_info`` gives each recording's fps and frame count (default: probe the file
    once per recording). Raises :class:`PairingError` for inconsistent manifests, for a
    cleaned video whose frame count differs from its source's, and — unless
    ``allow_missing`` — when ``cleaned`` lacks a counterpart of some sensor recording
    (N–S would average over more recordings than N–C); with ``allow_missing`` those
    recordings are listed in :attr:`PairPlan.missing`."""
    for s in segments:
        if s not in SEGMENTS:
            raise PairingError(f"unknown segment {s!r}; expected some of {', '.join(SEGMENTS)}")
    for k in kinds:
        if k not in KINDS:
            raise PairingError(f"unknown comparison kind {k!r}; expected some of {', '.join(KINDS)}")
    cache: dict[str, VideoInfo] = {}

    def info(rec: Recording) -> VideoInfo:
        key = str(rec.path)
        if key not in cache:
            cache[key] = video_info(rec) if video_info is not None else probe(rec.path)
        return cache[key]

    normals = subject.by_condition("normal")
    sensors = subject.by_condition("sensor")
    cleans = _check_cleaned(subject, cleaned) if cleaned is not None else []
    plan = PairPlan(subject.subject)
    if cleaned is not None:
        plan.missing = _check_counterparts(subject, cleaned, cleans, info, allow_missing)

    candidates: list[tuple[Kind, int | None, Recording, Recording]] = []
    if "baseline" in kinds:
        for a, b in combinations(sorted(normals, key=lambda r: (r.session, r.name)), 2):
            if a.session != b.session:
                candidates.append(("baseline", None, a, b))
    for n in normals:
        if "sensor" in kinds:
            candidates += [("sensor", n.session, n, s) for s in sensors if s.session == n.session]
        if "clean" in kinds:
            candidates += [("clean", n.session, n, c) for c in cleans if c.session == n.session]
    if "baseline" in kinds and len({n.session for n in normals}) < 2:
        plan.skipped.append(f"{subject.manifest_path}: no normal videos in two sessions: no N1–N2 baseline")

    for segment in segments:
        for kind, session, ref, other in candidates:
            rr = frame_range(ref, segment, info(ref))
            ro = frame_range(other, segment, info(other))
            if rr is None or ro is None:
                lacking = ref.name if rr is None else other.name
                plan.skipped.append(
                    f"{kind} {ref.name} vs {other.name}, segment {segment!r}: recording {lacking!r} has no "
                    f"(non-empty) segment {segment!r}"
                )
                continue
            plan.pairs.append(Pair(subject.subject, kind, session, segment, ref, other, rr, ro))
    return plan


def _check_cleaned(subject: Subject, cleaned: Subject) -> list[Recording]:
    """The cleaned recordings, checked against ``subject``: same subject, condition
    ``clean``, ``source`` naming a sensor recording of the same session."""
    file = cleaned.manifest_path
    if cleaned.subject != subject.subject:
        raise PairingError(
            f"{file}: field 'subject': {cleaned.subject!r} does not match {subject.subject!r} "
            f"of {subject.manifest_path}"
        )
    by_name = {r.name: r for r in subject.recordings}
    out = []
    for c in cleaned.recordings:
        where = f"{file}: recording {c.name!r}"
        if c.condition != "clean":
            raise PairingError(
                f"{where}, field 'condition': expected 'clean' in a cleaned-recordings manifest, got {c.condition!r}"
            )
        if c.source is None:
            raise PairingError(f"{where}, field 'source': missing; name the sensor recording it was cleaned from")
        src = by_name.get(c.source)
        if src is None or src.condition != "sensor":
            raise PairingError(
                f"{where}, field 'source': {c.source!r} is not a sensor recording of {subject.manifest_path}"
            )
        if src.session != c.session:
            raise PairingError(
                f"{where}, field 'session': {c.session} differs from its source {src.name!r} (session {src.session})"
            )
        if c.name in by_name:
            raise PairingError(f"{where}, field 'name': also the name of a recording in {subject.manifest_path}")
        out.append(c)
    return out


def _check_provenance(c: Recording, src: Recording, cleaned: Subject) -> None:
    """The cleaned video is the file ``clean`` wrote (``video_id``), from this sensor
    video (``source_id``). Frame counts alone miss a swap of two recordings of equal
    length, which would give other numbers without a word. Entries without ids (written
    by hand or by older versions) are checked by frame count only."""
    from sensor_removal.core.content_id import content_id

    if c.video_id is not None and content_id(c.path) != c.video_id:
        raise PairingError(
            f"{c.path}: is not the video clean wrote for recording {c.name!r} of {cleaned.manifest_path} "
            f"(content id differs): replaced or swapped with another file? Clean {src.name!r} ({src.path}) again"
        )
    if c.source_id is not None and content_id(src.path) != c.source_id:
        raise PairingError(
            f"{c.path}: recording {c.name!r} of {cleaned.manifest_path} was cleaned from another video than "
            f"sensor recording {src.name!r} ({src.path}); clean {src.name!r} again"
        )


def _check_counterparts(
    subject: Subject,
    cleaned: Subject,
    cleans: list[Recording],
    info: Callable[[Recording], VideoInfo],
    allow_missing: bool,
) -> list[str]:
    """Every cleaned video has its source's frame count (the clean step writes exactly
    the decoded frames; fewer means a truncated or foreign file), and every sensor
    recording has a cleaned version unless ``allow_missing``. Returns the missing ones."""
    by_name = {r.name: r for r in subject.recordings}
    for c in cleans:
        assert c.source is not None  # checked by _check_cleaned
        src = by_name[c.source]
        nc, ns = info(c).frame_count, info(src).frame_count  # probing first: its messages name a bad file
        if nc != ns:
            raise PairingError(
                f"{c.path}: recording {c.name!r} of {cleaned.manifest_path} has {nc} frames, its source "
                f"{src.name!r} ({src.path}) has {ns}; clean the recording again"
            )
        _check_provenance(c, src, cleaned)
    have = {c.source for c in cleans}
    missing = [r.name for r in subject.by_condition("sensor") if r.name not in have]
    if missing and not allow_missing:
        raise PairingError(
            f"{cleaned.manifest_path}: no cleaned recording for sensor recording(s) {missing} of "
            f"{subject.manifest_path}; the N–C rows would average over fewer recordings than N–S. Clean them "
            "(python -m sensor_removal clean --recordings ...) or pass --allow-missing to evaluate without them "
            "(they are then listed in summary.json and the report)"
        )
    return missing
