"""The ``landmarks`` metric family of the protocol: results rows from dlib's 68 points.

Ours, beside the paper's measures (``docs/landmarks.md``). For every video of the plan
(:mod:`evaluation.metrics.landmarks`: face crop → 256 px → detector → 68 points, NaN without a
face) and, on synthetic subjects, every sensor recording's ground truth:

Rows per comparison (N1–N2, N–S, N–C, per segment; ``reference``/``other`` as in the
other families):

* ``lm_dtw``, ``lm_mape``, ``lm_mape_shift_s`` / ``<geometry feature>`` — the landmark
  geometry series (:data:`evaluation.metrics.face_geometry.GEOMETRY_FEATURES`) compared exactly
  like the AU series (:func:`evaluation.metrics.timeseries.compare_series`: DTW, MAPE at the
  pair's one shift within ±20 s chosen over the geometry features, the full segment at
  every shift, the same NaN rule and settings; ``n`` of ``lm_mape`` and
  ``lm_mape_shift_s``: the frames compared at the shift);
* ``lm_detection`` / ``reference`` | ``other`` — face detection rate (frames with a face /
  frames) of each side in the segment.

Rows against the ground truth (``reference`` is ``<sensor>:ground_truth``; kind
``sensor`` = the sensor video, ``clean`` = its cleaned version):

* ``lm_nme`` / ``detected`` — normalised mean error (inter-ocular, 300-W) of the
  landmarks found on S or C against those found on the ground-truth frames, over frames
  where both have a face (``n``);
* ``lm_nme`` / ``gt_box`` — the same with the predictor placed in the face box found on
  the ground-truth frame: localisation error even where the detector misses the face
  (electrodes often hide it from the HOG detector);
* ``lm_detection`` / ``other`` | ``reference`` — detection rate of S or C, and of the
  ground truth.

Per video the table (frame, time, face, geometry, 68 points) goes to
``RESULTS/landmarks/<recording>.csv`` (ground truth: ``<sensor>.ground_truth.csv``; S and C
with the predictor in the ground truth's boxes: ``<recording>.at_gt_box.csv``), and
detection counts and frames/s (decoding included) to ``summary.json`` (``landmarks``).

Every video, ground truths included, is decoded once, in the protocol's shared pass
(:class:`LandmarkFrames`, a :class:`evaluation.framepass.FrameConsumer`), for both the
detector's landmarks and those at the ground truth's face boxes.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from evaluation.family import EvaluationRun, FamilyDefaults
from evaluation.framepass import decode_once
from evaluation.metrics.face_geometry import GEOMETRY_FEATURES, normalised_mean_error
from evaluation.metrics.landmarks import (
    ANALYSIS_SIZE,
    LandmarkDetector,
    LandmarkSeries,
    VideoLandmarks,
    write_table,
)
from evaluation.metrics.timeseries import compare_series
from evaluation.pairs import PairPlan, frame_range
from sensor_removal.core.manifest import Recording, Subject
from sensor_removal.core.video import probe

if TYPE_CHECKING:
    from evaluation.settings import ProtocolSettings

LANDMARKS_DIR = "landmarks"
#: ``metric`` values of this family in ``results.csv``.
LANDMARK_METRICS: tuple[str, ...] = ("lm_dtw", "lm_mape", "lm_mape_shift_s", "lm_detection", "lm_nme")
GT_SUFFIX = ":ground_truth"


def _row(
    subject: str,
    session: str,
    segment: str,
    kind: str,
    reference: str,
    other: str,
    metric: str,
    feature: str,
    value: float,
    std: float = math.nan,
    n: int = 0,
) -> dict:
    return {
        "subject": subject, "session": session, "segment": segment, "kind": kind, "reference": reference,
        "other": other, "metric": metric, "feature": feature, "value": float(value), "std": float(std), "n": int(n),
    }  # fmt: skip


def _mean_std(v: np.ndarray) -> tuple[float, float, int]:
    v = v[~np.isnan(v)]
    if v.size == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else math.nan, int(v.size)


class LandmarkFrames(FamilyDefaults):
    """The ``landmarks`` family in the shared decoding pass (:mod:`evaluation.framepass`).

    Every video the family needs is decoded once, in :meth:`videos` order: first the
    ground truth of each sensor recording (so that its face boxes are known when the
    sensor and cleaned frames arrive), then the plan's videos, then the sensor and
    cleaned recordings of the ground-truth rows that take part in no pair. Each frame of
    a sensor or cleaned video feeds two :class:`~evaluation.metrics.landmarks.LandmarkSeries`:
    the detector's own, and the predictor placed in the ground truth's box
    (``<recording>.at_gt_box``). The crops are :data:`ANALYSIS_SIZE` px whatever the
    pass's crop size, so the landmarks are measured in one coordinate frame.

    :meth:`get` writes each video's table to ``out/landmarks`` and its summary on first
    use, in the order the rows ask for them.

    ``cache``: a folder of finished :class:`~evaluation.metrics.landmarks.VideoLandmarks`,
    keyed by the video's content, bbox and the detector (and, for ``at_gt_box``, the
    ground truth's content): a video already there is not run through dlib again (it is
    still decoded when another family wants its frames). The post-fit benchmark shares
    one cache between its two evaluations, so N, S and the ground truths are analysed once."""

    family = name = "landmarks"
    crop_size: int | None = ANALYSIS_SIZE
    timing: str | None = "landmark_rows_s"

    def __init__(
        self,
        plan: PairPlan,
        subject: Subject,
        cleaned: Subject | None,
        out: Path,
        log: Callable[[str], None],
        detector: LandmarkDetector | None = None,
        cache: Path | None = None,
    ) -> None:
        self.detector = detector or LandmarkDetector()
        self.out, self.log = Path(out), log
        self.cache = None if cache is None else LandmarkCache(Path(cache), self.detector)
        self._paths: dict[str, Path] = {}  # result key -> its video (for the cache keys)
        self._cached: set[str] = set()  # result keys read from the cache
        self.done: dict[str, VideoLandmarks] = {}
        self.summary: dict[str, dict] = {}
        self._meta: dict[str, dict] = {}
        # video name -> [(key of its result, key of the ground truth whose boxes it uses)]
        self._jobs: dict[str, list[tuple[str, str | None]]] = {}
        self._open: dict[str, tuple[list[tuple[str, LandmarkSeries]], float, float]] = {}
        truths, extra = [], []
        for sensor, kinds in ground_truth_kinds(subject, cleaned):
            gt_key = _gt_key(sensor)
            assert sensor.ground_truth is not None  # ground_truth_kinds yields only these
            truths.append(
                replace(sensor, name=gt_key, path=sensor.ground_truth, ground_truth=None, mask=None, source=sensor.name)
            )
            self._add(
                truths[-1],
                gt_key,
                None,
                {"condition": "ground_truth", "session": sensor.session, "source": sensor.name},
            )
            for _, rec in kinds:
                extra.append(rec)
                meta = {
                    "condition": f"{rec.condition} (ground-truth face boxes)",
                    "session": sensor.session,
                    "source": sensor.name,
                }
                self._add(rec, f"{rec.name}.at_gt_box", gt_key, meta)
        for rec in [*plan.videos(), *extra]:
            self._add(rec, rec.name, None, {"condition": rec.condition, "session": rec.session, "source": rec.source})
        order: dict[str, Recording] = {}
        for rec in [*truths, *plan.videos(), *extra]:
            order.setdefault(rec.name, rec)
        self._order = list(order.values())

    def _add(self, rec: Recording, key: str, boxes_of: str | None, meta: dict) -> None:
        jobs = self._jobs.setdefault(rec.name, [])
        self._paths[key] = rec.path
        if key not in self._meta:
            jobs.append((key, boxes_of))
            self._meta[key] = meta

    def videos(self) -> list[Recording]:
        """The recordings to decode, ground truths first (class docstring)."""
        return self._order

    def frames_wanted(self, rec: Recording) -> range:
        if rec.name not in self._jobs:
            return range(0)
        info = probe(rec.path)
        series = []
        for key, gt in self._jobs[rec.name]:
            cached = None if self.cache is None else self.cache.load(self._cache_id(rec, key, gt))
            if cached is not None:
                self.done[key] = cached
                self._cached.add(key)
            else:
                series.append((key, LandmarkSeries(self.detector, None if gt is None else self.done[gt].boxes)))
        if not series:
            return range(0)
        self._open[rec.name] = (series, info.fps, time.perf_counter())
        return range(info.frame_count)

    def _cache_id(self, rec: Recording, key: str, gt: str | None) -> dict[str, object]:
        return {"video": rec.path, "bbox": rec.bbox, "boxes_of": None if gt is None else self._paths[gt]}

    def consume(self, rec: Recording, index: int, crop: np.ndarray) -> None:
        for _, series in self._open[rec.name][0]:
            series.add(crop)

    def video_done(self, rec: Recording) -> None:
        if rec.name not in self._open:
            return
        series, fps, t0 = self._open.pop(rec.name)
        seconds = time.perf_counter() - t0  # decoding included, shared by the video's series
        gts = dict(self._jobs[rec.name])
        for key, s in series:
            self.done[key] = s.finish(fps, seconds)
            if self.cache is not None:
                self.cache.save(self._cache_id(rec, key, gts[key]), self.done[key])

    def get(self, key: str) -> VideoLandmarks:
        """The landmarks of ``key`` (a recording, ``<sensor>.ground_truth`` or
        ``<recording>.at_gt_box``); its table and summary are written on first use."""
        lm = self.done[key]
        if key not in self.summary:
            write_table(lm, self.out / LANDMARKS_DIR / f"{key}.csv")
            n, found = len(lm.points), int(lm.detected.sum())
            self.summary[key] = {
                **self._meta[key], "frames": n, "face_frames": found, "no_face_frames": n - found,
                "detection_rate": found / n if n else math.nan,
                "frames_per_s": n / lm.seconds if lm.seconds > 0 else math.nan,
                "cached": key in self._cached,  # frames_per_s then is the run that computed it
            }  # fmt: skip
            how = "from the cache" if key in self._cached else f"in {lm.seconds:.1f} s"
            self.log(f"  {key}: landmarks on {found}/{n} frames {how}")
        return lm

    def evaluate(self, run: EvaluationRun) -> list[dict]:
        return self.rows(run.plan, run.subject, run.cleaned, run.settings)

    def summary_fields(self) -> dict[str, object]:
        return {"landmarks": self.summary}

    def rows(self, plan: PairPlan, subject: Subject, cleaned: Subject | None, settings: ProtocolSettings) -> list[dict]:
        """All rows of the family (module docstring), once the pass is done."""
        return pair_rows(plan, self, settings) + groundtruth_rows(subject, cleaned, self, settings.segments)


def _gt_key(sensor: Recording) -> str:
    return f"{sensor.name}.ground_truth"


def ground_truth_kinds(
    subject: Subject, cleaned: Subject | None
) -> list[tuple[Recording, list[tuple[str, Recording]]]]:
    """Each sensor recording with a ground truth, and what is measured against it:
    ``("sensor", the recording)`` and, when cleaned, ``("clean", its cleaned version)``."""
    clean_by_source = {} if cleaned is None else {c.source: c for c in cleaned.recordings if c.condition == "clean"}
    out = []
    for sensor in subject.by_condition("sensor"):
        if sensor.ground_truth is None:
            continue
        kinds = [("sensor", sensor)]
        if sensor.name in clean_by_source:
            kinds.append(("clean", clean_by_source[sensor.name]))
        out.append((sensor, kinds))
    return out


def pair_rows(plan: PairPlan, videos: LandmarkFrames, settings: ProtocolSettings) -> list[dict]:
    """DTW / MAPE of the geometry series and detection rates for every pair of ``plan``."""
    rows = []
    for p in plan.pairs:
        a, b = videos.get(p.reference.name), videos.get(p.other.name)
        if not math.isclose(a.fps, b.fps, rel_tol=1e-3):
            raise ValueError(
                f"{p.reference.name} ({a.fps} fps) and {p.other.name} ({b.fps} fps): series at different rates "
                "cannot be compared frame by frame"
            )
        ga = a.geometry().iloc[slice(*p.reference_frames)]
        gb_whole = b.geometry()
        gb = gb_whole.iloc[slice(*p.other_frames)]
        base = (p.subject, p.session_label, p.segment, p.kind, p.reference.name, p.other.name)
        cmp = compare_series(
            ga,
            gb,
            a.fps,
            GEOMETRY_FEATURES,
            max_shift_s=settings.max_shift_s,
            eps=settings.mape_eps,
            max_gap_frames=settings.max_gap_frames,
            dtw_window_s=settings.dtw_window_s,
            other_context=gb_whole,
            other_start=p.other_frames[0],
        )  # fmt: skip  (one shift over the geometry features: the landmark table's own)
        for r in cmp.itertuples(index=False):
            n = min(r.n_ref - r.nan_ref, r.n_other - r.nan_other)
            rows.append(_row(*base, "lm_dtw", r.feature, r.dtw, n=n))
            rows.append(_row(*base, "lm_mape", r.feature, r.mape, n=r.overlap))
            shift = math.nan if math.isnan(r.mape) else r.best_shift_s  # no MAPE, no shift
            rows.append(_row(*base, "lm_mape_shift_s", r.feature, shift, n=r.overlap))
        for side, lm, (s, e) in (("reference", a, p.reference_frames), ("other", b, p.other_frames)):
            rows.append(_row(*base, "lm_detection", side, lm.detection_rate(s, e), n=e - s))
    return rows


def groundtruth_rows(
    subject: Subject, cleaned: Subject | None, videos: LandmarkFrames, segments: Sequence[str]
) -> list[dict]:
    """NME of S and C against the ground-truth landmarks, and detection rates."""
    rows = []
    for sensor, kinds in ground_truth_kinds(subject, cleaned):
        gt_name = f"{sensor.name}{GT_SUFFIX}"
        gt = videos.get(_gt_key(sensor))
        info = probe(sensor.path)
        for kind, rec in kinds:
            lm = videos.get(rec.name)
            if len(lm.points) != len(gt.points):
                raise ValueError(
                    f"{rec.path}: {len(lm.points)} frames, its ground truth {sensor.ground_truth} has {len(gt.points)}"
                )
            at_box = videos.get(f"{rec.name}.at_gt_box")
            nme = {
                "detected": normalised_mean_error(lm.points, gt.points),
                "gt_box": normalised_mean_error(at_box.points, gt.points),
            }
            for segment in segments:
                rng = frame_range(sensor, segment, info)
                if rng is None:
                    continue
                s, e = rng
                base = (subject.subject, str(sensor.session), segment, kind, gt_name, rec.name)
                for feature, v in nme.items():
                    rows.append(_row(*base, "lm_nme", feature, *_mean_std(v[s:e])))
                rows.append(_row(*base, "lm_detection", "other", lm.detection_rate(s, e), n=e - s))
                rows.append(_row(*base, "lm_detection", "reference", gt.detection_rate(s, e), n=e - s))
    return rows


def landmark_rows(
    plan: PairPlan,
    subject: Subject,
    cleaned: Subject | None,
    settings: ProtocolSettings,
    out: Path,
    log: Callable[[str], None],
    detector: LandmarkDetector | None = None,
) -> tuple[list[dict], dict[str, dict]]:
    """The family on its own (the protocol runs :class:`LandmarkFrames` in its shared
    pass instead): all rows (module docstring) and the per-video summary."""
    frames = LandmarkFrames(plan, subject, cleaned, out, log, detector, settings.landmark_cache)
    decode_once(frames.videos(), [frames], ANALYSIS_SIZE, log)
    return frames.rows(plan, subject, cleaned, settings), frames.summary


def headline(results: pd.DataFrame) -> dict[str, float]:
    """Whole-video means over the ground-truth rows, for one-line summaries:
    ``nme_<kind>`` (at the ground-truth face box), ``nme_detected_<kind>``,
    ``detection_<kind>`` for kind ``sensor``/``clean``, and ``detection_gt``."""
    d = results[(results["metric"].isin(["lm_nme", "lm_detection"])) & (results["segment"] == "whole")]
    d = d[d["reference"].astype(str).str.endswith(GT_SUFFIX)]
    out: dict[str, float] = {}
    for kind, g in d.groupby("kind"):
        pick = {
            f"nme_{kind}": (g["metric"] == "lm_nme") & (g["feature"] == "gt_box"),
            f"nme_detected_{kind}": (g["metric"] == "lm_nme") & (g["feature"] == "detected"),
            f"detection_{kind}": (g["metric"] == "lm_detection") & (g["feature"] == "other"),
        }
        for key, sel in pick.items():
            out[key] = float(g.loc[sel, "value"].mean())
        out["detection_gt"] = float(
            d.loc[(d["metric"] == "lm_detection") & (d["feature"] == "reference"), "value"].mean()
        )
    return out


def headline_text(results: pd.DataFrame) -> str | None:
    """``landmark error vs ground truth: sensor … → clean …; detection rate …`` or None
    without ground-truth landmark rows."""
    h = headline(results)
    if not h:
        return None

    def err(k: str) -> str:
        v = h.get(k, math.nan)
        return "–" if math.isnan(v) else f"{v:.3f}"

    def pct(k: str) -> str:
        v = h.get(k, math.nan)
        return "–" if math.isnan(v) else f"{100 * v:.0f} %"

    return (
        f"landmark error vs ground truth (NME, dlib 68 points): sensor {err('nme_sensor')} "
        f"-> clean {err('nme_clean')}; "
        f"detection rate sensor {pct('detection_sensor')} -> clean {pct('detection_clean')} "
        f"(ground truth {pct('detection_gt')})"
    )


class LandmarkCache:
    """Finished :class:`~evaluation.metrics.landmarks.VideoLandmarks` on disk, one ``.npz``
    per (video content, bbox, analysis size, detector, ground-truth boxes' video), written
    under a temporary name and renamed; an unreadable entry is recomputed."""

    VERSION = 1

    def __init__(self, folder: Path, detector: LandmarkDetector) -> None:
        self.folder = folder
        predictor = Path(detector.predictor_path)
        self._detector = {
            "upsample": detector.upsample,
            "predictor": [predictor.name, predictor.stat().st_size if predictor.is_file() else None],
            "size": ANALYSIS_SIZE,
        }

    def path(self, ident: dict[str, object]) -> Path:
        from evaluation.metrics.facial.series import video_content_id

        video, boxes_of = Path(str(ident["video"])), ident["boxes_of"]
        doc = {
            "version": self.VERSION,
            "video": video_content_id(video),
            "bbox": None if ident["bbox"] is None else [int(v) for v in ident["bbox"]],  # type: ignore[attr-defined]
            "boxes_of": None if boxes_of is None else video_content_id(Path(str(boxes_of))),
            **self._detector,
        }
        digest = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:20]
        return self.folder / f"{video.stem}-{digest}.npz"

    def load(self, ident: dict[str, object]) -> VideoLandmarks | None:
        path = self.path(ident)
        if not path.is_file():
            return None
        try:
            with np.load(path) as z:
                return VideoLandmarks(z["points"], z["boxes"], float(z["fps"]), float(z["seconds"]))
        except (OSError, ValueError, KeyError):
            return None

    def save(self, ident: dict[str, object], lm: VideoLandmarks) -> None:
        path = self.path(ident)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp.npz")
        np.savez(tmp, points=lm.points, boxes=lm.boxes, fps=lm.fps, seconds=lm.seconds)
        os.replace(tmp, path)
