"""Label-free sensor masks and compositing (sensor_removal.cleaning.mask; our extension)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from sensor_removal.cleaning.mask import (
    MaskSettings,
    SensorMasker,
    change_map,
    composite,
    iou,
    match_colours,
)
from sensor_removal.synthetic import render_recording

#: IoU of the hard mask on the synthetic frames below (documented in docs/compositing.md).
STATED_IOU = 0.65


def _drifted(truth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A stand-in G(S): the ground truth with a global colour/brightness drift and noise,
    i.e. a generator that removed the sensors perfectly but shifted the colours."""
    out = truth * np.array([1.08, 0.95, 0.9]) + np.array([10.0, -6.0, 8.0]) + rng.normal(0, 2, truth.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


def test_mask_from_ground_truth_with_colour_drift_reaches_stated_iou() -> None:
    frames = list(render_recording("s1_sensor_a", seconds=1.0, fps=6.0, size=(128, 128), seed=0))
    rng = np.random.default_rng(0)
    masker = SensorMasker(MaskSettings())
    scores, naive = [], []
    for f in frames:
        g = _drifted(f.ground_truth, rng)
        soft = masker(f.frame, g)
        assert soft.dtype == np.float32 and soft.min() >= 0 and soft.max() <= 1
        assert (soft[masker.core.astype(bool)] == 1).all()  # the feathering only adds
        scores.append(iou(masker.core, f.mask))
        # Without removing the drift, a plain difference marks far too much.
        plain = np.abs(g.astype(np.float32) - f.frame.astype(np.float32)).max(-1) > MaskSettings().threshold
        naive.append(iou(plain, f.mask))
    assert min(scores) >= STATED_IOU
    assert np.mean(scores) > np.mean(naive) + 0.05


def test_match_colours_removes_a_global_drift_despite_outliers() -> None:
    rng = np.random.default_rng(1)
    s = rng.uniform(40, 200, size=(32, 32, 3)).astype(np.float32)
    g = s * np.array([1.2, 0.9, 1.0], np.float32) + np.array([-15, 10, 5], np.float32)
    g[:8] = 255  # a quarter repainted (the sensors): outliers of the fit
    matched = match_colours(g, s)
    assert np.abs(matched[8:] - s[8:]).max() < 0.05
    assert np.abs(matched[:8] - s[:8]).mean() > 20


def test_hysteresis_keeps_a_pixel_that_hovers_around_the_threshold() -> None:
    settings = MaskSettings(threshold=30, hysteresis=0.5, close=0, dilate=0, feather=0, blur=0, max_hole=0)
    s = np.full((20, 20, 3), 100, np.uint8)
    strong, weak = s.copy(), s.copy()
    strong[5:10, 5:10] = 140  # change 40 > 30
    weak[5:10, 5:10] = 120  # change 20: below 30, above 0.5 * 30
    on = SensorMasker(settings)
    assert on(s, strong)[5:10, 5:10].all()
    assert on(s, weak)[5:10, 5:10].all()  # stays on: it was sensor a frame ago
    fresh = SensorMasker(settings)
    assert not fresh(s, weak).any()  # never on: a weak change alone is not a sensor
    off = SensorMasker(settings.__class__(**{**settings.__dict__, "hysteresis": 1.0}))
    off(s, strong)
    assert not off(s, weak).any()


def test_morphology_fills_a_ring_but_not_the_area_between_cables() -> None:
    settings = MaskSettings(threshold=20, close=0, dilate=0, feather=0, blur=0)
    s = np.full((64, 64, 3), 120, np.uint8)
    g = s.copy()
    import cv2

    cv2.circle(g, (16, 16), 2, (255, 255, 255), 1)  # an electrode ring: its inside is filled
    cv2.rectangle(g, (30, 30), (60, 60), (255, 255, 255), 1)  # a large loop of cable: not filled
    core = SensorMasker(settings).hard(s, g)
    assert core[16, 16] == 1
    assert core[45, 45] == 0


def test_dilate_and_feather_grow_outwards_and_end_at_zero() -> None:
    settings = MaskSettings(threshold=20, close=0, dilate=2 / 64, feather=4 / 64, blur=0)
    s = np.full((64, 64, 3), 120, np.uint8)
    g = s.copy()
    g[30:34, 30:34] = 250
    m = SensorMasker(settings)(s, g)
    assert (m[30:34, 28:36] == 1).all() and (m[28:36, 30:34] == 1).all()  # dilated by 2
    assert 0 < m[32, 36] < 1 and m[32, 37] < m[32, 36]  # the ramp
    assert (m[:, :20] == 0).all() and (m[:20] == 0).all()


@pytest.mark.numerics
def test_composite_keeps_pixels_outside_the_mask_exactly() -> None:
    rng = np.random.default_rng(2)
    s = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    g = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    m = np.zeros((2, 16, 16), np.float32)
    m[:, 4:8, 4:8] = 1.0
    m[:, 8, 4:8] = 0.5
    out = composite(s, g, m)
    outside = m == 0
    assert (out[outside] == s[outside]).all()
    assert (out[m == 1] == g[m == 1]).all()
    half = np.rint((s[:, 8, 4:8].astype(np.float32) + g[:, 8, 4:8]) / 2)
    assert np.abs(out[:, 8, 4:8] - half).max() <= 1


def test_change_map_ignores_a_global_brightness_offset() -> None:
    rng = np.random.default_rng(3)
    s = rng.integers(30, 200, (24, 24, 3), dtype=np.uint8)
    assert change_map(s, s + 40).max() < 0.5


@pytest.mark.parametrize("field", ["threshold", "hysteresis", "dilate"])
def test_settings_reject_nonsense(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        MaskSettings(**{field: -1.0})


# --------------------------------------------------------------------------- method "reference"

#: IoU of the reference mask (``core``) on the synthetic frames below, with a generator
#: that repaints the whole face (documented in docs/compositing.md).
STATED_REFERENCE_IOU = 0.7


def _whole_face_repaint(truth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A stand-in G(S) like the demo's small generator: sensors gone, but the whole crop
    repainted — blurred, with texture noise everywhere."""
    import cv2

    blotches = cv2.GaussianBlur(rng.normal(0, 1, truth.shape), (0, 0), 3.0)
    blotches *= 40 / blotches.std()  # local colour errors of up to ~±80 levels
    out = cv2.GaussianBlur(truth, (0, 0), 1.2).astype(np.float64) + blotches + rng.normal(0, 6, truth.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


def test_reference_mask_finds_the_sensors_where_the_change_map_cannot() -> None:
    from sensor_removal.cleaning.mask import NormalReference

    size = (96, 96)
    normal = np.stack([f.frame for f in render_recording("s1_normal", seconds=2.0, fps=8.0, size=size, seed=0)])
    sensor = list(render_recording("s1_sensor_a", seconds=1.0, fps=6.0, size=size, seed=0))
    rng = np.random.default_rng(0)
    reference = NormalReference(normal)
    by_method = {"change": [], "reference": []}
    for method, scores in by_method.items():
        masker = SensorMasker(MaskSettings(method=method), reference)
        for f in sensor:
            soft = masker(f.frame, _whole_face_repaint(f.ground_truth, rng))
            assert soft.dtype == np.float32 and soft.min() >= 0 and soft.max() <= 1
            scores.append(iou(masker.core, f.mask))
    assert min(by_method["reference"]) >= STATED_REFERENCE_IOU
    assert np.mean(by_method["reference"]) > np.mean(by_method["change"]) + 0.1


def test_novelty_is_zero_on_a_reference_frame_and_large_on_a_new_colour() -> None:
    from sensor_removal.cleaning.mask import NormalReference

    rng = np.random.default_rng(2)
    frames = rng.integers(60, 200, size=(4, 24, 24, 3), dtype=np.uint8)
    reference = NormalReference(frames)
    assert reference.novelty(frames[2], window=1).max() == 0
    probe = frames[0].copy()
    probe[10, 10] = (255, 0, 255)  # a colour no reference frame shows anywhere near
    nov = reference.novelty(probe, window=1)
    assert nov[10, 10] >= 55 and np.delete(nov.ravel(), 10 * 24 + 10).max() == 0
    # Rank k: a colour only one reference frame shows there is still new at rank 2.
    rare = frames[3].copy()
    rare[5, 5] = (255, 0, 255)
    rare_ref = NormalReference(np.concatenate([frames, rare[None]]))
    assert rare_ref.novelty(probe, window=0, rank=1)[10, 10] >= 55  # not at (5, 5)
    probe2 = frames[0].copy()
    probe2[5, 5] = (255, 0, 255)
    assert rare_ref.novelty(probe2, window=0, rank=1)[5, 5] == 0
    assert rare_ref.novelty(probe2, window=0, rank=2)[5, 5] >= 55
    # A one-pixel shift of the face is explained by the window, not taken for a sensor.
    shifted = np.roll(frames[1], 1, axis=1)
    assert reference.novelty(shifted, window=1)[:, 1:].max() == 0
    assert reference.novelty(shifted, window=0)[:, 1:].max() > 0


def test_reference_method_without_normal_colours_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="normal recordings"):
        SensorMasker(MaskSettings(method="reference"))
    with pytest.raises(ValueError, match="method"):
        MaskSettings(method="edges")  # type: ignore[arg-type]


def test_reference_mask_takes_the_previous_frame_into_account_when_asked() -> None:
    from sensor_removal.cleaning.mask import NormalReference

    base = np.full((1, 16, 16, 3), 120, np.uint8)
    cable = base[0].copy()
    cable[5, :] = (250, 30, 30)
    masker = SensorMasker(MaskSettings(method="reference", threshold=200, temporal=True), NormalReference(base))
    assert masker(cable, cable)[5].min() == 1
    assert masker(base[0], base[0])[5].min() == 1  # gone for one frame: still covered
    assert masker(base[0], base[0]).max() == 0  # two frames: released
    plain = SensorMasker(MaskSettings(method="reference", threshold=200), NormalReference(base))
    assert plain(cable, cable)[5].min() == 1
    assert plain(base[0], base[0]).max() == 0  # the default follows each frame


def test_reference_mask_counts_covered_subpixels() -> None:
    """Cut at 4x the crop, a one-fine-pixel line covers a quarter of each crop pixel it
    crosses: below the 0.4 coverage, so not sensor; two fine pixels (half): sensor."""
    from sensor_removal.cleaning.mask import NormalReference, reference_size

    assert reference_size(16, [(0, 0, 64, 64)], 4.0) == 64
    assert reference_size(16, [(0, 0, 40, 40)], 4.0) == 40  # never finer than the recording
    assert reference_size(16, [(0, 0, 8, 8)], 4.0) == 16  # never coarser than the crop
    fine_base = np.full((1, 64, 64, 3), 120, np.uint8)
    masker = SensorMasker(MaskSettings(method="reference", threshold=200), NormalReference(fine_base))
    crop = np.full((16, 16, 3), 120, np.uint8)
    thin = fine_base[0].copy()
    thin[20, :] = (250, 250, 250)
    assert masker(crop, crop, thin).max() < 0.5
    thick = fine_base[0].copy()
    thick[20:22, :] = (250, 250, 250)
    m = masker(crop, crop, thick)
    assert m[5].min() >= 0.5 and np.delete(m, 5, axis=0).max() == 0
    with pytest.raises(ValueError, match="detail crop"):
        masker(crop, crop, thick[:32, :32])


def test_subpixel_composite_removes_a_cable_thinner_than_a_crop_pixel() -> None:
    """A cable one fine pixel wide (a quarter of a crop pixel at 4x) over skin: the
    crop-level composite keeps part of its colour (its mask is below 1 there), the
    sub-pixel composite replaces exactly the covered quarter, so no trace is left; crop
    pixels no fine pixel touches stay the recording's bytes."""
    import cv2

    from sensor_removal.cleaning.mask import NormalReference, composite_subpixel

    skin, cable = (150, 110, 90), (230, 40, 40)
    fine_base = np.full((1, 64, 64, 3), skin, np.uint8)
    detail = fine_base[0].copy()
    detail[21, :] = cable
    sensor = cv2.resize(detail, (16, 16), interpolation=cv2.INTER_AREA)
    generator = np.full((16, 16, 3), skin, np.uint8)  # a generator that paints the skin back
    masker = SensorMasker(MaskSettings(method="reference", coverage=0.2), NormalReference(fine_base))
    m = masker(sensor, generator, detail)
    assert masker.fine is not None and masker.fine.sum() == 64  # the one fine row, all of it
    crop_level = composite(sensor, generator, m)
    fine = composite_subpixel(sensor, generator, masker.fine, detail)
    trace = np.abs(sensor[5].astype(int) - skin).max()
    assert trace >= 15  # the cable shows in the crop pixel row it crosses
    assert np.abs(crop_level[5].astype(int) - skin).max() >= 5  # partly left by the ramped mask
    assert np.abs(fine[5].astype(int) - skin).max() <= 1  # gone at the finer cut
    assert (np.delete(fine, 5, axis=0) == np.delete(sensor, 5, axis=0)).all()  # untouched, byte for byte
    assert MaskSettings().subpixel  # the default (ours; docs/compositing.md)
    off = SensorMasker(MaskSettings(method="reference", coverage=0.2, subpixel=False), NormalReference(fine_base))
    off(sensor, generator, detail)
    assert off.fine is None


def test_detail_composite_fills_thin_cables_from_the_skin_and_discs_from_the_generator() -> None:
    """The composite at the fine size (ours): uncovered fine pixels are the recording's
    bytes; a cable thinner than a crop pixel takes its neighbours' skin, not the
    generator's (here wrong) colour; the middle of a disc wider than a crop pixel takes
    the generator's; the crop composite takes the same fill, area-reduced."""
    from sensor_removal.cleaning.mask import composite_detail, composite_subpixel, fine_delta

    skin, cable, painted = (150, 110, 90), (230, 40, 40), (120, 140, 60)
    detail = np.full((64, 64, 3), skin, np.uint8)
    fine = np.zeros((64, 64), np.float32)
    detail[21, :] = cable  # one fine pixel: a quarter of a crop pixel at 4x
    fine[21, :] = 1
    yy, xx = np.mgrid[:64, :64]
    disc = (yy - 44) ** 2 + (xx - 32) ** 2 <= 10**2
    detail[disc] = cable
    fine[disc] = 1
    generator = np.full((16, 16, 3), painted, np.uint8)  # paints a colour that is not the skin
    delta = fine_delta(generator, fine, detail)
    out = composite_detail(detail, delta, fine, thin=4.0)
    assert (out[fine == 0] == detail[fine == 0]).all()  # byte for byte
    assert np.abs(out[21, 5:60].astype(int) - skin).max() <= 2  # the cable: the skin around it
    assert np.abs(out[44, 32].astype(int) - painted).max() <= 1  # the disc's middle: the generator
    sensor = cv2.resize(detail, (16, 16), interpolation=cv2.INTER_AREA)
    crop = composite_subpixel(sensor, generator, fine, detail, out)
    assert np.abs(crop[5, 2:14].astype(int) - skin).max() <= 2  # the crop row the cable crosses
    plain = composite_subpixel(sensor, generator, fine, detail)  # without the fill: the generator's colour
    assert np.abs(plain[5, 2:14].astype(int) - skin).max() >= 5


def test_mask_scores_against_the_true_mask() -> None:
    from evaluation.metrics.groundtruth import mask_scores

    true = np.zeros((2, 8, 8), bool)
    true[0, :4] = True  # 32 sensor pixels in frame 0, none in frame 1
    est = np.zeros_like(true)
    est[0, 2:6] = True  # 16 of them found, 16 pixels of skin taken
    s = mask_scores(est, true)
    assert s["iou_mask"][0] == pytest.approx(16 / 48)
    assert s["precision_mask"][0] == pytest.approx(0.5)
    assert s["recall_mask"][0] == pytest.approx(0.5)
    assert all(np.isnan(v[1]) for v in s.values())  # no sensors: not scored


def test_clean_help_states_the_mask_defaults() -> None:
    """``clean --help`` spells the defaults out (it imports no cv2/torch to build them)."""
    from sensor_removal.cli.clean import build_parser

    text = " ".join(build_parser().format_help().split())
    assert f"(default {MaskSettings.novelty:g})" in text
    assert f"(default {MaskSettings.rank})" in text


def test_clean_mask_subpixel_flag_reaches_the_mask_settings() -> None:
    from sensor_removal.cli.clean import _clean_options, build_parser

    parser = build_parser()
    base = ["--ckpt", "x.ckpt", "--out", "o"]
    assert _clean_options(parser.parse_args(base)).mask.subpixel is True
    assert _clean_options(parser.parse_args([*base, "--mask-subpixel", "off"])).mask.subpixel is False
