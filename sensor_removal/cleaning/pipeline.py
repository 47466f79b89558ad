"""One video through the generator (:func:`clean_video`): a reader thread (decode, crop,
batch), the caller's thread (inference) and a writer thread (compositing, paste-back,
encode) joined by bounded queues, so the generator never waits for IO and memory does
not grow with the video's length; a failure in any stage stops the others and is
re-raised in the caller's thread (the package docstring has the rest of the why).
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sensor_removal.cleaning.generator import GeneratorRunner
from sensor_removal.cleaning.mask import (
    NormalReference,
    SensorMasker,
    composite_detail,
    composite_subpixel,
    fine_delta,
)
from sensor_removal.cleaning.mask import composite as composite_frame
from sensor_removal.cleaning.options import CleanOptions
from sensor_removal.cleaning.paste_back import feather_alpha, full_output_path
from sensor_removal.cleaning.paste_back import (
    paste_back as _paste_frame,  # the name ``paste_back`` is an option
)
from sensor_removal.cleaning.settings import CleanError, CleanSettings, default_batch_size
from sensor_removal.cleaning.steady import SteadyFill
from sensor_removal.core.device import resolve_device
from sensor_removal.core.progress import counter
from sensor_removal.core.tensors import to_uint8
from sensor_removal.core.video import (
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
    detail_out: Path | None = None
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
    detail: np.ndarray | None = None  # (n, D, D, 3) uint8: the crops at the reference mask's finer size
    output: Any = None  # uint8 crops (CPU) or the model output copied to pinned memory (CUDA) ...
    ready: Any = None  # ... with a CUDA event to wait for before reading it


def _read_batches(
    src: Path,
    bbox: tuple[int, int, int, int],
    size: int,
    batch_size: int,
    expect: int,
    keep_frames: bool,
    pin: bool,
    detail: int | None = None,
) -> Iterator[_Batch]:
    """Decode ``src`` once, crop every frame, yield uint8 batches (last one may be short);
    with ``detail``, also each crop cut at that finer size (for the ``reference`` mask)."""
    buf = np.empty((batch_size, size, size, 3), np.uint8)
    fine = np.empty((batch_size, detail, detail, 3), np.uint8) if detail else None
    frames: list[np.ndarray] = []
    n = start = 0
    for index, frame in iter_frames(src, expect_count=expect):
        buf[n] = crop_resize(frame, bbox, size)
        if fine is not None:
            fine[n] = crop_resize(frame, bbox, int(detail))  # type: ignore[arg-type]
        if keep_frames:
            frames.append(frame)
        n += 1
        if n == batch_size:
            yield _make_batch(start, buf, n, frames if keep_frames else None, pin, fine)
            buf = np.empty_like(buf)
            fine = None if fine is None else np.empty_like(fine)
            frames = []
            start, n = index + 1, 0
    if n:
        yield _make_batch(start, buf, n, frames if keep_frames else None, pin, fine)


def _make_batch(
    start: int, buf: np.ndarray, n: int, frames: list[np.ndarray] | None, pin: bool, fine: np.ndarray | None = None
) -> _Batch:
    crops = torch.from_numpy(buf[:n])
    if pin:
        crops = crops.pin_memory()
    return _Batch(start=start, crops=crops, frames=frames, detail=None if fine is None else fine[:n])


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
    options: CleanOptions | None = None,
    *,
    full_out: str | os.PathLike | None = None,
    desc: str | None = None,
    reference: NormalReference | None = None,
    comment: str | None = None,
) -> CleanResult:
    """Clean every frame of ``src`` (face crop ``bbox`` = x, y, w, h) with ``generator``.

    Writes ``out``: the cleaned crop at ``settings.inference_size`` px, same fps and exactly
    the frames decoded from ``src``. With ``options.paste_back`` also ``full_out`` (default
    :func:`full_output_path`): the full frame with the cleaned crop blended into the bbox;
    outside the bbox the pixels are the decoded input's (bit-exact with codec
    ``h264-lossless``). ``generator`` is any module mapping ``(B, 3, S, S)`` in [-1, 1] to
    the same shape; it is moved to ``options.device`` and run in eval mode (its training
    flag is restored afterwards).

    ``composite="auto"`` (our extension) writes ``M·G(S) + (1 − M)·S`` with the sensor mask
    ``M`` of :class:`sensor_removal.cleaning.mask.SensorMasker` (``options.mask``); outside the
    mask the crop is the decoded input's (bit-exact with ``h264-lossless``). With it,
    ``mask_video`` also writes ``NAME.mask.mp4`` and ``keep_repaint`` ``NAME.repaint.mp4``
    (:func:`side_output_path`). ``composite="off"``: the paper's full repaint. Mask method
    ``reference`` needs ``reference``, the colours of the subject's normal recordings
    (:class:`sensor_removal.cleaning.mask.NormalReference`). ``options.steady`` (our
    extension; off by default) carries the repainted pixels over from frame to frame where
    the face did not move (:mod:`sensor_removal.cleaning.steady`), weighted by the mask when
    compositing; with it, ``keep_repaint`` also writes ``NAME.repaint.mp4``: the
    generator's own, unfiltered repaint, for comparison.

    Ten parameters, for a reason: the five positional ones say what is cleaned and where it
    goes, ``options`` how (the same for every video of a run), and the four keywords are
    what differs per video within a run (its full-frame path, progress label, the subject's
    normal colours, the provenance tag ``comment`` stored in the outputs).

    Raises :class:`CleanError` / :class:`~sensor_removal.core.video.VideoError` (naming the
    file) for an unreadable, truncated or corrupt video or a bbox that does not fit;
    nothing is left at ``out`` / ``full_out`` then. An existing ``out`` / ``full_out`` is
    an error unless ``options.overwrite``; the input video itself is never overwritten.
    """
    job = _VideoJob.plan(
        generator, settings, Path(src), bbox, Path(out), options or CleanOptions(), full_out, reference
    )
    return job.run(desc, comment)


class _VideoJob:
    """One video's cleaning, checked before any work (:meth:`plan`) and then run as three
    stages (:meth:`read`, :meth:`infer`, :meth:`write`) joined by bounded queues."""

    def __init__(
        self,
        generator: nn.Module,
        settings: CleanSettings,
        src: Path,
        bbox: tuple[int, int, int, int],
        out: Path,
        options: CleanOptions,
        full: Path | None,
        reference: NormalReference | None,
    ) -> None:
        self.generator, self.settings, self.options = generator, settings, options
        self.src, self.bbox, self.out, self.full = src, bbox, out, full
        self.dev = resolve_device(options.device)
        self.batch_size = default_batch_size(self.dev) if options.batch_size is None else int(options.batch_size)
        self.size = settings.inference_size
        self.mask_out = sibling_path(out, "mask") if options.compositing and options.mask_video else None
        wants_repaint = (options.compositing or options.steadied) and options.keep_repaint
        self.repaint_out = sibling_path(out, "repaint") if wants_repaint else None
        self.masker: SensorMasker | None = None
        if options.compositing:
            mask = options.mask
            if mask.method == "reference" and reference is None and options.mask_fallback:
                print(
                    f"{src}: no normal colour reference (checkpoint or normal recordings); "
                    "mask method 'change' instead of 'reference'",
                    file=sys.stderr,
                )
                mask = replace(mask, method="change")
            try:
                self.masker = SensorMasker(mask, reference)
            except ValueError as exc:
                raise CleanError(str(exc)) from None
        self.steadier = SteadyFill(options.steady) if options.steadied and options.steady is not None else None
        fine_size = self.masker.fine_size if self.masker is not None else None
        self.detail_size = fine_size if fine_size is not None and fine_size > self.size else None
        self.detail_out = sibling_path(out, "detail") if self.detail_size is not None and options.detail_video else None
        # the detail composite is filtered by its own steady fill, at its own size
        self.detail_steadier = (
            SteadyFill(options.steady)
            if self.steadier is not None and options.steady is not None and self.detail_size is not None
            else None
        )
        self.pipe = _Pipeline()
        self.to_model: queue.Queue = queue.Queue(maxsize=_QUEUE_DEPTH)
        self.to_writer: queue.Queue = queue.Queue(maxsize=_QUEUE_DEPTH)
        self.counts = {"read": 0, "written": 0}
        self.writers: list[VideoWriter] = []
        self.side: dict[str, VideoWriter] = {}

    @classmethod
    def plan(
        cls,
        generator: nn.Module,
        settings: CleanSettings,
        src: Path,
        bbox: Sequence[int],
        out: Path,
        options: CleanOptions,
        full_out: str | os.PathLike | None,
        reference: NormalReference | None,
    ) -> _VideoJob:
        """Check the bbox, outputs and input, and build the job (nothing written yet)."""
        bbox_t: tuple[int, int, int, int] = tuple(int(v) for v in bbox)  # type: ignore[assignment]
        if len(bbox_t) != 4:
            raise CleanError(f"{src}: bbox must be x, y, w, h; got {list(bbox)}")
        full = (Path(full_out) if full_out is not None else full_output_path(out)) if options.paste_back else None
        job = cls(generator, settings, src, bbox_t, out, options, full, reference)
        check_video_outputs(src, out, full, overwrite=options.overwrite)
        check_video_outputs(src, job.mask_out, job.repaint_out, overwrite=options.overwrite)
        check_video_outputs(src, job.detail_out, None, overwrite=options.overwrite)
        job.info = probe(src)  # VideoError names the file
        why = check_bbox(bbox_t, job.info.width, job.info.height)
        if why:
            raise CleanError(f"{src}: {why}")
        job.runner = GeneratorRunner(generator, job.dev, options.precision, multiple=2**settings.n_downsampling)
        job.alpha = feather_alpha(bbox_t[2], bbox_t[3], options.feather) if full is not None else None
        return job

    info: Any
    runner: GeneratorRunner
    alpha: np.ndarray | None

    @property
    def on_cuda(self) -> bool:
        return self.dev.type == "cuda"

    def read(self) -> None:
        """Reader thread: decode, crop, batch."""
        reference = self.masker.reference if self.masker is not None else None
        detail = reference.size if reference is not None and reference.size != self.size else None
        batches = _read_batches(
            self.src,
            self.bbox,
            self.size,
            self.batch_size,
            self.info.frame_count,
            self.full is not None,
            self.on_cuda,
            detail,
        )
        for batch in batches:
            self.counts["read"] += len(batch.crops)
            self.pipe.put(self.to_model, batch)
        self.pipe.put(self.to_model, _DONE)

    def infer(self, reader: threading.Thread) -> None:
        """Caller's thread: the generator on every batch, handed on to the writer."""
        with torch.inference_mode():
            while True:
                batch = self.pipe.get(self.to_model, reader)
                if batch is _DONE:
                    break
                y = self.runner(batch.crops)
                if self.on_cuda:  # async copy to pinned memory; the writer waits on the event
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
                if self.masker is None:  # the writer needs the input crops to composite
                    batch.crops = None  # type: ignore[assignment]
                self.pipe.put(self.to_writer, batch)
            self.pipe.put(self.to_writer, _DONE)

    def write(self, infer_thread: threading.Thread, bar: Any) -> None:
        """Writer thread: compositing, steady fill, paste-back, encode."""
        with torch.inference_mode():
            while True:
                batch = self.pipe.get(self.to_writer, infer_thread)
                if batch is _DONE:
                    return
                if batch.ready is not None:
                    batch.ready.synchronize()
                crops = batch.output if isinstance(batch.output, np.ndarray) else to_uint8(batch.output)
                if crops.shape[1:] != (self.size, self.size, 3):
                    raise CleanError(
                        f"{self.src}: generator returned images of size {crops.shape[1]}x{crops.shape[2]}, "
                        f"expected {self.size}x{self.size}"
                    )
                inputs = batch.crops.numpy() if self.masker is not None else None
                for i, crop in enumerate(crops):
                    self._write_frame(crop, None if inputs is None else inputs[i], batch, i)
                self.counts["written"] += len(crops)
                bar.update(len(crops))

    def _write_frame(self, crop: np.ndarray, source: np.ndarray | None, batch: _Batch, i: int) -> None:
        m = None
        detailed = None  # the composite at the fine size, where one is made
        if "repaint" in self.side:
            self.side["repaint"].write(crop)
        if self.masker is not None and source is not None:
            detail = None if batch.detail is None else batch.detail[i]
            m = self.masker(source, crop, detail)
            if "mask" in self.side:
                self.side["mask"].write(np.repeat(np.rint(m * 255).astype(np.uint8)[:, :, None], 3, axis=2))
            fine = self.masker.fine
            if fine is not None:
                cut = source if detail is None else detail
                thin = cut.shape[0] / self.size  # fine pixels per crop pixel
                filled = composite_detail(cut, fine_delta(crop, fine, cut), fine, thin)
                crop = composite_subpixel(source, crop, fine, cut, filled)
                if self.detail_size is not None and (self.detail_out is not None or self.full is not None):
                    detailed = filled if self.detail_steadier is None else self.detail_steadier(filled, fine)
            else:
                crop = composite_frame(source, crop, m)
        if self.steadier is not None:
            crop = self.steadier(crop, m)
        self.writers[0].write(crop)
        if "detail" in self.side and detailed is not None:
            self.side["detail"].write(detailed)
        if self.full is not None and batch.frames is not None:
            face = crop if detailed is None else detailed
            self.writers[1].write(_paste_frame(batch.frames[i], face, self.bbox, self.alpha))

    def _open_writers(self, comment: str | None) -> None:
        # ``comment``: provenance stored in the outputs (clean_recordings: the source's id).
        o, info, size = self.options, self.info, self.size
        self.writers.append(VideoWriter(self.out, info.fps, size, size, codec=o.codec, crf=o.crf, comment=comment))
        if self.full is not None:
            self.writers.append(
                VideoWriter(self.full, info.fps, info.width, info.height, codec=o.codec, crf=o.crf, comment=comment)
            )
        for kind, path in (("mask", self.mask_out), ("repaint", self.repaint_out)):
            if path is not None:
                self.side[kind] = VideoWriter(path, info.fps, size, size, codec=o.codec, crf=o.crf)
                self.writers.append(self.side[kind])
        if self.detail_out is not None and self.detail_size is not None:
            d = self.detail_size
            self.side["detail"] = VideoWriter(
                self.detail_out, info.fps, d, d, codec=o.codec, crf=o.crf, comment=comment
            )
            self.writers.append(self.side["detail"])

    def _run_stages(self, bar: Any) -> None:
        """Start the reader and writer threads, infer here, join, re-raise the first error."""
        pipe = self.pipe
        reader = pipe.thread(f"clean-read:{self.src.name}", self.read)
        writer = pipe.thread(f"clean-write:{self.src.name}", lambda: self.write(infer_thread, bar))
        infer_thread = threading.current_thread()
        self.threads: list[threading.Thread] = [reader, writer]
        reader.start()
        writer.start()
        completed = False
        try:
            self.infer(reader)
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
            raise CleanError(f"{self.src}: cleaning stopped unexpectedly")
        if not (self.counts["read"] == self.counts["written"] == self.writers[0].frames_written):
            raise CleanError(
                f"{self.src}: decoded {self.counts['read']} frames but wrote {self.writers[0].frames_written}"
            )

    def run(self, desc: str | None, comment: str | None) -> CleanResult:
        """Open the outputs, run the stages, close (or, on any failure, remove) the outputs."""
        bar = counter(self.info.frame_count, desc or self.src.name, "frames", enabled=self.options.progress)
        closed: list[Path] = []
        self.threads = []
        was_training = self.generator.training
        t0 = time.perf_counter()
        try:
            self._open_writers(comment)
            self.generator.eval()
            self._run_stages(bar)
            for w in self.writers:
                closed.append(w.close())
        except BaseException:
            self.pipe.stop.set()
            for t in self.threads:
                t.join(timeout=10)
            for w in self.writers:
                w.abort()
            for path in closed:
                path.unlink(missing_ok=True)
            raise
        finally:
            bar.close()
            self.generator.train(was_training)
        return CleanResult(
            source=self.src,
            out=self.out,
            full_out=self.full,
            frames=self.counts["written"],
            fps=self.info.fps,
            crop_size=self.size,
            bbox=self.bbox,
            seconds=time.perf_counter() - t0,
            mask_out=self.mask_out,
            repaint_out=self.repaint_out,
            detail_out=self.detail_out,
            composited=self.options.compositing,
            steadied=self.options.steadied,
        )
