"""The evaluation protocol for one subject (docs/evaluation.md; paper Sec. 4).

``run_protocol`` compares, per task segment, N1–N2 (baseline), Nk–Sk (sensor) and Nk–Ck
(cleaned) (:mod:`evaluation.pairs`) with the chosen metrics and writes

* ``RESULTS/results.csv`` — tidy rows: ``subject, session, segment, kind, reference,
  other, metric, feature, value, std, n`` (:data:`COLUMNS`);
* ``RESULTS/summary.json`` — settings, library versions, weight files, skipped
  comparisons, per-video facial-analysis frame counts (no-face frames per segment) and
  quick means;
* ``RESULTS/series/<recording>.csv`` — the per-frame AU / emotion series each video
  contributed (index ``frame``), so that reports can plot without re-running py-feat.

All files are written atomically. The weights of every chosen metric are checked
*before* anything is decoded (:func:`evaluation.weights.check_weights`).

Metrics (``metric`` / ``feature`` in the rows):

* ``lpips`` / ``image`` — mean LPIPS over ``lpips_pairs`` frame pairs; ``std`` over pairs.
* ``fid`` / ``image`` — mean low-rank FID over ``fid_sets`` draws of ``fid_set_size``
  frames per side (the paper: 128); ``std`` over draws, ``n`` the set size used (smaller
  when a segment has fewer frames).
* ``dtw``, ``mape``, ``mape_shift_s`` / ``<AU or emotion>`` — :mod:`evaluation.timeseries`
  on the py-feat series (MAPE as a fraction at the best shift within ±20 s).
* ``psnr``, ``ssim`` / ``whole`` | ``mask`` — :mod:`evaluation.groundtruth`, synthetic
  subjects only (``reference`` is ``<sensor>:ground_truth``).

Frame draws (seeded): for each video and segment, ``lpips_pairs`` frames uniformly with
replacement and ``fid_sets`` sets of distinct frames, from a generator seeded by
``(seed, video name, segment)``. A comparison pairs the i-th LPIPS draw of one side
with the i-th of the other, i.e. independent uniform frame pairs. A video's draws are
shared by all comparisons it takes part in (N1 uses the same frames against S1 and C1),
which makes the N–S and N–C rows a paired comparison. Every frame is cut with the
video's bbox by :func:`sensor_removal.video.crop_resize` to the crop size (default: the
cleaned videos' size), and each video is decoded once, sequentially.
"""

from __future__ import annotations

import json
import math
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from evaluation.pairs import SEGMENTS, Pair, PairPlan, build_pairs
from evaluation.timeseries import (
    MAPE_EPS,
    MAX_GAP_FRAMES,
    MAX_SHIFT_S,
    au_features_for_average,
    compare_series,
    is_au,
)
from evaluation.weights import METRICS, check_weights
from sensor_removal.clean import resolve_device
from sensor_removal.manifest import Subject, load_manifest
from sensor_removal.video import atomic_output, crop_resize, iter_frames, probe

COLUMNS: tuple[str, ...] = ("subject", "session", "segment", "kind", "reference", "other", "metric", "feature", "value", "std", "n")
RESULTS_CSV = "results.csv"
SUMMARY_JSON = "summary.json"
SERIES_DIR = "series"
DEFAULT_CROP = 256


@dataclass(frozen=True)
class ProtocolSettings:
    """Everything that changes the numbers (written to ``summary.json``).

    ``metrics``: any of ``lpips, fid, facial, groundtruth``. ``lpips_pairs``: frame pairs
    per comparison. ``fid_sets``/``fid_set_size``: FID draws and their size (paper:
    N = 128). ``crop_size``: face-crop side for LPIPS/FID/ground truth (None: the
    cleaned videos' size, else 256). ``device``: ``cpu``, ``cuda``, ``auto``.
    ``facial_*``: py-feat model set, stride, cache folder (None: ``RESULTS/facial_cache``).
    ``max_shift_s``, ``mape_eps``, ``max_gap_frames``: :mod:`evaluation.timeseries`.
    ``dtw_window_s``: Sakoe-Chiba band of the DTW in seconds (None: unconstrained, the
    default; a band of ±20 s makes 3,000-frame DTWs ~3x faster but changes the values).
    """

    metrics: tuple[str, ...] = METRICS
    segments: tuple[str, ...] = SEGMENTS
    seed: int = 0
    lpips_pairs: int = 100
    fid_sets: int = 5
    fid_set_size: int = 128
    crop_size: int | None = None
    device: str = "auto"
    batch_size: int = 16
    facial_model_set: str = "v1"
    facial_stride: int = 1
    facial_cache: Path | None = None
    max_shift_s: float = MAX_SHIFT_S
    mape_eps: float = MAPE_EPS
    max_gap_frames: int = MAX_GAP_FRAMES
    dtw_window_s: float | None = None

    def __post_init__(self) -> None:
        bad = [m for m in self.metrics if m not in METRICS]
        if bad:
            raise ValueError(f"unknown metric(s) {bad}; expected some of {', '.join(METRICS)}")
        for name in ("lpips_pairs", "fid_sets", "batch_size", "facial_stride"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.fid_set_size < 2:
            raise ValueError(f"fid_set_size must be >= 2, got {self.fid_set_size}")


def _rng(seed: int, *keys: str | int) -> np.random.Generator:
    """A generator seeded by ``seed`` and stable hashes of ``keys`` (names, not order)."""
    return np.random.default_rng([int(seed)] + [zlib.crc32(str(k).encode()) for k in keys])


def _row(pair: Pair, metric: str, feature: str, value: float, std: float = math.nan, n: int = 0) -> dict:
    return {
        "subject": pair.subject,
        "session": pair.session_label,
        "segment": pair.segment,
        "kind": pair.kind,
        "reference": pair.reference.name,
        "other": pair.other.name,
        "metric": metric,
        "feature": feature,
        "value": float(value),
        "std": float(std),
        "n": int(n),
    }


# --------------------------------------------------------------------------- perceptual


@dataclass
class _Draws:
    lpips: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)  # (video, segment) -> frames
    fid: dict[tuple[str, str], list[np.ndarray]] = field(default_factory=dict)


def draw_frames(plan: PairPlan, settings: ProtocolSettings) -> _Draws:
    """The seeded frame draws of every (video, segment) in ``plan`` (module docstring)."""
    draws = _Draws()
    ranges: dict[tuple[str, str], tuple[int, int]] = {}
    for p in plan.pairs:
        ranges[(p.reference.name, p.segment)] = p.reference_frames
        ranges[(p.other.name, p.segment)] = p.other_frames
    for (name, segment), (a, b) in ranges.items():
        if "lpips" in settings.metrics:
            draws.lpips[(name, segment)] = _rng(settings.seed, name, segment, "lpips").integers(a, b, size=settings.lpips_pairs)
        if "fid" in settings.metrics:
            g = _rng(settings.seed, name, segment, "fid")
            k = min(settings.fid_set_size, b - a)
            draws.fid[(name, segment)] = [np.sort(g.choice(np.arange(a, b), size=k, replace=False)) for _ in range(settings.fid_sets)]
    return draws


def _features_into(store: dict[int, torch.Tensor], batch: list[tuple[int, np.ndarray]], net: torch.nn.Module, batch_size: int) -> None:
    """Inception features of the ``(frame, crop)`` batch into ``store``; empties ``batch``."""
    from evaluation.perceptual import inception_features

    f = inception_features(net, np.stack([c for _, c in batch]), batch_size).cpu()
    for (i, _), row in zip(batch, f, strict=True):
        store[i] = row
    batch.clear()


def perceptual_rows(plan: PairPlan, settings: ProtocolSettings, crop_size: int, log: Callable[[str], None]) -> list[dict]:
    """LPIPS and FID rows for every pair of ``plan``."""
    from evaluation.perceptual import fid_lowrank, load_inception, load_lpips, lpips_distances

    device = resolve_device(settings.device)
    want_lpips, want_fid = "lpips" in settings.metrics, "fid" in settings.metrics
    lp_net = load_lpips(device=device) if want_lpips else None
    inc_net = load_inception(device=device) if want_fid else None
    draws = draw_frames(plan, settings)

    crops: dict[str, dict[int, np.ndarray]] = {}  # video -> frame -> crop (LPIPS frames)
    feats: dict[str, dict[int, torch.Tensor]] = {}  # video -> frame -> Inception features
    videos = plan.videos()
    for number, rec in enumerate(videos, 1):
        lp_idx = {int(i) for (v, _), idx in draws.lpips.items() if v == rec.name for i in idx}
        fid_idx = {int(i) for (v, _), sets in draws.fid.items() if v == rec.name for s in sets for i in s}
        need = sorted(lp_idx | fid_idx)
        t0 = time.perf_counter()
        crops[rec.name], feats[rec.name] = {}, {}
        batch: list[tuple[int, np.ndarray]] = []
        for i, frame in iter_frames(rec.path, need):
            crop = crop_resize(frame, rec.bbox, crop_size)
            if i in lp_idx:
                crops[rec.name][i] = crop
            if i in fid_idx:
                batch.append((i, crop))
                if len(batch) >= settings.batch_size * 4:
                    _features_into(feats[rec.name], batch, inc_net, settings.batch_size)
        if batch:
            _features_into(feats[rec.name], batch, inc_net, settings.batch_size)
        log(f"  ({number}/{len(videos)}) {rec.name}: {len(need)} frames decoded for LPIPS/FID in {time.perf_counter() - t0:.1f} s")

    rows = []
    for p in plan.pairs:
        ka, kb = (p.reference.name, p.segment), (p.other.name, p.segment)
        if want_lpips:
            a = np.stack([crops[ka[0]][int(i)] for i in draws.lpips[ka]])
            b = np.stack([crops[kb[0]][int(i)] for i in draws.lpips[kb]])
            d = lpips_distances(lp_net, a, b, settings.batch_size).double().cpu()
            rows.append(_row(p, "lpips", "image", d.mean(), d.std() if d.numel() > 1 else math.nan, d.numel()))
        if want_fid:
            values, sizes = [], []
            for sa, sb in zip(draws.fid[ka], draws.fid[kb], strict=True):
                sizes.append(min(len(sa), len(sb)))
                if sizes[-1] < 2:  # a one-frame segment has no covariance
                    values.append(math.nan)
                    continue
                fa = torch.stack([feats[ka[0]][int(i)] for i in sa])
                fb = torch.stack([feats[kb[0]][int(i)] for i in sb])
                values.append(fid_lowrank(fa, fb))
            v = np.array(values)
            rows.append(_row(p, "fid", "image", v.mean(), v.std(ddof=1) if v.size > 1 else math.nan, min(sizes)))
    return rows


# ------------------------------------------------------------------------------ facial


def facial_rows(
    plan: PairPlan,
    settings: ProtocolSettings,
    out: Path,
    analyzer: object | None,
    log: Callable[[str], None],
) -> tuple[list[dict], dict[str, dict]]:
    """DTW / MAPE rows per AU and emotion for every pair, the per-video series written to
    ``out/series/``, and per-video frame counts for the summary."""
    from evaluation import facial

    if analyzer is None:
        analyzer = facial.FacialAnalyzer(
            model_set=settings.facial_model_set,
            batch_size=settings.batch_size,
            device=settings.device,
            stride=settings.facial_stride,
        )
    cache = settings.facial_cache if settings.facial_cache is not None else out / "facial_cache"
    series = {}
    videos: dict[str, dict] = {}
    recordings = plan.videos()
    for number, rec in enumerate(recordings, 1):
        t0 = time.perf_counter()
        log(f"  ({number}/{len(recordings)}) {rec.name}: facial analysis (py-feat) ...")
        s = analyzer.analyze_video(rec.path, bbox=rec.bbox, cache_dir=cache)
        series[rec.name] = s
        table = s.values.copy()
        table.insert(0, "time_s", table.index.to_numpy() / s.fps)
        with atomic_output(out / SERIES_DIR / f"{rec.name}.csv") as tmp:
            table.to_csv(tmp, index=True, index_label="frame")
        videos[rec.name] = {
            "condition": rec.condition,
            "session": rec.session,
            "source": rec.source,
            "fps": s.fps,
            "stride": s.stride,
            "analysed_frames": int(len(s.values)),
            "no_face_frames": int(s.no_face_frames),
            "no_face_by_segment": {},
        }
        log(f"  ({number}/{len(recordings)}) {rec.name}: facial series of {len(s.values)} frames ({s.no_face_frames} without a face) in {time.perf_counter() - t0:.1f} s")
    features = list(facial.AU_COLUMNS) + list(facial.EMOTION_COLUMNS)
    rows = []
    for p in plan.pairs:
        sr, so = series[p.reference.name], series[p.other.name]
        ref = sr.slice(*p.reference_frames).values
        oth = so.slice(*p.other_frames).values
        for name, v in ((p.reference.name, ref), (p.other.name, oth)):
            videos[name]["no_face_by_segment"][p.segment] = int(v.isna().all(axis=1).sum())
        if sr.stride != so.stride or not math.isclose(sr.fps, so.fps, rel_tol=1e-3):
            # Different frame rates would need resampling first; say so instead of guessing.
            raise ValueError(
                f"{p.reference.name} ({sr.fps} fps, stride {sr.stride}) and {p.other.name} ({so.fps} fps, "
                f"stride {so.stride}): series at different rates cannot be compared frame by frame"
            )
        cmp = compare_series(
            ref, oth, sr.fps / sr.stride, features,
            max_shift_s=settings.max_shift_s, eps=settings.mape_eps, max_gap_frames=settings.max_gap_frames,
            dtw_window_s=settings.dtw_window_s,
        )
        for r in cmp.itertuples(index=False):
            n = min(r.n_ref - r.nan_ref, r.n_other - r.nan_other)
            rows.append(_row(p, "dtw", r.feature, r.dtw, n=n))
            rows.append(_row(p, "mape", r.feature, r.mape, n=n))
            rows.append(_row(p, "mape_shift_s", r.feature, r.best_shift_s, n=n))
    return rows, videos


# ---------------------------------------------------------------------------- protocol


def _crop_size(settings: ProtocolSettings, cleaned: Subject | None) -> int:
    if settings.crop_size is not None:
        return int(settings.crop_size)
    if cleaned is None or not cleaned.recordings:
        return DEFAULT_CROP
    sizes = {}
    for c in cleaned.recordings:
        info = probe(c.path)
        sizes[c.name] = info.width
    if len(set(sizes.values())) > 1:
        raise ValueError(f"{cleaned.manifest_path}: cleaned videos differ in size {sizes}; pass --crop-size")
    return next(iter(sizes.values()))


def summarize(df: pd.DataFrame) -> dict:
    """Quick means per metric, kind and segment (AU averages without AU43)."""
    out: dict[str, dict] = {}
    if df.empty:
        return out
    for metric, g in df.groupby("metric"):
        if metric in ("dtw", "mape"):
            groups = {
                f"au_{metric}": g[g["feature"].isin(au_features_for_average(g["feature"].unique()))],
                f"emotion_{metric}": g[~g["feature"].map(is_au)],
            }
        elif metric in ("psnr", "ssim"):
            groups = {f"{metric}_{region}": gg for region, gg in g.groupby("feature")}
        elif metric in ("lpips", "fid"):
            groups = {metric: g}
        else:
            continue
        for key, gg in groups.items():
            table = gg.groupby(["kind", "segment"])["value"].mean()
            out[key] = {k: {s: _json_float(v) for (kk, s), v in table.items() if kk == k} for k in table.index.get_level_values(0).unique()}
    return out


def _json_float(v: float) -> float | str | None:
    v = float(v)
    if math.isnan(v):
        return None
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


def _sanitize(obj: object) -> object:
    """JSON-safe copy: NaN → null, ±inf → "inf"/"-inf", numpy scalars → Python."""
    if isinstance(obj, dict):
        return {str(k): _sanitize(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_sanitize(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return _json_float(float(obj))
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _versions() -> dict[str, str]:
    from evaluation.versions import library_versions

    return library_versions()


def run_protocol(
    manifest: str | Path,
    cleaned: str | Path | None,
    out: str | Path,
    settings: ProtocolSettings = ProtocolSettings(),
    *,
    facial_analyzer: object | None = None,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Evaluate one subject; write ``results.csv``, ``summary.json`` and ``series/`` under
    ``out``. Returns the path of ``results.csv``.

    Raises :class:`~evaluation.weights.MissingWeightsError` before any work when a chosen
    metric's weights are absent; ``ManifestError`` / :class:`~evaluation.pairs.PairingError`
    for inconsistent manifests. ``facial_analyzer``: an object with py-feat's
    :meth:`evaluation.facial.FacialAnalyzer.analyze_video` interface (default: a
    ``FacialAnalyzer`` from the settings)."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    t_start = time.perf_counter()
    metrics = list(settings.metrics)
    weight_files = check_weights([m for m in metrics if m != "groundtruth"], feat_model_set=settings.facial_model_set)
    out = Path(out)
    subject = load_manifest(manifest)
    clean_subject = load_manifest(cleaned, require_domains=("clean",)) if cleaned is not None else None
    plan = build_pairs(subject, clean_subject, settings.segments)
    for note in plan.skipped:
        log(f"skipped: {note}")
    crop_size = _crop_size(settings, clean_subject)
    log(f"{subject.subject}: {len(plan.pairs)} comparisons, metrics {', '.join(metrics)}, crop {crop_size} px")
    out.mkdir(parents=True, exist_ok=True)

    rows: list[dict] = []
    timings: dict[str, float] = {}
    videos: dict[str, dict] = {}
    perceptual = "/".join(m for m in ("lpips", "fid") if m in metrics)
    steps = [m for m in (perceptual, "facial" in metrics and "facial", "groundtruth" in metrics and "groundtruth") if m]

    def step(name: str) -> None:
        log(f"[{steps.index(name) + 1}/{len(steps)}] {name}: {len(plan.videos())} videos")

    if "lpips" in metrics or "fid" in metrics:
        t0 = time.perf_counter()
        step(perceptual)
        rows += perceptual_rows(plan, settings, crop_size, log)
        timings["perceptual_s"] = time.perf_counter() - t0
    if "facial" in metrics:
        t0 = time.perf_counter()
        step("facial")
        f_rows, videos = facial_rows(plan, settings, out, facial_analyzer, log)
        rows += f_rows
        timings["facial_s"] = time.perf_counter() - t0
    if "groundtruth" in metrics:
        from evaluation.groundtruth import evaluate_subject

        t0 = time.perf_counter()
        step("groundtruth")
        gt = evaluate_subject(subject, clean_subject, settings.segments, crop_size=crop_size, batch_size=settings.batch_size)
        if not gt:
            plan.skipped.append(f"{subject.manifest_path}: no sensor recording has 'ground_truth': no groundtruth rows")
        rows += gt
        timings["groundtruth_s"] = time.perf_counter() - t0

    df = pd.DataFrame(rows, columns=list(COLUMNS))
    results = out / RESULTS_CSV
    with atomic_output(results) as tmp:
        df.to_csv(tmp, index=False)
    settings_doc = asdict(settings)
    summary = {
        "subject": subject.subject,
        "manifest": str(subject.manifest_path),
        "cleaned": None if clean_subject is None else str(clean_subject.manifest_path),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "settings": settings_doc,
        "crop_size": crop_size,
        "versions": _versions(),
        "weights": [str(w.path) for w in weight_files],
        "comparisons": len(plan.pairs),
        "rows": len(df),
        "skipped": plan.skipped,
        "videos": videos,
        "means": summarize(df),
        "timings_s": {**timings, "total_s": time.perf_counter() - t_start},
    }
    with atomic_output(out / SUMMARY_JSON) as tmp:
        tmp.write_text(json.dumps(_sanitize(summary), indent=2, allow_nan=False))
    log(f"wrote {results} ({len(df)} rows) in {time.perf_counter() - t_start:.1f} s")
    return results


def read_results(paths: Sequence[str | Path]) -> pd.DataFrame:
    """Concatenate ``results.csv`` of result folders (or the CSV files themselves)."""
    frames = []
    for p in paths:
        p = Path(p)
        f = p / RESULTS_CSV if p.is_dir() else p
        if not f.is_file():
            raise FileNotFoundError(f"{f}: no results.csv (run `python -m evaluation run` first)")
        frames.append(pd.read_csv(f, dtype={"session": str, "subject": str, "feature": str}, keep_default_na=True))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(COLUMNS))

