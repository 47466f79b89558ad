"""The Try tab: clean one uploaded clip (or one frame) with a chosen checkpoint.

The upload is checked before any work (file type by extension, size, then, decoded,
duration), copied into a private temporary folder and deleted after cleaning, whatever
happens. Cleaning is the project's one implementation,
:func:`sensor_removal.cleaning.clean_video` with paste-back on: the cleaned face is put
back into the full frame, so the result looks like the upload without electrodes.
A check that fails gives a :class:`UploadRejected` whose message the page shows.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sensor_removal.cleaning import load_generator
from sensor_removal.core.errors import UserError
from sensor_removal.core.video import VideoError, probe

VIDEO_TYPES = (".mp4", ".mov", ".avi", ".mkv", ".webm")
IMAGE_TYPES = (".png", ".jpg", ".jpeg")


class UploadRejected(ValueError):
    """An upload or a request the Try tab will not process (message for the user)."""


@dataclass(frozen=True)
class UploadLimits:
    """What an upload may be: ``max_mb`` megabytes, ``max_seconds`` of video."""

    max_mb: float = 50.0
    max_seconds: float = 20.0

    @property
    def max_bytes(self) -> int:
        return int(self.max_mb * 1024 * 1024)

    def describe(self) -> str:
        types = ", ".join(VIDEO_TYPES + IMAGE_TYPES)
        return f"{types}; at most {self.max_mb:g} MB and {self.max_seconds:g} s"


def check_upload(path: Path, limits: UploadLimits) -> str:
    """``"video"`` or ``"image"``; :class:`UploadRejected` for a wrong type, size or
    duration, or content that is not a readable video / image."""
    suffix = path.suffix.lower()
    if suffix not in VIDEO_TYPES + IMAGE_TYPES:
        raise UploadRejected(f"{path.name}: not a video or image file (allowed: {limits.describe()})")
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise UploadRejected(
            f"{path.name}: {size / 1024 / 1024:.1f} MB exceeds the upload limit of {limits.max_mb:g} MB"
        )
    if suffix in IMAGE_TYPES:
        import cv2

        if cv2.imread(str(path)) is None:
            raise UploadRejected(f"{path.name}: not a readable image")
        return "image"
    try:
        info = probe(path)
    except VideoError:
        raise UploadRejected(f"{path.name}: not a readable video") from None
    if info.duration_s > limits.max_seconds:
        raise UploadRejected(
            f"{path.name}: {info.duration_s:.1f} s exceeds the limit of {limits.max_seconds:g} s per clip"
        )
    return "video"


def first_frame(path: Path) -> np.ndarray:
    """RGB first frame of an uploaded video or image (for drawing the bbox)."""
    import cv2

    if path.suffix.lower() in IMAGE_TYPES:
        img = cv2.imread(str(path))
        if img is None:
            raise UploadRejected(f"{path.name}: not a readable image")
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    from sensor_removal.core.video import iter_frames

    try:
        for _, frame in iter_frames(path):
            return frame
    except VideoError:
        pass
    raise UploadRejected(f"{path.name}: not a readable video")


#: Results are kept this long: Gradio copies a result into its own cache when the
#: handler returns, so older ones are no longer needed.
RESULT_TTL_S = 600.0


def _drop_old_results(out_dir: Path) -> None:
    import time

    for old in out_dir.glob("result-*"):
        if time.time() - old.stat().st_mtime > RESULT_TTL_S:
            shutil.rmtree(old, ignore_errors=True)


def clean_upload(
    upload: Path, checkpoint: Path, bbox: tuple[int, int, int, int], limits: UploadLimits, out_dir: Path
) -> Path:
    """Clean ``upload`` (deleted afterwards) into a new folder under ``out_dir``: an
    ``.mp4`` for a video, a ``.png`` for an image. Returns the result's path."""
    from sensor_removal.cleaning import CleanOptions, clean_video
    from sensor_removal.core.video import iter_frames, write_video

    _drop_old_results(out_dir)
    work = Path(tempfile.mkdtemp(prefix="try-", dir=out_dir))
    result_dir = Path(tempfile.mkdtemp(prefix="result-", dir=out_dir))
    try:
        src = work / f"upload{upload.suffix.lower()}"
        shutil.move(str(upload), src)
        kind = check_upload(src, limits)
        if kind == "image":
            frame = first_frame(src)
            h, w = frame.shape[:2]
            video = work / "frame.mp4"
            write_video(video, [frame[: h - h % 2, : w - w % 2]], fps=1.0, codec="h264-lossless")
            src = video
        try:
            generator, settings = load_generator(checkpoint, "cpu")
            result = clean_video(
                generator,
                settings,
                src,
                bbox,
                work / "crop.mp4",
                CleanOptions(
                    paste_back=True,
                    device="auto",
                    progress=False,
                    codec="h264-lossless" if kind == "image" else "h264",
                    detail_video=False,  # the paste-back uses the detail composite without the file
                ),
            )
        except (UserError, VideoError) as exc:  # CleanError, DeviceError
            raise UploadRejected(str(exc).replace(str(work) + "/", "")) from None
        name = f"cleaned-{upload.stem[:40]}"
        if kind == "image":
            import cv2

            _, frame = next(iter(iter_frames(result.full_out)))
            out = result_dir / f"{name}.png"
            cv2.imwrite(str(out), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        else:
            out = result_dir / f"{name}.mp4"
            shutil.move(str(result.full_out), out)
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)
        upload.unlink(missing_ok=True)
