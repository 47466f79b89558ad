"""One video through the generator (:func:`clean_video`): a reader thread (decode, crop,
batch), the caller's thread (inference) and a writer thread (compositing, paste-back,
encode) joined by bounded queues, so the generator never waits for IO and memory does
not grow with the video's length; a failure in any stage stops the others and is
re-raised in the caller's thread (the package docstring has the rest of the why).
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sensor_removal.cleaning.generator import GeneratorRunner
from sensor_removal.cleaning.mask import MaskSettings, NormalReference, SensorMasker
from sensor_removal.cleaning.mask import composite as composite_frame
from sensor_removal.cleaning.paste_back import feather_alpha, full_output_path
from sensor_removal.cleaning.paste_back import (
    paste_back as _paste_frame,  # clean_video's ``paste_back`` flag shadows the function
)
from sensor_removal.cleaning.settings import (
    DEFAULT_COMPOSITE,
    DEFAULT_FEATHER,
    CleanError,
    CleanSettings,
    Composite,
    Precision,
    default_batch_size,
)
from sensor_removal.cleaning.steady import SteadyFill, SteadySettings
from sensor_removal.core.device import resolve_device
from sensor_removal.core.progress import counter
from sensor_removal.core.tensors import to_uint8
from sensor_removal.core.video import (
    MAX_CRF,
    Codec,
    VideoWriter,
    check_bbox,
    crop_resize,
    iter_frames,
    probe,
    sibling_path,
)

#: How long a blocked queue operation waits before checking whether to give up.
_POLL_S = 0.05
#: Depth of each queue between stages (batches). Bounds memory independently of length.
_QUEUE_DEPTH = 2


@dataclass(frozen=True)
class CleanResult:
    """One cleaned video: where it went and how fast it was made."""

    source: Path
    out: Path
    full_out: Path | None
    frames: int
    fps: float
    crop_size: int
    bbox: tuple[int, int, int, int]
    seconds: float
    mask_out: Path | None = None
    repaint_out: Path | None = None
    composited: bool = False
    steadied: bool = False

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("inf")


class _Stop(Exception):
    """Internal: a stage gave up because another one failed."""


class _Pipeline:
    """Shared stop flag and first error of the three stages."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self._lock = threading.Lock()

    def fail(self, exc: BaseException) -> None:
        with self._lock:
            if self.error is None:
                self.error = exc
        self.stop.set()

    def put(self, q: queue.Queue, item: Any) -> None:
        while True:
            try:
                q.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                if self.stop.is_set():
                    raise _Stop from None

    def get(self, q: queue.Queue, producer: threading.Thread) -> Any:
        while True:
            try:
                return q.get(timeout=_POLL_S)
            except queue.Empty:
                if self.stop.is_set():
                    raise _Stop from None
                if not producer.is_alive():
                    try:
                        return q.get_nowait()
                    except queue.Empty:
                        raise _Stop from None

    def thread(self, name: str, target: Callable[[], None]) -> threading.Thread:
        def run() -> None:
            try:
                target()
            except _Stop:
                pass
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                self.fail(exc)

        return threading.Thread(target=run, name=name, daemon=True)


_DONE = object()


@dataclass
class _Batch:
    start: int
    crops: torch.Tensor  # (n, S, S, 3) uint8, CPU
    frames: list[np.ndarray] | None  # full frames for paste-back
    output: Any = None  # uint8 crops (CPU) or the model output copied to pinned memory (CUDA) ...
    ready: Any = None  # ... with a CUDA event to wait for before reading it


def _read_batches(
    src: Path, bbox: tuple[int, int, int, int], size: int, batch_size: int, expect: int, keep_frames: bool, pin: bool
) -> Iterator[_Batch]:
    """Decode ``src`` once, crop every frame, yield uint8 batches (last one may be short)."""
    buf = np.empty((batch_size, size, size, 3), np.uint8)
    frames: list[np.ndarray] = []
    n = start = 0
    for index, frame in iter_frames(src, expect_count=expect):
        buf[n] = crop_resize(frame, bbox, size)
        if keep_frames:
            frames.append(frame)
        n += 1
        if n == batch_size:
            yield _make_batch(start, buf, n, frames if keep_frames else None, pin)
            buf = np.empty_like(buf)
            frames = []
            start, n = index + 1, 0
    if n:
        yield _make_batch(start, buf, n, frames if keep_frames else None, pin)


def _make_batch(start: int, buf: np.ndarray, n: int, frames: list[np.ndarray] | None, pin: bool) -> _Batch:
    crops = torch.from_numpy(buf[:n])
    if pin:
        crops = crops.pin_memory()
    return _Batch(start=start, crops=crops, frames=frames)


def _check_crf(crf: int) -> None:
    if not 0 <= int(crf) <= MAX_CRF:
        raise CleanError(f"crf must be between 0 and {MAX_CRF} (H.264 quality; lower is better), got {crf}")


def check_video_outputs(src: Path, out: Path | None, full: Path | None, *, overwrite: bool = False) -> None:
    """Refuse outputs that would replace the input video, are folders, or (unless
    ``overwrite``) already exist — before any work is done."""
    for target in (out, full):
        if target is None:
            continue
        if src.exists() and target.resolve() == src.resolve():
            raise CleanError(f"{src}: output {target} would overwrite the input video")
        if target.is_dir():
            raise CleanError(f"{target}: output is a directory; give the path of an .mp4 file")
        if target.exists() and not overwrite:
            raise CleanError(f"{target}: output file exists; pass --overwrite to replace it")


def clean_video(
    generator: nn.Module,
    settings: CleanSettings,
    src: str | os.PathLike,
    bbox: Sequence[int],
    out: str | os.PathLike,
    *,
    paste_back: bool = False,
    full_out: str | os.PathLike | None = None,
    batch_size: int | None = None,
    device: str | torch.device = "auto",
    precision: Precision = "auto",
    codec: Codec = "h264",
    crf: int = 12,
    feather: int = DEFAULT_FEATHER,
    progress: bool = True,
    desc: str | None = None,
    composite: Composite = DEFAULT_COMPOSITE,
    mask: MaskSettings | None = None,
    reference: NormalReference | None = None,
    mask_video: bool = False,
    keep_repaint: bool = False,
    overwrite: bool = False,
    steady: SteadySettings | None = None,
    comment: str | None = None,
) -> CleanResult:
    """Clean every frame of ``src`` (face crop ``bbox`` = x, y, w, h) with ``generator``.

    Writes ``out``: the cleaned crop at ``settings.inference_size`` px, same fps and exactly
    the frames decoded from ``src``. With ``paste_back`` also ``full_out`` (default
    :func:`full_output_path`): the full frame with the cleaned crop blended into the bbox;
    outside the bbox the pixels are the decoded input's (bit-exact with codec
    ``h264-lossless``). ``generator`` is any module mapping ``(B, 3, S, S)`` in [-1, 1] to
    the same shape; it is moved to ``device`` and run in eval mode (its training flag is
    restored afterwards).

    ``composite="auto"`` (our extension) writes ``M·G(S) + (1 − M)·S`` with the sensor mask
    ``M`` of :class:`sensor_removal.cleaning.mask.SensorMasker` (``mask`` settings); outside the mask
    the crop is the decoded input's (bit-exact with ``h264-lossless``). With it,
    ``mask_video`` also writes ``NAME.mask.mp4`` and ``keep_repaint`` ``NAME.repaint.mp4``
    (:func:`side_output_path`). ``composite="off"``: the paper's full repaint. Mask method
    ``reference`` needs ``reference``, the colours of the subject's normal recordings
    (:class:`sensor_removal.cleaning.mask.NormalReference`). ``steady`` (our extension; off by
    default) carries the repainted pixels over from frame to frame where the face did not
    move (:mod:`sensor_removal.cleaning.steady`), weighted by the mask when compositing; with it,
    ``keep_repaint`` also writes ``NAME.repaint.mp4``: the generator's own, unfiltered
    repaint, for comparison.

    Raises :class:`CleanError` / :class:`~sensor_removal.core.video.VideoError` (naming the
    file) for an unreadable, truncated or corrupt video or a bbox that does not fit;
    nothing is left at ``out`` / ``full_out`` then. An existing ``out`` / ``full_out`` is
    an error unless ``overwrite``; the input video itself is never overwritten.
    """
    src = Path(src)
    out = Path(out)
    bbox_t: tuple[int, int, int, int] = tuple(int(v) for v in bbox)  # type: ignore[assignment]
    if len(bbox_t) != 4:
        raise CleanError(f"{src}: bbox must be x, y, w, h; got {list(bbox)}")
    dev = resolve_device(device)
    batch_size = default_batch_size(dev) if batch_size is None else int(batch_size)
    if batch_size < 1:
        raise CleanError(f"batch_size must be >= 1, got {batch_size}")
    size = settings.inference_size
    full = (Path(full_out) if full_out is not None else full_output_path(out)) if paste_back else None
    if composite not in ("auto", "off"):
        raise CleanError(f"composite must be 'auto' or 'off', got {composite!r}")
    compositing = composite == "auto"
    mask_out = sibling_path(out, "mask") if compositing and mask_video else None
    steadied = steady is not None and steady.on
    repaint_out = sibling_path(out, "repaint") if (compositing or steadied) and keep_repaint else None
    masker = None
    if compositing:
        try:
            masker = SensorMasker(mask if mask is not None else MaskSettings(), reference)
        except ValueError as exc:
            raise CleanError(str(exc)) from None
    steadier = SteadyFill(steady) if steadied else None
    _check_crf(crf)
    check_video_outputs(src, out, full, overwrite=overwrite)
    check_video_outputs(src, mask_out, repaint_out, overwrite=overwrite)
    info = probe(src)  # VideoError names the file
    why = check_bbox(bbox_t, info.width, info.height)
    if why:
        raise CleanError(f"{src}: {why}")
    runner = GeneratorRunner(generator, dev, precision, multiple=2**settings.n_downsampling)
    on_cuda = dev.type == "cuda"

    bar = counter(info.frame_count, desc or src.name, "frames", enabled=progress)
    pipe = _Pipeline()
    to_model: queue.Queue = queue.Queue(maxsize=_QUEUE_DEPTH)
    to_writer: queue.Queue = queue.Queue(maxsize=_QUEUE_DEPTH)
    alpha = feather_alpha(bbox_t[2], bbox_t[3], feather) if full is not None else None
    counts = {"read": 0, "written": 0}
    writers: list[VideoWriter] = []
    side: dict[str, VideoWriter] = {}
    closed: list[Path] = []
    was_training = generator.training
    t0 = time.perf_counter()

    def read() -> None:
        for batch in _read_batches(src, bbox_t, size, batch_size, info.frame_count, full is not None, on_cuda):
            counts["read"] += len(batch.crops)
            pipe.put(to_model, batch)
        pipe.put(to_model, _DONE)

    def write() -> None:
        with torch.inference_mode():
            while True:
                batch = pipe.get(to_writer, infer_thread)
                if batch is _DONE:
                    return
                if batch.ready is not None:
                    batch.ready.synchronize()
                crops = batch.output if isinstance(batch.output, np.ndarray) else to_uint8(batch.output)
                if crops.shape[1:] != (size, size, 3):
                    raise CleanError(
                        f"{src}: generator returned images of size {crops.shape[1]}x{crops.shape[2]}, "
                        f"expected {size}x{size}"
                    )
                inputs = batch.crops.numpy() if masker is not None else None
                for i, crop in enumerate(crops):
                    m = None
                    if "repaint" in side:
                        side["repaint"].write(crop)
                    if masker is not None:
                        m = masker(inputs[i], crop)
                        if "mask" in side:
                            side["mask"].write(np.repeat(np.rint(m * 255).astype(np.uint8)[:, :, None], 3, axis=2))
                        crop = composite_frame(inputs[i], crop, m)
                    if steadier is not None:
                        crop = steadier(crop, m)
                    writers[0].write(crop)
                    if full is not None:
                        writers[1].write(_paste_frame(batch.frames[i], crop, bbox_t, alpha))
                counts["written"] += len(crops)
                bar.update(len(crops))

    infer_thread = threading.current_thread()
    threads: list[threading.Thread] = []
    try:
        # ``comment``: provenance stored in the outputs (clean_recordings: the source's id).
        writers.append(VideoWriter(out, info.fps, size, size, codec=codec, crf=crf, comment=comment))
        if full is not None:
            writers.append(VideoWriter(full, info.fps, info.width, info.height, codec=codec, crf=crf, comment=comment))
        for kind, path in (("mask", mask_out), ("repaint", repaint_out)):
            if path is not None:
                side[kind] = VideoWriter(path, info.fps, size, size, codec=codec, crf=crf)
                writers.append(side[kind])
        generator.eval()
        reader = pipe.thread(f"clean-read:{src.name}", read)
        writer = pipe.thread(f"clean-write:{src.name}", write)
        threads = [reader, writer]
        reader.start()
        writer.start()
        completed = False
        try:
            with torch.inference_mode():
                while True:
                    batch = pipe.get(to_model, reader)
                    if batch is _DONE:
                        break
                    y = runner(batch.crops)
                    if on_cuda:  # async copy to pinned memory; the writer waits on the event
                        host = torch.empty(y.shape, dtype=y.dtype, pin_memory=True)
                        host.copy_(y, non_blocking=True)
                        batch.ready = torch.cuda.Event()
                        batch.ready.record()
                        batch.output = host
                    else:
                        # On CPU convert here, with the generator's own OpenMP team: in the
                        # writer thread a second team would compete with the generator for
                        # the cores (measured: ~12 % slower end to end on 2 CPUs).
                        batch.output = to_uint8(y)
                    if masker is None:  # the writer needs the input crops to composite
                        batch.crops = None  # type: ignore[assignment]
                    pipe.put(to_writer, batch)
                pipe.put(to_writer, _DONE)
                completed = True
        except _Stop:
            pass
        except BaseException as exc:
            pipe.fail(exc)
        writer.join()
        pipe.stop.set()  # releases the reader if it is still blocked on a full queue
        reader.join()
        if pipe.error is not None:
            raise pipe.error
        if not completed:  # pragma: no cover - a stage stopped without saying why
            raise CleanError(f"{src}: cleaning stopped unexpectedly")
        if not (counts["read"] == counts["written"] == writers[0].frames_written):
            raise CleanError(f"{src}: decoded {counts['read']} frames but wrote {writers[0].frames_written}")
        for w in writers:
            closed.append(w.close())
    except BaseException:
        pipe.stop.set()
        for t in threads:
            t.join(timeout=10)
        for w in writers:
            w.abort()
        for path in closed:
            path.unlink(missing_ok=True)
        raise
    finally:
        bar.close()
        generator.train(was_training)
    return CleanResult(
        source=src,
        out=out,
        full_out=full,
        frames=counts["written"],
        fps=info.fps,
        crop_size=size,
        bbox=bbox_t,
        seconds=time.perf_counter() - t0,
        mask_out=mask_out,
        repaint_out=repaint_out,
        composited=compositing,
        steadied=steadied,
    )
