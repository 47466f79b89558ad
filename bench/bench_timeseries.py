"""Benchmark: DTW + best-shift MAPE for all comparisons of one subject.

One subject as in the paper's protocol: 2 sessions x (1 normal, 2 sensor, 2 cleaned)
videos → 9 comparisons (N1–N2, 4 x Nk–Sk, 4 x Nk–Ck), each video a 9,000-frame series
(5 min at 30 fps) of 20 AUs and 7 emotions (synthetic random walks squashed to [0, 1],
with a few NaN runs like frames without a face), cut into 3 task segments of 3,000
frames; MAPE searches shifts within ±20 s (±600 frames).

Measured: DTW (dtaidistance C, ``distance_fast``) and the vectorised MAPE over the
whole workload; the straightforward Python loop over shifts (one numpy slice per shift)
on a subset, scaled to the workload; and a pure-Python double loop on a smaller subset,
scaled likewise. Also the ``whole``-video comparison (9,000 frames per series), timed on
one comparison and scaled x9. Scaled numbers are marked as such.

    python bench/bench_timeseries.py [--frames 9000] [--fps 30] [--loop-pairs 1] [--quick]
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluation.metrics.timeseries import (  # noqa: E402
    MAPE_EPS,
    clean_series,
    dtw_distance,
    mape_by_shift,
    max_shift_frames,
)

N_AU, N_EMO = 20, 7
VIDEOS = ["N1", "N2", "S1a", "S1b", "S2a", "S2b", "C1a", "C1b", "C2a", "C2b"]
PAIRS = [("N1", "N2")] + [(f"N{k}", f"{c}{k}{t}") for k in (1, 2) for c in ("S", "C") for t in ("a", "b")]


def make_series(frames: int, features: int, rng: np.random.Generator) -> np.ndarray:
    """``(features, frames)`` random walks squashed to (0, 1), ~0.5 % NaN in short runs."""
    walk = np.cumsum(rng.normal(0, 0.08, size=(features, frames)), axis=1)
    x = 1.0 / (1.0 + np.exp(-(walk - walk.mean(axis=1, keepdims=True))))
    for f in range(features):
        for start in rng.integers(0, frames - 10, size=max(1, frames // 2000)):
            x[f, start : start + rng.integers(1, 8)] = np.nan
    return x


def mape_loop_numpy(
    ref: np.ndarray, oth: np.ndarray, S: int, eps: float = MAPE_EPS, min_overlap: float = 0.5
) -> np.ndarray:
    """The straightforward version: a Python loop over shifts, one numpy slice each."""
    r, o = clean_series(ref).values, clean_series(oth).values
    need = max(1, math.ceil(min_overlap * min((~np.isnan(r)).sum(), (~np.isnan(o)).sum())))
    out = np.full(2 * S + 1, np.nan)
    for k, s in enumerate(range(-S, S + 1)):
        t0, t1 = max(0, -s), min(len(r), len(o) - s)
        if t1 <= t0:
            continue
        a, b = r[t0:t1], o[t0 + s : t1 + s]
        m = ~np.isnan(a) & ~np.isnan(b)
        if m.sum() >= need:
            out[k] = np.mean(np.abs(a[m] - b[m]) / np.maximum(np.abs(a[m]), eps))
    return out


def mape_loop_python(ref: list[float], oth: list[float], S: int, eps: float = MAPE_EPS) -> list[float]:
    """Pure Python: loops over shifts and frames (NaNs already removed by interpolation)."""
    out = []
    n_r, n_o = len(ref), len(oth)
    for s in range(-S, S + 1):
        total, count = 0.0, 0
        for t in range(max(0, -s), min(n_r, n_o - s)):
            a, b = ref[t], oth[t + s]
            if a == a and b == b:  # not NaN
                total += abs(a - b) / max(abs(a), eps)
                count += 1
        out.append(total / count if count else math.nan)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=9000, help="frames per video series (default 9000)")
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--segments", type=int, default=3)
    p.add_argument("--loop-pairs", type=int, default=1, help="comparisons timed with the numpy loop (scaled)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="smoke run: 1,800-frame series at 15 fps")
    args = p.parse_args(argv)
    if args.quick:
        args.frames, args.fps = 1800, 15.0

    rng = np.random.default_rng(args.seed)
    feats = N_AU + N_EMO
    series = {v: make_series(args.frames, feats, rng) for v in VIDEOS}
    seg_len = args.frames // args.segments
    S = max_shift_frames(args.fps)  # ±20 s
    n_pairs = len(PAIRS)
    n_series = n_pairs * args.segments * feats
    print(
        f"workload: {n_pairs} comparisons x {args.segments} segments x {feats} features = {n_series} series pairs, "
        f"{seg_len} frames each, shifts ±{S} ({2 * S + 1})"
    )
    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.processor() or platform.machine()}")

    def seg(v: str, f: int, k: int) -> np.ndarray:
        return series[v][f, k * seg_len : (k + 1) * seg_len]

    # DTW, all pairs
    t0 = time.perf_counter()
    for a, b in PAIRS:
        for k in range(args.segments):
            for f in range(feats):
                dtw_distance(seg(a, f, k), seg(b, f, k))
    t_dtw = time.perf_counter() - t0

    # DTW with a ±20 s Sakoe-Chiba band (option --dtw-window-s; changes the values)
    t0 = time.perf_counter()
    for a, b in PAIRS:
        for k in range(args.segments):
            for f in range(feats):
                dtw_distance(seg(a, f, k), seg(b, f, k), window=S)
    t_dtw_band = time.perf_counter() - t0

    # MAPE vectorised, all pairs
    t0 = time.perf_counter()
    results = {}
    for a, b in PAIRS:
        for k in range(args.segments):
            for f in range(feats):
                results[(a, b, k, f)] = mape_by_shift(seg(a, f, k), seg(b, f, k), S)[1]
    t_vec = time.perf_counter() - t0

    # Numpy loop over shifts, subset, scaled
    sub = PAIRS[: args.loop_pairs]
    t0 = time.perf_counter()
    max_diff = 0.0
    for a, b in sub:
        for k in range(args.segments):
            for f in range(feats):
                ref = mape_loop_numpy(seg(a, f, k), seg(b, f, k), S)
                vec = results[(a, b, k, f)]
                max_diff = max(max_diff, float(np.nanmax(np.abs(ref - vec) / np.maximum(ref, 1e-12))))
    t_loop_sub = time.perf_counter() - t0
    loop_series = len(sub) * args.segments * feats
    t_loop = t_loop_sub * n_series / loop_series

    # Pure Python double loop, one series, scaled
    a, b = PAIRS[0]
    r = clean_series(seg(a, 0, 0)).values.tolist()
    o = clean_series(seg(b, 0, 0)).values.tolist()
    t0 = time.perf_counter()
    mape_loop_python(r, o, S)
    t_py_one = time.perf_counter() - t0
    t_py = t_py_one * n_series

    # Whole video (9,000 frames): one comparison, scaled x n_pairs
    t0 = time.perf_counter()
    for f in range(feats):
        dtw_distance(series["N1"][f], series["N2"][f])
    t_dtw_whole = (time.perf_counter() - t0) * n_pairs
    t0 = time.perf_counter()
    for f in range(feats):
        mape_by_shift(series["N1"][f], series["N2"][f], S)
    t_vec_whole = (time.perf_counter() - t0) * n_pairs
    t0 = time.perf_counter()
    for f in range(feats):
        mape_loop_numpy(series["N1"][f], series["N2"][f], S)
    t_loop_whole = (time.perf_counter() - t0) * n_pairs

    rows = [
        ("DTW (dtaidistance C), all", f"{t_dtw:8.2f}", f"{1e3 * t_dtw / n_series:8.2f}", "measured"),
        (f"DTW, band ±{S} frames (option)", f"{t_dtw_band:8.2f}", f"{1e3 * t_dtw_band / n_series:8.2f}", "measured"),
        ("MAPE vectorised, all", f"{t_vec:8.2f}", f"{1e3 * t_vec / n_series:8.2f}", "measured"),
        (
            "MAPE numpy loop over shifts",
            f"{t_loop:8.2f}",
            f"{1e3 * t_loop / n_series:8.2f}",
            f"{'measured' if loop_series == n_series else f'scaled from {loop_series} series ({t_loop_sub:.2f} s)'}",
        ),
        (
            "MAPE pure-Python double loop",
            f"{t_py:8.1f}",
            f"{1e3 * t_py_one:8.0f}",
            f"scaled from 1 series ({t_py_one:.2f} s)",
        ),
        (
            "DTW + MAPE (vectorised), all",
            f"{t_dtw + t_vec:8.2f}",
            f"{1e3 * (t_dtw + t_vec) / n_series:8.2f}",
            "measured",
        ),
        (
            f"whole video ({args.frames} fr): DTW",
            f"{t_dtw_whole:8.2f}",
            f"{1e3 * t_dtw_whole / (n_pairs * feats):8.2f}",
            f"scaled x{n_pairs} from 1 comparison",
        ),
        (
            f"whole video ({args.frames} fr): MAPE vec.",
            f"{t_vec_whole:8.2f}",
            f"{1e3 * t_vec_whole / (n_pairs * feats):8.2f}",
            f"scaled x{n_pairs} from 1 comparison",
        ),
        (
            f"whole video ({args.frames} fr): MAPE loop",
            f"{t_loop_whole:8.2f}",
            f"{1e3 * t_loop_whole / (n_pairs * feats):8.2f}",
            f"scaled x{n_pairs} from 1 comparison",
        ),
    ]
    w = max(len(r[0]) for r in rows)
    print(f"\n{'step':<{w}}  {'total s':>8}  {'ms/series':>9}  note")
    print("-" * (w + 40))
    for name, tot, per, note in rows:
        print(f"{name:<{w}}  {tot}  {per:>9}  {note}")
    print(
        f"\nspeed-up of the vectorised MAPE: x{t_loop / t_vec:.1f} vs the numpy loop over shifts "
        f"(x{t_loop_whole / t_vec_whole:.1f} on {args.frames}-frame series), x{t_py / t_vec:.0f} vs pure Python"
    )
    print(f"max relative difference vectorised vs loop: {max_diff:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
