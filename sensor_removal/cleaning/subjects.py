"""Cleaning a subject: every (or the named) sensor recording through :func:`clean_video`,
one failure not stopping the others, a :class:`CleanReport` of the outcome and the
cleaned manifest merged with what a previous clean left.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from sensor_removal.cleaning.cleaned_manifest import (
    _existing_clean_manifest,
    _inputs_of,
    _merge_manifest,
    _outputs_of,
)
from sensor_removal.cleaning.generator import load_generator
from sensor_removal.cleaning.mask import MaskSettings, NormalReference
from sensor_removal.cleaning.paste_back import full_output_path
from sensor_removal.cleaning.pipeline import CleanResult, _check_crf, clean_video
from sensor_removal.cleaning.settings import (
    CLEAN_MANIFEST,
    DEFAULT_COMPOSITE,
    DEFAULT_FEATHER,
    CleanError,
    CleanSettings,
    Composite,
    Precision,
)
from sensor_removal.cleaning.steady import SteadySettings
from sensor_removal.core.device import resolve_device
from sensor_removal.core.manifest import (
    Recording,
    Subject,
    load_manifest,
    output_path,
)
from sensor_removal.core.video import (
    Codec,
    VideoError,
)


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
            extra = f" + {r.full_out.name}" if r.full_out else ""
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
    *,
    paste_back: bool = False,
    batch_size: int | None = None,
    device: str | torch.device = "auto",
    precision: Precision = "auto",
    codec: Codec = "h264",
    crf: int = 12,
    feather: int = DEFAULT_FEATHER,
    progress: bool = True,
    composite: Composite = DEFAULT_COMPOSITE,
    mask: MaskSettings | None = None,
    mask_video: bool = False,
    keep_repaint: bool = False,
    overwrite: bool = False,
    steady: SteadySettings | None = None,
) -> CleanReport:
    """Clean the sensor recordings of ``subject`` (all, or those named) into ``out_dir``.

    Each recording ``NAME`` gives ``out_dir/NAME.mp4`` (and ``NAME.full.mp4`` with
    ``paste_back``). A recording that fails (unreadable, truncated, bbox outside the
    frame) is listed in the report's failures and leaves no file; the others are still
    cleaned. ``out_dir/manifest.yaml`` lists the cleaned recordings (``NAME_clean``,
    condition ``clean``, ``source: NAME``, same session and segments, bbox the full crop),
    merged with the entries already there. For the post-fit hook, which has the generator
    in memory; :func:`clean_subject` loads it from a checkpoint.

    Never written: any file the subject's manifest refers to, a manifest in ``out_dir``
    that is not a cleaned-recordings manifest of the same subject, and (unless
    ``overwrite``) existing files that the cleaned manifest does not list as its own.
    """
    out_dir = Path(out_dir)
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
    manifest_path = (out_dir / CLEAN_MANIFEST).resolve()
    if manifest_path == subject.manifest_path.resolve():
        raise CleanError(f"{manifest_path}: output folder holds the subject's own manifest; choose another --out")
    _check_crf(crf)
    if out_dir.exists() and not out_dir.is_dir():
        raise CleanError(f"{out_dir}: --out exists and is not a folder; cleaning a manifest writes into a folder")
    existing = _existing_clean_manifest(manifest_path, subject.subject)
    owned, inputs = _outputs_of(existing), _inputs_of(subject)
    if out_dir.is_dir():
        _remove_stale_partials(out_dir, sensor)
    targets: dict[str, Path] = {}
    for rec in chosen:
        try:
            out = output_path(out_dir, f"{rec.name}.mp4")
        except ValueError as exc:
            raise CleanError(f"{subject.manifest_path}: recording {rec.name!r}: {exc}") from None
        for target in (out, full_output_path(out)) if paste_back else (out,):
            if target.exists() and target not in owned and not overwrite and _ours(target, rec):
                owned.add(target)  # finished by a run killed before it listed it: adopted
            if target in inputs:
                raise CleanError(
                    f"{target}: output of recording {rec.name!r} would overwrite an input of "
                    f"{subject.manifest_path}; choose another --out"
                )
            if target.exists() and target not in owned and not overwrite:
                raise CleanError(
                    f"{target}: output of recording {rec.name!r} exists and is not listed in "
                    f"{manifest_path}; pass --overwrite to replace it"
                )
        targets[rec.name] = out
    out_dir.mkdir(parents=True, exist_ok=True)

    reference = None
    if composite == "auto" and mask is not None and mask.method == "reference":
        normal = subject.by_condition("normal")
        if not normal:
            raise CleanError(
                f"{subject.manifest_path}: mask method 'reference' takes its colours from the subject's normal "
                "recordings, and this manifest has none; use mask method 'change'"
            )
        reference = NormalReference.from_recordings(normal, settings.inference_size, device=str(resolve_device(device)))

    report = CleanReport(subject=subject.subject, out_dir=out_dir)
    try:
        for number, rec in enumerate(chosen, 1):
            out = targets[rec.name]
            try:
                result = clean_video(
                    generator,
                    settings,
                    rec.path,
                    rec.bbox,
                    out,
                    paste_back=paste_back,
                    batch_size=batch_size,
                    device=device,
                    precision=precision,
                    codec=codec,
                    crf=crf,
                    feather=feather,
                    progress=progress,
                    desc=f"clean {rec.name} ({number}/{len(chosen)})",
                    composite=composite,
                    mask=mask,
                    reference=reference,
                    mask_video=mask_video,
                    keep_repaint=keep_repaint,
                    overwrite=True,  # checked above, before any work
                    steady=steady,
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
            # Listed at once: a run killed later (kill -9, a node lost) keeps this entry.
            report.manifest = _merge_manifest(manifest_path, subject, {rec.name: result})
    finally:
        # Also on an unexpected error or Ctrl-C: list what was finished.
        if report.results:
            report.manifest = _merge_manifest(manifest_path, subject, report.results)
        elif existing:
            report.manifest = manifest_path
    return report


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
    *,
    paste_back: bool = False,
    batch_size: int | None = None,
    device: str | torch.device = "auto",
    precision: Precision = "auto",
    codec: Codec = "h264",
    crf: int = 12,
    feather: int = DEFAULT_FEATHER,
    progress: bool = True,
    composite: Composite = DEFAULT_COMPOSITE,
    mask: MaskSettings | None = None,
    mask_video: bool = False,
    keep_repaint: bool = False,
    overwrite: bool = False,
    steady: SteadySettings | None = None,
) -> CleanReport:
    """Load G_S→N from ``ckpt`` and clean the subject of ``manifest`` (default: the
    training manifest recorded in the checkpoint). See :func:`clean_recordings`."""
    dev = resolve_device(device)
    generator, settings = load_generator(ckpt, dev)
    if manifest is None:
        if settings.manifest is None:
            raise CleanError(f"{ckpt}: checkpoint records no manifest; pass --manifest")
        manifest = settings.manifest
    subject = load_manifest(manifest, check_videos=False, require_domains=("sensor",))
    return clean_recordings(
        generator,
        settings,
        subject,
        out_dir,
        recordings,
        paste_back=paste_back,
        batch_size=batch_size,
        device=dev,
        precision=precision,
        codec=codec,
        crf=crf,
        feather=feather,
        progress=progress,
        composite=composite,
        mask=mask,
        mask_video=mask_video,
        keep_repaint=keep_repaint,
        overwrite=overwrite,
        steady=steady,
    )
