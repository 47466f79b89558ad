"""Benchmark: one subject's sEMG, processed and mapped (ours, docs/emg.md).

Workload (the issue's goal, under 1 minute on 2 CPU cores): 22 channels at 4,096 Hz for
5 minutes (synthetic sEMG of the synthetic subject's expression script at 30 fps)
through the default chain (mean removal, notch, zero-phase FIR band-pass, RMS at the
9,000 frame times), the trigger sync with its lag scan, and the mapping of one subject:
leave-one-take-out validation of the lagged ridge (4 takes of 75 s) plus the final fit
on all takes. Features: the expression signals mixed into 143 columns plus noise (the
shape of the landmark features; dlib's own speed is bench_landmarks.py's row).

Baseline: the RMS envelope as a plain loop over frames (one numpy slice per frame and
channel), against ours (one running sum of squares, two look-ups per frame).

    python bench/bench_emg.py [--seconds 300] [--rate 4096] [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sensor_removal.emg.chain import DEFAULT_CHAIN, clean, rms_at  # noqa: E402
from sensor_removal.emg.mapping import DEFAULT_MAPPING, cross_validate, fit_mapping  # noqa: E402
from sensor_removal.emg.sync import offset_from_trigger, scan_shifts  # noqa: E402
from sensor_removal.synthetic import emg as synth_emg  # noqa: E402
from sensor_removal.synthetic.script import _make_take  # noqa: E402

FPS = 30.0


def rms_loop(x: np.ndarray, rate: float, times: np.ndarray, window_s: float) -> np.ndarray:
    """The plain version: one slice per frame and channel."""
    half = int(round(window_s * rate)) // 2
    out = np.empty((len(times), x.shape[1]))
    for i, t in enumerate(times):
        c = int(round(t * rate))
        for ch in range(x.shape[1]):
            seg = x[max(0, c - half) : min(len(x), c + half), ch]
            out[i, ch] = np.sqrt(np.mean(seg * seg))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=300.0)
    ap.add_argument("--rate", type=float, default=4096.0)
    ap.add_argument("--quick", action="store_true", help="30 s instead of 5 min")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    seconds = 30.0 if args.quick else args.seconds
    import torch

    n = int(seconds * FPS)
    sig = _make_take(n, FPS, (256, 256), np.random.default_rng(0)).signals
    raw = synth_emg.synthesize(sig, FPS, np.random.default_rng(1), rate_hz=args.rate)
    x, trig = raw.samples[:, :22], raw.samples[:, 22]
    print(
        f"workload: 22 channels x {args.rate:g} Hz x {raw.samples.shape[0] / args.rate:.0f} s "
        f"({x.size / 1e6:.1f} M samples), {n} frames at {FPS:g} fps; CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads"
    )

    t0 = time.perf_counter()
    cleaned = clean(x, args.rate, DEFAULT_CHAIN)
    t_clean = time.perf_counter() - t0
    offset = offset_from_trigger(trig, args.rate, synth_emg.TRIGGER_FRAME, FPS)
    times = offset + np.arange(n) / FPS
    t0 = time.perf_counter()
    env = rms_at(cleaned, args.rate, times, DEFAULT_CHAIN.rms_window_s)
    t_rms = time.perf_counter() - t0
    loop_frames = min(n, 900)
    t0 = time.perf_counter()
    ref = rms_loop(cleaned, args.rate, times[:loop_frames], DEFAULT_CHAIN.rms_window_s)
    t_loop = (time.perf_counter() - t0) * n / loop_frames
    diff = float(np.max(np.abs(ref - env[:loop_frames]) / np.maximum(ref, 1e-9)))
    from sensor_removal.emg.chain import rms_from_squares, running_squares

    t0 = time.perf_counter()
    squares = running_squares(cleaned)
    scan = scan_shifts(
        lambda t: rms_from_squares(squares, args.rate, t, DEFAULT_CHAIN.rms_window_s), sig, FPS, offset - 0.25, 0.75
    )
    t_sync = time.perf_counter() - t0
    lag = offset - scan.best_s

    rng = np.random.default_rng(2)
    feats = sig @ rng.normal(0, 1, (sig.shape[1], 143)) + rng.normal(0, 0.05, (n, 143))
    takes = np.array_split(np.arange(n), 4)
    xs, ys = [feats[t] for t in takes], [env[t] for t in takes]
    t0 = time.perf_counter()
    preds = cross_validate(xs, ys, DEFAULT_MAPPING)
    fit_mapping(xs, ys, DEFAULT_MAPPING)
    t_map = time.perf_counter() - t0
    y, p = np.concatenate(ys), np.concatenate(preds)
    r2 = float(np.mean(1 - ((y - p) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0)))
    total = t_clean + t_rms + t_sync + t_map
    print(f"chain (mean, notch, FIR band-pass, filtfilt): {t_clean:6.2f} s")
    print(f"RMS at {n} frames, running sums (ours):     {t_rms:6.3f} s")
    print(
        f"RMS, plain loop per frame and channel:     {t_loop:6.2f} s "
        f"(scaled from {loop_frames} frames; max rel. diff {diff:.1e})"
    )
    print(
        f"trigger sync + lag scan:                   {t_sync:6.2f} s "
        f"(lag {lag * 1000:.0f} ms, truth {raw.lag_s * 1000:.0f} ms)"
    )
    print(f"mapping: 4-fold held-out ridge + final fit {t_map:6.2f} s (held-out R² {r2:.3f})")
    print(f"total {total:.1f} s (goal < 60 s on 2 cores)")
    rows = [
        [
            f"sEMG {raw.samples.shape[0] / args.rate:.0f} s x 22 ch x {args.rate:g} Hz: chain + sync + mapping",
            f"{total:.1f} s",
            "goal < 60 s",
            f"{60 / total:.1f}× under",
        ],
        [
            "sEMG RMS envelope at the frame times",
            f"running sums {t_rms * 1000:.0f} ms",
            f"plain loop {t_loop:.2f} s",
            f"{t_loop / t_rms:.0f}×",
        ],
    ]
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "rows": rows,
                    "seconds": {"chain": t_clean, "rms": t_rms, "rms_loop": t_loop, "sync": t_sync, "mapping": t_map},
                }
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
