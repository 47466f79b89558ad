"""One recording's sEMG, checked, synchronised and turned into envelopes at its frames.

:func:`load_emg` reads the file of a recording's ``emg:`` entry and checks it against the
entry (every mapped channel present, the sampling rate known and consistent, no flat or
clipped channel): bad input is one :class:`~sensor_removal.emg.readers.EmgFileError`
naming the file and the channel. :func:`envelopes` runs the chain
(:mod:`sensor_removal.emg.chain`), synchronises (:mod:`sensor_removal.emg.sync`) and
samples the envelopes at the video's frame times; a file that does not cover the video
is refused there.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from sensor_removal.core.manifest import Recording
from sensor_removal.core.manifest_emg import MUSCLE_CHANNELS, EmgEntry
from sensor_removal.emg.chain import (
    DEFAULT_CHAIN,
    ChainSettings,
    clean,
    min_rate_hz,
    rms_from_squares,
    running_squares,
)
from sensor_removal.emg.readers import EmgFileError, read_emg
from sensor_removal.emg.sync import SyncError, offset_from_trigger, scan_shifts

#: A channel is clipped when more than this share of its samples sit at its extremes.
CLIP_SHARE = 0.005
#: A channel is flat when its standard deviation is below this (µV).
FLAT_UV = 1e-3
#: Rates of file and manifest may differ by this fraction (rounding in headers).
RATE_TOLERANCE = 1e-3
#: With a trigger, the physiological lag is searched within this range (s): the
#: literature's 100-300 ms with margin.
LAG_RANGE_S = (-0.5, 1.0)


@dataclass(frozen=True)
class EmgRecording:
    """The mapped channels of one recording's sEMG file: ``samples`` ``(N, C)`` µV in
    :data:`MUSCLE_CHANNELS` order (``channels``), the trigger channel if the entry
    names one, the rate and the chain settings."""

    name: str
    entry: EmgEntry
    samples: np.ndarray
    channels: tuple[str, ...]
    rate_hz: float
    trigger: np.ndarray | None
    settings: ChainSettings = ChainSettings()

    @property
    def duration_s(self) -> float:
        return self.samples.shape[0] / self.rate_hz

    @cached_property
    def cleaned(self) -> np.ndarray:
        """Mean removal, notch and band-pass, computed once."""
        return clean(self.samples, self.rate_hz, self.settings)

    @cached_property
    def _squares(self) -> np.ndarray:
        return running_squares(self.cleaned)

    def envelope_at(self, times_s: np.ndarray) -> np.ndarray:
        """RMS envelopes ``(len(times_s), C)`` at sEMG-clock times."""
        return rms_from_squares(self._squares, self.rate_hz, times_s, self.settings.rms_window_s)


def _where(name: str, entry: EmgEntry) -> str:
    return f"{entry.file} (recording {name!r})"


def _check_channel(x: np.ndarray, where: str, label: str, muscle: str) -> None:
    if not np.all(np.isfinite(x)):
        raise EmgFileError(f"{where}: channel {label!r} ({muscle}) has NaN or infinite samples")
    if float(np.std(x)) < FLAT_UV:
        raise EmgFileError(
            f"{where}: channel {label!r} ({muscle}) is flat (std < {FLAT_UV} µV): electrode off or not connected"
        )
    lo, hi = float(x.min()), float(x.max())
    tol = 1e-9 * max(hi - lo, 1.0)
    share = float(np.mean((x <= lo + tol) | (x >= hi - tol)))
    if share > CLIP_SHARE:
        raise EmgFileError(
            f"{where}: channel {label!r} ({muscle}) is clipped: {100 * share:.1f} % of its samples sit at "
            f"{lo:g} / {hi:g} µV (amplifier range); lower the gain or drop the channel from the map"
        )


def load_emg(recording: Recording, settings: ChainSettings = DEFAULT_CHAIN) -> EmgRecording:
    """Read and check the sEMG of ``recording`` (which must have an ``emg:`` entry)."""
    entry = recording.emg
    if entry is None:
        raise EmgFileError(f"recording {recording.name!r} has no emg: entry in its manifest")
    where = _where(recording.name, entry)
    data = read_emg(entry.file)
    rate = data.rate_hz
    if rate is None and entry.rate_hz is None:
        raise EmgFileError(f"{where}: the file has no sampling rate; give it as emg.rate_hz in the manifest")
    if rate is not None and entry.rate_hz is not None and abs(rate - entry.rate_hz) > RATE_TOLERANCE * entry.rate_hz:
        raise EmgFileError(f"{where}: the file says {rate:g} Hz, the manifest's emg.rate_hz says {entry.rate_hz:g} Hz")
    given = entry.rate_hz if rate is None else rate
    assert given is not None  # one of them is set: checked above
    rate = float(given)
    if rate < min_rate_hz(settings):
        raise EmgFileError(
            f"{where}: sampling rate {rate:g} Hz is too low for the {settings.band_hz[1]:g} Hz band-pass "
            f"(needs > {min_rate_hz(settings):g} Hz)"
        )
    wanted = sorted(entry.channels.items(), key=lambda kv: MUSCLE_CHANNELS.index(kv[1]))
    missing = [f"{label!r} ({muscle})" for label, muscle in wanted if label not in data.labels]
    if missing:
        raise EmgFileError(f"{where}: channel(s) {', '.join(missing)} not in the file; it has {list(data.labels)}")
    columns = []
    for label, muscle in wanted:
        x = data.channel(label)
        _check_channel(x, where, label, muscle)
        columns.append(x)
    trigger = None
    if entry.sync.method == "trigger":
        label = str(entry.sync.channel)
        if label not in data.labels:
            raise EmgFileError(
                f"{where}: trigger channel {label!r} (emg.sync.channel) not in the file; it has {list(data.labels)}"
            )
        trigger = data.channel(label)
    return EmgRecording(
        name=recording.name,
        entry=entry,
        samples=np.stack(columns, axis=1),
        channels=tuple(m for _, m in wanted),
        rate_hz=rate,
        trigger=trigger,
        settings=settings,
    )


@dataclass(frozen=True)
class Envelopes:
    """Envelopes ``values`` ``(T, C)`` µV at the video frames, ``channels`` names.

    ``alignment_s``: sEMG time read for video frame 0 (the clock offset with a trigger;
    ``offset - lag`` with cross-correlation, which aligns activity with movement);
    ``offset_s``: the clock offset (None without a trigger); ``lag_s``: the EMG-leads-
    movement lag (None unless both a trigger and video features were given)."""

    values: np.ndarray
    channels: tuple[str, ...]
    fps: float
    alignment_s: float
    offset_s: float | None
    lag_s: float | None


def check_long_enough(emg: EmgRecording, n_frames: int, fps: float) -> None:
    """Refuse, before any work, a file shorter than the video (whatever the sync)."""
    if emg.duration_s < (n_frames - 1) / fps:
        raise EmgFileError(
            f"{_where(emg.name, emg.entry)}: the sEMG lasts {emg.duration_s:.2f} s, the video "
            f"{n_frames / fps:.2f} s ({n_frames} frames): the file is shorter than the video"
        )


def _check_covers(emg: EmgRecording, start_s: float, n_frames: int, fps: float) -> None:
    end = start_s + (n_frames - 1) / fps
    if start_s < -0.5 / emg.rate_hz or end > emg.duration_s + 0.5 / emg.rate_hz:
        raise EmgFileError(
            f"{_where(emg.name, emg.entry)}: the sEMG covers {emg.duration_s:.2f} s, but the video's "
            f"{n_frames} frames ({n_frames / fps:.2f} s) need sEMG time {start_s:.2f}-{end:.2f} s: "
            "the file is shorter than the video (or the sync is off)"
        )


def envelopes(emg: EmgRecording, fps: float, n_frames: int, features: np.ndarray | None = None) -> Envelopes:
    """Synchronise ``emg`` and sample its envelopes at the ``n_frames`` video frames.

    ``features`` ``(T, F)``: the video's expression series (e.g. landmark geometry); the
    cross-correlation sync needs them; with a trigger they give the lag."""
    video_s = (n_frames - 1) / fps
    bounds = (0.0, emg.duration_s - video_s)
    sync = emg.entry.sync
    offset = lag = None
    try:
        if sync.method == "trigger":
            assert emg.trigger is not None
            offset = offset_from_trigger(emg.trigger, emg.rate_hz, sync.frame, fps, str(sync.channel))
            align = offset
            if features is not None:
                lo, hi = offset - LAG_RANGE_S[1], offset - LAG_RANGE_S[0]
                scan = scan_shifts(
                    emg.envelope_at, features[:n_frames], fps, (lo + hi) / 2, (hi - lo) / 2, bounds_s=bounds
                )
                lag = offset - scan.best_s
        else:
            if features is None:
                raise SyncError("sync by cross-correlation needs the video's expression series (features)")
            align = scan_shifts(emg.envelope_at, features[:n_frames], fps, 0.0, sync.max_lag_s, bounds_s=bounds).best_s
    except SyncError as exc:
        raise EmgFileError(f"{_where(emg.name, emg.entry)}: cannot synchronise: {exc}") from None
    _check_covers(emg, align, n_frames, fps)
    values = emg.envelope_at(align + np.arange(n_frames) / fps)
    return Envelopes(values, emg.channels, float(fps), float(align), offset, lag)
