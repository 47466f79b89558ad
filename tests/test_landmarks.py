"""The ``landmarks`` metric family: dlib's real 68-point models on the synthetic subject,
the geometry features on hand-made landmark sets, rows, report tables, errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evaluation.landmark_rows import headline_text, landmark_rows
from evaluation.metrics.face_geometry import (
    GEOMETRY_FEATURES,
    geometry_features,
    interocular,
    normalised_mean_error,
)
from evaluation.metrics.landmarks import (
    POINT_COLUMNS,
    LandmarkDetector,
    model_dir,
    video_landmarks,
    weight_files,
)
from evaluation.pairs import build_pairs
from evaluation.weight_files import MissingWeightsError
from evaluation.weights import check_weights
from sensor_removal.core.manifest import load_manifest
from sensor_removal.core.video import iter_frames, write_video
from tests.conftest import write_cleaned_recordings

# --------------------------------------------------------------------- hand-made faces


def neutral_face() -> np.ndarray:
    """A hand-made frontal face in the iBUG 68-point order (image px, y down)."""
    p = np.zeros((68, 2))
    p[0:17] = [
        (40 + 120 * (1 - math.cos(math.pi * t / 16)) / 2, 100 + 90 * math.sin(math.pi * t / 16)) for t in range(17)
    ]
    p[17:22] = [(55 + 12 * i, 78 - 4 * math.sin(math.pi * i / 4)) for i in range(5)]  # right brow, outer->inner
    p[22:27] = [(113 + 12 * i, 78 - 4 * math.sin(math.pi * i / 4)) for i in range(5)]  # left brow, inner->outer
    p[27:31] = [(100, 95 + 10 * i) for i in range(4)]  # nose bridge down to the tip
    p[31:36] = [(88 + 6 * i, 138 + (2 if i == 2 else 0)) for i in range(5)]  # nose base
    for eye, x0 in ((36, 60), (42, 112)):  # corners at x0 and x0+28, y 100
        p[eye : eye + 6] = [(x0, 100), (x0 + 9, 95), (x0 + 19, 95), (x0 + 28, 100), (x0 + 19, 105), (x0 + 9, 105)]
    outer = [(80, 160), (87, 155), (94, 153), (100, 154), (106, 153), (113, 155), (120, 160),
             (113, 166), (106, 169), (100, 170), (94, 169), (87, 166)]  # fmt: skip
    p[48:60] = outer
    p[60:68] = [(84, 160), (94, 159), (100, 159), (106, 159), (116, 160), (106, 161), (100, 161), (94, 161)]
    return p


def test_neutral_face_features_are_plausible() -> None:
    f = {k: float(v[0]) for k, v in geometry_features(neutral_face()).items()}
    assert list(f) == list(GEOMETRY_FEATURES)
    assert interocular(neutral_face())[0] == pytest.approx(80.0)
    assert f["mouth_open"] == pytest.approx(2 / 80)
    assert f["lip_corner_width"] == pytest.approx(40 / 80)
    assert f["ear_right"] == pytest.approx(f["ear_left"]) and 0.2 < f["ear_right"] < 0.5


def test_open_mouth_raises_mouth_opening_only_there() -> None:
    closed = neutral_face()
    opened = closed.copy()
    opened[[55, 56, 57, 58, 59, 65, 66, 67], 1] += 20  # jaw drop: lower lip moves down
    a, b = geometry_features(closed), geometry_features(opened)
    assert b["mouth_open"][0] > a["mouth_open"][0] + 0.2
    for k in ("inner_brow_height", "outer_brow_height", "ear_right", "ear_left", "nose_lip", "lip_corner_width"):
        assert b[k][0] == pytest.approx(a[k][0])


def test_closing_eyes_lowers_eye_aspect_ratio() -> None:
    open_ = neutral_face()
    closed = open_.copy()
    closed[[37, 38, 43, 44], 1] = 104  # upper lids down to the lower lids
    a, b = geometry_features(open_), geometry_features(closed)
    assert b["ear_right"][0] < 0.25 * a["ear_right"][0]
    assert b["ear_left"][0] < 0.25 * a["ear_left"][0]
    assert b["mouth_open"][0] == pytest.approx(a["mouth_open"][0])


def test_brow_raise_smile_and_scale() -> None:
    face = neutral_face()
    raised = face.copy()
    raised[17:27, 1] -= 10
    smile = face.copy()
    smile[48, 0] -= 8
    smile[54, 0] += 8
    smile[[60, 64], 0] += [-8, 8]
    g0, gr, gs = geometry_features(face), geometry_features(raised), geometry_features(smile)
    assert (
        gr["inner_brow_height"][0] > g0["inner_brow_height"][0]
        and gr["outer_brow_height"][0] > g0["outer_brow_height"][0]
    )
    assert gs["lip_corner_width"][0] > g0["lip_corner_width"][0] + 0.15
    # Normalised by the inter-ocular distance: a bigger face gives the same features.
    big = geometry_features(face * 2.5 + 7)
    for k in GEOMETRY_FEATURES:
        assert big[k][0] == pytest.approx(g0[k][0])


def test_nme_and_nan_frames() -> None:
    face = neutral_face()
    frames = np.stack([face, face + [8.0, 0.0], np.full((68, 2), np.nan)])
    nme = normalised_mean_error(frames, np.stack([face, face, face]))
    assert nme[0] == 0.0 and nme[1] == pytest.approx(8 / 80) and math.isnan(nme[2])
    feats = geometry_features(frames)
    assert all(math.isnan(v[2]) and not math.isnan(v[0]) for v in feats.values())
    with pytest.raises(ValueError, match=r"\(\.\.\., 68, 2\)"):
        geometry_features(np.zeros((5, 2)))


# ------------------------------------------------------------------ the real dlib models


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sensor_removal.synthetic import make_subject

    return make_subject(tmp_path_factory.mktemp("lm") / "synthetic", seconds=1.5, fps=8.0, size=(64, 64), seed=0)


@pytest.fixture(scope="module")
def detector() -> LandmarkDetector:
    return LandmarkDetector()


def test_models_come_from_the_package_and_are_checked() -> None:
    files = weight_files()
    assert files[0].path.parent == model_dir() and files[0].path.name == "shape_predictor_68_face_landmarks.dat"
    assert files[0].present and files[0].path.stat().st_size > 90e6  # the real predictor, ~95 MB
    assert check_weights(["landmarks"])[0].path == files[0].path


def test_missing_model_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import evaluation.metrics.landmarks as lm

    monkeypatch.setattr(lm, "model_dir", lambda: tmp_path / "nowhere")
    with pytest.raises(MissingWeightsError) as err:
        check_weights(["landmarks"])
    msg = str(err.value)
    assert (
        str(tmp_path / "nowhere" / "shape_predictor_68_face_landmarks.dat") in msg and "face-recognition-models" in msg
    )
    with pytest.raises(MissingWeightsError):
        lm.LandmarkDetector()


def test_real_models_on_the_synthetic_subject(synth: Path, detector: LandmarkDetector) -> None:
    subject = load_manifest(synth)
    for rec in subject.by_condition("sensor"):
        gt = video_landmarks(rec.ground_truth, rec.bbox, detector)
        n = len(gt.points)
        assert gt.points.shape == (n, 68, 2) and n == 12
        # Measured: the face is found on every ground-truth frame (12/12, all four videos).
        assert gt.detection_rate() >= 0.9
        geo = gt.geometry()
        assert list(geo.columns) == list(GEOMETRY_FEATURES) and len(geo) == n
        assert np.isfinite(geo.to_numpy()[gt.detected]).all()
        table = gt.table()
        assert list(table.columns) == ["time_s", "face", *GEOMETRY_FEATURES, *POINT_COLUMNS]
        # The predictor placed in the ground truth's own boxes reproduces its points.
        again = video_landmarks(rec.ground_truth, rec.bbox, detector, boxes=gt.boxes)
        nme = normalised_mean_error(again.points, gt.points)
        assert np.nanmax(nme) < 1e-9
        # On the sensor frames, at the ground truth's face boxes: finite, non-zero error.
        at_box = normalised_mean_error(video_landmarks(rec.path, rec.bbox, detector, boxes=gt.boxes).points, gt.points)
        assert np.isfinite(at_box[gt.detected]).all() and 0 < np.nanmean(at_box) < 0.5


def test_a_frame_without_a_face_is_nan_and_counted(synth: Path, detector: LandmarkDetector, tmp_path: Path) -> None:
    rec = load_manifest(synth).by_condition("normal")[0]
    frames = np.stack([f for _, f in iter_frames(rec.path)])
    frames[3] = 128  # a blank frame
    path = write_video(tmp_path / "blank.mp4", frames, fps=8.0, codec="h264-lossless")
    lm = video_landmarks(path, rec.bbox, detector)
    assert not lm.detected[3] and np.isnan(lm.points[3]).all() and np.isnan(lm.boxes[3]).all()
    assert lm.detected.sum() == len(frames) - 1
    assert lm.detection_rate() == pytest.approx((len(frames) - 1) / len(frames))
    assert np.isnan(lm.geometry().iloc[3].to_numpy()).all()


def count_decodes(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Count the decoding passes per video file of every project module that decodes
    (``iter_frames`` wherever it was imported), so that a family decoding on its own shows."""
    import sys

    import sensor_removal.core.video as video

    real = video.iter_frames
    counts: dict[str, int] = {}

    def counting(path, *args, **kwargs):
        counts[Path(path).name] = counts.get(Path(path).name, 0) + 1
        return real(path, *args, **kwargs)

    for name, module in list(sys.modules.items()):
        if name.split(".")[0] in ("evaluation", "sensor_removal") and getattr(module, "iter_frames", None) is real:
            monkeypatch.setattr(module, "iter_frames", counting)
    return counts


@pytest.mark.usefixtures("single_thread")
def test_protocol_rows_summary_and_report(
    synth: Path, detector: LandmarkDetector, fake_torch_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import evaluation.landmark_rows  # noqa: F401  (imported before the decodes are counted)
    import evaluation.metrics.perceptual  # noqa: F401
    from evaluation.protocol import run_protocol
    from evaluation.report import make_report
    from evaluation.settings import ProtocolSettings

    cleaned = write_cleaned_recordings(synth, tmp_path / "cleaned", size=64)
    out = tmp_path / "res"
    decodes = count_decodes(monkeypatch)
    settings = ProtocolSettings(
        metrics=("landmarks", "lpips", "temporal"), lpips_pairs=2, segments=("whole",), device="cpu"
    )
    run_protocol(synth, cleaned, out, settings, log=lambda m: None)
    # One decoding pass per video for every family, the landmarks' ground truths included
    # (read first, for their face boxes), and S and C once for both of their landmark sets.
    subject, clean_subject = load_manifest(synth), load_manifest(cleaned, require_domains=("clean",))
    videos = [r.path.name for r in subject.recordings + clean_subject.recordings]
    videos += [r.ground_truth.name for r in subject.by_condition("sensor")]
    assert decodes == dict.fromkeys(videos, 1)
    monkeypatch.undo()
    df = pd.read_csv(out / "results.csv")
    assert {"lpips", "temporal"} < set(df["metric"])
    df = df[df["metric"].str.startswith("lm_")]
    assert set(df["metric"]) == {"lm_dtw", "lm_mape", "lm_mape_shift_s", "lm_detection", "lm_nme"}
    # The shared pass gives what the per-video functions give (same crops, same models).
    rec = subject.by_condition("sensor")[0]
    gt = video_landmarks(rec.ground_truth, rec.bbox, detector)
    for name, expected in (
        (f"{rec.name}.ground_truth", gt),
        (rec.name, video_landmarks(rec.path, rec.bbox, detector)),
        (f"{rec.name}.at_gt_box", video_landmarks(rec.path, rec.bbox, detector, boxes=gt.boxes)),
    ):
        table = pd.read_csv(out / "landmarks" / f"{name}.csv", index_col="frame")
        pd.testing.assert_frame_equal(table, expected.table(), check_names=False, check_index_type=False)
    pairs = df[~df["reference"].str.endswith(":ground_truth")]
    assert set(pairs["kind"]) == {"baseline", "sensor", "clean"}
    assert set(pairs[pairs["metric"] == "lm_dtw"]["feature"]) == set(GEOMETRY_FEATURES)
    # Whole videos only: dtaidistance's distance_fast returns inf now and then on series of
    # 2-3 frames (the tiny subject's sentence segment), which real segments never are.
    base = pairs[
        (pairs["kind"] == "baseline") & pairs["metric"].isin(["lm_dtw", "lm_mape"]) & (pairs["segment"] == "whole")
    ]
    assert len(base) == 2 * len(GEOMETRY_FEATURES) and np.isfinite(base["value"]).all()
    gt = df[df["reference"].str.endswith(":ground_truth") & (df["segment"] == "whole")].set_index(
        ["other", "metric", "feature"]
    )["value"]
    for s in ("s1_sensor_a", "s2_sensor_b"):
        assert gt[(s, "lm_detection", "reference")] >= 0.9  # ground truth frames: measured 1.0
        # Cleaned = the ground truth itself: the face is found and the error is small.
        assert gt[(f"{s}_clean", "lm_detection", "other")] >= 0.9
        assert (
            math.isfinite(gt[(f"{s}_clean", "lm_nme", "detected")]) and gt[(f"{s}_clean", "lm_nme", "detected")] < 0.05
        )
        assert math.isfinite(gt[(s, "lm_nme", "gt_box")])
        assert gt[(s, "lm_nme", "gt_box")] > gt[(f"{s}_clean", "lm_nme", "gt_box")]
    summary = json.loads((out / "summary.json").read_text())
    lm = summary["landmarks"]
    assert lm["s1_normal"]["frames"] == 12 and lm["s1_normal"]["detection_rate"] >= 0.9
    assert lm["s1_sensor_a"]["no_face_frames"] == 12 - lm["s1_sensor_a"]["face_frames"]
    table = pd.read_csv(out / "landmarks" / "s1_normal.csv", index_col="frame")
    assert table.shape == (12, 2 + len(GEOMETRY_FEATURES) + 136)
    assert (out / "landmarks" / "s1_sensor_a.ground_truth.csv").is_file()

    text = headline_text(df)
    assert text.startswith("landmark error vs ground truth") and "detection rate sensor" in text and "-> clean" in text

    written = make_report([out], tmp_path / "report")
    md = written["report.md"].read_text()
    assert "Landmarks — geometry time series" in md and "Landmarks — error against the ground truth" in md
    t = pd.read_csv(written["table_landmarks_groundtruth"])
    cell = t[(t["row"] == "C (cleaned)") & (t["metric"] == "detection")]["mean"]
    assert float(cell.iloc[0]) >= 0.9


def test_rows_keep_nan_when_no_face_is_ever_found(synth: Path, detector: LandmarkDetector, tmp_path: Path) -> None:
    """A video whose face is never found gives NaN series rows (n = 0), detection 0, no crash."""
    import shutil

    from evaluation.settings import ProtocolSettings

    copy = shutil.copytree(synth.parent, tmp_path / "copy")
    subject = load_manifest(copy / synth.name)
    rec = subject.by_condition("sensor")[0]
    write_video(rec.path, np.full((12, 64, 64, 3), 128, np.uint8), fps=8.0, codec="h264-lossless")
    plan = build_pairs(subject, None, ("whole",))
    rows, summary = landmark_rows(
        plan, subject, None, ProtocolSettings(metrics=("landmarks",)), tmp_path, lambda m: None, detector
    )
    df = pd.DataFrame(rows)
    mine = df[(df["other"] == rec.name) & ~df["reference"].str.endswith(":ground_truth")]
    dtw = mine[mine["metric"] == "lm_dtw"]
    assert len(dtw) == len(GEOMETRY_FEATURES) and dtw["value"].isna().all() and (dtw["n"] == 0).all()
    assert (mine[(mine["metric"] == "lm_detection") & (mine["feature"] == "other")]["value"] == 0).all()
    assert summary[rec.name]["no_face_frames"] == 12 and summary[rec.name]["detection_rate"] == 0


@pytest.mark.usefixtures("single_thread")
def test_landmark_cache_skips_dlib_for_videos_it_holds(synth: Path, detector: LandmarkDetector, tmp_path: Path) -> None:
    """Our post-fit benchmark evaluates twice (paper: repaint; ours: composite) with one
    landmark cache: the second run takes N, S and the ground truths from it (same rows),
    and only a video whose content changed goes through dlib again."""
    from evaluation.settings import ProtocolSettings

    cleaned = write_cleaned_recordings(synth, tmp_path / "cleaned", size=64)
    subject, clean_subject = load_manifest(synth), load_manifest(cleaned, require_domains=("clean",))
    settings = ProtocolSettings(metrics=("landmarks",), segments=("whole",), landmark_cache=tmp_path / "lm_cache")
    plan = build_pairs(subject, clean_subject, settings.segments)
    first, s1 = landmark_rows(plan, subject, clean_subject, settings, tmp_path / "a", lambda m: None, detector)
    assert not any(v["cached"] for v in s1.values()) and len(list((tmp_path / "lm_cache").glob("*.npz"))) == len(s1)
    # One cleaned video changes content (another frame order): only its two series are recomputed.
    changed = clean_subject.recordings[0]
    frames = [f for _, f in iter_frames(changed.path)]
    write_video(changed.path, frames[::-1], fps=8.0)
    clean_subject = load_manifest(cleaned, require_domains=("clean",))
    again, s2 = landmark_rows(plan, subject, clean_subject, settings, tmp_path / "b", lambda m: None, detector)
    recomputed = {k for k, v in s2.items() if not v["cached"]}
    assert recomputed == {changed.name, f"{changed.name}.at_gt_box"}
    a, b = pd.DataFrame(first), pd.DataFrame(again)
    key = ["session", "segment", "kind", "reference", "other", "metric", "feature"]
    same = a.merge(b, on=key, suffixes=("_a", "_b"))
    same = same[~same["other"].str.startswith(changed.name)]
    assert len(same) > 0
    np.testing.assert_allclose(same["value_a"], same["value_b"], rtol=0, atol=1e-12, equal_nan=True)
