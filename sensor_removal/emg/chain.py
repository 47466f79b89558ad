"""The sEMG processing chain: raw µV -> cleaned signal -> RMS envelope at given times.

Default = the chain of the successor method's dataset (EIFER, Büchner et al., CVPR 2025):
mean removal -> 50 Hz notch (IIR, Q = 2) -> 10-500 Hz band-pass (FIR, 129 taps) ->
sliding RMS over 2,048 samples at 4,096 Hz (0.5 s) -> sampled at the video's frame times.
Both filters run forward and backward (``scipy.signal.filtfilt``): zero phase, so the
envelope is not delayed against the video (a causal filter would shift it by half the
FIR length, 16 ms at 4,096 Hz, and the notch's phase would distort it near 50 Hz).

The RMS window is a duration (``rms_window_s``) so that a recording at 2,048 Hz gets the
same 0.5 s smoothing; the envelope is evaluated only at the requested times, from a
running sum of squares (one pass, no per-frame loop).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ChainSettings:
    """Every step of the chain (defaults: EIFER's dataset; docs/emg.md).

    ``notch_hz`` None skips the notch (60 Hz mains: set 60); ``band_hz`` upper edge is
    capped below Nyquist; ``fir_taps`` odd; ``rms_window_s`` the centred RMS window."""

    remove_mean: bool = True
    notch_hz: float | None = 50.0
    notch_q: float = 2.0
    band_hz: tuple[float, float] = (10.0, 500.0)
    fir_taps: int = 129
    rms_window_s: float = 2048 / 4096

    def __post_init__(self) -> None:
        if self.fir_taps < 3 or self.fir_taps % 2 == 0:
            raise ValueError(f"fir_taps must be odd and >= 3, got {self.fir_taps}")
        lo, hi = self.band_hz
        if not 0 < lo < hi:
            raise ValueError(f"band_hz must be (low, high) with 0 < low < high, got {self.band_hz}")
        if self.rms_window_s <= 0 or self.notch_q <= 0:
            raise ValueError("rms_window_s and notch_q must be > 0")


def min_rate_hz(settings: ChainSettings) -> float:
    """The lowest sampling rate the chain accepts: the band-pass's top edge below Nyquist."""
    return 2.0 * settings.band_hz[1] * 1.01


def bandpass_taps(rate_hz: float, settings: ChainSettings) -> np.ndarray:
    """The band-pass FIR (``scipy.signal.firwin``, Hamming window)."""
    from scipy.signal import firwin

    return firwin(settings.fir_taps, list(settings.band_hz), pass_zero=False, fs=rate_hz)


def clean(samples: np.ndarray, rate_hz: float, settings: ChainSettings = ChainSettings()) -> np.ndarray:
    """Mean removal, notch and band-pass of ``samples`` ``(N, C)`` (µV in, µV out)."""
    from scipy.signal import filtfilt, iirnotch

    if rate_hz < min_rate_hz(settings):
        raise ValueError(
            f"{rate_hz:g} Hz is too low for a {settings.band_hz[1]:g} Hz band-pass"
            f" (needs > {min_rate_hz(settings):g} Hz)"
        )
    x = np.asarray(samples, dtype=np.float64)
    if settings.remove_mean:
        x = x - x.mean(axis=0, keepdims=True)
    if settings.notch_hz is not None:
        b, a = iirnotch(settings.notch_hz, settings.notch_q, fs=rate_hz)
        x = filtfilt(b, a, x, axis=0)
    taps = bandpass_taps(rate_hz, settings)
    return filtfilt(taps, [1.0], x, axis=0)


def running_squares(x: np.ndarray) -> np.ndarray:
    """``(N + 1, C)`` running sum of squares of ``x`` ``(N, C)``: every RMS window is then
    two look-ups (:func:`rms_from_squares`)."""
    x = np.asarray(x, dtype=np.float64)
    csum = np.zeros((x.shape[0] + 1, x.shape[1]))
    np.cumsum(x * x, axis=0, out=csum[1:])
    return csum


def rms_from_squares(csum: np.ndarray, rate_hz: float, times_s: np.ndarray, window_s: float) -> np.ndarray:
    """Centred sliding RMS at ``times_s`` (s from the first sample) from
    :func:`running_squares` -> ``(len(times_s), C)``. Windows are cut at the file's ends
    (a shorter window there, never zero padding)."""
    n = csum.shape[0] - 1
    half = int(round(window_s * rate_hz)) // 2
    centre = np.round(np.asarray(times_s, dtype=np.float64) * rate_hz).astype(np.int64)
    lo = np.clip(centre - half, 0, n)
    hi = np.clip(centre + half, 0, n)
    count = np.maximum(hi - lo, 1)[:, None]
    return np.sqrt(np.maximum(csum[hi] - csum[lo], 0.0) / count)


def rms_at(x: np.ndarray, rate_hz: float, times_s: np.ndarray, window_s: float) -> np.ndarray:
    """Centred sliding RMS of ``x`` ``(N, C)`` evaluated at ``times_s``; see
    :func:`rms_from_squares`."""
    return rms_from_squares(running_squares(x), rate_hz, times_s, window_s)


def envelopes(
    samples: np.ndarray, rate_hz: float, times_s: np.ndarray, settings: ChainSettings = ChainSettings()
) -> np.ndarray:
    """The whole chain: RMS envelopes ``(len(times_s), C)`` in µV at ``times_s`` (sEMG
    clock, seconds from the first sample)."""
    return rms_at(clean(samples, rate_hz, settings), rate_hz, times_s, settings.rms_window_s)


#: The default chain (EIFER's dataset), shared as a default argument.
DEFAULT_CHAIN = ChainSettings()
