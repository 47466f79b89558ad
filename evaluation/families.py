"""The metric families of the protocol (:func:`evaluation.protocol.run_protocol`), each
behind :class:`evaluation.family.MetricFamily`, and their registry :data:`FAMILIES`:
LPIPS / FID (:class:`PerceptualFrames`), py-feat (:class:`FacialFamily`), the
frame-to-frame change (:class:`TemporalFrames`), the ground truth
(:class:`GroundTruthFamily`) and dlib's landmarks
(:class:`evaluation.landmark_rows.LandmarkFrames`). The rows they return are described
in :mod:`evaluation.protocol`.
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from evaluation.family import EvaluationRun, FamilyDefaults, MetricFamily
from evaluation.framepass import FrameConsumer
from evaluation.metrics.timeseries import (
    au_features_for_average,
    compare_series,
)
from evaluation.pairs import Pair, PairPlan
from evaluation.settings import ProtocolSettings
from sensor_removal.core.device import resolve_device
from sensor_removal.core.manifest import Recording, output_path
from sensor_removal.core.video import atomic_output, probe

if TYPE_CHECKING:
    from evaluation.metrics.facial import FaceDetectorPool, FacialAnalyzer, FacialSeries, SeriesBuilder

COLUMNS: tuple[str, ...] = (
    "subject",
    "session",
    "segment",
    "kind",
    "reference",
    "other",
    "metric",
    "feature",
    "value",
    "std",
    "n",
    "model",
)
#: ``feature`` of the ``mape_shift_s`` rows with ``shift="joint"``: one shift per pair, AU
#: model and table — the AUs of Table 2 (chosen without AU43) and the emotions of Table 3.
SHIFT_GROUPS: tuple[str, ...] = ("au", "emotion")
SERIES_DIR = "series"


def _rng(seed: int, *keys: str | int) -> np.random.Generator:
    """A generator seeded by ``seed`` and stable hashes of ``keys`` (names, not order)."""
    return np.random.default_rng([int(seed)] + [zlib.crc32(str(k).encode()) for k in keys])


def _row(
    pair: Pair, metric: str, feature: str, value: float, std: float = math.nan, n: int = 0, model: str = ""
) -> dict:
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
        "model": model,
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
        if "lpips" in settings.metrics and settings.lpips_all_pairs:
            draws.lpips[(name, segment)] = np.arange(a, b)
        elif "lpips" in settings.metrics:
            draws.lpips[(name, segment)] = _rng(settings.seed, name, segment, "lpips").integers(
                a, b, size=settings.lpips_pairs
            )
        if "fid" in settings.metrics:
            g = _rng(settings.seed, name, segment, "fid")
            k = min(settings.fid_set_size, b - a)
            draws.fid[(name, segment)] = [
                np.sort(g.choice(np.arange(a, b), size=k, replace=False)) for _ in range(settings.fid_sets)
            ]
    return draws


class PerceptualFrames(FamilyDefaults):
    """The LPIPS / FID family in the shared decoding pass (:mod:`evaluation.framepass`):
    keeps the crops of the LPIPS draws and the Inception features of the FID draws of
    every video, then :meth:`rows` compares the pairs."""

    family = "lpips/fid"
    crop_size: int | None = None  # the pass's
    timing: str | None = "perceptual_rows_s"

    def __init__(self, plan: PairPlan, settings: ProtocolSettings) -> None:
        from evaluation.metrics.perceptual import load_inception, load_lpips

        device = resolve_device(settings.device)
        self.settings = settings
        self.want_lpips, self.want_fid = "lpips" in settings.metrics, "fid" in settings.metrics
        self.family = self.name = "/".join(m for m in ("lpips", "fid") if m in settings.metrics)
        self.lp_net = load_lpips(device=device) if self.want_lpips else None
        self.inc_net = load_inception(device=device) if self.want_fid else None
        self.draws = draw_frames(plan, settings)
        self.crops: dict[str, dict[int, np.ndarray]] = {}  # video -> frame -> crop (LPIPS frames)
        self.feats: dict[str, dict[int, torch.Tensor]] = {}  # video -> frame -> Inception features
        self._lp_idx: dict[str, set[int]] = {}
        self._fid_idx: dict[str, set[int]] = {}
        self._batch: list[tuple[int, np.ndarray]] = []
        # lpips_all_pairs: per (video, segment) the running LPIPS moments, and pending crops.
        self.moments: dict[tuple[str, str], list] = {}
        self._lp_batch: list[tuple[int, np.ndarray]] = []

    def frames_wanted(self, rec: Recording) -> set[int]:
        d = self.draws
        self._lp_idx[rec.name] = {int(i) for (v, _), idx in d.lpips.items() if v == rec.name for i in idx}
        self._fid_idx[rec.name] = {int(i) for (v, _), sets in d.fid.items() if v == rec.name for s in sets for i in s}
        self.crops[rec.name], self.feats[rec.name] = {}, {}
        return self._lp_idx[rec.name] | self._fid_idx[rec.name]

    def consume(self, rec: Recording, index: int, crop: np.ndarray) -> None:
        if index in self._lp_idx[rec.name] and self.settings.lpips_all_pairs:
            self._lp_batch.append((index, crop))
            if len(self._lp_batch) >= self.settings.batch_size * 4:
                self._moments(rec.name)
        elif index in self._lp_idx[rec.name]:
            self.crops[rec.name][index] = crop
        if index in self._fid_idx[rec.name]:
            self._batch.append((index, crop))
            if len(self._batch) >= self.settings.batch_size * 4:
                self._features(rec.name)

    def video_done(self, rec: Recording) -> None:
        if self._batch:
            self._features(rec.name)
        if self._lp_batch:
            self._moments(rec.name)

    def _moments(self, video: str) -> None:
        """Add the pending crops to the LPIPS moments of every segment of ``video`` they lie
        in (one AlexNet pass per crop, however many segments hold it)."""
        from evaluation.metrics.perceptual import add_moments, lpips_group_moments

        keys = [k for k in self.draws.lpips if k[0] == video]
        index = np.array([i for i, _ in self._lp_batch])
        masks = [(index >= self.draws.lpips[k][0]) & (index <= self.draws.lpips[k][-1]) for k in keys]
        assert self.lp_net is not None  # loaded when LPIPS is measured
        parts = lpips_group_moments(
            self.lp_net, np.stack([c for _, c in self._lp_batch]), masks, self.settings.batch_size
        )
        for key, m in zip(keys, parts, strict=True):
            if m is not None:
                self.moments[key] = m if key not in self.moments else add_moments(self.moments[key], m)
        self._lp_batch.clear()

    def _features(self, video: str) -> None:
        """Inception features of the pending batch into ``feats[video]``."""
        from evaluation.metrics.perceptual import inception_features

        assert self.inc_net is not None  # loaded when FID is measured
        f = inception_features(self.inc_net, np.stack([c for _, c in self._batch]), self.settings.batch_size).cpu()
        for (i, _), row in zip(self._batch, f, strict=True):
            self.feats[video][i] = row
        self._batch.clear()

    def evaluate(self, run: EvaluationRun) -> list[dict]:
        return self.rows(run.plan)

    def rows(self, plan: PairPlan) -> list[dict]:
        """LPIPS and FID rows for every pair of ``plan``."""
        from evaluation.metrics.perceptual import fid_lowrank, lpips_all_pairs, lpips_distances

        settings, draws, crops, feats = self.settings, self.draws, self.crops, self.feats
        rows = []
        for p in plan.pairs:
            ka, kb = (p.reference.name, p.segment), (p.other.name, p.segment)
            if self.want_lpips and settings.lpips_all_pairs:
                assert self.lp_net is not None  # loaded when LPIPS is measured
                ma, mb = self.moments[ka], self.moments[kb]
                rows.append(
                    _row(p, "lpips", "image", lpips_all_pairs(self.lp_net, ma, mb), math.nan, ma[0][2] * mb[0][2])
                )
            elif self.want_lpips:
                assert self.lp_net is not None
                a = np.stack([crops[ka[0]][int(i)] for i in draws.lpips[ka]])
                b = np.stack([crops[kb[0]][int(i)] for i in draws.lpips[kb]])
                d = lpips_distances(self.lp_net, a, b, settings.batch_size).double().cpu()
                std = float(d.std()) if d.numel() > 1 else math.nan
                rows.append(_row(p, "lpips", "image", float(d.mean()), std, d.numel()))
            if self.want_fid:
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


class FacialFrames:
    """One AU model's py-feat family in the shared decoding pass: per video, the cached
    series, or a :class:`evaluation.metrics.facial.SeriesBuilder` fed every ``stride``-th crop
    (the crop size of LPIPS/FID, for N, S and C alike), then cached."""

    def __init__(
        self, model: str, analyzer: FacialAnalyzer, cache_dir: Path, crop_size: int, log: Callable[[str], None]
    ) -> None:
        self.model, self.analyzer, self.cache_dir, self.crop_size, self.log = model, analyzer, cache_dir, crop_size, log
        self.family = f"facial:{model}"
        self.series: dict[str, FacialSeries] = {}
        self._builders: dict[str, tuple[SeriesBuilder, Path, float]] = {}

    def frames_wanted(self, rec: Recording) -> range:
        info = probe(rec.path)
        cache_file = self.analyzer.cache_file(rec.path, rec.bbox, self.crop_size, self.cache_dir)
        cached = self.analyzer.load_series(cache_file, info.fps, rec.path)
        if cached is not None:
            self.series[rec.name] = cached
            return range(0)
        wanted = range(0, info.frame_count, self.analyzer.stride)
        self._builders[rec.name] = (
            self.analyzer.series_builder(rec.path, info.fps, len(wanted)),
            cache_file,
            time.perf_counter(),
        )
        return wanted

    def consume(self, rec: Recording, index: int, crop: np.ndarray) -> None:
        self._builders[rec.name][0].add(index, crop)

    def video_done(self, rec: Recording) -> None:
        if rec.name not in self._builders:
            return
        builder, cache_file, t0 = self._builders.pop(rec.name)
        s = builder.finish()
        self.analyzer.save_series(s, cache_file)
        self.series[rec.name] = s
        self.log(
            f"  {rec.name}: {self.model} series of {len(s.values)} frames ({s.no_face_frames} without a face)"
            f" in {time.perf_counter() - t0:.1f} s"
        )


def _analyzer(model: str, settings: ProtocolSettings, face_detectors: FaceDetectorPool | None) -> FacialAnalyzer:
    from evaluation.metrics.facial import FacialAnalyzer

    return FacialAnalyzer(
        model_set=model,
        batch_size=settings.batch_size,
        device=settings.device,
        stride=settings.facial_stride,
        face_detectors=face_detectors,
        backend=settings.facial_backend,
    )


def facial_rows(
    plan: PairPlan, settings: ProtocolSettings, out: Path, families: Sequence[FacialFrames]
) -> tuple[list[dict], dict[str, dict]]:
    """DTW / MAPE rows per AU model, AU and emotion for every pair, the per-video series
    written to ``out/series/`` (first model; the others in ``out/series/<model>/``), and
    per-video frame counts for the summary (first model; all under ``by_model``)."""
    from evaluation.metrics import facial

    videos: dict[str, dict] = {}
    rows = []
    # Each table's shift is chosen from exactly the series it averages (AU43 out of Table 2's).
    shift_groups = (
        (SHIFT_GROUPS[0], list(facial.AU_COLUMNS), au_features_for_average(facial.AU_COLUMNS)),
        (SHIFT_GROUPS[1], list(facial.EMOTION_COLUMNS), list(facial.EMOTION_COLUMNS)),
    )
    for k, fam in enumerate(families):
        folder = out / SERIES_DIR if k == 0 else out / SERIES_DIR / fam.model
        for rec in plan.videos():
            s = fam.series[rec.name]
            table = s.values.copy()
            table.insert(0, "time_s", table.index.to_numpy() / s.fps)
            with atomic_output(output_path(folder, f"{rec.name}.csv")) as tmp:
                table.to_csv(tmp, index=True, index_label="frame")
            counts = {"analysed_frames": int(len(s.values)), "no_face_frames": int(s.no_face_frames)}
            if k == 0:
                videos[rec.name] = {
                    "condition": rec.condition,
                    "session": rec.session,
                    "source": rec.source,
                    "fps": s.fps,
                    "stride": s.stride,
                    **counts,
                    "no_face_by_segment": {},
                    "by_model": {},
                }
            videos[rec.name]["by_model"][fam.model] = counts
        for p in plan.pairs:
            sr, so = fam.series[p.reference.name], fam.series[p.other.name]
            ref = sr.slice(*p.reference_frames).values
            oth = so.slice(*p.other_frames).values
            if k == 0:
                for name, v in ((p.reference.name, ref), (p.other.name, oth)):
                    videos[name]["no_face_by_segment"][p.segment] = int(v.isna().all(axis=1).sum())
            if sr.stride != so.stride or not math.isclose(sr.fps, so.fps, rel_tol=1e-3):
                # Different frame rates would need resampling first; say so instead of guessing.
                raise ValueError(
                    f"{p.reference.name} ({sr.fps} fps, stride {sr.stride}) and {p.other.name} ({so.fps} fps, "
                    f"stride {so.stride}): series at different rates cannot be compared frame by frame"
                )
            start = int(np.searchsorted(so.values.index.to_numpy(), p.other_frames[0]))
            for group, cols, steer in shift_groups:
                cmp = compare_series(
                    ref, oth, sr.fps / sr.stride, cols,
                    max_shift_s=settings.max_shift_s, eps=settings.mape_eps, max_gap_frames=settings.max_gap_frames,
                    dtw_window_s=settings.dtw_window_s, shift=settings.shift, shift_features=steer,
                    other_context=so.values, other_start=start,
                )  # fmt: skip
                for r in cmp.itertuples(index=False):
                    n = min(r.n_ref - r.nan_ref, r.n_other - r.nan_other)
                    rows.append(_row(p, "dtw", r.feature, r.dtw, n=n, model=fam.model))
                    rows.append(_row(p, "mape", r.feature, r.mape, n=r.overlap, model=fam.model))
                    if settings.shift == "per_series":
                        rows.append(_row(p, "mape_shift_s", r.feature, r.best_shift_s, n=r.overlap, model=fam.model))
                if settings.shift == "joint" and len(cmp):
                    # One delay per pair, AU model and table: every series of the group was taken at it.
                    rows.append(
                        _row(
                            p,
                            "mape_shift_s",
                            group,
                            cmp["best_shift_s"].iloc[0],
                            n=int(cmp["overlap"].max()),
                            model=fam.model,
                        )
                    )
    return rows, videos


class FacialFamily(FamilyDefaults):
    """The py-feat family: one :class:`FacialFrames` consumer per AU model (sharing one
    RetinaFace unless the run brings its own analyzer), then :func:`facial_rows`."""

    name = "facial"
    timing: str | None = "facial_rows_s"

    def __init__(self, run: EvaluationRun) -> None:
        settings = run.settings
        cache = settings.facial_cache if settings.facial_cache is not None else run.out / "facial_cache"
        make = run.facial_analyzer
        if make is None:
            from evaluation.metrics.facial import FaceDetectorPool

            pool = FaceDetectorPool()  # this run's AU models share one RetinaFace
            make = lambda model: _analyzer(model, settings, pool)  # noqa: E731
        self.models = [FacialFrames(m, make(m), cache, run.crop_size, run.log) for m in settings.au_models]
        self.videos_summary: dict[str, dict] = {}

    def consumers(self) -> Sequence[FrameConsumer]:
        return self.models  # type: ignore[return-value]  # FacialFrames is a FrameConsumer

    def evaluate(self, run: EvaluationRun) -> list[dict]:
        rows, self.videos_summary = facial_rows(run.plan, run.settings, run.out, self.models)
        return rows

    def summary_fields(self) -> dict[str, object]:
        return {"videos": self.videos_summary}


class GroundTruthFamily(FamilyDefaults):
    """The ground-truth family (:mod:`evaluation.metrics.groundtruth`): reads its own
    aligned triples, so it takes no part in the decoding pass."""

    name = "groundtruth"
    timing: str | None = "groundtruth_s"

    def consumers(self) -> Sequence[FrameConsumer]:
        return []

    def evaluate(self, run: EvaluationRun) -> list[dict]:
        from evaluation.metrics.groundtruth import evaluate_subject

        s = run.settings
        rows = evaluate_subject(run.subject, run.cleaned, s.segments, crop_size=run.crop_size, batch_size=s.batch_size)
        if not rows:
            run.plan.skipped.append(
                f"{run.subject.manifest_path}: no sensor recording has 'ground_truth': no groundtruth rows"
            )
        return rows


def _landmarks(run: EvaluationRun) -> MetricFamily:
    from evaluation.landmark_rows import LandmarkFrames

    cache = run.settings.landmark_cache
    return LandmarkFrames(run.plan, run.subject, run.cleaned, run.out, run.log, cache=cache)


#: The metric families, in the order their rows appear in ``results.csv``: which metric
#: names turn each on, and how it is built for a run. A new family adds one line here.
FAMILIES: tuple[tuple[tuple[str, ...], Callable[[EvaluationRun], MetricFamily]], ...] = (
    (("lpips", "fid"), lambda run: PerceptualFrames(run.plan, run.settings)),
    (("facial",), FacialFamily),
    (("temporal",), lambda run: TemporalFrames()),
    (("groundtruth",), lambda run: GroundTruthFamily()),
    (("landmarks",), _landmarks),
)


# ---------------------------------------------------------------------------- temporal


class TemporalFrames(FamilyDefaults):
    """The ``temporal`` family in the shared decoding pass: each video's frame-to-frame
    change (:func:`evaluation.metrics.temporal.frame_change` of consecutive crops, NaN for the
    first frame), then :meth:`rows` compares the pairs (module docstring)."""

    family = name = "temporal"
    crop_size: int | None = None  # the pass's

    def __init__(self) -> None:
        self.series: dict[str, list[float]] = {}
        self._before: np.ndarray | None = None

    def frames_wanted(self, rec: Recording) -> range:
        self.series[rec.name], self._before = [], None
        return range(probe(rec.path).frame_count)

    def consume(self, rec: Recording, index: int, crop: np.ndarray) -> None:
        from evaluation.metrics.temporal import frame_change

        self.series[rec.name].append(math.nan if self._before is None else frame_change(self._before, crop))
        self._before = crop

    def video_done(self, rec: Recording) -> None:
        self._before = None

    def evaluate(self, run: EvaluationRun) -> list[dict]:
        return self.rows(run.plan)

    def rows(self, plan: PairPlan) -> list[dict]:
        """``temporal`` / ``excess`` rows for every pair of ``plan``."""
        rows = []
        for p in plan.pairs:
            ref = np.array(self.series[p.reference.name])[slice(*p.reference_frames)]
            oth = np.array(self.series[p.other.name])[slice(*p.other_frames)]
            ref, oth = ref[~np.isnan(ref)], oth[~np.isnan(oth)]
            if ref.size and oth.size:
                rows.append(_row(p, "temporal", "excess", oth.mean() - ref.mean(), n=min(ref.size, oth.size)))
        return rows
