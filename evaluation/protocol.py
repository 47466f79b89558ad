"""The evaluation protocol for one subject (docs/evaluation.md; paper Sec. 4).

``run_protocol`` compares, per task segment, N1–N2 (baseline), Nk–Sk (sensor) and Nk–Ck
(cleaned) (:mod:`evaluation.pairs`) with the chosen metrics and writes

* ``RESULTS/results.csv`` — tidy rows: ``subject, session, segment, kind, reference,
  other, metric, feature, value, std, n, model`` (:data:`COLUMNS`; ``model`` is the AU
  model of facial rows, empty otherwise);
* ``RESULTS/summary.json`` — settings, library versions, weight files, skipped
  comparisons, frames decoded per video, per-video facial-analysis frame counts
  (no-face frames per segment; per AU model under ``by_model``) and quick means;
* ``RESULTS/series/<recording>.csv`` — the per-frame AU / emotion series each video
  contributed (index ``frame``; first AU model, the others in
  ``series/<model>/<recording>.csv``), so that reports can plot without re-running py-feat.

All files are written atomically. The weights of every chosen metric are checked
*before* anything is decoded (:func:`evaluation.weights.check_weights`).

Metrics (``metric`` / ``feature`` in the rows):

* ``lpips`` / ``image`` — mean LPIPS over ``lpips_pairs`` frame pairs; ``std`` over pairs.
  With ``lpips_all_pairs`` (the paper's rule, "all frame pairs"): the exact mean over every
  frame pair of the two segments (:func:`evaluation.metrics.perceptual.lpips_all_pairs`, one
  AlexNet pass per frame); ``std`` empty, ``n`` the number of pairs.
* ``fid`` / ``image`` — mean low-rank FID over ``fid_sets`` draws of ``fid_set_size``
  frames per side (the paper: 128); ``std`` over draws, ``n`` the set size used (smaller
  when a segment has fewer frames).
* ``dtw``, ``mape`` / ``<AU or emotion>`` — :mod:`evaluation.metrics.timeseries` on the py-feat
  series of each AU model (``model``: ``xgb``, ``v2``, ...); MAPE as a fraction at the
  pair's shift within ±20 s, over the full reference segment (the partner's series is
  read outside its segment; ``n`` of a ``mape`` row: the frames compared at the shift).
* ``mape_shift_s`` / ``au`` | ``emotion`` — the one shift (seconds) of that pair, AU model
  and table, chosen jointly over exactly the series the table averages (Table 2: the AUs
  without AU43; Table 3: the emotions; default ``shift="joint"``); ``n``: the frames
  compared at it. With ``shift="per_series"`` one ``mape_shift_s`` row per feature instead.
* ``psnr``, ``ssim`` / ``whole`` | ``mask`` | ``outside``, ``flicker`` / ``mask`` —
  :mod:`evaluation.metrics.groundtruth`, synthetic subjects only (``reference`` is
  ``<sensor>:ground_truth``).
* ``temporal`` / ``excess`` (our extension; no ground truth needed) — mean frame-to-frame
  change (:func:`evaluation.metrics.temporal.frame_change`, 8-bit levels) of the other video
  minus the reference's, per segment: how much more a sensor or cleaned video moves
  than the normal video of its session (flicker shows as a positive excess).
* ``lm_*`` — the ``landmarks`` family (ours; dlib's 68 points, geometry series, NME vs
  ground truth, detection rates): :mod:`evaluation.landmark_rows`.

Frame draws (seeded): for each video and segment, ``lpips_pairs`` frames uniformly with
replacement and ``fid_sets`` sets of distinct frames, from a generator seeded by
``(seed, video name, segment)``. A comparison pairs the i-th LPIPS draw of one side
with the i-th of the other, i.e. independent uniform frame pairs. A video's draws are
shared by all comparisons it takes part in (N1 uses the same frames against S1 and C1),
which makes the N–S and N–C rows a paired comparison. Every frame is cut with the
video's bbox by :func:`sensor_removal.core.video.crop_resize` to the crop size (default: the
cleaned videos' size) — the same size for N, S and C and for LPIPS, FID and py-feat —
and each video is decoded once, sequentially, for every family
(:mod:`evaluation.framepass`).

Every family implements one interface, :class:`evaluation.family.MetricFamily` (frame
consumers for the pass, then ``evaluate(run)`` → rows); ``run_protocol`` loops over the
registry :data:`evaluation.families.FAMILIES` in the order the rows appear in ``results.csv``.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from evaluation.families import COLUMNS, FAMILIES, SERIES_DIR, SHIFT_GROUPS, draw_frames
from evaluation.family import EvaluationRun, MetricFamily
from evaluation.framepass import FrameConsumer, OnlyVideos, decode_once
from evaluation.metrics.timeseries import (
    au_features_for_average,
    is_au,
)
from evaluation.pairs import build_pairs
from evaluation.settings import ProtocolSettings
from evaluation.weights import check_weights
from sensor_removal.core.manifest import Recording, Subject, load_manifest
from sensor_removal.core.video import atomic_output, probe

if TYPE_CHECKING:
    from evaluation.metrics.facial import FacialAnalyzer

#: Re-exported here, where the outputs are described (module docstring).
__all__ = ["COLUMNS", "SERIES_DIR", "SHIFT_GROUPS", "draw_frames", "read_results", "run_protocol", "summarize"]
RESULTS_CSV = "results.csv"
SUMMARY_JSON = "summary.json"
DEFAULT_CROP = 256


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
        elif metric in ("lpips", "fid", "temporal"):
            groups = {metric: g}
        else:
            continue
        for key, gg in groups.items():
            table = gg.groupby(["kind", "segment"])["value"].mean()
            out[key] = {
                k: {s: _json_float(v) for (kk, s), v in table.items() if kk == k}
                for k in table.index.get_level_values(0).unique()
            }
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
    from sensor_removal.core.versions import library_versions

    return library_versions()


def _pass_name(families: Sequence[MetricFamily]) -> str:
    return ", ".join(c.family for f in families for c in f.consumers())


def _steps(families: Sequence[MetricFamily]) -> list[str]:
    """The log's numbered steps: the shared pass, then each family with its own."""
    shared = [_pass_name(families)] if any(f.consumers() for f in families) else []
    return shared + [f.name for f in families if not f.consumers()]


def _frame_pass(run: EvaluationRun, families: Sequence[MetricFamily]) -> dict[str, int]:
    """The decode-once pass for every family's consumers; frames decoded per video.

    The videos are the plan's, unless a family needs more (the landmarks family adds
    the ground truths, first); each family's consumers see only the videos it asked for.
    """
    videos: list[Recording] = list(run.plan.videos())
    for family in families:
        own = family.videos()
        if own is not None:
            taken = {v.name for v in own}
            videos = [*own, *(v for v in videos if v.name not in taken)]
    consumers: list[FrameConsumer] = []
    for family in families:
        own = family.videos()
        names = [v.name for v in (run.plan.videos() if own is None else own)]
        consumers += [OnlyVideos(c, names) for c in family.consumers()]
    if not consumers:
        return {}
    steps = _steps(families)
    run.log(f"[1/{len(steps)}] {steps[0]}: {len(videos)} videos")
    return decode_once(videos, consumers, run.crop_size, run.log)


def _evaluate(
    run: EvaluationRun, families: Sequence[MetricFamily], steps: list[str], timings: dict[str, float]
) -> tuple[list[dict], dict[str, object]]:
    """Every family's rows, in registry order, and its ``summary.json`` entries; each
    family's time into ``timings`` under its own key."""
    rows: list[dict] = []
    fields: dict[str, object] = {}
    for family in families:
        t0 = time.perf_counter()
        if not family.consumers():  # reads its own files: its own step in the log
            run.log(f"[{steps.index(family.name) + 1}/{len(steps)}] {family.name}: {len(run.plan.videos())} videos")
        rows += family.evaluate(run)
        fields.update(family.summary_fields())
        if family.timing is not None:
            timings[family.timing] = time.perf_counter() - t0
    return rows, fields


def run_protocol(
    manifest: str | Path,
    cleaned: str | Path | None,
    out: str | Path,
    settings: ProtocolSettings = ProtocolSettings(),
    *,
    facial_analyzer: Callable[[str], FacialAnalyzer] | None = None,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Evaluate one subject; write ``results.csv``, ``summary.json`` and ``series/`` under
    ``out``. Returns the path of ``results.csv``.

    Every video is decoded once (:func:`evaluation.framepass.decode_once`); the LPIPS /
    FID draws, each AU model's py-feat series and the frame-to-frame changes are fed from
    that pass, all at the same crop size, and so are the dlib landmarks (at their own
    256 px, ground truths included). The ground-truth family reads its own aligned triples.

    Raises :class:`~evaluation.weight_files.MissingWeightsError` before any work when a chosen
    metric's weights are absent; ``ManifestError`` / :class:`~evaluation.pairs.PairingError`
    for inconsistent manifests. ``facial_analyzer``: an object with py-feat's
    :meth:`evaluation.metrics.facial.FacialAnalyzer.analyze_video` interface (default: a
    ``FacialAnalyzer`` from the settings)."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    t_start = time.perf_counter()
    metrics = list(settings.metrics)
    weight_files = check_weights([m for m in metrics if m not in ("groundtruth", "facial", "temporal")])
    if "facial" in metrics:
        for model in settings.au_models:
            weight_files += check_weights(["facial"], feat_model_set=model)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: --out exists and is not a folder; results go into a folder")
    subject = load_manifest(manifest)
    clean_subject = load_manifest(cleaned, require_domains=("clean",)) if cleaned is not None else None
    plan = build_pairs(subject, clean_subject, settings.segments, allow_missing=settings.allow_missing)
    for note in plan.skipped:
        log(f"skipped: {note}")
    if plan.missing:
        log(f"missing cleaned recordings (--allow-missing): {', '.join(plan.missing)}")
    crop_size = _crop_size(settings, clean_subject)
    log(f"{subject.subject}: {len(plan.pairs)} comparisons, metrics {', '.join(metrics)}, crop {crop_size} px")
    out.mkdir(parents=True, exist_ok=True)

    run = EvaluationRun(plan, subject, clean_subject, settings, out, crop_size, log, facial_analyzer)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    families = [build(run) for names, build in FAMILIES if any(m in metrics for m in names)]
    steps = _steps(families)
    decoded = _frame_pass(run, families)
    timings["frame_pass_s"] = time.perf_counter() - t0
    rows, fields = _evaluate(run, families, steps, timings)

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
        "decoded_frames": decoded,
        "rows": len(df),
        "skipped": plan.skipped,
        "missing_cleaned": plan.missing,
        "videos": fields.get("videos", {}),
        "landmarks": fields.get("landmarks", {}),
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
        df = pd.read_csv(f, dtype={"session": str, "subject": str, "feature": str, "model": str}, keep_default_na=True)
        if "model" not in df.columns:  # results written before AU models were named
            df["model"] = ""
        df["model"] = df["model"].fillna("")
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(COLUMNS))
