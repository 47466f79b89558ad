"""Reading raw sEMG files: EDF/EDF+/BDF, XDF (Lab Streaming Layer), CSV and NPZ.

Why these: EDF/BDF is what clinical and research amplifiers export (BioSemi writes BDF);
XDF is what a Lab Streaming Layer recording (LabRecorder) writes, with its own time
stamps; CSV/NPZ is what every script can produce. EDF/BDF are read with ``edfio``
(falling back to ``pyedflib``), XDF with ``pyxdf``; both are in the ``[emg]`` extra and
imported only when such a file is read, with a clear message when they are missing.

Every reader returns :class:`EmgData` with samples in µV: EDF's physical dimension
(``uV``, ``mV``, ``V``) is converted; CSV/NPZ samples are µV unless an NPZ carries
``unit_uv`` (µV per stored count).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: File types by suffix.
SUFFIXES: dict[str, str] = {".edf": "edf", ".bdf": "edf", ".xdf": "xdf", ".xdfz": "xdf", ".csv": "csv", ".npz": "npz"}
EXTRA_HINT = "pip install 'sensor-removal[emg]'"
_UNITS_UV = {"uv": 1.0, "µv": 1.0, "μv": 1.0, "mv": 1e3, "v": 1e6, "nv": 1e-3}


class EmgFileError(ValueError):
    """A sEMG file cannot be read or does not fit its manifest entry; ``str(err)`` names
    the file (and channel) for the user."""


@dataclass(frozen=True)
class EmgData:
    """Raw samples ``(N, C)`` in µV with their channel ``labels``; ``rate_hz`` is None
    when the file does not carry it (a CSV without a time column); ``start_s`` is the
    file's own clock at the first sample (LSL time for XDF, else 0)."""

    path: Path
    samples: np.ndarray
    labels: tuple[str, ...]
    rate_hz: float | None
    start_s: float = 0.0

    def channel(self, label: str) -> np.ndarray:
        """The samples of channel ``label`` ``(N,)``."""
        try:
            return self.samples[:, self.labels.index(label)]
        except ValueError:
            raise EmgFileError(f"{self.path}: no channel {label!r}; the file has {list(self.labels)}") from None


def _read_npz(path: Path) -> EmgData:
    with np.load(path, allow_pickle=False) as z:
        if "samples" not in z.files:
            raise EmgFileError(f"{path}: an sEMG NPZ needs key 'samples' (N, C) and 'labels' (C,); found {z.files}")
        samples = np.asarray(z["samples"], dtype=np.float64)
        if samples.ndim != 2:
            raise EmgFileError(f"{path}: 'samples' must be (N samples, C channels), got shape {samples.shape}")
        labels = (
            tuple(str(v) for v in z["labels"])
            if "labels" in z.files
            else tuple(f"ch{i}" for i in range(samples.shape[1]))
        )
        unit = float(z["unit_uv"]) if "unit_uv" in z.files else 1.0
        rate = float(z["rate_hz"]) if "rate_hz" in z.files else None
    if len(labels) != samples.shape[1]:
        raise EmgFileError(f"{path}: {len(labels)} labels for {samples.shape[1]} channels")
    return EmgData(path, samples * unit, labels, rate)


def _read_csv(path: Path) -> EmgData:
    with open(path, encoding="utf-8") as fh:
        header = [h.strip() for h in fh.readline().strip().split(",")]
    if not header or not header[0]:
        raise EmgFileError(f"{path}: a sEMG CSV needs a header row of channel labels")
    try:
        data = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    except ValueError as exc:
        raise EmgFileError(f"{path}: not a numeric CSV below the header ({exc})") from None
    if data.shape[1] != len(header):
        raise EmgFileError(f"{path}: {data.shape[1]} columns for {len(header)} header labels")
    rate, start = None, 0.0
    if header[0].lower() in ("time_s", "time", "t"):
        t = data[:, 0]
        steps = np.diff(t)
        if t.size < 2 or not np.all(steps > 0):
            raise EmgFileError(f"{path}: column {header[0]!r} must increase from sample to sample")
        rate, start = 1.0 / float(np.median(steps)), float(t[0])
        data, header = data[:, 1:], header[1:]
    return EmgData(path, data, tuple(header), rate, start)


def _read_edf(path: Path) -> EmgData:
    try:
        import edfio
    except ImportError:
        return _read_edf_pyedflib(path)
    try:
        edf = edfio.read_bdf(path) if path.suffix.lower() == ".bdf" else edfio.read_edf(path)
    except Exception as exc:  # the library's own parse errors
        raise EmgFileError(f"{path}: not a readable {path.suffix.upper().lstrip('.')} file ({exc})") from None
    signals = [s for s in edf.signals if s.label.strip() != "EDF Annotations"]
    return _assemble(
        path, [(s.label.strip(), float(s.sampling_frequency), s.physical_dimension, s.data) for s in signals]
    )


def _read_edf_pyedflib(path: Path) -> EmgData:
    try:
        import pyedflib
    except ImportError:
        raise EmgFileError(f"{path}: reading EDF/BDF needs edfio or pyedflib; install them with {EXTRA_HINT}") from None
    try:
        with pyedflib.EdfReader(str(path)) as f:
            chans = [
                (f.getLabel(i).strip(), float(f.getSampleFrequency(i)), f.getPhysicalDimension(i), f.readSignal(i))
                for i in range(f.signals_in_file)
            ]
    except OSError as exc:
        raise EmgFileError(f"{path}: not a readable EDF/BDF file ({exc})") from None
    return _assemble(path, chans)


def _assemble(path: Path, chans: list[tuple[str, float, str, np.ndarray]]) -> EmgData:
    if not chans:
        raise EmgFileError(f"{path}: the file has no signals")
    rates = {c[1] for c in chans}
    if len(rates) != 1:
        detail = ", ".join(f"{c[0]}: {c[1]:g} Hz" for c in chans)
        raise EmgFileError(f"{path}: channels have different sampling rates ({detail}); resample them to one rate")
    columns = []
    for label, _, unit, data in chans:
        scale = _UNITS_UV.get(unit.strip().lower())
        if scale is None:
            raise EmgFileError(f"{path}: channel {label!r} has physical dimension {unit!r}; expected uV, mV or V")
        columns.append(np.asarray(data, dtype=np.float64) * scale)
    n = min(len(c) for c in columns)
    return EmgData(path, np.stack([c[:n] for c in columns], axis=1), tuple(c[0] for c in chans), rates.pop())


def _xdf_labels(info: dict, count: int) -> tuple[str, ...]:
    try:
        chans = info["desc"][0]["channels"][0]["channel"]
        return tuple(str(c["label"][0]) for c in chans)
    except (KeyError, IndexError, TypeError):
        return tuple(f"ch{i}" for i in range(count))


def _read_xdf(path: Path) -> EmgData:
    try:
        import pyxdf
    except ImportError:
        raise EmgFileError(f"{path}: reading XDF needs pyxdf; install it with {EXTRA_HINT}") from None
    try:
        streams, _ = pyxdf.load_xdf(str(path), dejitter_timestamps=True)
    except Exception as exc:  # pyxdf raises plain Exceptions for broken files
        raise EmgFileError(f"{path}: not a readable XDF file ({exc})") from None
    numeric = [
        s for s in streams if np.asarray(s["time_series"]).ndim == 2 and np.asarray(s["time_series"]).dtype.kind == "f"
    ]
    emg = [s for s in numeric if str(s["info"]["type"][0]).upper() == "EMG"] or numeric
    if not emg:
        raise EmgFileError(f"{path}: no numeric stream (type EMG) in the XDF file")
    s = emg[0]
    data = np.asarray(s["time_series"], dtype=np.float64)
    stamps = np.asarray(s["time_stamps"], dtype=np.float64)
    nominal = float(s["info"]["nominal_srate"][0])
    rate = nominal if nominal > 0 else (1.0 / float(np.median(np.diff(stamps))) if stamps.size > 1 else None)
    start = float(stamps[0]) if stamps.size else 0.0
    return EmgData(path, data, _xdf_labels(s["info"], data.shape[1]), rate, start)


def read_emg(path: str | Path) -> EmgData:
    """Read a raw sEMG file by its suffix (:data:`SUFFIXES`)."""
    path = Path(path)
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise EmgFileError(f"{path}: unknown sEMG file type {path.suffix!r}; supported: {sorted(SUFFIXES)}")
    if not path.is_file():
        raise EmgFileError(f"{path}: sEMG file not found")
    reader = {"npz": _read_npz, "csv": _read_csv, "edf": _read_edf, "xdf": _read_xdf}[kind]
    try:
        return reader(path)
    except EmgFileError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        raise EmgFileError(f"{path}: cannot read sEMG file ({exc})") from None
