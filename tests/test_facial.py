"""Facial analysis with py-feat (paper Sec. 4.3), offline, on stand-in weights.

py-feat's real constructors and ``detect`` run on the stand-ins of
``tests/feat_standins.py`` (a RetinaFace that detects bright blobs, random landmark /
AU / emotion models), so every number here is meaningless: the tests check plumbing —
frame indexing, NaN rows for frames without a face, face choice, the result cache,
stride, where weights are looked up, and that nothing reaches the network.
"""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import evaluation.metrics.facial as facial
import evaluation.metrics.facial.analyzer as facial_analyzer
from evaluation.metrics.facial import (
    AU_COLUMNS,
    EMOTION_COLUMNS,
    EXCLUDED_AUS,
    FEAT_WEIGHTS,
    FETCH_COMMAND,
    FacialAnalyzer,
    FacialWeightsMissing,
    FeatModelSet,
    feat_cache_dir,
    feat_hub_offline,
    missing_feat_weights,
    select_face,
)
from sensor_removal.core.video import write_video
from tests.feat_standins import (
    STANDIN_BOX,
    STANDIN_REVISION,
    face_frame,
    face_score,
    hub_path,
    write_hub_file,
    write_standin_feat_weights,
)

FEATURES = list(AU_COLUMNS) + list(EMOTION_COLUMNS)

# The main test video (128 x 128, lossless): faces at the centre, a frame without a face
# (dark texture only) and a frame with two faces, the brighter (higher score) at (96, 96).
DARK_FRAME = 2
TWO_FACES_FRAME = 3
N_FRAMES = 5


def _main_frames() -> list[np.ndarray]:
    frames = [face_frame(faces=((64, 64, 215 + 5 * i),), seed=i) for i in range(N_FRAMES)]
    frames[DARK_FRAME] = face_frame(faces=(), seed=DARK_FRAME)
    frames[TWO_FACES_FRAME] = face_frame(faces=((32, 32, 200), (96, 96, 240)), seed=TWO_FACES_FRAME)
    return frames


def _centre(faces: pd.DataFrame, frame: int) -> tuple[float, float]:
    row = faces.loc[frame]
    return row.FaceRectX + row.FaceRectWidth / 2, row.FaceRectY + row.FaceRectHeight / 2


class _NoNetwork:
    """Any socket connection fails the test (py-feat and the hub must stay offline)."""

    def __init__(self) -> None:
        self.attempts: list[object] = []

    def __call__(self, sock, address):  # replaces socket.socket.connect
        self.attempts.append(address)
        raise AssertionError(f"network access attempted: {address}")


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def feat_hub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One hub-cache folder with the v1 stand-ins (v2's are added by ``feat_hub_v2``)."""
    root = tmp_path_factory.mktemp("feat-hub")
    write_standin_feat_weights(root, "v1")
    return root


@pytest.fixture(scope="session")
def feat_hub_v2(feat_hub: Path) -> Path:
    write_standin_feat_weights(feat_hub, "v2")
    return feat_hub


@pytest.fixture(scope="module")
def main_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("facial-video") / "subject.mp4"
    write_video(path, _main_frames(), fps=10.0, codec="h264-lossless")
    return path


@pytest.fixture(scope="module")
def v1_run(feat_hub: Path, main_video: Path, tmp_path_factory: pytest.TempPathFactory):
    """One full v1 analysis (real Detectorv1, real detect) with sockets blocked; records
    whether the hub was offline while the detector was built."""
    import feat
    from huggingface_hub import constants

    cache = tmp_path_factory.mktemp("facial-cache")
    analyzer = FacialAnalyzer(weights_dir=feat_hub, device="cpu", batch_size=1)  # 4 frames per detect()
    offline_at_build: list[bool] = []
    real = feat.Detectorv1

    def recording(*args, **kwargs):
        offline_at_build.append(constants.is_offline_mode())
        return real(*args, **kwargs)

    guard = _NoNetwork()
    offline_before = constants.HF_HUB_OFFLINE
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(feat, "Detectorv1", recording)
        mp.setattr(socket.socket, "connect", guard)
        series = analyzer.analyze_video(main_video, cache_dir=cache)
    return {
        "analyzer": analyzer,
        "series": series,
        "cache": cache,
        "offline_at_build": offline_at_build,
        "offline_before": offline_before,
        "offline_after": constants.HF_HUB_OFFLINE,
        "grad_after": torch.is_grad_enabled(),
        "guard": guard,
    }


@pytest.fixture(scope="module")
def v2_analyzer(feat_hub_v2: Path) -> FacialAnalyzer:
    return FacialAnalyzer(detector="v2", weights_dir=feat_hub_v2, device="cpu", batch_size=2)


def _forbid_detector(mp: pytest.MonkeyPatch) -> None:
    """Building a py-feat detector or decoding a frame now fails the test."""
    import feat

    def boom(*args, **kwargs):
        raise AssertionError("a py-feat detector was built")

    def no_decoding(*args, **kwargs):
        raise AssertionError("frames were decoded")

    mp.setattr(feat, "Detectorv1", boom)
    mp.setattr(feat, "Detectorv2", boom)
    mp.setattr(facial_analyzer, "iter_frames", no_decoding)


# ------------------------------------------------------------------ columns, weights list


def test_columns_match_installed_py_feat() -> None:
    from feat.multitask import AU_COLUMNS_V2, EMOTION_COLUMNS_V2
    from feat.pretrained import AU_LANDMARK_MAP
    from feat.utils import FEAT_EMOTION_COLUMNS

    assert list(AU_COLUMNS) == list(AU_LANDMARK_MAP["Feat"])
    assert list(EMOTION_COLUMNS) == list(FEAT_EMOTION_COLUMNS)
    assert list(AU_COLUMNS_V2) == list(AU_COLUMNS)
    assert sorted(facial._V2_EMOTIONS[c] for c in EMOTION_COLUMNS_V2) == sorted(EMOTION_COLUMNS)
    assert EXCLUDED_AUS == ("AU43",) and "AU43" in AU_COLUMNS


def test_weight_files_are_the_ones_py_feat_loads() -> None:
    assert FEAT_WEIGHTS["v1"] == (
        ("py-feat/retinaface_r34", "model.safetensors"),
        ("py-feat/mobilefacenet", "mobilefacenet_model_best.pth.tar"),
        ("py-feat/xgb_au", "xgb_au_classifier_v2.skops"),
        ("py-feat/resmasknet", "config.json"),
        ("py-feat/resmasknet", "ResMaskNet_Z_resmasking_dropout1_rot30.pth"),
    )
    assert FEAT_WEIGHTS["v2"] == (
        ("py-feat/retinaface_r34", "model.safetensors"),
        ("py-feat/face_multitask_v2", "face_multitask_v28.safetensors"),
    )
    # every (repo, file) of every option is spelled exactly so in py-feat's own source
    root = facial.feat_package_cache_dir().parent
    source = "".join(
        (root / f).read_text()
        for f in ("detector.py", "face_detectors/Retinaface/Retinaface_test.py", "multitask/inference.py")
    )
    options = [facial._FACE_FILES, facial._LANDMARK_FILES, facial._AU_FILES, facial._EMOTION_FILES]
    pairs = [p for table in options for files in table.values() for p in files] + [facial._MULTITASK_FILE]
    for repo, name in pairs:
        assert f'"{repo}"' in source and f'"{name}"' in source, (repo, name)


def test_invalid_config_is_rejected() -> None:
    with pytest.raises(ValueError, match="landmark_model"):
        FacialAnalyzer(landmark_model="dlib")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="stride"):
        FacialAnalyzer(stride=0)
    with pytest.raises(ValueError, match="v2 only runs"):
        FeatModelSet("v2", face_model="img2pose")
    a = FacialAnalyzer(model_set="v2")
    assert a.detector == "v2" and a.feat_models == FeatModelSet("v2")
    assert dataclasses.replace(a, detector="v1").feat_models == FeatModelSet("v1")


# ------------------------------------------------------------------ where weights live


def test_cache_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from feat.utils.io import get_resource_path

    monkeypatch.delenv(facial.CACHE_ENV, raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # py-feat ignores it, and so do we
    # Default: a user cache folder outside the venv (recreating the venv keeps the weights).
    assert feat_cache_dir() == tmp_path / "home" / ".cache" / "sensor-removal" / "feat"
    assert feat_cache_dir() != Path(get_resource_path())
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert feat_cache_dir() == tmp_path / "xdg" / "sensor-removal" / "feat"
    monkeypatch.setenv(facial.CACHE_ENV, str(tmp_path / "env"))
    assert feat_cache_dir() == tmp_path / "env"
    assert feat_cache_dir(tmp_path / "arg") == tmp_path / "arg"


def test_missing_weights_named_before_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "no-weights"
    assert len(missing_feat_weights("v1", empty)) == 5
    _forbid_detector(monkeypatch)
    monkeypatch.setattr(facial_analyzer, "probe", lambda *a, **k: pytest.fail("the video was opened"))
    analyzer = FacialAnalyzer(weights_dir=empty, device="cpu")
    with pytest.raises(FacialWeightsMissing) as err:
        analyzer.analyze_video(tmp_path / "any.mp4", cache_dir=tmp_path / "cache")
    message = str(err.value)
    assert FETCH_COMMAND in message
    for repo, name in FEAT_WEIGHTS["v1"]:
        assert f"{empty}/models--{repo.replace('/', '--')}/snapshots/" in message
        assert name in message


def test_one_missing_file_is_named_exactly(tmp_path: Path) -> None:
    hub = tmp_path / "hub"
    for repo, name in FEAT_WEIGHTS["v1"][:-1]:
        write_hub_file(hub, repo, name, lambda p: p.write_bytes(b"x"))
    repo, name = FEAT_WEIGHTS["v1"][-1]
    expected = hub_path(hub, repo, name)  # refs/main of that repo exists: the path is exact
    assert missing_feat_weights("v1", hub) == [expected]
    with pytest.raises(FacialWeightsMissing) as err:
        FacialAnalyzer(weights_dir=hub).require_weights()
    assert str(expected) in str(err.value)
    assert "mobilefacenet" not in str(err.value)  # present files are not listed
    assert [w.path for w in err.value.missing] == [expected]


def test_hub_scope_redirects_py_feat_calls_and_restores(tmp_path: Path) -> None:
    import feat.detector
    import huggingface_hub
    from feat.utils.io import get_resource_path
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalEntryNotFoundError

    hub = tmp_path / "hub"
    target = write_hub_file(hub, "py-feat/retinaface_r34", "model.safetensors", lambda p: p.write_bytes(b"w"))
    original = huggingface_hub.hf_hub_download
    offline_before = constants.HF_HUB_OFFLINE
    with feat_hub_offline(hub) as where:
        assert where == hub.resolve()
        assert constants.is_offline_mode()
        # called exactly as py-feat calls it, through both names py-feat uses
        for download in (huggingface_hub.hf_hub_download, feat.detector.hf_hub_download):
            got = download(
                repo_id="py-feat/retinaface_r34", filename="model.safetensors", cache_dir=get_resource_path()
            )
            assert Path(got) == target.resolve()
        with pytest.raises(LocalEntryNotFoundError):  # offline: absent file fails, no download
            huggingface_hub.hf_hub_download(repo_id="py-feat/xgb_au", filename="x.skops", cache_dir=get_resource_path())
        # other callers' cache folders are left alone
        with pytest.raises(LocalEntryNotFoundError):
            huggingface_hub.hf_hub_download(
                repo_id="py-feat/retinaface_r34", filename="model.safetensors", cache_dir=str(tmp_path / "other")
            )
    assert huggingface_hub.hf_hub_download is original
    assert feat.detector.hf_hub_download is original
    assert constants.HF_HUB_OFFLINE == offline_before


def _fake_hub_download(calls: list):
    """A stand-in for ``huggingface_hub.hf_hub_download`` that lays a file out the way the
    real one does (blob named by the content's SHA-256, snapshot link, refs/main)."""
    import hashlib

    def download(repo_id: str, filename: str, cache_dir: str, **kwargs) -> str:
        calls.append((repo_id, filename, Path(cache_dir)))
        content = f"{repo_id}/{filename}".encode()
        repo = Path(cache_dir) / ("models--" + repo_id.replace("/", "--"))
        blob = repo / "blobs" / hashlib.sha256(content).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(content)
        link = repo / "snapshots" / ("ab" * 20) / filename
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(Path("../..") / "blobs" / blob.name)
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / "main").write_text("ab" * 20)
        return str(link)

    return download


def test_fetch_downloads_into_weights_folder_and_checks_hashes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    calls: list = []
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", _fake_hub_download(calls))
    monkeypatch.setenv(facial.CACHE_ENV, str(tmp_path / "weights"))
    paths = facial.fetch_feat_weights("v2")
    assert [(r, f) for r, f, _ in calls] == list(FEAT_WEIGHTS["v2"])
    assert all(where == tmp_path / "weights" for _, _, where in calls)
    assert missing_feat_weights("v2") == [] and all(p.is_file() for p in paths)

    paths[-1].resolve().write_bytes(b"truncated")  # a corrupt blob is refused
    with pytest.raises(facial.FacialError, match="does not match its hub hash"):
        facial.check_hub_download(paths[-1])
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(facial.FacialError, match="offline"):
        facial.fetch_feat_weights("v2")


# ------------------------------------------------------------------ face choice, stand-ins


def test_select_face_prefers_largest_then_most_confident() -> None:
    def rows(*faces):
        return pd.DataFrame(faces, columns=list(facial.FACE_COLUMNS))

    nan = float("nan")
    assert select_face(rows((nan, nan, nan, nan, 0.0))) is None
    big_unsure = (0, 0, 100, 100, 0.6)
    small_sure = (0, 0, 40, 40, 0.99)
    assert select_face(rows(small_sure, big_unsure)).FaceScore == 0.6
    almost_as_big_sure = (5, 5, 98, 99, 0.95)  # within 5 % of the largest area: score decides
    assert select_face(rows(big_unsure, almost_as_big_sure, small_sure)).FaceScore == 0.95
    assert select_face(rows((nan, nan, nan, nan, 0.0), small_sure)).FaceScore == 0.99


def test_standin_retinaface_finds_bright_blobs(feat_hub: Path) -> None:
    """The stand-in behaves as documented in tests/feat_standins.py (py-feat's own
    RetinaFace wrapper, loading the stand-in file through hf_hub_download)."""
    from feat.face_detectors.Retinaface.Retinaface_test import Retinaface

    frames = np.stack([face_frame(), face_frame(faces=()), face_frame(faces=((32, 32, 200), (96, 96, 240)))])
    with feat_hub_offline(feat_hub), torch.no_grad():
        detector = Retinaface(device="cpu")
        dets = detector(torch.from_numpy(frames).permute(0, 3, 1, 2))
    assert len(dets[0]) == 1 and len(dets[1]) == 0 and len(dets[2]) == 2
    x1, y1, x2, y2, score = dets[0][0]
    assert np.allclose(
        [x1, y1, x2, y2],
        [64 - STANDIN_BOX / 2, 64 - STANDIN_BOX / 2, 64 + STANDIN_BOX / 2, 64 + STANDIN_BOX / 2],
        atol=0.5,
    )
    assert score == pytest.approx(face_score(220), abs=0.01)
    assert sorted(d[4] for d in dets[2]) == pytest.approx([face_score(200), face_score(240)], abs=0.01)


# ------------------------------------------------------------------ v1 end to end


def test_v1_series_is_frame_indexed_with_all_columns(v1_run) -> None:
    s = v1_run["series"]
    assert list(s.values.columns) == FEATURES
    assert s.values.index.name == "frame" and list(s.values.index) == list(range(N_FRAMES))
    faced = [f for f in range(N_FRAMES) if f != DARK_FRAME]
    values = s.values.loc[faced].to_numpy()
    assert np.isfinite(values).all()
    assert ((values >= 0) & (values <= 1)).all()  # probabilities
    assert np.allclose(s.emotions.loc[faced].sum(axis=1), 1.0, atol=1e-4)  # ResMaskNet softmax
    assert s.fps == pytest.approx(10.0) and s.stride == 1


def test_frame_without_face_is_a_counted_nan_row(v1_run) -> None:
    s = v1_run["series"]
    assert s.values.loc[DARK_FRAME].isna().all()
    assert s.faces.loc[DARK_FRAME].isna().all()
    assert s.no_face_frames == 1
    assert s.faces.drop(index=DARK_FRAME)["FaceScore"].notna().all()


def test_largest_most_confident_face_is_kept(v1_run) -> None:
    faces = v1_run["series"].faces
    assert _centre(faces, 0) == pytest.approx((64, 64), abs=1.0)
    # two equally large faces: the brighter (higher score) one at (96, 96)
    assert _centre(faces, TWO_FACES_FRAME) == pytest.approx((96, 96), abs=1.0)
    assert faces.loc[TWO_FACES_FRAME, "FaceScore"] == pytest.approx(face_score(240), abs=0.01)


def test_detector_built_offline_without_network(v1_run) -> None:
    assert v1_run["offline_at_build"] == [True]  # built once, in offline mode
    assert v1_run["guard"].attempts == []  # no socket was ever opened
    assert v1_run["offline_after"] == v1_run["offline_before"]  # the process's setting is back
    assert v1_run["grad_after"]  # py-feat's RetinaFace switches grad off globally; restored


def test_cache_hit_builds_no_detector_and_decodes_nothing(
    v1_run, main_video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = v1_run["cache"]
    assert len(list(cache.glob("subject-*.csv"))) == 1
    assert not list(cache.glob("*.partial*"))  # written atomically
    _forbid_detector(monkeypatch)
    fresh = FacialAnalyzer(weights_dir=v1_run["analyzer"].weights_dir, device="cpu", batch_size=1)
    again = fresh.analyze_video(main_video, cache_dir=cache)
    pd.testing.assert_frame_equal(again.values, v1_run["series"].values)
    pd.testing.assert_frame_equal(again.faces, v1_run["series"].faces)
    assert again.no_face_frames == 1

    part = fresh.analyze_video(main_video, frame_range=(1, 4), cache_dir=cache)
    assert list(part.values.index) == [1, 2, 3]
    assert part.no_face_frames == 1
    pd.testing.assert_frame_equal(part.values, v1_run["series"].values.loc[1:3])


def test_cache_key_follows_content_not_path(
    v1_run, main_video: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    moved = tmp_path / "subject.mp4"
    shutil.copy(main_video, moved)  # same content elsewhere: still a hit
    _forbid_detector(monkeypatch)
    a = v1_run["analyzer"]
    hit = dataclasses.replace(a).analyze_video(moved, cache_dir=v1_run["cache"])
    pd.testing.assert_frame_equal(hit.values, v1_run["series"].values)
    weights = a.require_weights()
    base = a.cache_key(main_video, None, weights)
    assert a.cache_key(main_video, (0, 0, 64, 64), weights) != base  # crop
    assert dataclasses.replace(a, stride=2).cache_key(main_video, None, weights) != base
    assert dataclasses.replace(a, detector="v2").cache_key(main_video, None, a.require_weights()) != base
    other = tmp_path / "other.mp4"
    write_video(other, _main_frames()[::-1], fps=10.0, codec="h264-lossless")
    assert a.cache_key(other, None, weights) != base
    # other weight files (e.g. the real ones instead of these stand-ins): another key
    hub = tmp_path / "other-weights"
    for repo, name in FEAT_WEIGHTS["v1"]:
        write_hub_file(hub, repo, name, lambda p: p.write_bytes(b"other"))
    assert all(p.parent.name == STANDIN_REVISION for p in weights.values())
    assert a.cache_key(main_video, None, dataclasses.replace(a, weights_dir=hub).require_weights()) != base


def test_stride_analyses_every_nth_frame(v2_analyzer: FacialAnalyzer, main_video: Path, tmp_path: Path) -> None:
    """(On Detectorv2, whose stand-in is ~20x cheaper than v1's ResMaskNet: striding is
    the same code for both.)"""
    every = v2_analyzer.analyze_video(main_video, cache_dir=tmp_path)
    strided = dataclasses.replace(v2_analyzer, stride=2)
    object.__setattr__(strided, "_feat_detector", v2_analyzer._get_detector())  # reuse the built detector
    s = strided.analyze_video(main_video, cache_dir=tmp_path)
    assert list(s.values.index) == [0, 2, 4] and s.stride == 2
    assert s.no_face_frames == 1  # frame 2 is the dark one
    full = every.values.loc[[0, 2, 4]]
    np.testing.assert_allclose(s.values.to_numpy(), full.to_numpy(), rtol=1e-4, atol=1e-5)
    assert len(list(tmp_path.glob("subject-*.csv"))) == 2  # its own cache entry


# ------------------------------------------------------------------ v2 end to end, crop


def test_v2_series_with_bbox_crop(
    feat_hub_v2: Path, main_video: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Detectorv2 (RetinaFace + a tiny multitask stand-in): capitalised emotions become
    ours, and ``bbox`` crops each frame before detection (boxes in crop pixels)."""
    guard = _NoNetwork()
    monkeypatch.setattr(socket.socket, "connect", guard)
    monkeypatch.setenv("FEAT_MULTITASK_WEIGHTS", str(tmp_path / "elsewhere.safetensors"))  # must not win
    analyzer = FacialAnalyzer(detector="v2", weights_dir=feat_hub_v2, device="cpu", batch_size=2)
    s = analyzer.analyze_video(main_video, bbox=(32, 32, 64, 64), cache_dir=tmp_path / "cache")
    assert list(s.values.columns) == FEATURES
    assert list(s.values.index) == list(range(N_FRAMES))
    assert s.values.loc[DARK_FRAME].isna().all() and s.no_face_frames == 1
    for f in (0, 1, 4):
        assert np.isfinite(s.values.loc[f].to_numpy()).all()
        assert _centre(s.faces, f) == pytest.approx((32, 32), abs=1.5)  # the face, in crop pixels
    assert np.allclose(s.emotions.loc[[0, 1, 4]].sum(axis=1), 1.0, atol=1e-4)
    assert guard.attempts == []
    with pytest.raises(facial.FacialError, match="bbox.*outside"):
        analyzer.analyze_video(main_video, bbox=(100, 100, 64, 64))


# ------------------------------------------------------------------ Table 2, two AU models


def _face_subject(root: Path) -> tuple[Path, Path]:
    """Two sessions of normal / sensor / cleaned 128-px videos whose faces the stand-in
    RetinaFace finds (a blob whose brightness varies over time)."""
    import yaml

    seg = {"schaede": [0.0, 0.75], "sentence": [0.75, 1.25], "emotion": [1.25, 2.0]}
    recs, cleaned = [], []
    (root / "cleaned").mkdir(parents=True)
    for k in (1, 2):
        for j, cond in enumerate(("normal", "sensor", "clean")):
            name = f"s{k}_{cond}" if cond != "clean" else f"s{k}_sensor_clean"
            grays = 180 + 50 * np.abs(np.sin(np.arange(8) / (2.0 + j) + k))
            frames = [face_frame(faces=((64, 64, int(g)),), seed=10 * k + j) for g in grays]
            rec = {
                "name": name,
                "path": f"{name}.mp4",
                "session": k,
                "condition": cond,
                "bbox": [0, 0, 128, 128],
                "segments": seg,
            }
            if cond == "clean":
                write_video(root / "cleaned" / f"{name}.mp4", frames, fps=4.0, codec="h264-lossless")
                cleaned.append({**rec, "source": f"s{k}_sensor"})
            else:
                write_video(root / f"{name}.mp4", frames, fps=4.0, codec="h264-lossless")
                recs.append(rec)
    (root / "manifest.yaml").write_text(yaml.safe_dump({"subject": "faces01", "recordings": recs}, sort_keys=False))
    (root / "cleaned" / "manifest.yaml").write_text(
        yaml.safe_dump({"subject": "faces01", "recordings": cleaned}, sort_keys=False)
    )
    return root / "manifest.yaml", root / "cleaned" / "manifest.yaml"


@pytest.mark.slow  # ~100 py-feat frames through two detectors: minutes on 2 loaded cores
def test_two_au_models_give_one_table2_block_each(
    feat_hub_v2: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default evaluation runs py-feat v1's classical ``xgb`` model and the v2
    multitask network, both built by py-feat's real loading code from stand-in weights,
    and the report prints one Table 2 block per model naming its AUs (numbers meaningless).
    Building each detector from the stand-ins is also covered by the default run
    (``v1_run``, ``v2_analyzer``); the protocol's two-model plumbing by
    tests/test_protocol.py with a stub analyzer."""
    from evaluation.protocol import run_protocol
    from evaluation.report import make_report
    from evaluation.settings import ProtocolSettings

    monkeypatch.setenv(facial.CACHE_ENV, str(feat_hub_v2))
    manifest, cleaned = _face_subject(tmp_path / "faces")
    settings = ProtocolSettings(
        metrics=("facial",), segments=("schaede", "sentence", "emotion"), batch_size=4, max_shift_s=0.25, device="cpu"
    )
    assert settings.au_models == ("xgb", "v2")
    run_protocol(manifest, cleaned, tmp_path / "r", settings, log=lambda _: None)
    df = pd.read_csv(tmp_path / "r" / "results.csv", keep_default_na=False, na_values=[""])
    assert set(df["model"]) == {"xgb", "v2"}
    for model in ("xgb", "v2"):
        aus = df[(df["model"] == model) & (df["metric"] == "dtw") & df["feature"].str.startswith("AU")]
        assert aus["value"].notna().any(), model  # faces found, AUs measured
    make_report([tmp_path / "r"], tmp_path / "report")
    md = (tmp_path / "report" / "report.md").read_text()
    paper = md.split("## Our addition", 1)[0]
    xgb = paper.split("### Table 2 — Action Unit time series — xgb", 1)[1].split("###", 1)[0]
    v2 = paper.split("### Table 2 — Action Unit time series — v2", 1)[1].split("###", 1)[0]
    assert "random decision forest" in xgb and "19 AUs compared" in xgb and "| N2–C2 |" in xgb
    assert "JAA-Net" in v2 and "19 AUs compared" in v2 and "lacks of the paper model's 12 AUs: none" in v2
    assert (tmp_path / "report" / "table2_au_xgb.csv").is_file() and (
        tmp_path / "report" / "table2_au_v2.csv"
    ).is_file()


def test_analyze_video_size_feeds_py_feat_one_resolution(
    feat_hub: Path, main_video: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``size`` resizes the (bbox) region before py-feat sees it, so N, S and C can be
    analysed at one resolution; the size is part of the cache key."""
    shapes: list[tuple[int, ...]] = []

    class Recorder:
        def __init__(self, analyzer, path, fps, total=None):
            self.path, self.fps = path, fps

        def add(self, number, frame):
            shapes.append(frame.shape)

        def finish(self):
            index = pd.Index(range(N_FRAMES), name="frame")
            return facial.FacialSeries(
                values=pd.DataFrame(0.5, index=index, columns=FEATURES),
                faces=pd.DataFrame(1.0, index=index, columns=list(facial.FACE_COLUMNS)),
                stride=1,
                fps=self.fps,
                path=self.path,
            )

    monkeypatch.setattr(facial_analyzer, "SeriesBuilder", Recorder)
    a = FacialAnalyzer(weights_dir=feat_hub, device="cpu")
    a.analyze_video(main_video, bbox=(32, 32, 64, 64), size=96, cache_dir=tmp_path)
    assert set(shapes) == {(96, 96, 3)} and len(shapes) == N_FRAMES
    shapes.clear()
    a.analyze_video(main_video, size=48, cache_dir=tmp_path)  # no bbox: the whole frame
    assert set(shapes) == {(48, 48, 3)}
    shapes.clear()
    a.analyze_video(main_video, bbox=(32, 32, 64, 64), cache_dir=tmp_path)  # native size
    assert set(shapes) == {(64, 64, 3)}
    assert len(list(tmp_path.glob("subject-*.csv"))) == 3  # three keys: 96, 48, native


# ------------------------------------------------------------------ fast paths (ours)


@pytest.mark.numerics
def test_channels_last_keeps_the_series(v1_run, feat_hub: Path, main_video: Path) -> None:
    """The default path (NHWC weights, folded BatchNorm, networks in OpenVINO) changes
    the series only by float rounding: within 1e-4 of the plain NCHW, unfolded, batch-1
    torch path on any CPU's kernels."""
    fast: FacialAnalyzer = v1_run["analyzer"]  # channels_last is the default
    convs = [
        m
        for net in facial._feat_networks(fast._get_detector())
        for m in net.modules()
        if isinstance(m, torch.nn.Conv2d)
    ]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    weighted = [n for n in facial._feat_networks(fast._get_detector()) if any(True for _ in n.parameters())]
    assert weighted and all(n.forward.state == "runtime" for n in weighted)  # checked on the first batch, in use
    today = FacialAnalyzer(
        weights_dir=feat_hub, device="cpu", batch_size=1, channels_last=False, fold_batchnorm=False, backend="torch"
    )
    plain = today.analyze_video(main_video)
    np.testing.assert_allclose(v1_run["series"].values.to_numpy(), plain.values.to_numpy(), rtol=0, atol=1e-4)
    weights = today.require_weights()
    assert fast.cache_key(main_video, None, weights) == today.cache_key(main_video, None, weights)


def test_bf16_keeps_the_series_roughly_and_has_its_own_cache_key(v1_run, feat_hub: Path, main_video: Path) -> None:
    """bf16 moves values a little (within 0.1) and has its own cache key. Not rerun with
    other kernels: a CPU without native bf16 emulates it, minutes for this test."""
    plain = v1_run["series"]
    bf16 = FacialAnalyzer(weights_dir=feat_hub, device="cpu", batch_size=1, precision="bf16")
    low = bf16.analyze_video(main_video)
    nets = facial._feat_networks(bf16._get_detector()) + [
        bf16._get_detector().facepose_detector.net
    ]  # no pool: its own RetinaFace
    assert all(
        net.forward.__name__ == "bf16_forward" for net in nets if any(True for _ in net.parameters())
    )  # still bf16 after folding
    assert low.no_face_frames == plain.no_face_frames
    np.testing.assert_allclose(low.values.to_numpy(), plain.values.to_numpy(), rtol=0, atol=0.1)
    fast: FacialAnalyzer = v1_run["analyzer"]
    weights = fast.require_weights()
    assert bf16.cache_key(main_video, None, weights) != fast.cache_key(main_video, None, weights)
    with pytest.raises(ValueError, match="precision"):
        FacialAnalyzer(precision="16")  # type: ignore[arg-type]


def _toy_bn(channels: int, seed: int) -> torch.nn.BatchNorm2d:
    g = torch.Generator().manual_seed(seed)
    bn = torch.nn.BatchNorm2d(channels)
    with torch.no_grad():
        bn.weight.copy_(torch.rand(channels, generator=g) + 0.5)
        bn.bias.copy_(torch.randn(channels, generator=g))
        bn.running_mean.copy_(torch.randn(channels, generator=g))
        bn.running_var.copy_(torch.rand(channels, generator=g) + 0.1)
    return bn.eval()


class _ConvUsedTwice(torch.nn.Module):
    """The conv's output feeds the BatchNorm *and* a skip: folding would be wrong."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = torch.nn.Conv2d(3, 3, 3, padding=1), _toy_bn(3, 1)

    def forward(self, x):
        y = self.conv(x)
        return self.bn(y) + y


@pytest.mark.numerics
def test_fold_batchnorm_keeps_outputs_and_leaves_shared_conv_outputs_alone() -> None:
    """Folding each BatchNorm into its convolution changes outputs by float rounding only
    (non-trivial BN statistics); a convolution whose output is also read elsewhere is
    caught by the first-batch check and the network stays unfolded, bit for bit."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1, bias=False),
        _toy_bn(8, 2),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 4, 1),
        _toy_bn(4, 3),
    ).eval()

    holder = torch.nn.Module()  # a detector: its networks are its submodules
    holder.net = net
    x, x2 = torch.randn(4, 3, 16, 16), torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        ref, ref2 = net(x), net(x2)
        facial.fold_batchnorm_on_first_call(holder)
        first = net(x)
        assert torch.equal(first, ref)  # the first call's result is computed unfolded
        assert net._folded_batchnorms == 2 and "forward" in vars(net[1]) and "forward" in vars(net[4])
        torch.testing.assert_close(net(x2), ref2, rtol=1e-5, atol=1e-5)
        assert not torch.equal(net[0].weight, torch.nn.Conv2d(3, 8, 3).weight)  # weights really changed

    twice = _ConvUsedTwice().eval()
    holder.net = twice
    weight = twice.conv.weight.detach().clone()
    with torch.no_grad():
        ref = twice(x)
        facial.fold_batchnorm_on_first_call(holder)
        twice(x)
        assert torch.equal(twice.conv.weight, weight) and "forward" not in vars(twice.bn)
        assert torch.equal(twice(x), ref) and not hasattr(twice, "_folded_batchnorms")


def test_shared_face_detector_answers_a_seen_batch_from_memory() -> None:
    calls: list[torch.Tensor] = []

    class Inner:
        detection_threshold = 0.5

        def forward(self, img):
            calls.append(img)
            return [[[float(img.sum()), 0.0, 1.0, 1.0, 0.9]] for _ in range(img.shape[0])]

    shared = facial.SharedFaceDetector(Inner(), capacity=2)
    a, b, c = (torch.full((2, 3, 4, 4), float(v)) for v in (1, 2, 3))
    first = shared(a)
    expected = [[[96.0, 0.0, 1.0, 1.0, 0.9]]] * 2
    assert first == expected
    first[0][0][0] = -1.0  # a caller changing its copy changes nothing shared
    assert shared(a.clone()) == expected and len(calls) == 1 and shared.hits == 1
    shared(b), shared(c), shared(a)  # a was pushed out by b and c
    assert len(calls) == 4 and shared.detection_threshold == 0.5
    shared(torch.full((1, 3, 4, 4), 3.0))  # same values, other shape: another batch
    assert len(calls) == 5


@pytest.mark.numerics
@pytest.mark.slow  # builds five py-feat detectors (two ResMaskNets) and runs them: ~40 s on 2 loaded cores
def test_fast_path_matches_todays_path_for_both_au_models(feat_hub_v2: Path, main_video: Path) -> None:
    """The default fast path (shared RetinaFace, channels_last, folded BatchNorm) gives
    the series of the issue-time path (batch 16, none of them) within 1e-4 for xgb and v2,
    with the same face / no-face frames; sharing RetinaFace alone changes nothing at all,
    and the second AU model's face detection is answered from memory."""
    plain = dict(channels_last=False, fold_batchnorm=False, backend="torch")  # and no pool: its own RetinaFace
    kw = dict(weights_dir=feat_hub_v2, device="cpu", batch_size=16)
    pool = facial.FaceDetectorPool()
    ours = {m: FacialAnalyzer(model_set=m, face_detectors=pool, **kw) for m in ("xgb", "v2")}
    fast = {m: a.analyze_video(main_video) for m, a in ours.items()}
    shared = ours["xgb"]._get_detector().facepose_detector
    assert isinstance(shared, facial.SharedFaceDetector) and shared is ours["v2"]._get_detector().face_detector
    assert shared.hits >= 1  # v2's batch was xgb's
    for model in ("xgb", "v2"):
        today = FacialAnalyzer(model_set=model, **kw, **plain).analyze_video(main_video)
        alone = FacialAnalyzer(model_set=model, **kw).analyze_video(main_video)  # no pool: not shared
        got, want = fast[model], today
        assert got.no_face_frames == want.no_face_frames == 1
        np.testing.assert_array_equal(np.isnan(got.values.to_numpy()), np.isnan(want.values.to_numpy()))
        np.testing.assert_allclose(got.values.to_numpy(), want.values.to_numpy(), rtol=0, atol=1e-4)
        np.testing.assert_allclose(got.faces.to_numpy(), want.faces.to_numpy(), rtol=0, atol=1e-3)
        # sharing is exact: same options without it give the same bits
        np.testing.assert_array_equal(got.values.to_numpy(), alone.values.to_numpy())
        np.testing.assert_array_equal(got.faces.to_numpy(), alone.faces.to_numpy())


def test_face_detector_pool_shares_within_a_pool_only() -> None:
    """Sharing is explicit: detectors share a RetinaFace through the pool they are handed
    (one per evaluation run), by key, and never across pools."""

    class Retinaface:  # the class name py-feat's RetinaFace has
        def forward(self, img):
            return []

    class Detector:
        def __init__(self) -> None:
            self.face_detector = Retinaface()

    pool, other = facial.FaceDetectorPool(), facial.FaceDetectorPool()
    a, b, c, d = Detector(), Detector(), Detector(), Detector()
    shared = pool.share(a, ("retinaface", "w.pth", "cpu"))
    assert isinstance(shared, facial.SharedFaceDetector) and a.face_detector is shared
    assert pool.share(b, ("retinaface", "w.pth", "cpu")) is shared and b.face_detector is shared
    assert pool.share(c, ("retinaface", "w.pth", "cuda")) is not shared  # another device: another network
    assert other.share(d, ("retinaface", "w.pth", "cpu")) is not shared  # another run
    no_retinaface = type("Detector", (), {"face_detector": object()})()
    assert pool.share(no_retinaface, ("img2pose",)) is None
