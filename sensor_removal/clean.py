"""Clean whole videos with a trained generator G_S→N (docs/design.md "The job", step *clean*).

The paper (Büchner et al., VISAPP 2023, Sec. 3.2 and 4) runs the sensor→normal generator
over **every** frame of every sensor video and hands the result to unmodified facial
analysis. This module is the one implementation of that step; the CLI
(``python -m sensor_removal clean``), the post-fit hook and the app all call it:

* :func:`load_generator` — G_S→N and its :class:`CleanSettings` from a checkpoint;
* :func:`clean_video` — one video, one bbox → the cleaned face crop at the model's
  resolution (and, with ``paste_back``, the full frame with the cleaned crop put back);
* :func:`clean_recordings` / :func:`clean_subject` — every (or the named) sensor recording
  of a subject, one failure not stopping the others, plus a ``manifest.yaml`` of the
  cleaned recordings (``condition: clean``, ``source:`` the sensor recording) for the
  evaluation;
* :func:`paste_back` — the cleaned crop resized into the bbox with a feathered edge.

Why the pipeline looks the way it does:

* Every frame is cut with :func:`sensor_removal.video.crop_resize` at the training crop
  size and converted with :func:`sensor_removal.data.to_tensor`, so the generator sees at
  inference exactly the pixels it was trained on; outputs go through
  :func:`sensor_removal.data.to_uint8`.
* Streaming with bounded queues: a reader thread (decode, crop, stack uint8 batches), the
  caller's thread (inference) and a writer thread (paste-back, encode) overlap, so the
  generator never waits for IO and memory does not grow with the video's length. On CUDA
  the output is copied to pinned memory asynchronously and ``to_uint8`` runs in the
  writer; on CPU it runs right after the generator, in the same OpenMP team.
  A failure in any stage stops the others (stop event, polling with timeouts) and is
  re-raised in the caller's thread.
* On CUDA: bf16 autocast and channels_last (the generator is conv-only, so both are safe
  and ~2x faster); on CPU: fp32. Instance norm uses per-image statistics, so a frame's
  output does not depend on the batch it is in.
* Outputs are written under a temporary name and renamed when complete; a failed
  recording leaves nothing behind.
* Compositing (``composite="auto"``, **our extension, not the paper's**): the cleaned crop
  is ``M·G(S) + (1 − M)·S`` with a sensor mask ``M`` estimated per frame from what the
  generator changed (:mod:`sensor_removal.mask`), so every pixel the sensors did not
  touch reaches facial analysis as recorded. ``composite="off"`` writes the paper's full
  repaint. The mask needs frames in order (temporal hysteresis), so it runs in the
  writer thread; optional side outputs: ``NAME.mask.mp4`` (the mask, for inspection) and
  ``NAME.repaint.mp4`` (the full repaint, for the ground-truth comparison).
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import torch
from torch import nn

from sensor_removal.checkpoint import CheckpointError, read_checkpoint
from sensor_removal.clean_cli import MAX_CRF
from sensor_removal.data import to_tensor, to_uint8
from sensor_removal.manifest import (
    ManifestError,
    Recording,
    Subject,
    load_manifest,
    output_path,
    save_manifest,
)
from sensor_removal.mask import MaskSettings, SensorMasker
from sensor_removal.mask import composite as composite_frame
from sensor_removal.progress import counter
from sensor_removal.video import (
    Codec,
    VideoError,
    VideoWriter,
    check_bbox,
    crop_resize,
    iter_frames,
    probe,
    sibling_path,
)

__all__ = [
    "CleanError",
    "CleanFailure",
    "CleanReport",
    "CleanResult",
    "CleanSettings",
    "GeneratorRunner",
    "clean_recordings",
    "clean_subject",
    "check_video_outputs",
    "clean_video",
    "default_batch_size",
    "feather_alpha",
    "full_output_path",
    "load_generator",
    "paste_back",
    "resolve_device",
]

Precision = Literal["auto", "fp32", "bf16"]
Composite = Literal["auto", "off"]
#: Default of ``--composite`` (chosen by measurement on the synthetic subject, docs/compositing.md).
DEFAULT_COMPOSITE: Composite = "off"
DeviceArg = Literal["auto", "cpu", "cuda"]
#: Name of the manifest of cleaned recordings inside the output folder.
CLEAN_MANIFEST = "manifest.yaml"
#: Lock file next to the cleaned manifest: concurrent cleans into one folder merge
#: their entries one after the other (each re-reads the manifest inside the lock).
CLEAN_MANIFEST_LOCK = f".{CLEAN_MANIFEST}.lock"
#: Default width of the paste-back blend ramp, in pixels of the full frame.
DEFAULT_FEATHER = 8
#: How long a blocked queue operation waits before checking whether to give up.
_POLL_S = 0.05
#: Depth of each queue between stages (batches). Bounds memory independently of length.
_QUEUE_DEPTH = 2


class CleanError(RuntimeError):
    """Cleaning cannot proceed; the message names the file (and recording) at fault."""


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class CleanSettings:
    """What inference needs to know about the training run.

    Every frame is cut with ``crop_resize(frame, bbox, inference_size)``, where
    ``inference_size`` is the training cache's ``load_size`` (286 in the paper): exactly
    the crop the training frames were taken from, so faces have the scale the generator
    learnt (the random ``crop_size`` = 256 training crops cut pieces out of it without
    rescaling). The generator is fully convolutional; the runner pads the input to a
    multiple of ``2 ** n_downsampling`` and crops the output back.
    ``manifest`` is the training manifest recorded in the checkpoint (may be relative to
    the directory training ran in), used when no manifest is given.
    """

    crop_size: int
    load_size: int | None = None
    ngf: int | None = None
    n_blocks: int | None = None
    n_downsampling: int = 2
    manifest: Path | None = None
    checkpoint: Path | None = None

    @property
    def inference_size(self) -> int:
        """Side of the face crop fed to the generator (and of the cleaned crop video)."""
        return int(self.load_size) if self.load_size else int(self.crop_size)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` → CUDA when present, else CPU. Asking for CUDA without one is an error."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CleanError(f"device {device!r} requested but CUDA is not available on this machine")
    return dev


def default_batch_size(device: torch.device) -> int:
    """Frames per generator call when none is given.

    CUDA: 16 (fills the GPU; the pipeline keeps it fed). CPU: 2 — measured on 2 cores,
    256 px: larger batches are *slower* per frame (activations of 8 frames no longer fit
    in cache; ngf 64: 2.2 frames/s at batch 1, 2.1 at 2, 1.75 at 8).
    """
    return 16 if device.type == "cuda" else 2


def _int_hparam(hp: dict[str, Any], key: str, path: Path, section: str, default: int | None = None) -> int:
    value = hp.get(key, default)
    if value is None:
        raise CleanError(f"{path}: checkpoint field {section}.{key} missing (not a sensor-removal checkpoint?)")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value < 0:
        raise CleanError(f"{path}: checkpoint field {section}.{key} must be a non-negative integer, got {value!r}")
    return int(value)


def load_generator(
    ckpt_path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[nn.Module, CleanSettings]:
    """Load only G_S→N (``gen_s2n.*``) from a Lightning checkpoint of
    :class:`sensor_removal.module.CycleGAN`.

    Returns the generator in eval mode on ``device`` and the settings inference needs
    (``hyper_parameters``: ``ngf``, ``n_blocks``; ``datamodule_hyper_parameters``:
    ``crop_size``, ``load_size``, ``manifest``).
    The checkpoint is read with ``weights_only=True`` (no code runs from the file); any
    file that is not a checkpoint of this project raises :class:`CleanError` naming it.
    """
    from sensor_removal.networks import GENERATORS, build_generator

    path = Path(ckpt_path)
    try:
        ckpt = read_checkpoint(path)
    except CheckpointError as exc:
        raise CleanError(str(exc)) from None
    prefix = "gen_s2n."
    state = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    if not state:
        raise CleanError(
            f"{path}: checkpoint has no '{prefix}*' weights (G_S→N); not a sensor-removal CycleGAN checkpoint"
        )
    hp = ckpt.get("hyper_parameters")
    dhp = ckpt.get("datamodule_hyper_parameters")
    if not isinstance(hp, dict):
        raise CleanError(f"{path}: checkpoint has no 'hyper_parameters' (not a sensor-removal checkpoint?)")
    if not isinstance(dhp, dict):
        raise CleanError(f"{path}: checkpoint has no 'datamodule_hyper_parameters' (crop_size unknown)")
    ngf = _int_hparam(hp, "ngf", path, "hyper_parameters")
    n_blocks = _int_hparam(hp, "n_blocks", path, "hyper_parameters")
    n_down = _int_hparam(hp, "n_downsampling", path, "hyper_parameters", default=2)
    crop_size = _int_hparam(dhp, "crop_size", path, "datamodule_hyper_parameters")
    if crop_size == 0 or crop_size % (2**n_down):
        raise CleanError(f"{path}: crop_size {crop_size} is not a positive multiple of {2**n_down}")
    load_size = dhp.get("load_size")
    manifest = dhp.get("manifest")
    kind = hp.get("generator", "resnet")  # checkpoints from before the option: the paper's
    if kind not in GENERATORS:
        raise CleanError(f"{path}: checkpoint field hyper_parameters.generator {kind!r} is not one of {list(GENERATORS)}")
    gen = build_generator(kind, ngf=ngf, n_blocks=n_blocks, n_downsampling=n_down)
    try:
        gen.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CleanError(f"{path}: G_S→N weights do not match ngf={ngf}, n_blocks={n_blocks}: {exc}") from None
    gen.eval().requires_grad_(False)
    gen.to(resolve_device(device))
    settings = CleanSettings(
        crop_size=crop_size,
        load_size=None if load_size is None else int(load_size),
        ngf=ngf,
        n_blocks=n_blocks,
        n_downsampling=n_down,
        manifest=None if manifest is None else Path(manifest),
        checkpoint=path,
    )
    return gen, settings


# --------------------------------------------------------------------------- inference


class GeneratorRunner:
    """One forward pass as the pipeline does it: uint8 batch → model output.

    ``(B, S, S, 3)`` uint8 (CPU) → device → :func:`to_tensor` → channels_last (default: on
    CUDA) → generator under autocast (bf16 when ``precision`` resolves to it: ``auto`` is
    bf16 on CUDA when supported, fp32 otherwise). Moves the generator to ``device`` and
    its memory format accordingly. Call it inside ``torch.inference_mode()``. The
    benchmark uses the same object, so "generator only" and "end to end" time the same
    computation.
    """

    def __init__(
        self,
        generator: nn.Module,
        device: torch.device,
        precision: Precision = "auto",
        channels_last: bool | None = None,
        multiple: int = 4,
    ) -> None:
        self.generator = generator
        self.device = device
        self.multiple = multiple  # 2 ** n_downsampling: input sides must divide by it
        if precision == "auto":
            bf16_ok = device.type == "cuda" and torch.cuda.is_bf16_supported()
            precision = "bf16" if bf16_ok else "fp32"
        self.precision: Literal["fp32", "bf16"] = precision  # type: ignore[assignment]
        self.channels_last = device.type == "cuda" if channels_last is None else channels_last
        generator.to(device)
        generator.to(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)

    def to_input(self, batch_u8: torch.Tensor) -> torch.Tensor:
        x = to_tensor(batch_u8.to(self.device, non_blocking=True))
        # to_tensor's permute leaves NHWC strides; make the layout match the weights'
        # (NCHW on CPU is ~5 % faster with contiguous input; a no-op for channels_last).
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        return x.contiguous(memory_format=fmt)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        pad_h, pad_w = -h % self.multiple, -w % self.multiple
        if pad_h or pad_w:  # e.g. 286 -> 288: reflect, as the generator pads its borders
            x = torch.nn.functional.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            return self.generator(x)[..., :h, :w]

    def __call__(self, batch_u8: torch.Tensor) -> torch.Tensor:
        return self.forward(self.to_input(batch_u8))


# --------------------------------------------------------------------------- paste-back


def feather_alpha(width: int, height: int, feather: int = DEFAULT_FEATHER) -> np.ndarray:
    """Blend weight ``(height, width, 1)`` float32 for pasting a crop into its bbox.

    1 in the interior, a linear ramp over the ``feather`` outermost pixels inside the bbox
    border (the outermost pixel gets ``1 / (feather + 1)``), so the cleaned crop fades into
    the original frame instead of leaving a visible seam. ``feather=0`` gives a hard paste.
    """
    feather = max(0, min(int(feather), (min(width, height) - 1) // 2))

    def ramp(n: int) -> np.ndarray:
        d = np.minimum(np.arange(n), np.arange(n)[::-1]).astype(np.float32)
        return np.clip((d + 1.0) / (feather + 1.0), 0.0, 1.0)

    alpha = np.minimum(ramp(height)[:, None], ramp(width)[None, :])
    return alpha[:, :, None].astype(np.float32)


def paste_back(
    frame: np.ndarray,
    crop: np.ndarray,
    bbox: tuple[int, int, int, int],
    alpha: np.ndarray | None = None,
    *,
    feather: int = DEFAULT_FEATHER,
) -> np.ndarray:
    """Return a copy of ``frame`` with ``crop`` (the cleaned ``crop_size`` face crop)
    resized back into ``bbox`` = (x, y, w, h) and blended with :func:`feather_alpha`.

    Pixels outside the bbox are the input's bytes, unchanged. ``alpha`` (from
    :func:`feather_alpha` for the bbox's w, h) can be passed to avoid recomputing it.
    Resizing mirrors :func:`crop_resize` (area when shrinking, cubic when enlarging).
    """
    x, y, w, h = (int(v) for v in bbox)
    why = check_bbox((x, y, w, h), frame.shape[1], frame.shape[0])
    if why:
        raise ValueError(f"paste_back: {why}")
    if crop.shape[0] == h and crop.shape[1] == w:
        back = crop
    else:
        shrink = crop.shape[0] >= h and crop.shape[1] >= w
        back = cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
    if alpha is None:
        alpha = feather_alpha(w, h, feather)
    out = frame.copy()
    region = out[y : y + h, x : x + w]
    blended = region.astype(np.float32)
    blended += alpha * (back.astype(np.float32) - blended)
    np.rint(blended, out=blended)
    region[...] = np.clip(blended, 0, 255).astype(np.uint8)
    return out


_paste_frame = paste_back  # clean_video's ``paste_back`` flag shadows the function


def full_output_path(out: Path) -> Path:
    """``DIR/name.mp4`` → ``DIR/name.full.mp4`` (the pasted-back full-frame video)."""
    return sibling_path(out, "full")


# --------------------------------------------------------------------------- pipeline


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
    mask_video: bool = False,
    keep_repaint: bool = False,
    overwrite: bool = False,
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
    ``M`` of :class:`sensor_removal.mask.SensorMasker` (``mask`` settings); outside the mask
    the crop is the decoded input's (bit-exact with ``h264-lossless``). With it,
    ``mask_video`` also writes ``NAME.mask.mp4`` and ``keep_repaint`` ``NAME.repaint.mp4``
    (:func:`side_output_path`). ``composite="off"``: the paper's full repaint.

    Raises :class:`CleanError` / :class:`~sensor_removal.video.VideoError` (naming the
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
    repaint_out = sibling_path(out, "repaint") if compositing and keep_repaint else None
    masker = SensorMasker(mask if mask is not None else MaskSettings()) if compositing else None
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
                    if masker is not None:
                        m = masker(inputs[i], crop)
                        if "repaint" in side:
                            side["repaint"].write(crop)
                        if "mask" in side:
                            side["mask"].write(np.repeat(np.rint(m * 255).astype(np.uint8)[:, :, None], 3, axis=2))
                        crop = composite_frame(inputs[i], crop, m)
                    writers[0].write(crop)
                    if full is not None:
                        writers[1].write(_paste_frame(batch.frames[i], crop, bbox_t, alpha))
                counts["written"] += len(crops)
                bar.update(len(crops))

    infer_thread = threading.current_thread()
    threads: list[threading.Thread] = []
    try:
        writers.append(VideoWriter(out, info.fps, size, size, codec=codec, crf=crf))
        if full is not None:
            writers.append(VideoWriter(full, info.fps, info.width, info.height, codec=codec, crf=crf))
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
    )


# --------------------------------------------------------------------------- subjects


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


def clean_recording_entry(rec: Recording, out: Path, crop_size: int) -> Recording:
    """The manifest entry of ``rec``'s cleaned crop video at ``out``."""
    return Recording(
        name=f"{rec.name}_clean",
        path=out.resolve(),
        session=rec.session,
        condition="clean",
        bbox=(0, 0, crop_size, crop_size),
        segments=dict(rec.segments),
        source=rec.name,
    )


def _existing_clean_manifest(path: Path, subject: str) -> list[Recording]:
    if not path.is_file():
        return []
    try:
        old = load_manifest(path, check_videos=False, require_domains=())
    except ManifestError as exc:
        raise CleanError(f"{path}: existing manifest of cleaned recordings is invalid: {exc}") from None
    if old.subject != subject:
        raise CleanError(
            f"{path}: belongs to subject {old.subject!r}, not {subject!r}; use another output folder"
        )
    other = [r.name for r in old.recordings if r.condition != "clean"]
    if other:
        raise CleanError(
            f"{path}: not a manifest of cleaned recordings (recording(s) {other} are not condition "
            "'clean'); it is left untouched: choose another --out"
        )
    return list(old.recordings)


def _outputs_of(recs: Sequence[Recording]) -> set[Path]:
    """Files a cleaned manifest's entries own: each video and its pasted-back version."""
    return {p.resolve() for r in recs for p in (r.path, full_output_path(r.path))}


def _inputs_of(subject: Subject) -> set[Path]:
    """Every file a subject manifest refers to (never to be written by a clean)."""
    files = {subject.manifest_path.resolve()}
    for r in subject.recordings:
        files |= {p.resolve() for p in (r.path, r.ground_truth, r.mask) if p is not None}
    return files


def _merge_manifest(
    manifest_path: Path, subject: Subject, results: dict[str, CleanResult]
) -> Path:
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
    targets: dict[str, Path] = {}
    for rec in chosen:
        try:
            out = output_path(out_dir, f"{rec.name}.mp4")
        except ValueError as exc:
            raise CleanError(f"{subject.manifest_path}: recording {rec.name!r}: {exc}") from None
        for target in (out, full_output_path(out)) if paste_back else (out,):
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
                    mask_video=mask_video,
                    keep_repaint=keep_repaint,
                    overwrite=True,  # checked above, before any work
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
    finally:
        # Also on an unexpected error or Ctrl-C: list what was finished.
        if report.results:
            report.manifest = _merge_manifest(manifest_path, subject, report.results)
        elif existing:
            report.manifest = manifest_path
    return report


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
    )
