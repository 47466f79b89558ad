"""Manifest: every bad-input case gives one message naming file, recording and field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sensor_removal.core.manifest import ManifestError, load_manifest, save_manifest
from tests.videos import make_video


@pytest.fixture()
def subject_dir(tmp_path: Path) -> Path:
    for name in ("n1", "s1"):
        make_video(tmp_path / f"{name}.mp4", n=30, width=64, height=48, fps=10.0)
    return tmp_path


def _doc(**overrides) -> dict:
    recs = [
        {
            "name": "n1",
            "path": "n1.mp4",
            "session": 1,
            "condition": "normal",
            "bbox": [8, 4, 40, 40],
            "segments": {"schaede": [0.0, 1.0], "sentence": [1.0, 2.0], "emotion": [2.0, 3.0]},
        },
        {
            "name": "s1",
            "path": "s1.mp4",
            "session": 1,
            "condition": "sensor",
            "bbox": [8, 4, 40, 40],
            "segments": {"schaede": [0.0, 1.5], "emotion": [1.5, 3.0]},
        },
    ]
    doc = {"subject": "subjX", "recordings": recs}
    for key, value in overrides.items():
        i, field = key.split("__")
        if value is None:
            recs[int(i)].pop(field)
        else:
            recs[int(i)][field] = value
    return doc


def _write(d: Path, doc: dict, name: str = "manifest.yaml") -> Path:
    p = d / name
    p.write_text(yaml.safe_dump(doc))
    return p


def test_valid_manifest_loads_and_round_trips(subject_dir: Path) -> None:
    m = load_manifest(_write(subject_dir, _doc()))
    assert m.subject == "subjX"
    assert [r.name for r in m.recordings] == ["n1", "s1"]
    s1 = m.recording("s1")
    assert s1.path == (subject_dir / "s1.mp4").resolve()
    assert s1.bbox == (8, 4, 40, 40)
    assert s1.segments["emotion"] == (1.5, 3.0)
    assert s1.segment_frames("emotion", 10.0) == (15, 30)
    # Round trip through YAML and JSON (paths stay relative to the manifest).
    for name in ("copy.yaml", "copy.json"):
        out = save_manifest(m, subject_dir / "sub" / name)
        again = load_manifest(out)
        assert again.recordings == m.recordings
        assert "../n1.mp4" in out.read_text()


@pytest.mark.parametrize(
    ("overrides", "needles"),
    [
        ({"1__path": "missing.mp4"}, ["recording 's1'", "field 'path'", "missing.mp4", "not found"]),
        ({"0__bbox": [40, 10, 40, 40]}, ["recording 'n1'", "field 'bbox'", "outside the 64x48 frame"]),
        ({"0__bbox": [1, 2, 3]}, ["recording 'n1'", "field 'bbox'", "[x, y, w, h]"]),
        ({"1__condition": "electrodes"}, ["recording 's1'", "field 'condition'", "'electrodes'", "normal"]),
        (
            {"0__segments": {"schaede": [0.0, 2.0], "sentence": [1.5, 2.5]}},
            ["recording 'n1'", "field 'segments'", "overlap"],
        ),
        (
            {"0__segments": {"emotion": [2.0, 9.0]}},
            ["recording 'n1'", "segments.emotion", "after the end of the video"],
        ),
        ({"0__segments": {"emotion": [2.0, 1.0]}}, ["recording 'n1'", "segments.emotion", "start < end"]),
        ({"1__session": 0}, ["recording 's1'", "field 'session'", "positive integer"]),
        ({"1__bbox": None}, ["recording 's1'", "field 'bbox'", "missing"]),
        ({"1__colour": "red"}, ["recording 's1'", "unknown field", "colour"]),
    ],
)
def test_bad_input_names_file_recording_and_field(subject_dir: Path, overrides: dict, needles: list[str]) -> None:
    path = _write(subject_dir, _doc(**overrides))
    with pytest.raises(ManifestError) as err:
        load_manifest(path)
    msg = str(err.value)
    assert msg.startswith(str(path.resolve()))
    for needle in needles:
        assert needle in msg, msg


def test_unreadable_video_is_named(subject_dir: Path) -> None:
    (subject_dir / "s1.mp4").write_bytes(b"this is not a video" * 50)
    with pytest.raises(ManifestError, match=r"recording 's1', field 'path'.*s1\.mp4: cannot open video"):
        load_manifest(_write(subject_dir, _doc()))


@pytest.mark.parametrize("missing", ["normal", "sensor"])
def test_subject_needs_both_domains(subject_dir: Path, missing: str) -> None:
    doc = _doc()
    doc["recordings"] = [r for r in doc["recordings"] if r["condition"] != missing]
    with pytest.raises(ManifestError, match=f"subject 'subjX'.*has no {missing} recording"):
        load_manifest(_write(subject_dir, doc))


def test_duplicate_names_and_broken_yaml(subject_dir: Path) -> None:
    doc = _doc()
    doc["recordings"][1]["name"] = "n1"
    with pytest.raises(ManifestError, match="recording 'n1', field 'name'.*duplicate"):
        load_manifest(_write(subject_dir, doc))
    broken = subject_dir / "broken.yaml"
    broken.write_text("subject: [unclosed\n")
    with pytest.raises(ManifestError, match="broken.yaml: not valid YAML"):
        load_manifest(broken)
    with pytest.raises(ManifestError, match="nowhere.yaml: manifest file not found"):
        load_manifest(subject_dir / "nowhere.yaml")


def test_non_square_bbox_warns_naming_file_recording_and_field(subject_dir: Path) -> None:
    import warnings

    from sensor_removal.core.manifest import ManifestWarning

    path = _write(subject_dir, _doc(**{"1__bbox": [8, 4, 40, 30]}))
    with pytest.warns(ManifestWarning) as caught:
        m = load_manifest(path)
    assert m.recording("s1").bbox == (8, 4, 40, 30)  # still loads: a warning, not an error
    (w,) = caught
    assert f"{path}: recording 's1', field 'bbox': 40x30 px is not square" in str(w.message)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ManifestWarning)
        load_manifest(_write(subject_dir, _doc(), "square.yaml"))  # square boxes: silent
