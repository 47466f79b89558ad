"""The synthetic subject on disk: :func:`make_subject` encodes every recording with its
ground truth, sensor mask and expression signals and writes the manifest last (its
presence means the set is complete); :func:`load_mask` and :func:`load_expressions`
read the side files back.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from sensor_removal.core.manifest import Recording, Subject, save_manifest
from sensor_removal.core.video import VideoWriter, atomic_output
from sensor_removal.synthetic import emg as synth_emg
from sensor_removal.synthetic.arguments import (
    DEFAULT_FPS,
    DEFAULT_SECONDS,
    DEFAULT_SIZE,
    SynthError,
    _check_args,
)
from sensor_removal.synthetic.faces import _face_bbox
from sensor_removal.synthetic.render import RECORDINGS, _frames, _plans
from sensor_removal.synthetic.script import SIGNALS, _Take

#: Keys of the ``.mask.npz`` files (see :func:`load_mask`).
MASK_KEYS: tuple[str, str] = ("packed", "shape")
CRF = 10  # near-lossless: the ground truth must stay comparable pixel by pixel


def _write_expr(path: Path, take: _Take, fps: float) -> None:
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["frame", "time_s", *SIGNALS])
        for i, row in enumerate(take.signals):
            wr.writerow([i, f"{i / fps:.6f}", *(f"{v:.4f}" for v in row)])


def _write_mask(path: Path, packed: list[np.ndarray], shape: tuple[int, int, int]) -> None:
    with atomic_output(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, packed=np.stack(packed), shape=np.array(shape, np.int64))


def _rounded_signals(take: _Take) -> np.ndarray:
    """The signals as ``.expr.csv`` stores them, so that file and sEMG agree exactly."""
    return np.round(take.signals, 4)


def _emg_rng(seed: int, session: int, take: int) -> np.random.Generator:
    """The sEMG's own random stream (key 25 keeps it apart from the frames' streams)."""
    return np.random.default_rng([seed, 25, session, take])


def load_mask(path: str | Path) -> np.ndarray:
    """Read a ``.mask.npz`` written by :func:`make_subject`: the per-frame sensor mask as a
    ``(T, H, W)`` bool array (True where electrodes, cables or swabs cover the face).

    The file holds ``packed`` (``np.packbits(mask, axis=-1)``, shape ``(T, H, ceil(W/8))``)
    and ``shape`` (``[T, H, W]``)."""
    path = Path(path)
    try:
        with np.load(path) as z:
            missing = [k for k in MASK_KEYS if k not in z.files]
            if missing:
                raise SynthError(
                    f"{path}: not a sensor mask file (missing key(s) {missing}; expected {list(MASK_KEYS)})"
                )
            packed, shape = z["packed"], tuple(int(v) for v in z["shape"])
    except FileNotFoundError:
        raise SynthError(f"{path}: mask file not found") from None
    except (OSError, ValueError) as exc:
        if isinstance(exc, SynthError):
            raise
        raise SynthError(f"{path}: cannot read mask file ({exc})") from None
    if len(shape) != 3 or packed.shape[:2] != shape[:2]:
        raise SynthError(f"{path}: packed mask of shape {packed.shape} does not match shape {list(shape)}")
    return np.unpackbits(packed, axis=-1, count=shape[2]).astype(bool)


def load_expressions(path: str | Path) -> dict[str, np.ndarray]:
    """Read a ``<name>.expr.csv``: ``{"frame": int array, "time_s": ..., signal: ...}``."""
    path = Path(path)
    try:
        data = np.genfromtxt(path, delimiter=",", names=True, dtype=float)
    except OSError:
        raise SynthError(f"{path}: expression file not found or unreadable") from None
    data = np.atleast_1d(data)
    assert data.dtype.names is not None  # names=True: a structured array whenever it returns
    out = {name: np.asarray(data[name]) for name in data.dtype.names}
    out["frame"] = out["frame"].astype(np.int64)
    return out


def make_subject(
    out: Path,
    seconds: float = DEFAULT_SECONDS,
    fps: float = DEFAULT_FPS,
    size: tuple[int, int] = DEFAULT_SIZE,
    seed: int = 0,
    subject: str = "synth01",
    emg_rate_hz: float = synth_emg.RATE_HZ,
) -> Path:
    """Render the synthetic subject into ``out`` and return the manifest path.

    ``size`` is (width, height), both even and >= 64; every video has
    ``round(seconds * fps)`` frames. Two sessions x (``s{k}_normal``, ``s{k}_sensor_a``,
    ``s{k}_sensor_b``); for the sensor videos also ``.gt.mp4`` and ``.mask.npz``; for all
    an ``.expr.csv``; for the sensor recordings also a synchronised sEMG file
    ``.emg.npz`` at ``emg_rate_hz`` and its truth ``.emg.truth.npz``
    (:mod:`sensor_removal.synthetic.emg`; their random numbers are a stream of their own,
    so the frames do not depend on them). The rendered frames are a deterministic function of the arguments
    (:func:`render_recording`); the H.264 files are near-identical between runs (libx264
    is not bit-reproducible on every CPU). Raises :class:`SynthError` for invalid
    arguments, before anything is written.
    """
    out = Path(out)
    n = _check_args(seconds, fps, size, seed)
    if not isinstance(subject, str) or not subject or "/" in subject:
        raise SynthError(f"subject must be a non-empty name without '/', got {subject!r}")
    if isinstance(emg_rate_hz, bool) or not isinstance(emg_rate_hz, (int, float)) or not 1024 <= emg_rate_hz <= 16384:
        raise SynthError(
            f"emg_rate_hz must be 1024-16384 Hz (the chain's band-pass ends at 500 Hz), got {emg_rate_hz!r}"
        )
    if out.exists() and not out.is_dir():
        raise SynthError(f"output {out} exists and is not a directory")
    w, h = int(size[0]), int(size[1])
    fps = float(fps)
    out.mkdir(parents=True, exist_ok=True)
    out = out.resolve()
    recordings: list[Recording] = []
    plans = _plans(n, fps, (w, h), int(seed))
    for name, k, j, condition in RECORDINGS:
        plan = plans[name]
        video = out / f"{name}.mp4"
        gt_path = out / f"{name}.gt.mp4" if plan.sensors else None
        mask_path = out / f"{name}.mask.npz" if plan.sensors else None
        packed: list[np.ndarray] = []
        with VideoWriter(video, fps, w, h, codec="h264", crf=CRF) as vw:
            gw = VideoWriter(gt_path, fps, w, h, codec="h264", crf=CRF) if gt_path else None
            try:
                for f in _frames(plan):
                    vw.write(f.frame)
                    if gw is not None:
                        gw.write(f.ground_truth)  # type: ignore[arg-type]
                        packed.append(np.packbits(f.mask, axis=-1))  # type: ignore[arg-type]
            except BaseException:
                if gw is not None:
                    gw.abort()
                raise
            if gw is not None:
                gw.close()
        if mask_path is not None:
            _write_mask(mask_path, packed, (n, h, w))
        _write_expr(out / f"{name}.expr.csv", plan.take, fps)
        emg_entry = None
        if plan.sensors:
            emg_path = out / f"{name}.emg.npz"
            signals = _rounded_signals(plan.take)
            sites = synth_emg.electrodes(_emg_rng(int(seed), 0, 0), _emg_rng(int(seed), k, 0))
            raw = synth_emg.synthesize(signals, fps, _emg_rng(int(seed), k, j), sites, rate_hz=float(emg_rate_hz))
            synth_emg.write_files(raw, emg_path, out / f"{name}.emg.truth.npz")
            emg_entry = synth_emg.manifest_entry(emg_path)
        recordings.append(
            Recording(
                name=name,
                path=video,
                session=k,
                condition=condition,  # type: ignore[arg-type]
                bbox=_face_bbox(plan.canvas, [plan.take.head]),
                segments=dict(plan.take.segments),
                ground_truth=gt_path,
                mask=mask_path,
                emg=emg_entry,
            )
        )
    manifest = out / "manifest.yaml"
    save_manifest(Subject(subject=subject, recordings=tuple(recordings), manifest_path=manifest), manifest)
    return manifest
