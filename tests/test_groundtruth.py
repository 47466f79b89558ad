"""PSNR / SSIM against the sensor-free ground truth of synthetic subjects."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evaluation.metrics.groundtruth import (
    GroundTruthError,
    crop_mask,
    evaluate_recording,
    evaluate_subject,
    frame_scores,
)
from sensor_removal.core.manifest import load_manifest
from tests.conftest import write_cleaned_recordings

pytestmark = pytest.mark.usefixtures("single_thread")


def test_perfect_cleaning_scores_best_and_sensor_row_lower(synthetic_subject: Path, tmp_path: Path) -> None:
    cleaned = write_cleaned_recordings(synthetic_subject, tmp_path / "cleaned", size=32)
    subject = load_manifest(synthetic_subject)
    rows = pd.DataFrame(evaluate_subject(subject, load_manifest(cleaned, require_domains=("clean",))))
    sensors = [r.name for r in subject.by_condition("sensor")]
    assert sorted(rows["reference"].unique()) == sorted(f"{n}:ground_truth" for n in sensors)
    assert set(rows["segment"]) == {"schaede", "sentence", "emotion", "whole"}
    assert set(rows["feature"]) == {"whole", "mask", "outside"} and set(rows["metric"]) == {"psnr", "ssim", "flicker"}
    assert set(rows[rows["metric"] == "flicker"]["feature"]) == {"mask"}
    whole = rows[rows["segment"] == "whole"].set_index(["other", "metric", "feature"])["value"]
    n = rows[(rows["segment"] == "whole") & (rows["feature"] == "whole")]["n"]
    assert (n == 12).all()
    for s in sensors:
        # cleaned == ground truth: PSNR inf, SSIM 1, whole crop and inside the mask.
        assert math.isinf(whole[(f"{s}_clean", "psnr", "whole")])
        assert math.isinf(whole[(f"{s}_clean", "psnr", "mask")])
        assert whole[(f"{s}_clean", "ssim", "whole")] == pytest.approx(1.0, abs=1e-6)
        assert whole[(f"{s}_clean", "ssim", "mask")] == pytest.approx(1.0, abs=1e-6)
        assert math.isinf(whole[(f"{s}_clean", "psnr", "outside")])
        assert whole[(f"{s}_clean", "flicker", "mask")] == 0.0  # changes exactly as the truth
        assert whole[(s, "flicker", "mask")] > 0  # sensors move over the skin
        # The sensor video itself (no cleaning) is worse, most of all under the sensors.
        assert 5 < whole[(s, "psnr", "mask")] < whole[(s, "psnr", "whole")] < whole[(s, "psnr", "outside")]
        assert whole[(s, "ssim", "mask")] < whole[(s, "ssim", "whole")] < 1.0


def test_sensor_row_without_cleaned_video(synthetic_subject: Path) -> None:
    rec = load_manifest(synthetic_subject).by_condition("sensor")[0]
    rows = evaluate_recording(rec, None, crop_size=24, segments=("whole",))
    assert {r["kind"] for r in rows} == {"sensor"} and len(rows) == 7  # psnr, ssim x 3 regions + flicker
    with pytest.raises(GroundTruthError, match="crop size"):
        evaluate_recording(rec, None, crop_size=None)


def test_mask_shape_must_match(synthetic_subject: Path, tmp_path: Path) -> None:
    from dataclasses import replace

    rec = load_manifest(synthetic_subject).by_condition("sensor")[0]
    bad = tmp_path / "bad.mask.npz"
    np.savez(bad, packed=np.packbits(np.zeros((3, 64, 64), bool), axis=-1), shape=np.array([3, 64, 64]))
    with pytest.raises(GroundTruthError, match="field 'mask'"):
        evaluate_recording(replace(rec, mask=bad), None, crop_size=24)


def test_crop_mask_and_frame_scores() -> None:
    mask = np.zeros((40, 60), bool)
    mask[10:20, 30:40] = True
    m = crop_mask(mask, (20, 0, 40, 40), 20)  # half resolution, nearest
    assert m.shape == (20, 20) and m.sum() == 25 and m[5:10, 5:10].all()
    rng = np.random.default_rng(0)
    t = rng.integers(0, 256, size=(2, 16, 16, 3), dtype=np.uint8)
    p = t.copy()
    p[:, :4, :4] = 0
    msk = np.zeros((2, 16, 16), bool)
    msk[0, :4, :4] = True  # frame 1 has an empty mask
    s = frame_scores(t, p, msk)
    mse_mask = ((t[0, :4, :4].astype(float)) ** 2).mean()
    assert s["psnr_mask"][0] == pytest.approx(10 * np.log10(255**2 / mse_mask))
    assert np.isnan(s["psnr_mask"][1]) and np.isnan(s["ssim_mask"][1])
    assert s["psnr_whole"][0] == pytest.approx(10 * np.log10(255**2 / (mse_mask * 16 / 256)))


def test_repaint_next_to_a_composited_video_gets_its_own_rows(synthetic_subject: Path, tmp_path: Path) -> None:
    import shutil

    from sensor_removal.core.video import sibling_path

    cleaned = write_cleaned_recordings(synthetic_subject, tmp_path / "cleaned", size=32)
    other = write_cleaned_recordings(synthetic_subject, tmp_path / "as_sensor", size=32, source="sensor")
    clean_subj = load_manifest(cleaned, require_domains=("clean",))
    first = clean_subj.recordings[0]
    # The "repaint" is the uncleaned crop here: it must score like the sensor row.
    shutil.copy(
        load_manifest(other, require_domains=("clean",)).recordings[0].path, sibling_path(first.path, "repaint")
    )
    rows = pd.DataFrame(evaluate_subject(load_manifest(synthetic_subject), clean_subj, segments=("whole",)))
    rep = rows[rows["kind"] == "repaint"]
    assert set(rep["other"]) == {f"{first.name}:repaint"}
    assert set(rep["reference"]) == {f"{first.source}:ground_truth"}
    value = rows.set_index(["kind", "other", "metric", "feature"])["value"]
    assert value[("repaint", f"{first.name}:repaint", "psnr", "mask")] < value[("clean", first.name, "psnr", "mask")]
    assert value[("repaint", f"{first.name}:repaint", "psnr", "mask")] == pytest.approx(
        value[("sensor", first.source, "psnr", "mask")], abs=0.5
    )
