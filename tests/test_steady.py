"""The steady fill (ours): a motion-adaptive recursive filter of the cleaned frames."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.metrics.temporal import flicker
from sensor_removal.cleaning.steady import SteadyFill, SteadySettings


def _noisy_still(n: int = 20, size: int = 24, noise: float = 4.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A still face patch (the truth) and a generator's repaint of it: the same patch plus
    fresh noise in every frame — the shimmer of a frame-by-frame repaint."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(60, 200, (size, size, 3)).astype(np.float32)
    frames = np.clip(np.rint(truth + rng.normal(0, noise, (n, size, size, 3))), 0, 255).astype(np.uint8)
    return np.repeat(np.rint(truth).astype(np.uint8)[None], n, axis=0), frames


def _mean_flicker(video: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([flicker(video[t - 1], video[t], truth[t - 1], truth[t]) for t in range(1, len(video))]))


def test_still_shimmer_is_damped_and_moves_closer_to_the_truth() -> None:
    truth, frames = _noisy_still()
    fill = SteadyFill(SteadySettings(strength=0.85, motion=20.0))
    out = np.stack([fill(f) for f in frames])
    assert _mean_flicker(out, truth) < 0.5 * _mean_flicker(frames, truth)
    err_in = np.abs(frames[5:].astype(float) - truth[5:]).mean()
    err_out = np.abs(out[5:].astype(float) - truth[5:]).mean()
    assert err_out < 0.8 * err_in  # averaging the noise also brings the pixels closer to the truth


def test_motion_passes_through() -> None:
    """A change far above ``motion`` (a mouth opening) is written as it comes, not smeared."""
    fill = SteadyFill(SteadySettings(strength=0.85, motion=20.0))
    a = np.full((8, 8, 3), 50, np.uint8)
    b = np.full((8, 8, 3), 170, np.uint8)
    fill(a)
    assert np.abs(fill(b).astype(int) - 170).max() <= 1


@pytest.mark.numerics
def test_weight_zero_leaves_the_frame_exactly() -> None:
    """Compositing passes its mask as the weight: where the mask is 0 the output stays the
    recording's bytes, however strong the filter."""
    _, frames = _noisy_still(n=6)
    weight = np.zeros(frames.shape[1:3], np.float32)
    weight[:, :12] = 1.0
    fill = SteadyFill(SteadySettings(strength=0.9, motion=50.0))
    outs = [fill(f, weight) for f in frames]
    for f, o in zip(frames, outs, strict=True):
        np.testing.assert_array_equal(o[:, 12:], f[:, 12:])
    assert any(not np.array_equal(o[:, :12], f[:, :12]) for f, o in zip(frames[1:], outs[1:], strict=True))


def test_off_and_reset() -> None:
    _, frames = _noisy_still(n=4)
    off = SteadyFill(SteadySettings())
    assert not off.settings.on
    for f in frames:
        np.testing.assert_array_equal(off(f), f)
    fill = SteadyFill(SteadySettings(strength=0.5))
    fill(frames[0])
    assert not np.array_equal(fill(frames[1]), frames[1])
    fill.reset()  # a new video: its first frame owes nothing to the last one's
    np.testing.assert_array_equal(fill(frames[2]), frames[2])


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"strength": 1.0}, "strength"), ({"strength": -0.1}, "strength"), ({"motion": 0.0}, "motion")],
)
def test_settings_are_checked(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        SteadySettings(**kwargs)
