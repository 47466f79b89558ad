"""Which videos are compared (docs/evaluation.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from evaluation.pairs import SEGMENTS, PairingError, build_pairs, frame_range
from sensor_removal.core.manifest import load_manifest
from sensor_removal.core.video import iter_frames, probe


def _key(p) -> tuple:
    return (p.kind, p.session, p.segment, p.reference.name, p.other.name)


def test_pairs_of_two_sessions(tiny_subject) -> None:
    subject = load_manifest(tiny_subject.manifest)
    cleaned = load_manifest(tiny_subject.cleaned, require_domains=("clean",))
    plan = build_pairs(subject, cleaned)
    assert plan.skipped == []
    got = {_key(p) for p in plan.pairs}
    expected = set()
    for seg in SEGMENTS:
        expected.add(("baseline", None, seg, "s1_normal", "s2_normal"))
        for k in (1, 2):
            expected.add(("sensor", k, seg, f"s{k}_normal", f"s{k}_sensor"))
            expected.add(("clean", k, seg, f"s{k}_normal", f"s{k}_sensor_clean"))
    assert got == expected
    assert len(plan.pairs) == 5 * 4
    # Same-session only (besides the baseline).
    for p in plan.pairs:
        if p.kind != "baseline":
            assert p.reference.session == p.other.session == p.session
        else:
            assert p.session_label == "1-2"
    assert [r.name for r in plan.videos()] == [
        "s1_normal",
        "s2_normal",
        "s1_sensor",
        "s1_sensor_clean",
        "s2_sensor",
        "s2_sensor_clean",
    ]


def test_segments_cut_each_videos_own_frames(tiny_subject) -> None:
    subject = load_manifest(tiny_subject.manifest)
    plan = build_pairs(subject, None, segments=("sentence", "whole"))
    fps = tiny_subject.fps
    base = {(p.segment): p for p in plan.pairs if p.kind == "baseline"}
    # s1: sentence [1.0, 1.6] s -> frames [10, 16); s2: [1.2, 2.0] s -> [12, 20)
    assert base["sentence"].reference_frames == (10, 16)
    assert base["sentence"].other_frames == (12, 20)
    # whole: every frame of each video (24 and 25 frames)
    assert base["whole"].reference_frames == (0, 24)
    assert base["whole"].other_frames == (0, 25)
    # The frames of a range are the right ones (the videos are lossless).
    a, b = base["sentence"].other_frames
    got = np.stack([f for _, f in iter_frames(base["sentence"].other.path, range(a, b))])
    np.testing.assert_array_equal(got, tiny_subject.frames["s2_normal"][12:20])
    assert round(1.2 * fps) == 12
    assert not any(p.kind == "clean" for p in plan.pairs)  # no cleaned manifest given


def test_frame_range_clips_and_lacks(tiny_subject) -> None:
    subject = load_manifest(tiny_subject.manifest)
    rec = subject.recording("s1_normal")
    info = probe(rec.path)
    assert frame_range(rec, "emotion", info) == (16, 24)
    assert frame_range(rec, "whole", info) == (0, 24)
    from dataclasses import replace

    assert frame_range(replace(rec, segments={"emotion": (1.6, 2.45)}), "emotion", info) == (16, 24)  # clipped
    assert frame_range(replace(rec, segments={}), "emotion", info) is None


def test_missing_segment_is_reported_not_dropped(tiny_subject, tmp_path: Path) -> None:
    doc = yaml.safe_load(tiny_subject.manifest.read_text())
    del doc["recordings"][1]["segments"]["emotion"]  # s1_sensor lacks the emotion task
    for r in doc["recordings"]:
        r["path"] = str(tiny_subject.root / r["path"])
    m = tmp_path / "m.yaml"
    m.write_text(yaml.safe_dump(doc))
    plan = build_pairs(load_manifest(m), None, segments=("emotion",))
    assert ("sensor", 1, "emotion", "s1_normal", "s1_sensor") not in {_key(p) for p in plan.pairs}
    assert any("s1_sensor" in s and "'emotion'" in s for s in plan.skipped)


def test_cleaned_manifest_is_checked(tiny_subject, tmp_path: Path) -> None:
    subject = load_manifest(tiny_subject.manifest)
    doc = yaml.safe_load(tiny_subject.cleaned.read_text())
    for r in doc["recordings"]:
        r["path"] = str(tiny_subject.root / "cleaned" / r["path"])
    bad = dict(doc, recordings=[dict(doc["recordings"][0], source="s1_normal")])
    m = tmp_path / "c.yaml"
    m.write_text(yaml.safe_dump(bad))
    with pytest.raises(PairingError, match=r"c\.yaml: recording 's1_sensor_clean', field 'source'"):
        build_pairs(subject, load_manifest(m, require_domains=("clean",)))
    other = dict(doc, subject="someone_else")
    m.write_text(yaml.safe_dump(other))
    with pytest.raises(PairingError, match="field 'subject'"):
        build_pairs(subject, load_manifest(m, require_domains=("clean",)))
    wrong_session = dict(doc, recordings=[dict(doc["recordings"][0], session=2)])
    m.write_text(yaml.safe_dump(wrong_session))
    with pytest.raises(PairingError, match="field 'session'"):
        build_pairs(subject, load_manifest(m, require_domains=("clean",)))
    with pytest.raises(PairingError, match="unknown segment"):
        build_pairs(subject, None, segments=("lunch",))
