"""Cleaning a subject: every (or the named) sensor recording through :func:`clean_video`,
one failure not stopping the others, a :class:`CleanReport` of the outcome and the
cleaned manifest merged with what a previous clean left.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from torch import nn

from sensor_removal.cleaning.cleaned_manifest import (
    _existing_clean_manifest,
    _inputs_of,
    _merge_manifest,
    _outputs_of,
    write_detail_manifest,
)
from sensor_removal.cleaning.generator import checkpoint_reference, load_generator
from sensor_removal.cleaning.mask import NormalReference, reference_size
from sensor_removal.cleaning.options import CleanOptions
from sensor_removal.cleaning.paste_back import full_output_path
from sensor_removal.cleaning.pipeline import CleanResult, clean_video
from sensor_removal.cleaning.settings import CLEAN_MANIFEST, CleanError, CleanSettings
from sensor_removal.core.device import resolve_device
from sensor_removal.core.manifest import (
    Recording,
    Subject,
    load_manifest,
    output_path,
)
from sensor_removal.core.video import VideoError, sibling_path


@dataclass(frozen=True)
class CleanFailure:
    """A recording that could not be cleaned, and why (the message names the file)."""

    name: str
    source: Path
    message: str


@dataclass
class CleanReport:
    """Outcome of cleaning a subject: one result or failure per requested recording."""

    subject: str
    out_dir: Path
    results: dict[str, CleanResult] = field(default_factory=dict)
    failures: list[CleanFailure] = field(default_factory=list)
    manifest: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        lines = [f"subject {self.subject}: {len(self.results)} cleaned, {len(self.failures)} failed"]
        for name, r in self.results.items():
            extra = "".join(f" + {p.name}" for p in (r.detail_out, r.full_out) if p is not None)
            lines.append(f"  done    {name}: {r.frames} frames -> {r.out.name}{extra} ({r.frames_per_s:.1f} frames/s)")
        for f in self.failures:
            lines.append(f"  FAILED  {f.name}: {f.message}")
        if self.manifest is not None:
            lines.append(f"  manifest: {self.manifest}")
        return "\n".join(lines)


def clean_recordings(
    generator: nn.Module,
    settings: CleanSettings,
    subject: Subject,
    out_dir: str | os.PathLike,
    recordings: Sequence[str] | None = None,
    options: CleanOptions | None = None,
) -> CleanReport:
    """Clean the sensor recordings of ``subject`` (all, or those named) into ``out_dir``.

    Each recording ``NAME`` gives ``out_dir/NAME.mp4`` (and ``NAME.full.mp4`` with
    ``paste_back``). A recording that fails (unreadable, truncated, bbox outside the
    frame) is listed in the report's failures and leaves no file; the others are still
    cleaned. ``out_dir/manifest.yaml`` lists the cleaned recordings (``NAME_clean``,
    condition ``clean``, ``source: NAME``, same session and segments, bbox the full crop),
    merged with the entries already there. ``options`` say how (:class:`CleanOptions`).
    For the post-fit hook, which has the generator in memory; :func:`clean_subject` loads
    it from a checkpoint.

    Never written: any file the subject's manifest refers to, a manifest in ``out_dir``
    that is not a cleaned-recordings manifest of the same subject, and (unless
    ``overwrite``) existing files that the cleaned manifest does not list as its own.
    """
    options = options or CleanOptions()
    out_dir = Path(out_dir)
    chosen = _chosen(subject, recordings)
    manifest_path = (out_dir / CLEAN_MANIFEST).resolve()
    if manifest_path == subject.manifest_path.resolve():
        raise CleanError(f"{manifest_path}: output folder holds the subject's own manifest; choose another --out")
    if out_dir.exists() and not out_dir.is_dir():
        raise CleanError(f"{out_dir}: --out exists and is not a folder; cleaning a manifest writes into a folder")
    existing = _existing_clean_manifest(manifest_path, subject.subject)
    if out_dir.is_dir():
        _remove_stale_partials(out_dir, subject.by_condition("sensor"))
    targets = _targets(subject, chosen, out_dir, manifest_path, _outputs_of(existing), options)
    out_dir.mkdir(parents=True, exist_ok=True)
    reference = _reference(subject, settings, options)

    report = CleanReport(subject=subject.subject, out_dir=out_dir)
    per_video = replace(options, overwrite=True)  # checked above, before any work
    try:
        for number, rec in enumerate(chosen, 1):
            try:
                result = clean_video(
                    generator,
                    settings,
                    rec.path,
                    rec.bbox,
                    targets[rec.name],
                    per_video,
                    desc=f"clean {rec.name} ({number}/{len(chosen)})",
                    reference=reference,
                    comment=provenance(rec),
                )
            except (CleanError, VideoError, OSError) as exc:
                msg = str(exc)
                if str(rec.path) not in msg:
                    msg = f"{rec.path}: {msg}"
                report.failures.append(
                    CleanFailure(name=rec.name, source=rec.path, message=f"recording {rec.name!r}: {msg}")
                )
                continue
            report.results[rec.name] = result
            if result.detail_out is None:  # an earlier clean's detail composite is not this video's
                sibling_path(result.out, "detail").unlink(missing_ok=True)
            # Listed at once: a run killed later (kill -9, a node lost) keeps this entry.
            report.manifest = _merge_manifest(manifest_path, subject, {rec.name: result})
    finally:
        # Also on an unexpected error or Ctrl-C: list what was finished.
        if report.results:
            report.manifest = _merge_manifest(manifest_path, subject, report.results)
            write_detail_manifest(report.manifest)
        elif existing:
            report.manifest = manifest_path
    return report


def _chosen(subject: Subject, recordings: Sequence[str] | None) -> list[Recording]:
    """The sensor recordings to clean: those named (in order, once each), or all."""
    sensor = subject.by_condition("sensor")
    if recordings:
        by_name = {r.name: r for r in subject.recordings}
        chosen = []
        for name in recordings:
            rec = by_name.get(name)
            if rec is None or rec.condition != "sensor":
                why = "no recording named" if rec is None else f"condition {rec.condition!r}, not sensor:"
                raise CleanError(
                    f"{subject.manifest_path}: {why} {name!r}; sensor recordings: {[r.name for r in sensor]}"
                )
            if rec not in chosen:
                chosen.append(rec)
    else:
        chosen = sensor
    if not chosen:
        raise CleanError(f"{subject.manifest_path}: subject {subject.subject!r} has no sensor recording to clean")
    return chosen


def _targets(
    subject: Subject,
    chosen: Sequence[Recording],
    out_dir: Path,
    manifest_path: Path,
    owned: set[Path],
    options: CleanOptions,
) -> dict[str, Path]:
    """Each chosen recording's output path, refusing one that would overwrite an input of
    the subject or (unless ``overwrite``) a file the cleaned manifest does not own."""
    inputs = _inputs_of(subject)
    targets: dict[str, Path] = {}
    for rec in chosen:
        try:
            out = output_path(out_dir, f"{rec.name}.mp4")
        except ValueError as exc:
            raise CleanError(f"{subject.manifest_path}: recording {rec.name!r}: {exc}") from None
        for target in (out, full_output_path(out)) if options.paste_back else (out,):
            if target.exists() and target not in owned and not options.overwrite and _ours(target, rec):
                owned.add(target)  # finished by a run killed before it listed it: adopted
            if target in inputs:
                raise CleanError(
                    f"{target}: output of recording {rec.name!r} would overwrite an input of "
                    f"{subject.manifest_path}; choose another --out"
                )
            if target.exists() and target not in owned and not options.overwrite:
                raise CleanError(
                    f"{target}: output of recording {rec.name!r} exists and is not listed in "
                    f"{manifest_path}; pass --overwrite to replace it"
                )
        targets[rec.name] = out
    return targets


def _reference(subject: Subject, settings: CleanSettings, options: CleanOptions) -> NormalReference | None:
    """The normal colours the mask method ``reference`` needs: the checkpoint's when it
    carries them (stored at fit time from the training frames of the normal domain),
    else the subject's normal recordings.

    The checkpoint's comes first because it is what G_S→N was trained towards, cut
    exactly as the training crops were, the same on every machine and for every
    manifest, and free (no normal video is decoded). The recordings remain the fallback
    for checkpoints from before the reference was stored."""
    if not (options.compositing and options.mask.method == "reference"):
        return None
    device = str(resolve_device(options.device))
    stored = checkpoint_reference(settings, device)
    if stored is not None:
        return stored
    normal = subject.by_condition("normal")
    if not normal and options.mask_fallback:
        return None  # clean_video falls back to mask method 'change' and says so
    if not normal:
        raise CleanError(
            f"{subject.manifest_path}: mask method 'reference' takes its colours from the checkpoint "
            f"({settings.checkpoint or 'none stored'}) or the subject's normal recordings, and neither has "
            "them; re-fit to store them in the checkpoint, add the normal recordings, or use mask method 'change'"
        )
    size = reference_size(settings.inference_size, [rec.bbox for rec in normal], options.mask.detail)
    return NormalReference.from_recordings(normal, size, device=device)


def provenance(rec: Recording) -> str | None:
    """The tag a cleaned video of ``rec`` carries: the content id of its source video
    (None when the source cannot be read: cleaning it then fails with its own message)."""
    from sensor_removal.core.content_id import content_id

    try:
        return f"sensor-removal source_id={content_id(rec.path)}"
    except OSError:
        return None


def _ours(target: Path, rec: Recording) -> bool:
    """Whether ``target`` is a finished output of ``rec`` that a killed run wrote but did
    not list: its tag names ``rec``'s video and it has every frame of it."""
    from sensor_removal.core.video import probe, video_comment

    try:
        tag = provenance(rec)
        return (
            tag is not None
            and video_comment(target) == tag
            and probe(target).frame_count == probe(rec.path).frame_count
        )
    except (VideoError, OSError):
        return False


def _remove_stale_partials(out_dir: Path, recordings: Sequence[Recording]) -> None:
    """Remove what a killed clean left of its unfinished videos (the temporary files no
    live writer holds), with one line each; a concurrent clean's are kept."""
    from sensor_removal.core.video import remove_stale_partials

    for rec in recordings:
        try:
            out = output_path(out_dir, f"{rec.name}.mp4")
        except ValueError:
            continue  # refused with a message below
        for target in (out, full_output_path(out)):
            for stale in remove_stale_partials(target):
                print(f"removed {stale.name}: left unfinished by a clean that was killed", file=sys.stderr)


def clean_subject(
    ckpt: str | os.PathLike,
    manifest: str | os.PathLike | None,
    out_dir: str | os.PathLike,
    recordings: Sequence[str] | None = None,
    options: CleanOptions | None = None,
) -> CleanReport:
    """Load G_S→N from ``ckpt`` and clean the subject of ``manifest`` (default: the
    training manifest recorded in the checkpoint). See :func:`clean_recordings`."""
    options = options or CleanOptions()
    dev = resolve_device(options.device)
    generator, settings = load_generator(ckpt, dev)
    if manifest is None:
        if settings.manifest is None:
            raise CleanError(f"{ckpt}: checkpoint records no manifest; pass --manifest")
        manifest = settings.manifest
    subject = load_manifest(manifest, check_videos=False, require_domains=("sensor",))
    return clean_recordings(generator, settings, subject, out_dir, recordings, replace(options, device=dev))
