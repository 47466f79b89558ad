"""A subject's recordings: the manifest users write by hand (docs/data.md).

Validation happens once, here, at load. Every message names the manifest file, the
recording and the field, so that a user with 36 hand-written manifests can fix them
without reading a traceback. Paths inside the manifest are relative to the manifest.
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import yaml

from sensor_removal.core.manifest_emg import EmgEntry, EmgEntryError, parse_emg_entry
from sensor_removal.core.video import (
    VideoError,
    VideoInfo,
    atomic_output,
    check_bbox,
    frame_rate_problem,
    probe,
)

Condition = Literal["normal", "sensor", "clean"]
CONDITIONS: tuple[str, ...] = get_args(Condition)
#: The paper's task segments (Sec. 3.1): Schaede's mimic tasks, read sentences, emotions.
TASKS: tuple[str, ...] = ("schaede", "sentence", "emotion")
_FIELDS = {
    "name",
    "path",
    "session",
    "condition",
    "bbox",
    "segments",
    "ground_truth",
    "mask",
    "source",
    "source_id",
    "video_id",
    "emg",  # optional synchronised sEMG (sensor_removal.core.manifest_emg, docs/emg.md)
}


#: Subject and recording names become file names (cleaned videos, caches, series), so
#: they are restricted to a portable set: letters, digits, ``.``, ``_``, ``-``, starting
#: with a letter or digit (no separators, no ``..``, no hidden files).
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class ManifestError(ValueError):
    """A manifest is not valid. ``str(err)`` is the message for the user."""


class ManifestWarning(UserWarning):
    """A manifest is valid but probably not what was meant (e.g. a non-square bbox)."""


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot be a subject or recording name (it becomes a file name), or None."""
    if not isinstance(name, str) or not name:
        return "missing or not a non-empty string"
    if not NAME_PATTERN.fullmatch(name) or ".." in name:
        return (
            f"{name!r} is not a safe name: use letters, digits, '.', '_' and '-' (starting with a "
            "letter or digit, no '..', at most 128 characters); names become file names"
        )
    return None


def output_path(folder: str | os.PathLike, filename: str) -> Path:
    """``folder/filename``, refused (``ValueError``) unless it stays inside ``folder``.

    Every path built from a name in a manifest goes through here, so that a hostile or
    mistyped name can never write outside the output folder."""
    base = Path(folder).resolve()
    target = (base / filename).resolve()
    if target.parent != base:
        raise ValueError(f"{base / filename}: output path leaves its folder {base}")
    return target


@dataclass(frozen=True)
class Recording:
    """One video of a subject. ``path``, ``ground_truth`` and ``mask`` are absolute."""

    name: str
    path: Path
    session: int
    condition: Condition
    bbox: tuple[int, int, int, int]
    segments: dict[str, tuple[float, float]] = field(default_factory=dict)
    ground_truth: Path | None = None
    mask: Path | None = None
    source: str | None = None
    #: For a cleaned recording written by ``clean``: the content ids
    #: (:func:`sensor_removal.core.content_id.content_id`) of its source video and of itself.
    source_id: str | None = None
    video_id: str | None = None
    emg: EmgEntry | None = None

    def segment_frames(self, task: str, fps: float) -> tuple[int, int]:
        """Frame range ``[start, stop)`` of segment ``task`` at ``fps``."""
        start_s, end_s = self.segments[task]
        return int(round(start_s * fps)), int(round(end_s * fps))


@dataclass(frozen=True)
class Subject:
    """A subject and its recordings, as loaded from ``manifest_path``."""

    subject: str
    recordings: tuple[Recording, ...]
    manifest_path: Path

    def by_condition(self, condition: Condition) -> list[Recording]:
        return [r for r in self.recordings if r.condition == condition]

    def recording(self, name: str) -> Recording:
        for r in self.recordings:
            if r.name == name:
                return r
        raise KeyError(f"{self.manifest_path}: no recording named {name!r}")

    @property
    def sessions(self) -> list[int]:
        return sorted({r.session for r in self.recordings})


def _err(file: Path, where: str, msg: str) -> ManifestError:
    return ManifestError(f"{file}: {where}: {msg}")


def _read_document(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(f"{path}: manifest file not found") from None
    except IsADirectoryError:
        raise ManifestError(f"{path}: is a directory, not a manifest file") from None
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read manifest ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path}: not UTF-8 text (byte {exc.start}); save the manifest as UTF-8") from None
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, RecursionError) as exc:
        # ValueError also covers json's decode errors and YAML values such as an
        # impossible date (2001-02-30) that PyYAML's constructor rejects.
        raise ManifestError(f"{path}: not valid {path.suffix.lstrip('.').upper() or 'YAML'}: {exc}") from None


def _finite_number(v: object) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(float(v))
    except OverflowError:  # an integer too large for a float
        return False


def _parse_recording(file: Path, i: int, raw: Any) -> Recording:
    where = f"recordings[{i}]"
    if not isinstance(raw, dict):
        raise _err(file, where, "must be a mapping with name, path, session, condition, bbox, segments")
    name = raw.get("name")
    why = name_problem(name)
    if why:
        raise _err(file, f"{where}.name", why)
    assert isinstance(name, str)  # name_problem refuses anything else
    where = f"recording {name!r}"
    unknown = set(raw) - _FIELDS
    if unknown:
        raise _err(file, where, f"unknown field(s) {sorted(unknown)}; allowed: {sorted(_FIELDS)}")
    for key in ("path", "session", "condition", "bbox"):
        if raw.get(key) is None:
            raise _err(file, f"{where}, field {key!r}", "missing")
    condition = raw["condition"]
    if condition not in CONDITIONS:
        raise _err(
            file, f"{where}, field 'condition'", f"unknown condition {condition!r}; expected one of {list(CONDITIONS)}"
        )
    session = raw["session"]
    if isinstance(session, bool) or not isinstance(session, int) or session < 1:
        raise _err(file, f"{where}, field 'session'", f"must be a positive integer, got {session!r}")
    bbox = raw["bbox"]
    if (
        not isinstance(bbox, (list, tuple))
        or len(bbox) != 4
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in bbox)
    ):
        raise _err(file, f"{where}, field 'bbox'", f"must be [x, y, w, h] in integer pixels, got {bbox!r}")
    if bbox[2] != bbox[3]:
        warnings.warn(
            f"{file}: {where}, field 'bbox': {bbox[2]}x{bbox[3]} px is not square; every crop is resized "
            "to a square, which squashes the face. Use w = h (a square box around the face).",
            ManifestWarning,
            stacklevel=2,
        )
    segments_raw = raw.get("segments") or {}
    if not isinstance(segments_raw, dict):
        raise _err(file, f"{where}, field 'segments'", "must map task name to [start_s, end_s]")
    segments: dict[str, tuple[float, float]] = {}
    for task, span in segments_raw.items():
        problem = name_problem(str(task))
        if problem:  # segment names become file and column names (series, plots, tables)
            raise _err(file, f"{where}, field 'segments'", f"segment name {problem}")
        if not isinstance(span, (list, tuple)) or len(span) != 2 or not all(_finite_number(v) for v in span):
            raise _err(file, f"{where}, field 'segments.{task}'", f"must be [start_s, end_s], got {span!r}")
        start, end = float(span[0]), float(span[1])
        if start < 0 or end <= start:
            raise _err(file, f"{where}, field 'segments.{task}'", f"needs 0 <= start < end, got [{start}, {end}]")
        segments[str(task)] = (start, end)
    ordered = sorted(segments.items(), key=lambda kv: kv[1][0])
    for (a, (_, a_end)), (b, (b_start, _)) in zip(ordered, ordered[1:], strict=False):
        if b_start < a_end - 1e-9:
            raise _err(
                file,
                f"{where}, field 'segments'",
                f"segments {a!r} and {b!r} overlap ({a} ends at {a_end}, {b} starts at {b_start})",
            )

    def rel(key: str) -> Path | None:
        value = raw.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise _err(file, f"{where}, field {key!r}", f"must be a path string, got {value!r}")
        return (file.parent / value).resolve()

    source = raw.get("source")
    if source is not None and not isinstance(source, str):
        raise _err(file, f"{where}, field 'source'", f"must be a recording name, got {source!r}")
    for key in ("source_id", "video_id"):
        value = raw.get(key)
        if value is not None and (not isinstance(value, str) or not value.isalnum()):
            raise _err(file, f"{where}, field {key!r}", f"must be a content id (hex digits), got {value!r}")
    emg = None
    if raw.get("emg") is not None:
        try:
            emg = parse_emg_entry(raw["emg"], file.parent)
        except EmgEntryError as exc:
            raise _err(file, f"{where}, field {exc.field!r}", str(exc)) from None
    return Recording(
        name=name,
        path=rel("path"),  # type: ignore[arg-type]
        session=session,
        condition=condition,
        bbox=tuple(bbox),  # type: ignore[arg-type]
        segments=segments,
        ground_truth=rel("ground_truth"),
        mask=rel("mask"),
        source=source,
        source_id=raw.get("source_id"),
        video_id=raw.get("video_id"),
        emg=emg,
    )


def check_recording_video(file: Path, rec: Recording) -> VideoInfo:
    """Open ``rec``'s video and check that bbox and segments fit it."""
    where = f"recording {rec.name!r}"
    try:
        info = probe(rec.path)
    except VideoError as exc:
        raise _err(file, f"{where}, field 'path'", str(exc)) from None
    why = check_bbox(rec.bbox, info.width, info.height)
    if why:
        raise _err(file, f"{where}, field 'bbox'", why)
    why = frame_rate_problem(rec.path)
    if why:
        raise _err(file, f"{where}, field 'path'", f"{rec.path}: {why}")
    # One frame of slack: container durations are rounded.
    limit = info.duration_s + 1.0 / info.fps
    for task, (_, end) in rec.segments.items():
        if end > limit + 1e-6:
            raise _err(
                file,
                f"{where}, field 'segments.{task}'",
                f"ends at {end} s, after the end of the video ({info.duration_s:.3f} s)",
            )
    return info


def load_manifest(
    path: str | os.PathLike,
    *,
    check_videos: bool = True,
    require_domains: Iterable[Condition] = ("normal", "sensor"),
) -> Subject:
    """Load and validate a subject manifest (YAML or JSON).

    ``check_videos`` opens every video to check that it is readable and that the bbox and
    segments fit it. ``require_domains`` lists the conditions that must have at least one
    recording (training needs both ``normal`` and ``sensor``; a cleaned-recordings
    manifest requires only ``clean``).
    """
    file = Path(path).resolve()
    doc = _read_document(file)
    if not isinstance(doc, dict):
        raise ManifestError(f"{file}: must be a mapping with 'subject' and 'recordings'")
    subject = doc.get("subject")
    why = name_problem(subject)
    if why:
        raise _err(file, "field 'subject'", why)
    assert isinstance(subject, str)  # name_problem refuses anything else
    raws = doc.get("recordings")
    if not isinstance(raws, list) or not raws:
        raise _err(file, "field 'recordings'", "missing or empty; list the subject's videos")
    recordings = [_parse_recording(file, i, raw) for i, raw in enumerate(raws)]
    seen: set[str] = set()
    for rec in recordings:
        if rec.name in seen:
            raise _err(
                file, f"recording {rec.name!r}, field 'name'", "duplicate name; names must be unique within a subject"
            )
        seen.add(rec.name)
    for cond in require_domains:
        if not any(r.condition == cond for r in recordings):
            raise _err(file, f"subject {subject!r}", f"has no {cond} recording (needs at least one)")
    if check_videos:
        for rec in recordings:
            check_recording_video(file, rec)
    return Subject(subject=subject, recordings=tuple(recordings), manifest_path=file)


def _relpath(target: Path, base: Path) -> str:
    return os.path.relpath(target, base)


def manifest_dict(subject: Subject, base_dir: Path) -> dict[str, Any]:
    """The manifest document for ``subject`` with paths relative to ``base_dir``."""
    recs = []
    for r in subject.recordings:
        d: dict[str, Any] = {
            "name": r.name,
            "path": _relpath(r.path, base_dir),
            "session": r.session,
            "condition": r.condition,
            "bbox": list(r.bbox),
            "segments": {k: [v[0], v[1]] for k, v in r.segments.items()},
        }
        if r.ground_truth is not None:
            d["ground_truth"] = _relpath(r.ground_truth, base_dir)
        if r.mask is not None:
            d["mask"] = _relpath(r.mask, base_dir)
        if r.source is not None:
            d["source"] = r.source
        for key in ("source_id", "video_id"):
            if getattr(r, key) is not None:
                d[key] = getattr(r, key)
        if r.emg is not None:
            d["emg"] = r.emg.to_dict(base_dir, _relpath)
        recs.append(d)
    return {"subject": subject.subject, "recordings": recs}


def save_manifest(subject: Subject, path: str | Path) -> Path:
    """Write ``subject`` as YAML (or JSON by suffix) at ``path``, atomically."""
    path = Path(path).resolve()
    doc = manifest_dict(subject, path.parent)
    with atomic_output(path) as tmp:
        if path.suffix.lower() == ".json":
            tmp.write_text(json.dumps(doc, indent=2))
        else:
            tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path
