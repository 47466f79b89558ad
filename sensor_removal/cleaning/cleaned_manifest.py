"""The manifest of cleaned recordings (``OUT/manifest.yaml``): one entry per cleaned
video (``condition: clean``, ``source:`` its sensor recording), merged under a file
lock with what is already there, and the files it owns or must never overwrite; and
the manifest of the full repaints kept next to composited videos
(``OUT/manifest.repaint.yaml``, :func:`write_repaint_manifest`) and that of the detail
composites (``OUT/manifest.detail.yaml``, :func:`write_detail_manifest`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from sensor_removal.cleaning.paste_back import full_output_path
from sensor_removal.cleaning.pipeline import CleanResult
from sensor_removal.cleaning.settings import CLEAN_MANIFEST_LOCK, DETAIL_MANIFEST, REPAINT_MANIFEST, CleanError
from sensor_removal.core.manifest import (
    ManifestError,
    Recording,
    Subject,
    load_manifest,
    save_manifest,
)
from sensor_removal.core.video import sibling_path


def clean_recording_entry(rec: Recording, out: Path, crop_size: int) -> Recording:
    """The manifest entry of ``rec``'s cleaned crop video at ``out``, with the content ids
    of both videos: evaluation checks that each cleaned video is still the file written
    here, from that very sensor video (a swapped or replaced file is refused)."""
    from sensor_removal.core.content_id import content_id

    return Recording(
        name=f"{rec.name}_clean",
        path=out.resolve(),
        session=rec.session,
        condition="clean",
        bbox=(0, 0, crop_size, crop_size),
        segments=dict(rec.segments),
        source=rec.name,
        source_id=content_id(rec.path),
        video_id=content_id(out),
    )


def _existing_clean_manifest(path: Path, subject: str) -> list[Recording]:
    if not path.is_file():
        return []
    try:
        old = load_manifest(path, check_videos=False, require_domains=())
    except ManifestError as exc:
        raise CleanError(f"{path}: existing manifest of cleaned recordings is invalid: {exc}") from None
    if old.subject != subject:
        raise CleanError(f"{path}: belongs to subject {old.subject!r}, not {subject!r}; use another output folder")
    other = [r.name for r in old.recordings if r.condition != "clean"]
    if other:
        raise CleanError(
            f"{path}: not a manifest of cleaned recordings (recording(s) {other} are not condition "
            "'clean'); it is left untouched: choose another --out"
        )
    return list(old.recordings)


def _outputs_of(recs: Sequence[Recording]) -> set[Path]:
    """Files a cleaned manifest's entries own: each video, its pasted-back version and its
    detail composite."""
    return {p.resolve() for r in recs for p in (r.path, full_output_path(r.path), sibling_path(r.path, "detail"))}


def _inputs_of(subject: Subject) -> set[Path]:
    """Every file a subject manifest refers to (never to be written by a clean)."""
    files = {subject.manifest_path.resolve()}
    for r in subject.recordings:
        files |= {p.resolve() for p in (r.path, r.ground_truth, r.mask) if p is not None}
    return files


def _merge_manifest(manifest_path: Path, subject: Subject, results: dict[str, CleanResult]) -> Path:
    """Add the entries of ``results`` to the cleaned manifest at ``manifest_path``.

    Runs under a file lock and re-reads the manifest inside it, so that concurrent cleans
    of disjoint recordings into one folder all keep their entries (last writer no longer
    wins). Earlier entries stay unless re-cleaned now or their video is gone."""
    from filelock import FileLock

    new = [clean_recording_entry(subject.recording(n), r.out, r.crop_size) for n, r in results.items()]
    new_names = {r.name for r in new}
    with FileLock(str(manifest_path.parent / CLEAN_MANIFEST_LOCK)):
        existing = _existing_clean_manifest(manifest_path, subject.subject)
        merged = [r for r in existing if r.name not in new_names and r.path.is_file()] + new
        return save_manifest(
            Subject(subject=subject.subject, recordings=tuple(merged), manifest_path=manifest_path),
            manifest_path,
        )


def write_repaint_manifest(cleaned_manifest: Path) -> Path | None:
    """Write, next to ``cleaned_manifest``, :data:`REPAINT_MANIFEST`: the same entries
    (same names, sessions and sources) pointing at each video's full repaint
    ``NAME.repaint.mp4`` instead, with its own content id — the paper's method, for an
    evaluation of it beside our composited (or steadied) videos. Returns its path, or
    None when no entry has a repaint (``composite="off"`` without the steady fill: the
    cleaned videos *are* the repaints). Some entries with and some without a repaint
    (an earlier clean into the same folder with other options) is a :class:`CleanError`:
    the two evaluations would not compare the same recordings."""
    from sensor_removal.core.content_id import content_id

    cleaned = load_manifest(cleaned_manifest, check_videos=False, require_domains=("clean",))
    repaints = {r.name: sibling_path(r.path, "repaint") for r in cleaned.recordings}
    have = [n for n, p in repaints.items() if p.is_file()]
    if not have:
        return None
    lacking = sorted(set(repaints) - set(have))
    if lacking:
        raise CleanError(
            f"{cleaned_manifest}: recording(s) {lacking} have no full repaint (NAME.repaint.mp4) next to them, "
            f"{sorted(have)} do: clean them all with the same options, or into another folder"
        )
    entries = tuple(
        dataclasses.replace(r, path=repaints[r.name].resolve(), video_id=content_id(repaints[r.name]))
        for r in cleaned.recordings
    )
    out = cleaned_manifest.parent / REPAINT_MANIFEST
    return save_manifest(Subject(subject=cleaned.subject, recordings=entries, manifest_path=out), out)


def write_detail_manifest(cleaned_manifest: Path) -> Path | None:
    """Write, next to ``cleaned_manifest``, :data:`DETAIL_MANIFEST` (ours): the entries whose
    detail composite ``NAME.detail.mp4`` is there, pointing at it (bbox its full frame, its
    own content id; names, sessions and sources as in the cleaned manifest). Returns its
    path, or None (and no file) when no entry has one. Entries without one are left out
    rather than refused: each entry is a cleaned video in its own right, and a clean that
    writes no detail composite removes a stale one (:func:`clean_recordings`)."""
    from sensor_removal.core.content_id import content_id
    from sensor_removal.core.video import probe

    cleaned = load_manifest(cleaned_manifest, check_videos=False, require_domains=("clean",))
    out = cleaned_manifest.parent / DETAIL_MANIFEST
    entries = []
    for r in cleaned.recordings:
        detail = sibling_path(r.path, "detail")
        if detail.is_file():
            info = probe(detail)
            entries.append(
                dataclasses.replace(
                    r, path=detail.resolve(), bbox=(0, 0, info.width, info.height), video_id=content_id(detail)
                )
            )
    if not entries:
        out.unlink(missing_ok=True)
        return None
    return save_manifest(Subject(subject=cleaned.subject, recordings=tuple(entries), manifest_path=out), out)
