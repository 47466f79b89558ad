"""``python -m sensor_removal bbox``: a session's face box from its videos."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from sensor_removal.cli import bbox
from sensor_removal.cli.commands import main as cli_main
from sensor_removal.core.manifest import load_manifest
from sensor_removal.core.video import iter_frames, probe, write_video


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sensor_removal.synthetic import make_subject

    return make_subject(tmp_path_factory.mktemp("bbox") / "synthetic", seconds=2.0, fps=8.0, size=(96, 80), seed=3)


def _parse_box(out: str) -> list[tuple[int, int, int, int]]:
    boxes = []
    for line in out.splitlines():
        if line.strip().startswith("bbox:"):
            inside = line.split("[", 1)[1].split("]", 1)[0]
            boxes.append(tuple(int(v) for v in inside.split(",")))
    return boxes


def test_box_contains_the_face_in_every_frame(synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from evaluation.metrics.landmarks import LandmarkDetector

    subject = load_manifest(synth)
    session = [r for r in subject.recordings if r.session == 1]
    preview = tmp_path / "preview.png"
    code = cli_main(["bbox", *(str(r.path) for r in session), "--samples", "6", "--preview", str(preview)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "face detector: dlib HOG frontal face detector" in err
    boxes = _parse_box(out)
    assert len(boxes) == len(session) and len(set(boxes)) == 1  # one box per session
    x, y, w, h = boxes[0]
    assert w == h and x >= 0 and y >= 0 and x + w <= 96 and y + h <= 80
    assert f"- name: {session[0].name}" in out and f"path: {session[0].path.name}" in out
    # Electrodes hide the synthetic face from the detector: said, not hidden.
    assert "warning:" in err and "sensor" in err
    # The face is inside the box on *every* frame (not only the sampled ones) of every
    # video of the session: dlib's 68 points on the full frames (ground truth for the
    # sensor videos, where the same face is under the electrodes).
    det = LandmarkDetector()
    for rec in session:
        video = rec.ground_truth or rec.path
        n = 0
        for _, frame in iter_frames(video):
            big = cv2.resize(frame, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)
            face = det.landmarks(big)
            assert face.box is not None, f"{video}: face not found for the check"
            pts = face.points / 4
            assert (pts[:, 0] >= x).all() and (pts[:, 0] <= x + w).all(), video
            assert (pts[:, 1] >= y).all() and (pts[:, 1] <= y + h).all(), video
            n += 1
        assert n == probe(video).frame_count
    img = cv2.imread(str(preview))
    assert img is not None and img.shape[0] == bbox.PREVIEW_HEIGHT and img.shape[1] > img.shape[0] * len(session) * 0.9
    # The box is drawn in green on the first tile.
    s = bbox.PREVIEW_HEIGHT / 80
    row = img[int(round((y + h / 2) * s)), : img.shape[1] // len(session)]
    green = (row[:, 1] > 150) & (row[:, 0] < 80) & (row[:, 2] < 80)
    assert green.any()


def test_square_box_geometry() -> None:
    # Two faces: the box holds both, grows by the margin, is square and stays inside.
    box = bbox.square_box([(40, 30, 20, 24), (50, 34, 20, 24)], 200, 100, margin=0.25)
    x, y, w, h = box
    assert w == h == 45 and x <= 40 and y <= 30 and x + w >= 70 and y + h >= 58
    # Near the edge: shifted inside; larger than the frame: clipped to the short side.
    assert bbox.square_box([(0, 0, 30, 30)], 200, 100, margin=0.5) == (0, 0, 60, 60)
    assert bbox.square_box([(10, 10, 90, 90)], 120, 100, margin=0.5) == (5, 0, 100, 100)  # centred on x = 55
    assert bbox.sample_indices(100, 5) == [0, 25, 50, 74, 99] or bbox.sample_indices(100, 5) == [0, 25, 50, 75, 99]
    assert bbox.sample_indices(3, 24) == [0, 1, 2]


def test_no_face_and_bad_inputs_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blank = write_video(tmp_path / "blank.mp4", np.full((6, 64, 64, 3), 90, np.uint8), fps=5.0, codec="h264-lossless")
    other = write_video(tmp_path / "other.mp4", np.full((6, 48, 64, 3), 90, np.uint8), fps=5.0, codec="h264-lossless")
    for args, needle in (
        ([str(blank)], "no face found"),
        ([str(blank), str(other)], "one frame size"),
        ([str(tmp_path / "missing.mp4")], "missing.mp4"),
        ([str(blank), "--margin", "-1"], "--margin"),
    ):
        assert cli_main(["bbox", *args, "--preview", str(tmp_path / "p.png")]) == 2
        err = capsys.readouterr().err
        assert needle in err and "Traceback" not in err
    assert not (tmp_path / "p.png").exists()


def test_without_dlib_the_opencv_cascade_is_used_or_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_dlib() -> bbox.FaceFinder:
        raise ImportError("No module named 'dlib'")

    monkeypatch.setattr(bbox, "_dlib_finder", no_dlib)
    if hasattr(cv2, "CascadeClassifier") and hasattr(cv2, "data"):
        finder = bbox.face_finder()
        assert finder.name.startswith("OpenCV Haar cascade")
        assert finder.find(np.full((120, 160, 3), 90, np.uint8)) == []
    else:  # OpenCV 5 wheels no longer bundle the cascade
        with pytest.raises(bbox.BboxError, match="dlib-bin"):
            bbox.face_finder()
