"""Frame sampling and the frame cache (paper Sec. 3.2: random, seeded 2 %)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import sensor_removal.training.frame_cache as frame_cache
from sensor_removal.core.manifest import load_manifest
from sensor_removal.core.tensors import to_tensor, to_uint8, to_unit_range
from sensor_removal.core.video import VideoError, crop_resize, read_frames
from sensor_removal.training.data import FramesDataModule, UnpairedFrames, augment
from sensor_removal.training.frame_cache import sample_frames, split_train_val
from tests.videos import make_video


def test_sample_fraction_and_determinism() -> None:
    counts = {"a": 5000, "b": 3000, "c": 2000}
    refs = sample_frames(counts, 0.02, seed=7)
    assert len(refs) == 200
    assert refs == sample_frames(counts, 0.02, seed=7)
    assert refs != sample_frames(counts, 0.02, seed=8)
    assert len(set(refs)) == len(refs)
    assert all(0 <= r.frame < counts[r.recording] for r in refs)
    # Uniform over the pooled frames: each recording gets about its share.
    share = {n: sum(r.recording == n for r in refs) / len(refs) for n in counts}
    assert share["a"] == pytest.approx(0.5, abs=0.1)
    assert share["c"] == pytest.approx(0.2, abs=0.1)
    # Random, not equidistant: gaps between consecutive frames vary.
    a = np.array([r.frame for r in refs if r.recording == "a"])
    assert np.diff(a).std() > 5
    assert len(sample_frames({"a": 10}, 0.001, seed=0)) == 1
    with pytest.raises(ValueError):
        sample_frames(counts, 0.0, seed=0)


def test_split_is_90_10_and_disjoint() -> None:
    train, val = split_train_val(100, 0.1, seed=3)
    assert len(val) == 10 and len(train) == 90
    assert not set(train) & set(val)
    assert sorted([*train, *val]) == list(range(100))


@pytest.fixture()
def subject(tmp_path: Path) -> Path:
    recs = []
    for i, (name, cond) in enumerate([("n1", "normal"), ("n2", "normal"), ("s1", "sensor"), ("s2", "sensor")]):
        make_video(tmp_path / f"{name}.mp4", n=40, width=64, height=48, fps=10.0, seed=i)
        recs.append(
            {"name": name, "path": f"{name}.mp4", "session": 1 + i % 2, "condition": cond, "bbox": [10 + i, 4, 36, 36]}
        )
    p = tmp_path / "manifest.yaml"
    p.write_text(yaml.safe_dump({"subject": "tiny", "recordings": recs}))
    return p


def _dm(manifest: Path, **kw) -> FramesDataModule:
    args = dict(
        manifest=str(manifest),
        fraction=0.25,
        seed=1,
        load_size=40,
        crop_size=32,
        batch_size=2,
        num_workers=0,
        cache_dir=str(manifest.parent / "cache"),
    )
    args.update(kw)
    return FramesDataModule(**args)


def test_cache_holds_the_right_crops_from_the_right_domain(subject: Path) -> None:
    dm = _dm(subject)
    dm.prepare_data()
    dm.setup("fit")
    cache = dm.cache
    subj = load_manifest(subject)
    for domain in ("sensor", "normal"):
        refs = cache.refs[domain]
        assert len(refs) == 20  # 25 % of 2 x 40 frames
        assert {subj.recording(r.recording).condition for r in refs} == {domain}
        for row, ref in enumerate(refs[:6]):
            rec = subj.recording(ref.recording)
            frame = read_frames(rec.path, [ref.frame])[0]
            np.testing.assert_array_equal(cache.frames[domain][row], crop_resize(frame, rec.bbox, 40))
    assert len(dm.frames("sensor", "train")) == 18 and len(dm.frames("sensor", "val")) == 2
    batch = next(iter(dm.train_dataloader()))
    assert batch["sensor"].shape == (2, 3, 32, 32) and batch["normal"].shape == (2, 3, 32, 32)
    # uint8 all the way through the loader; the module converts on the device.
    assert batch["sensor"].dtype == torch.uint8 and batch["normal"].dtype == torch.uint8


def test_cache_is_reused_and_keyed(subject: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = _dm(subject)
    first.prepare_data()
    first.setup()
    calls = []
    monkeypatch.setattr(frame_cache, "iter_frames", lambda *a, **k: calls.append(a) or iter(()))
    again = _dm(subject)
    again.prepare_data()
    again.setup()
    assert calls == []  # second run decodes nothing
    assert again.cache.path == first.cache.path
    np.testing.assert_array_equal(again.cache.frames["sensor"], first.cache.frames["sensor"])
    # Other sampling parameters make another cache (and do decode).
    other = _dm(subject, seed=2)
    with pytest.raises(VideoError, match="decoded 0 of the"):  # the stubbed reader yields nothing
        other.prepare_data()
    assert calls
    leftovers = [p for p in (subject.parent / "cache").iterdir() if p.name.startswith(".")]
    assert leftovers == []  # the failed build left no partial cache


def test_augment_and_unpaired_items() -> None:
    img = to_tensor(np.arange(40 * 40 * 3, dtype=np.uint8).reshape(40, 40, 3) % 251)[0]
    g = torch.Generator().manual_seed(0)
    crops = {tuple(augment(img, 32, True, g).flatten()[:5].tolist()) for _ in range(20)}
    assert len(crops) > 1  # random crops/flips
    centre = augment(img, 32, False)
    assert torch.equal(centre, img[:, 4:36, 4:36])
    sensor = np.zeros((3, 40, 40, 3), np.uint8)
    normal = np.full((5, 40, 40, 3), 255, np.uint8)
    ds = UnpairedFrames(sensor, normal, 32, train=True)
    assert len(ds) == 5
    item = ds[4]
    assert item["sensor"].shape == (3, 32, 32) and item["sensor"].dtype == torch.uint8
    assert int(item["sensor"].max()) == 0 and int(item["normal"].min()) == 255


@pytest.mark.numerics
def test_uint8_items_are_the_float_augmentation_of_the_cache() -> None:
    """Cropping and flipping uint8, then converting, gives exactly the float pipeline's values."""
    frames = np.random.default_rng(1).integers(0, 256, (4, 40, 40, 3), dtype=np.uint8)
    ds = UnpairedFrames(frames, frames[::-1].copy(), 32, train=False)
    item = ds[1]
    expected = augment(to_tensor(frames[1])[0], 32, False)
    torch.testing.assert_close(to_unit_range(item["sensor"].unsqueeze(0))[0], expected, rtol=0, atol=0)
    assert item["sensor"].is_contiguous()


def test_loader_pins_memory_for_cuda(subject: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dm = _dm(subject)
    dm.setup()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert dm.train_dataloader().pin_memory is False
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert dm.train_dataloader().pin_memory is True


@pytest.mark.numerics
def test_uint8_round_trip() -> None:
    x = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    np.testing.assert_array_equal(to_uint8(to_tensor(x)), x)
