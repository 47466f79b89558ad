"""Temporal stability figures (evaluation.metrics.temporal; our extension)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evaluation.metrics.temporal import flicker, frame_change, video_changes


def _moving(n: int = 6, seed: int = 0) -> np.ndarray:
    """A face-like smooth pattern that drifts by one pixel per frame (real motion)."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(60, 180, (40, 40 + n, 3))
    base = (base + np.roll(base, 1, 1) + np.roll(base, 1, 0)) / 3
    return np.stack([base[:, t : t + 40] for t in range(n)]).astype(np.uint8)


def _flicker_series(video: np.ndarray, truth: np.ndarray, region: np.ndarray | None = None) -> float:
    return float(
        np.mean([flicker(video[t - 1], video[t], truth[t - 1], truth[t], region) for t in range(1, len(video))])
    )


def test_static_video_has_zero_flicker_and_change() -> None:
    still = np.repeat(_moving(1), 5, axis=0)
    assert _flicker_series(still, still) == 0.0
    assert np.nanmax(video_changes(still)) == 0.0
    assert math.isnan(video_changes(still)[0])


def test_flicker_grows_with_injected_flicker_and_ignores_a_brightness_offset() -> None:
    truth = _moving()
    region = np.zeros(truth.shape[1:3], bool)
    region[10:30, 10:30] = True
    assert _flicker_series(truth, truth, region) == 0.0  # moves exactly as the truth: no flicker
    values = []
    rng = np.random.default_rng(1)
    noise = rng.choice([-1.0, 1.0], size=(len(truth), 1, 1, 1))
    for amplitude in (2, 6, 12):
        flick = np.clip(truth + amplitude * noise * region[None, :, :, None], 0, 255).astype(np.uint8)
        values.append(_flicker_series(flick, truth, region))
    assert 0 < values[0] < values[1] < values[2]
    brighter = (truth.astype(np.int16) + 20).clip(0, 255).astype(np.uint8)  # no pixel saturates
    assert brighter.max() < 255
    assert _flicker_series(brighter, truth, region) == pytest.approx(0.0)
    flick = np.clip(truth + 6 * noise * region[None, :, :, None], 0, 255).astype(np.uint8)
    assert _flicker_series(flick + np.uint8(20), truth, region) == pytest.approx(values[1])


def test_frame_change_and_regions() -> None:
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    b[0, 0] = 30
    assert frame_change(a, b) == pytest.approx(30 / 16)
    region = np.zeros((4, 4), bool)
    region[0, :2] = True
    assert frame_change(a, b, region) == pytest.approx(15.0)
    assert math.isnan(frame_change(a, b, np.zeros((4, 4), bool)))
    assert video_changes(np.stack([a, b]), previous=b)[0] == pytest.approx(30 / 16)


def test_protocol_temporal_rows_compare_with_the_normal_video(tiny_subject, tmp_path) -> None:
    import pandas as pd
    import yaml

    from evaluation.protocol import run_protocol
    from evaluation.settings import ProtocolSettings
    from sensor_removal.core.video import write_video

    s = ProtocolSettings(metrics=("temporal",), device="cpu")
    df = pd.read_csv(run_protocol(tiny_subject.manifest, tiny_subject.cleaned, tmp_path / "r", s, log=lambda _: None))
    assert set(df["metric"]) == {"temporal"} and set(df["feature"]) == {"excess"}
    assert set(df["kind"]) == {"baseline", "sensor", "clean"}
    # The stand-in cleaned videos are the normal videos' crops: no excess change at all.
    clean = df[df["kind"] == "clean"]
    assert (clean["value"].abs() < 1e-9).all() and (clean["n"] > 0).all()
    # A cleaning that flickers moves more than the recorded face.
    doc = yaml.safe_load(tiny_subject.cleaned.read_text())
    rng = np.random.default_rng(0)
    for rec in doc["recordings"]:
        frames = tiny_subject.frames[rec["name"]].astype(np.int16)
        frames[:, 8:24, 8:24] += rng.choice([-15, 15], size=(len(frames), 1, 1, 1)).astype(np.int16)
        write_video(
            tiny_subject.cleaned.parent / rec["path"],
            np.clip(frames, 0, 255).astype(np.uint8),
            fps=tiny_subject.fps,
            codec="h264-lossless",
        )
    df2 = pd.read_csv(run_protocol(tiny_subject.manifest, tiny_subject.cleaned, tmp_path / "r2", s, log=lambda _: None))
    assert df2[df2["kind"] == "clean"]["value"].mean() > 1.0
