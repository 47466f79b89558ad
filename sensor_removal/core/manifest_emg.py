"""The optional ``emg:`` entry of a recording in the manifest (docs/emg.md).

Why it lives beside the manifest and not in :mod:`sensor_removal.emg`: it is part of the
data model, validated once at load like every other field, and the manifest must not
need the signal-processing code (scipy, the file readers) to be read. The montage
(:data:`MUSCLES`, :data:`SIDES`) is the bipolar Fridlund & Cacioppo (1986) placement
used by the successor method's dataset (EIFER, Büchner et al., CVPR 2025): 11 muscles
on each side, 22 channels.

Schema (paths relative to the manifest)::

    emg:
      file: s1_sensor_a.emg.npz        # EDF/EDF+/BDF, XDF, CSV or NPZ
      rate_hz: 4096                    # only where the file does not carry it (CSV)
      channels:                        # channel label in the file -> muscle/side
        ZYG_L: zygomaticus/left
        ZYG_R: zygomaticus/right
      sync:
        method: trigger                # trigger | xcorr
        channel: TRIG                  # trigger: the channel with the pulse
        frame: 0                       # trigger: the video frame the pulse marks
        max_lag_s: 10.0                # xcorr: search range of the offset
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

#: Fridlund & Cacioppo's facial sEMG sites, as recorded in EIFER's dataset (11 muscles).
MUSCLES: tuple[str, ...] = (
    "corrugator",
    "depressor_anguli_oris",
    "depressor_supercilii",  # with procerus
    "frontalis_lateral",
    "frontalis_medial",
    "levator_labii_superioris",
    "masseter",
    "mentalis",
    "orbicularis_oculi",
    "orbicularis_oris",
    "zygomaticus",
)
SIDES: tuple[str, ...] = ("left", "right")
#: Channel names ``muscle/side``, the order every envelope array uses.
MUSCLE_CHANNELS: tuple[str, ...] = tuple(f"{m}/{s}" for m in MUSCLES for s in SIDES)
SYNC_METHODS: tuple[str, ...] = ("trigger", "xcorr")
#: Default search range of the cross-correlation sync (s): a lab starts both recorders
#: by hand within a few seconds of each other.
DEFAULT_MAX_LAG_S = 10.0
_FIELDS = {"file", "rate_hz", "channels", "sync"}
_SYNC_FIELDS = {"method", "channel", "frame", "max_lag_s"}


class EmgEntryError(ValueError):
    """A field of an ``emg:`` entry is invalid: ``field`` names it (``emg.sync.channel``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class EmgSync:
    """How the sEMG clock is put onto the video's: a ``trigger`` pulse in ``channel`` at
    video frame ``frame``, or the ``xcorr`` shift (within ``max_lag_s``) that best
    aligns the envelopes with the video's expression series."""

    method: Literal["trigger", "xcorr"] = "xcorr"
    channel: str | None = None
    frame: int = 0
    max_lag_s: float = DEFAULT_MAX_LAG_S


@dataclass(frozen=True)
class EmgEntry:
    """One recording's sEMG file: ``file`` (absolute), ``channels`` (file label ->
    ``muscle/side``), ``rate_hz`` (None: from the file), ``sync``."""

    file: Path
    channels: dict[str, str] = field(default_factory=dict)
    rate_hz: float | None = None
    sync: EmgSync = field(default_factory=EmgSync)

    def to_dict(self, base_dir: Path, relpath: Any) -> dict[str, Any]:
        """The manifest form, ``file`` relative to ``base_dir`` via ``relpath``."""
        d: dict[str, Any] = {"file": relpath(self.file, base_dir)}
        if self.rate_hz is not None:
            d["rate_hz"] = self.rate_hz
        d["channels"] = dict(self.channels)
        s: dict[str, Any] = {"method": self.sync.method}
        if self.sync.method == "trigger":
            s.update(channel=self.sync.channel, frame=self.sync.frame)
        else:
            s["max_lag_s"] = self.sync.max_lag_s
        d["sync"] = s
        return d


def _positive(v: object) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(float(v)) and float(v) > 0
    except OverflowError:  # an integer too large for a float
        return False


def _parse_sync(raw: Any, channels: dict[str, str]) -> EmgSync:
    if raw is None:
        return EmgSync()
    if not isinstance(raw, dict):
        raise EmgEntryError("emg.sync", f"must be a mapping with 'method' ({'|'.join(SYNC_METHODS)}), got {raw!r}")
    unknown = set(raw) - _SYNC_FIELDS
    if unknown:
        raise EmgEntryError("emg.sync", f"unknown field(s) {sorted(unknown)}; allowed: {sorted(_SYNC_FIELDS)}")
    method = raw.get("method", "xcorr")
    if method not in SYNC_METHODS:
        raise EmgEntryError("emg.sync.method", f"unknown method {method!r}; expected one of {list(SYNC_METHODS)}")
    max_lag = raw.get("max_lag_s", DEFAULT_MAX_LAG_S)
    if not _positive(max_lag):
        raise EmgEntryError("emg.sync.max_lag_s", f"must be a number > 0 (seconds), got {max_lag!r}")
    if method == "xcorr":
        return EmgSync("xcorr", max_lag_s=float(max_lag))
    channel = raw.get("channel")
    if not isinstance(channel, str) or not channel:
        raise EmgEntryError("emg.sync.channel", "the trigger method needs the label of the trigger channel in the file")
    if channel in channels:
        raise EmgEntryError(
            "emg.sync.channel",
            f"{channel!r} is mapped to muscle {channels[channel]!r}; the trigger is a channel of its own",
        )
    frame = raw.get("frame", 0)
    if isinstance(frame, bool) or not isinstance(frame, int) or frame < 0:
        raise EmgEntryError("emg.sync.frame", f"must be a video frame index >= 0, got {frame!r}")
    return EmgSync("trigger", channel=channel, frame=frame, max_lag_s=float(max_lag))


def parse_emg_entry(raw: Any, base_dir: Path) -> EmgEntry:
    """Validate one ``emg:`` mapping; paths are relative to ``base_dir``. Raises
    :class:`EmgEntryError` naming the field; the manifest adds file and recording."""
    if not isinstance(raw, dict):
        raise EmgEntryError("emg", "must be a mapping with file, channels and (optionally) rate_hz, sync")
    unknown = set(raw) - _FIELDS
    if unknown:
        raise EmgEntryError("emg", f"unknown field(s) {sorted(unknown)}; allowed: {sorted(_FIELDS)}")
    file = raw.get("file")
    if not isinstance(file, str) or not file:
        raise EmgEntryError("emg.file", f"must be a path string, got {file!r}")
    rate = raw.get("rate_hz")
    if rate is not None and not _positive(rate):
        raise EmgEntryError("emg.rate_hz", f"must be a sampling rate > 0 in Hz, got {rate!r}")
    channels_raw = raw.get("channels")
    if not isinstance(channels_raw, dict) or not channels_raw:
        raise EmgEntryError(
            "emg.channels", "must map each channel label in the file to 'muscle/side', e.g. ZYG_L: zygomaticus/left"
        )
    channels: dict[str, str] = {}
    for label, target in channels_raw.items():
        if target not in MUSCLE_CHANNELS:
            raise EmgEntryError(
                f"emg.channels.{label}",
                f"{target!r} is not a muscle/side of the montage; use one of {list(MUSCLE_CHANNELS)}",
            )
        if target in channels.values():
            raise EmgEntryError(f"emg.channels.{label}", f"{target!r} is mapped twice")
        channels[str(label)] = str(target)
    return EmgEntry(
        file=(base_dir / file).resolve(),
        channels=channels,
        rate_hz=None if rate is None else float(rate),
        sync=_parse_sync(raw.get("sync"), channels),
    )
