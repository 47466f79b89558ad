"""The headline measurement (ours): does cleaning restore the expression-muscle relation?

For every sensor recording with an ``emg:`` entry, expression features are taken from
(a) its ground-truth video (synthetic subject only), (b) the sensor video itself and
(c) the cleaned video (a cleaned-recordings manifest, ``source:`` = the sensor
recording). The same mapping (:mod:`sensor_removal.emg.mapping`) is fitted and scored
on held-out takes from each source in both directions; if cleaning works, (c) scores
like (a) and better than (b).

Face boxes: dlib's detector often finds no face on a sensor video. So that the
comparison measures what the pixels inside the face show, the predictor runs on every
source in the face boxes found on the ground truth (synthetic) or, for real subjects,
on the cleaned video; the detection rate of each source is reported beside the scores.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from evaluation.metrics.face_geometry import GEOMETRY_FEATURES
from sensor_removal.core.manifest import Recording, Subject
from sensor_removal.core.video import probe
from sensor_removal.emg.chain import DEFAULT_CHAIN, ChainSettings
from sensor_removal.emg.features import (
    FeatureSeries,
    au_features,
    joined,
    landmark_features,
    video_landmark_points,
)
from sensor_removal.emg.mapping import DEFAULT_MAPPING, MappingSettings, cross_validate
from sensor_removal.emg.metrics import channel_scores, pearson
from sensor_removal.emg.recording import (
    EmgRecording,
    Envelopes,
    check_long_enough,
    envelopes,
    load_emg,
)

SOURCES: tuple[str, ...] = ("ground_truth", "sensor", "cleaned")
DIRECTIONS: tuple[str, ...] = ("exp2emg", "emg2exp")


@dataclass(frozen=True)
class Take:
    """One sensor recording: its envelopes and its features from each available source."""

    name: str
    fps: float
    envelopes: Envelopes
    features: dict[str, FeatureSeries]
    detection: dict[str, float]
    truth: dict[str, np.ndarray] | None = None


def _cleaned_of(cleaned: Subject | None, rec: Recording) -> Recording | None:
    if cleaned is None:
        return None
    found = [r for r in cleaned.recordings if r.source == rec.name]
    return found[0] if found else None


def _truth_path(rec: Recording) -> Path | None:
    if rec.emg is None:
        return None
    p = rec.emg.file.with_name(rec.emg.file.name.replace(".emg.npz", ".emg.truth.npz"))
    return p if p != rec.emg.file and p.is_file() else None


def load_take(
    rec: Recording,
    cleaned: Subject | None,
    cache: Path,
    chain: ChainSettings = DEFAULT_CHAIN,
    emg: EmgRecording | None = None,
    au_analyzer: object | None = None,
) -> Take:
    """Features of every available source of ``rec`` and its synchronised envelopes
    (``emg``: the recording's checked sEMG, when already loaded; ``au_analyzer``: a
    :class:`evaluation.metrics.facial.FacialAnalyzer` whose py-feat AUs are added to the
    landmark features)."""
    info = probe(rec.path)
    emg = load_emg(rec, chain) if emg is None else emg
    check_long_enough(emg, info.frame_count, info.fps)
    videos: dict[str, tuple[Path, tuple[int, int, int, int]]] = {"sensor": (rec.path, rec.bbox)}
    if rec.ground_truth is not None:
        videos["ground_truth"] = (rec.ground_truth, rec.bbox)
    clean_rec = _cleaned_of(cleaned, rec)
    if clean_rec is not None:
        videos["cleaned"] = (clean_rec.path, clean_rec.bbox)
    ref = "ground_truth" if "ground_truth" in videos else ("cleaned" if "cleaned" in videos else None)
    points: dict[str, np.ndarray] = {}
    boxes = None
    if ref is not None:
        points[ref], boxes = video_landmark_points(*videos[ref], cache / f"{rec.name}.{ref}.npz")
    for source, (path, bbox) in videos.items():
        if source not in points:
            points[source], _ = video_landmark_points(path, bbox, cache / f"{rec.name}.{source}.npz", boxes=boxes)
    n = min(len(p) for p in points.values())
    features = {s: landmark_features(p[:n]) for s, p in points.items()}
    if au_analyzer is not None:
        for source, (path, bbox) in videos.items():
            features[source] = joined(features[source], au_features(path, bbox, au_analyzer, cache / "facial"))
        n = min(len(f.values) for f in features.values())
        features = {s: FeatureSeries(f.values[:n], f.names, f.valid[:n]) for s, f in features.items()}
    detection = {s: float(f.valid.mean()) for s, f in features.items()}
    for source, rate in detection.items():
        if rate == 0.0:
            raise ValueError(
                f"{videos[source][0]} (recording {rec.name!r}, {source} video): "
                f"no face (landmarks{' or AUs' if au_analyzer is not None else ''}) in any of its {n} "
                "frames; the mapping needs them"
                " (check the bbox, or give the cleaned manifest so its face boxes are used)"
            )
    sync_source = features[ref or "sensor"]
    env = envelopes(emg, info.fps, n, sync_source.select(GEOMETRY_FEATURES))
    truth_file = _truth_path(rec)
    truth = None
    if truth_file is not None:
        from sensor_removal.synthetic.emg import load_truth

        truth = load_truth(truth_file)
    return Take(rec.name, info.fps, env, features, detection, truth)


def subject_takes(
    subject: Subject,
    cleaned: Subject | None,
    cache: Path,
    chain: ChainSettings = DEFAULT_CHAIN,
    au_analyzer: object | None = None,
) -> list[Take]:
    """Every sensor recording of ``subject`` that has an ``emg:`` entry."""
    recs = [r for r in subject.by_condition("sensor") if r.emg is not None]
    if len(recs) < 2:
        raise ValueError(
            f"{subject.manifest_path}: needs at least 2 sensor recordings with an emg: entry (held-out takes);"
            f" found {len(recs)}"
        )
    # Every sEMG file is read and checked before any landmark is computed or cached.
    emgs = [load_emg(r, chain) for r in recs]
    for r, e in zip(recs, emgs, strict=True):
        info = probe(r.path)
        check_long_enough(e, info.frame_count, info.fps)
    if au_analyzer is not None:
        au_analyzer.require_weights()  # type: ignore[attr-defined]  # before any work
    return [load_take(r, cleaned, cache, chain, e, au_analyzer) for r, e in zip(recs, emgs, strict=True)]


def _pairs(
    takes: list[Take], source: str, direction: str
) -> tuple[list[np.ndarray], list[np.ndarray], tuple[str, ...]]:
    feats = [t.features[source] for t in takes]
    envs = [t.envelopes.values for t in takes]
    if direction == "exp2emg":
        return [f.values for f in feats], envs, takes[0].envelopes.channels
    return envs, [f.select(GEOMETRY_FEATURES) for f in feats], GEOMETRY_FEATURES


def shuffled_time(ys: list[np.ndarray], block: int = 30, seed: int = 0) -> list[np.ndarray]:
    """The shuffled-time control: each take's target cut into blocks of ``block``
    frames (2 s at 15 fps) put in a seeded random order. Shapes and values stay; the
    timing relation to the inputs goes (a plain roll keeps it where a take repeats)."""
    rng = np.random.default_rng(seed)
    out = []
    for y in ys:
        blocks = [y[i : i + block] for i in range(0, len(y), block)]
        out.append(np.concatenate([blocks[k] for k in rng.permutation(len(blocks))]))
    return out


def score(
    takes: list[Take], source: str, direction: str, settings: MappingSettings = DEFAULT_MAPPING, control: bool = False
) -> list[dict]:
    """Per-channel held-out scores of one source and direction (``control``: the same
    fit on time-shuffled targets, which a real relation must beat)."""
    xs, ys, names = _pairs(takes, source, direction)
    if control:
        ys = shuffled_time(ys)
    preds = cross_validate(xs, ys, settings)
    valid = [t.features[source].valid for t in takes]
    rows = channel_scores(ys, preds, names, takes[0].fps, valid)
    kind = "control" if control else source
    return [{"source": kind, "direction": direction, "model": settings.model, **row} for row in rows]


def chain_rows(takes: list[Take]) -> list[dict]:
    """Synthetic only: envelope vs true muscle drive per channel (r), and the recovered
    offset and lag against the truth (s)."""
    rows = []
    for t in takes:
        if t.truth is None:
            continue
        drives = t.truth["drives"]
        n = min(len(drives), len(t.envelopes.values))
        for c, name in enumerate(t.envelopes.channels):
            ch = list(t.truth["channels"]).index(name)
            # the envelope is clock-aligned; the drive shows lag_s later in the video
            k = int(round(float(t.truth["lag_s"]) * t.fps))
            r = pearson(t.envelopes.values[: n - k, c], drives[k:n, ch])
            rows.append({"take": t.name, "channel": name, "r_drive": r})
        rows.append(
            {
                "take": t.name,
                "channel": "(sync)",
                "offset_error_s": (t.envelopes.offset_s or np.nan) - float(t.truth["offset_s"]),
                "lag_error_s": (t.envelopes.lag_s if t.envelopes.lag_s is not None else np.nan)
                - float(t.truth["lag_s"]),
            }
        )
    return rows


def headline(takes: list[Take], settings: MappingSettings = DEFAULT_MAPPING, with_control: bool = True) -> list[dict]:
    """Scores of every available source, both directions (plus the shuffled control on
    the best source available)."""
    rows: list[dict] = []
    sources = [s for s in SOURCES if all(s in t.features for t in takes)]
    for direction in DIRECTIONS:
        for source in sources:
            rows += score(takes, source, direction, settings)
        if with_control:
            rows += score(
                takes, sources[0] if sources[0] != "sensor" else sources[-1], direction, settings, control=True
            )
    for row in rows:
        src = row["source"]
        row["face_found"] = float(np.mean([t.detection.get(src, np.nan) for t in takes])) if src in SOURCES else np.nan
    return rows


def with_model(settings: MappingSettings, model: str) -> MappingSettings:
    return replace(settings, model=model)  # type: ignore[arg-type]
