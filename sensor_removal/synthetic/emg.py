"""Synthetic sEMG with ground truth for the synthetic subject's sensor recordings.

Why: real facial sEMG cannot be shipped, and a real recording never tells what the
muscles really did. Here the expression script (:mod:`.script`) that moves the rendered
face also drives 22 bipolar channels (:data:`~sensor_removal.core.manifest_emg.MUSCLE_CHANNELS`,
Fridlund & Cacioppo's montage as in EIFER's dataset, Büchner et al., CVPR 2025), so that
every later step (chain, sync, mapping) can be checked against the truth:

* muscle drive = :data:`DRIVE_MATRIX` (FACS: smile -> zygomaticus + some orbicularis
  oculi, frown -> corrugator + depressor supercilii, ...) x the expression signals, with
  a small fixed left/right asymmetry;
* the drive *leads* the rendered movement by :data:`LAG_S` (electromechanical delay:
  visible AU12 lags zygomaticus EMG by 100-300 ms);
* raw signal = band-limited Gaussian noise (20-450 Hz) x (baseline + gain x drive),
  mixed with neighbouring channels (crosstalk), plus 50 Hz mains, slow drift;
* a trigger channel ``TRIG`` with one 20 ms pulse at video frame :data:`TRIGGER_FRAME`;
* the sEMG recorder starts a per-recording clock offset (0.8-2.5 s) *before* the video
  and stops 1 s after it.

Files per sensor recording (both written atomically, deterministic per seed; the video
frames do not depend on them: their random numbers come from their own stream)::

    <name>.emg.npz        samples (N, 23) int16, unit_uv, rate_hz, labels (23,)
    <name>.emg.truth.npz  drives (T, 22) at the video frames (aligned with the movement),
                          offset_s (sEMG time of video t = 0), lag_s, drive_matrix
                          (22, len(SIGNALS)), crosstalk (22, 22), channels, labels
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sensor_removal.core.manifest_emg import MUSCLE_CHANNELS, MUSCLES, SIDES, EmgEntry, EmgSync
from sensor_removal.core.video import atomic_output
from sensor_removal.synthetic.script import SIGNALS

#: Sampling rate of the synthetic recordings: the low end of facial sEMG amplifiers
#: (EIFER's dataset: 4,096 Hz), which keeps the demo's files to ~1 MB per recording.
RATE_HZ = 2048.0
#: The drive leads the rendered movement by this much (s); the literature's 100-300 ms.
LAG_S = 0.15
#: Video frame marked by the trigger pulse (the camera's start signal).
TRIGGER_FRAME = 0
TRIGGER_CHANNEL = "TRIG"
#: Stored resolution of the int16 samples (µV per count).
UNIT_UV = 0.1
_ABBREV = {
    "corrugator": "COR",
    "depressor_anguli_oris": "DAO",
    "depressor_supercilii": "DSU",
    "frontalis_lateral": "FRL",
    "frontalis_medial": "FRM",
    "levator_labii_superioris": "LLS",
    "masseter": "MAS",
    "mentalis": "MEN",
    "orbicularis_oculi": "OOC",
    "orbicularis_oris": "OOR",
    "zygomaticus": "ZYG",
}
#: File labels of the 22 channels, in :data:`MUSCLE_CHANNELS` order (``ZYG_L`` ...).
LABELS: tuple[str, ...] = tuple(f"{_ABBREV[m]}_{s[0].upper()}" for m in MUSCLES for s in SIDES)
#: Muscle drive per expression signal (FACS; docs/emg.md), per muscle (both sides).
_DRIVES: dict[str, dict[str, float]] = {
    "corrugator": {"brow_lower": 1.0},
    "depressor_anguli_oris": {"lip_corner_down": 1.0},
    "depressor_supercilii": {"brow_lower": 0.8, "eye_close": 0.25},
    "frontalis_lateral": {"brow_raise": 0.9},
    "frontalis_medial": {"brow_raise": 1.0},
    "levator_labii_superioris": {"smile": 0.3, "brow_lower": 0.35, "lip_corner_down": 0.15},
    "masseter": {"mouth_open": 0.6, "smile": 0.15},
    "mentalis": {"lip_corner_down": 0.5, "lip_pucker": 0.45},
    "orbicularis_oculi": {"eye_close": 0.8, "smile": 0.35},
    "orbicularis_oris": {"lip_pucker": 1.0, "mouth_open": 0.25},
    "zygomaticus": {"smile": 1.0},
}
#: Neighbouring sites on one side (crosstalk partners).
_NEIGHBOURS: tuple[tuple[str, str], ...] = (
    ("corrugator", "depressor_supercilii"),
    ("corrugator", "frontalis_medial"),
    ("frontalis_medial", "frontalis_lateral"),
    ("depressor_supercilii", "orbicularis_oculi"),
    ("orbicularis_oculi", "zygomaticus"),
    ("zygomaticus", "levator_labii_superioris"),
    ("levator_labii_superioris", "orbicularis_oris"),
    ("orbicularis_oris", "depressor_anguli_oris"),
    ("depressor_anguli_oris", "mentalis"),
    ("zygomaticus", "masseter"),
)


def drive_matrix() -> np.ndarray:
    """``(22, len(SIGNALS))``: drive of each channel per unit of each expression signal,
    with a fixed asymmetry (left 5 % stronger), as in most faces."""
    m = np.zeros((len(MUSCLE_CHANNELS), len(SIGNALS)))
    for c, name in enumerate(MUSCLE_CHANNELS):
        muscle, side = name.split("/")
        for sig, w in _DRIVES[muscle].items():
            m[c, SIGNALS.index(sig)] = w * (1.05 if side == "left" else 0.95)
    return m


def crosstalk_matrix(neighbour: float = 0.12, contralateral: float = 0.04) -> np.ndarray:
    """``(22, 22)`` mixing: each recorded channel = its muscle + ``neighbour`` x each
    neighbouring site on the same side + ``contralateral`` x the same muscle opposite."""
    idx = {name: i for i, name in enumerate(MUSCLE_CHANNELS)}
    m = np.eye(len(MUSCLE_CHANNELS))
    for side in SIDES:
        for a, b in _NEIGHBOURS:
            i, j = idx[f"{a}/{side}"], idx[f"{b}/{side}"]
            m[i, j] = m[j, i] = neighbour
    for muscle in MUSCLES:
        i, j = idx[f"{muscle}/left"], idx[f"{muscle}/right"]
        m[i, j] = m[j, i] = contralateral
    return m


@dataclass(frozen=True)
class Electrodes:
    """Per-channel ``gain`` (µV RMS at full drive) and ``baseline`` (µV RMS at rest): a
    property of the subject's skin and the montage, shared by the takes of a session."""

    gain: np.ndarray
    baseline: np.ndarray


def electrodes(subject_rng: np.random.Generator, session_rng: np.random.Generator | None = None) -> Electrodes:
    """Gains 40-80 µV and baselines 1.5-3 µV per channel for the subject; a session
    (electrodes glued anew) scales them by 0.9-1.1 per channel."""
    c = len(MUSCLE_CHANNELS)
    gain, baseline = subject_rng.uniform(40.0, 80.0, c), subject_rng.uniform(1.5, 3.0, c)
    if session_rng is not None:
        gain = gain * session_rng.uniform(0.9, 1.1, c)
    return Electrodes(gain, baseline)


@dataclass(frozen=True)
class SynthEmg:
    """One synthetic recording: ``samples`` ``(N, 23)`` in µV (22 muscles + trigger),
    ``drives`` ``(T, 22)`` at the video frames, and the truth of the timing."""

    samples: np.ndarray
    rate_hz: float
    drives: np.ndarray
    offset_s: float
    lag_s: float


def _band_noise(n: int, channels: int, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance Gaussian noise band-limited to 20-450 Hz (motor-unit spectrum)."""
    from scipy.signal import butter, sosfilt

    sos = butter(4, [20.0, min(450.0, 0.45 * rate)], btype="bandpass", fs=rate, output="sos")
    x = sosfilt(sos, rng.standard_normal((channels, n)), axis=1)
    return x / x.std(axis=1, keepdims=True)


def _drift(n: int, channels: int, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Slow electrode drift below ~0.3 Hz, unit peak."""
    step = max(1, int(rate // 8))
    coarse = np.cumsum(rng.standard_normal((channels, n // step + 2)), axis=1)
    coarse -= coarse.mean(axis=1, keepdims=True)
    x = np.array([np.interp(np.arange(n) / step, np.arange(coarse.shape[1]), c) for c in coarse])
    return x / np.maximum(np.abs(x).max(axis=1, keepdims=True), 1e-9)


def synthesize(
    signals: np.ndarray,
    fps: float,
    rng: np.random.Generator,
    sites: Electrodes | None = None,
    rate_hz: float = RATE_HZ,
    lag_s: float = LAG_S,
    offset_s: float | None = None,
) -> SynthEmg:
    """Raw sEMG for expression ``signals`` ``(T, len(SIGNALS))`` at ``fps``. ``sites``:
    the electrodes' gains (default: drawn from ``rng``; pass the subject's so that its
    takes share them). ``offset_s``: sEMG time of the video's first frame (default:
    drawn from 0.8-2.5 s)."""
    n_frames = len(signals)
    offset = float(rng.uniform(0.8, 2.5)) if offset_s is None else float(offset_s)
    duration = offset + n_frames / fps + 1.0
    n = int(round(duration * rate_hz))
    tau = np.arange(n) / rate_hz
    drives = signals @ drive_matrix().T  # (T, 22), aligned with the movement
    # The drive at sEMG time tau shows as movement at video time tau - offset + lag.
    video_t = tau - offset + lag_s
    frame_t = np.arange(n_frames) / fps
    act = np.stack([np.interp(video_t, frame_t, d, left=0.0, right=0.0) for d in drives.T])
    channels = len(MUSCLE_CHANNELS)
    sites = electrodes(rng) if sites is None else sites
    gain, baseline = sites.gain[:, None], sites.baseline[:, None]
    source = _band_noise(n, channels, rate_hz, rng) * (baseline + gain * act)
    raw = crosstalk_matrix() @ source
    phase = rng.uniform(0, 2 * np.pi, (channels, 1))
    raw += rng.uniform(4.0, 12.0, (channels, 1)) * np.sin(2 * np.pi * 50.0 * tau[None] + phase)
    raw += rng.uniform(10.0, 40.0, (channels, 1)) * _drift(n, channels, rate_hz, rng)
    raw += rng.uniform(-200.0, 200.0, (channels, 1))  # electrode offset (DC)
    trig = np.zeros(n)
    start = int(round((offset + TRIGGER_FRAME / fps) * rate_hz))
    trig[start : start + int(round(0.02 * rate_hz))] = 1000.0
    samples = np.concatenate([raw, trig[None]], axis=0).T
    return SynthEmg(samples, float(rate_hz), drives, offset, float(lag_s))


def write_files(emg: SynthEmg, path: Path, truth_path: Path) -> None:
    """The sEMG file (NPZ, int16 at :data:`UNIT_UV`) and its truth, atomically."""
    counts = np.clip(np.round(emg.samples / UNIT_UV), -32768, 32767).astype(np.int16)
    labels = np.array([*LABELS, TRIGGER_CHANNEL])
    with atomic_output(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(
            fh, samples=counts, unit_uv=np.float64(UNIT_UV), rate_hz=np.float64(emg.rate_hz), labels=labels
        )
    with atomic_output(truth_path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(
            fh,
            drives=emg.drives.astype(np.float32),
            offset_s=np.float64(emg.offset_s),
            lag_s=np.float64(emg.lag_s),
            drive_matrix=drive_matrix(),
            crosstalk=crosstalk_matrix(),
            channels=np.array(MUSCLE_CHANNELS),
            labels=np.array(LABELS),
            signals=np.array(SIGNALS),
        )


def manifest_entry(path: Path) -> EmgEntry:
    """The ``emg:`` entry of a synthetic sensor recording (trigger sync)."""
    return EmgEntry(
        file=path,
        channels=dict(zip(LABELS, MUSCLE_CHANNELS, strict=True)),
        sync=EmgSync("trigger", channel=TRIGGER_CHANNEL, frame=TRIGGER_FRAME),
    )


def load_truth(path: str | Path) -> dict[str, np.ndarray]:
    """Read a ``<name>.emg.truth.npz`` (keys as in the module docstring)."""
    with np.load(Path(path)) as z:
        return {k: z[k] for k in z.files}
