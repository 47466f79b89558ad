"""Video input/output shared by training, cleaning, evaluation and the app.

One module owns how frames leave and enter files so that every stage sees the same
pixels: frames are RGB ``uint8`` arrays of shape ``(H, W, 3)`` everywhere in the project.

* Reading uses OpenCV (fast, 550-850 frames/s at 720p on our machines) in **one
  sequential pass**: skipped frames are ``grab()``-ed, never seeked to, because seeking
  in long-GOP H.264 re-decodes from the previous key frame.
* Writing uses PyAV (libx264) because OpenCV's wheels have no H.264 encoder and browsers
  (and the app) only play H.264 mp4. Every writer writes under a temporary name in the
  destination folder and renames when closed without error, so a crash never leaves a
  half-written video behind.
* :func:`crop_resize` is *the* face crop of the paper (fixed bbox, resize): data
  preparation and cleaning both call it, so the generator sees at inference exactly the
  pixels it saw in training.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal, cast

import cv2
import numpy as np

Codec = Literal["h264", "h264-lossless", "mp4v"]


class VideoError(RuntimeError):
    """A video cannot be opened, decoded or written; the message names the file."""


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video (frame count from the header)."""

    path: Path
    width: int
    height: int
    fps: float
    frame_count: int

    @property
    def duration_s(self) -> float:
        return self.frame_count / self.fps if self.fps > 0 else 0.0


def _check_is_file(path: Path) -> None:
    """A regular file, or a :class:`VideoError` saying what ``path`` is instead (a FIFO
    or a device would block or never end when opened; neither is opened here)."""
    if path.is_dir():
        raise VideoError(f"{path}: is a directory, not a video file")
    if path.is_file():
        return
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise VideoError(f"{path}: video file not found") from None
    except OSError as exc:
        raise VideoError(f"{path}: cannot read ({exc.strerror or exc})") from None
    kind = (
        "a named pipe (FIFO)"
        if stat.S_ISFIFO(mode)
        else "a character device"
        if stat.S_ISCHR(mode)
        else "a block device"
        if stat.S_ISBLK(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "not a regular file"
    )
    raise VideoError(f"{path}: is {kind}, not a video file")


#: A frame interval further than this share of the typical one from it marks a variable
#: frame rate (timestamps in integer ticks jitter by one tick, far below this).
VFR_TOLERANCE = 0.25


def frame_rate_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be treated as constant-frame-rate, or None.

    The project turns segment seconds into frame numbers through the fps, and writes the
    cleaned video at that fps; both are only right when every frame lasts equally long.
    Reads the packets' timestamps (demuxing only, no decoding: milliseconds for minutes
    of video) and compares each frame interval with the median one."""
    import av  # local: PyAV is only needed here and when writing

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            tb = float(stream.time_base)
            pts = sorted(p.pts for p in container.demux(stream) if p.pts is not None)
    except (av.FFmpegError, IndexError) as exc:
        return f"cannot read frame timestamps ({exc})"
    # cast: numpy's stubs type np.diff of an int64 array as timedelta64
    steps = cast("np.ndarray[tuple[int], np.dtype[np.int64]]", np.diff(np.unique(np.asarray(pts, dtype=np.int64))))
    if steps.size < 2:
        return None
    typical = float(np.median(steps))
    worst = float(np.max(np.abs(steps - typical)))
    if worst <= VFR_TOLERANCE * typical:
        return None
    return (
        f"variable frame rate (frame intervals from {steps.min() * tb * 1000:.1f} to "
        f"{steps.max() * tb * 1000:.1f} ms); segment times would land on the wrong frames. Convert it "
        f"to a constant rate first, e.g. `ffmpeg -i {Path(path).name} -vsync cfr -r FPS -crf 12 "
        f"{Path(path).stem}.cfr.mp4` (newer ffmpeg: `-fps_mode cfr`), and point the manifest at the new file"
    )


def probe(path: str | os.PathLike) -> VideoInfo:
    """Read size, fps and frame count of ``path`` without decoding it."""
    path = Path(path)
    _check_is_file(path)
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise VideoError(f"{path}: cannot open video (unreadable or not a video)")
        width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        cap.release()
    if width <= 0 or height <= 0 or fps <= 0 or count <= 0:
        raise VideoError(f"{path}: not a readable video (size {width}x{height}, fps {fps}, frames {count})")
    return VideoInfo(path=path, width=width, height=height, fps=fps, frame_count=count)


def iter_frames(
    path: str | os.PathLike,
    indices: Iterable[int] | None = None,
    *,
    expect_count: int | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(index, rgb_frame)`` in one sequential decode pass.

    ``indices`` (any iterable, sorted internally) restricts which frames are converted
    and yielded; the others are only grabbed. With ``expect_count`` set, a video that ends
    early (truncated or corrupt) raises :class:`VideoError` instead of silently yielding
    fewer frames.
    """
    path = Path(path)
    _check_is_file(path)
    wanted = None if indices is None else sorted(set(int(i) for i in indices))
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise VideoError(f"{path}: cannot open video (unreadable or not a video)")
    try:
        index = 0
        pos = 0  # position in `wanted`
        last = None if wanted is None else (wanted[-1] if wanted else -1)
        while last is None or index <= last:
            if wanted is not None and wanted[pos] != index:
                if not cap.grab():
                    break
                index += 1
                continue
            ok, bgr = cap.read()
            if not ok:
                break
            yield index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            index += 1
            if wanted is not None:
                pos += 1
                if pos == len(wanted):
                    break
        decoded_to = index
    finally:
        cap.release()
    if wanted is not None and pos < len(wanted):
        raise VideoError(
            f"{path}: video ended after {decoded_to} frames; frame {wanted[pos]} was requested "
            "(truncated or corrupt file?)"
        )
    if expect_count is not None and wanted is None and decoded_to < expect_count:
        raise VideoError(f"{path}: decoded only {decoded_to} of {expect_count} frames (truncated or corrupt file?)")


def read_frames(path: str | os.PathLike, indices: Iterable[int]) -> np.ndarray:
    """Decode the given frames (one sequential pass) into an ``(N, H, W, 3)`` array,
    in the order of ``indices``."""
    order = [int(i) for i in indices]
    got = dict(iter_frames(path, order))
    return np.stack([got[i] for i in order]) if order else np.empty((0, 0, 0, 3), np.uint8)


def sibling_path(path: str | os.PathLike, kind: str) -> Path:
    """``DIR/name.mp4`` → ``DIR/name.<kind>.mp4``: a side output written next to a video
    (``full``: pasted back; ``mask``: a compositing mask; ``repaint``: a full repaint)."""
    path = Path(path)
    return path.with_name(f"{path.stem}.{kind}{path.suffix or '.mp4'}")


def check_bbox(bbox: tuple[int, int, int, int], width: int, height: int) -> str | None:
    """Return why ``bbox`` (x, y, w, h) does not fit a ``width`` x ``height`` frame, or None."""
    x, y, w, h = bbox
    if w <= 0 or h <= 0:
        return f"bbox {list(bbox)} has non-positive width or height"
    if x < 0 or y < 0 or x + w > width or y + h > height:
        return f"bbox {list(bbox)} lies outside the {width}x{height} frame"
    return None


def crop_resize(frame: np.ndarray, bbox: tuple[int, int, int, int], size: int) -> np.ndarray:
    """The paper's fixed face crop (Sec. 3.1): cut ``bbox`` = (x, y, w, h) out of ``frame``
    and resize it to ``size`` x ``size`` (area interpolation when shrinking, cubic when
    enlarging). Returns a contiguous uint8 RGB array."""
    x, y, w, h = (int(v) for v in bbox)
    crop = frame[y : y + h, x : x + w]
    if crop.shape[0] == size and crop.shape[1] == size:
        return np.ascontiguousarray(crop)
    shrink = w >= size and h >= size
    interp = cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
    return cv2.resize(crop, (size, size), interpolation=interp)


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: Read once at import: ``os.umask`` can only be read by setting it, which is not
#: thread-safe (the cleaner writes from threads).
_UMASK = _read_umask()


def _temp_path(final: Path) -> Path:
    """A fresh file next to ``final`` (same filesystem, so the rename is atomic), with the
    permissions a plain ``open(final, "w")`` would give (mkstemp makes 0600 files, which
    other users of a shared cluster could not read)."""
    fd, name = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=f".partial{final.suffix}", dir=final.parent)
    try:
        os.close(fd)
        os.chmod(name, 0o666 & ~_UMASK)
    except BaseException:  # also Ctrl-C / SIGTERM: leave no temporary file behind
        os.unlink(name)
        raise
    return Path(name)


def _lock_partial(tmp: Path) -> int:
    """Hold an exclusive ``flock`` on the temporary file while it is written: a later
    run tells a partial file of a live writer (locked) from one a killed writer left
    (``kill -9``, a crashed node: the lock died with the process)."""
    import fcntl

    fd = os.open(tmp, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BaseException:
        os.close(fd)
        raise
    return fd


def partial_files(final: str | os.PathLike) -> list[Path]:
    """The temporary files :class:`VideoWriter` makes for ``final`` (live or stale)."""
    final = Path(final)
    return sorted(final.parent.glob(f".{final.stem}.*.partial{final.suffix}"))


def remove_stale_partials(final: str | os.PathLike) -> list[Path]:
    """Remove the temporary files of ``final`` that no running writer holds (left by a
    killed process); returns them. Files a live writer holds are left alone."""
    import fcntl

    removed = []
    for tmp in partial_files(final):
        try:
            fd = os.open(tmp, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a live writer
        finally:
            os.close(fd)
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def video_comment(path: str | os.PathLike) -> str | None:
    """The container's ``comment`` tag (what :class:`VideoWriter` was given), or None."""
    import av

    try:
        with av.open(str(path)) as c:
            return c.metadata.get("comment")
    except (av.FFmpegError, OSError):
        return None


class VideoWriter:
    """Write RGB frames to ``path`` atomically (temporary name, renamed on success).

    ``codec``: ``h264`` (libx264, ``crf`` quality, near-lossless by default; plays in
    browsers), ``h264-lossless`` (libx264rgb, crf 0: bit-exact RGB, for measurement) or
    ``mp4v`` (fast, larger, not browser-playable). Use as a context manager: an exception
    inside the block removes the temporary file and leaves nothing at ``path``.
    ``comment``: a tag stored in the container (provenance of a cleaned video).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fps: float,
        width: int,
        height: int,
        codec: Codec = "h264",
        crf: int = 12,
        preset: str = "veryfast",
        comment: str | None = None,
    ) -> None:

        self.path = Path(path)
        self.comment = comment
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.width, self.height = int(width), int(height)
        self.frames_written = 0
        if codec != "h264-lossless" and (self.width % 2 or self.height % 2):
            raise VideoError(f"{self.path}: codec {codec} (yuv420p) needs even width and height, got {width}x{height}")
        self._closed = True  # nothing to close until the container is open
        self._tmp = _temp_path(self.path)
        self._lock_fd: int | None = None
        try:
            self._lock_fd = _lock_partial(self._tmp)
            self._open(fps, codec, crf, preset)
        except BaseException:  # a bad codec, or Ctrl-C / SIGTERM while opening: no partial file
            self.abort()
            raise

    def _open(self, fps: float, codec: Codec, crf: int, preset: str) -> None:
        import av

        self._container = av.open(str(self._tmp), mode="w", format="mp4")
        self._closed = False
        if self.comment is not None:
            self._container.metadata["comment"] = self.comment
        rate = Fraction(fps).limit_denominator(1001)
        if codec == "h264":
            stream = self._container.add_stream("libx264", rate=rate)
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(crf), "preset": preset}
        elif codec == "h264-lossless":
            stream = self._container.add_stream("libx264rgb", rate=rate)
            stream.pix_fmt = "rgb24"
            stream.options = {"crf": "0", "preset": preset}
        elif codec == "mp4v":
            stream = self._container.add_stream("mpeg4", rate=rate)
            stream.pix_fmt = "yuv420p"
            stream.options = {"qscale": "2"}
        else:
            raise VideoError(f"{self.path}: unknown codec {codec!r}")
        stream.width, stream.height = self.width, self.height
        self._stream = stream

    def write(self, frame: np.ndarray) -> None:
        import av

        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise VideoError(
                f"{self.path}: frame of shape {frame.shape}/{frame.dtype} does not match the "
                f"video's {self.height}x{self.width}x3 uint8"
            )
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        for packet in self._stream.encode(vf):
            self._container.mux(packet)
        self.frames_written += 1

    def write_many(self, frames: Iterable[np.ndarray]) -> None:
        for frame in frames:
            self.write(frame)

    def close(self) -> Path:
        """Flush, close and move the file into place. Returns the final path."""
        if self._closed:
            return self.path
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        self._closed = True
        os.replace(self._tmp, self.path)
        self._unlock()
        return self.path

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def abort(self) -> None:
        """Close and delete the temporary file; nothing appears at ``path``."""
        if not self._closed:
            try:
                self._container.close()
            except Exception:  # noqa: BLE001 - the file is discarded anyway
                pass
            self._closed = True
        self._tmp.unlink(missing_ok=True)
        self._unlock()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_video(
    path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float, codec: Codec = "h264", crf: int = 12
) -> Path:
    """Write a sequence of equally sized RGB frames to ``path`` (atomically)."""
    it = iter(frames)
    first = next(it)
    h, w = first.shape[:2]
    with VideoWriter(path, fps, w, h, codec=codec, crf=crf) as writer:
        writer.write(first)
        writer.write_many(it)
    return Path(path)


@dataclass
class atomic_output:
    """Context manager yielding a temporary path next to ``path``; renamed to ``path`` on
    success, deleted on error. For non-video outputs (npz, csv, yaml, json)."""

    path: Path

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    def __enter__(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = _temp_path(self.path)
        return self._tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            os.replace(self._tmp, self.path)
        else:
            self._tmp.unlink(missing_ok=True)


#: libx264's CRF scale: 0 (lossless) .. 51 (worst).
MAX_CRF = 51
