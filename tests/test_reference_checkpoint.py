"""The normal domain's colour reference travels with the model: a fit stores it in the
checkpoint, and a lone ``clean --video`` uses it for the ``reference`` compositing mask."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from sensor_removal.cleaning import checkpoint_reference, load_generator
from sensor_removal.cleaning.mask import NormalReference
from sensor_removal.cli.commands import main
from sensor_removal.core.video import crop_resize, read_frames, write_video
from tests.videos import indexed_frames

BBOX = [10, 4, 36, 36]
N = 40
#: The black square the "sensor" recording adds inside the crop (rows, cols of the frame).
SQUARE = (slice(16, 26), slice(22, 32))


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A subject whose sensor recording is its normal recording plus a black square
    (a colour the normal frames never show: G and B are >= 40 everywhere), and the
    last checkpoint of a one-epoch 36/32-px fit of it."""
    d = tmp_path_factory.mktemp("refckpt")
    normal = indexed_frames(N, 64, 48, seed=0)
    sensor = normal.copy()
    sensor[:, SQUARE[0], SQUARE[1]] = 0
    write_video(d / "n1.mp4", normal, fps=10.0, codec="h264-lossless")
    write_video(d / "s1.mp4", sensor, fps=10.0, codec="h264-lossless")
    recs = [
        {"name": name, "path": f"{name}.mp4", "session": 1, "condition": cond, "bbox": BBOX}
        for name, cond in (("n1", "normal"), ("s1", "sensor"))
    ]
    (d / "manifest.yaml").write_text(yaml.safe_dump({"subject": "ref", "recordings": recs}))
    (d / "tiny.yaml").write_text(
        f"""
subject: ref
trainer:
  max_epochs: 1
  accelerator: cpu
  enable_progress_bar: false
  enable_model_summary: false
  logger: false
  callbacks:
    - class_path: sensor_removal.training.callbacks.RunCheckpoint
      init_args: {{save_last: true, filename: "epoch{{epoch:03d}}", auto_insert_metric_name: false}}
model: {{ngf: 4, ndf: 4, n_blocks: 1, epochs_constant: 1, epochs_decay: 0}}
data: {{manifest: {d / "manifest.yaml"}, fraction: 0.5, load_size: 36, crop_size: 32, batch_size: 4, num_workers: 0}}
"""
    )
    run = d / "run"
    assert main(["fit", "--config", str(d / "tiny.yaml"), "--trainer.default_root_dir", str(run)]) == 0
    return d, run / "checkpoints" / "last.ckpt"


def _normal_crops(d: Path) -> np.ndarray:
    frames = read_frames(d / "n1.mp4", range(N))
    return np.stack([crop_resize(f, tuple(BBOX), 36) for f in frames])


def test_fit_stores_the_normal_recordings_reference(fitted: tuple[Path, Path]) -> None:
    """The reference is plain uint8 tensors (``weights_only=True`` loads it), cut at the
    reference size of the cleaner's crop (the cache's load size 36; the bbox is 36 px, so
    no finer cut is possible) from frames spread over the normal recording (here all 40,
    fewer than the 60 it keeps)."""
    d, ckpt_path = fitted
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    state = ckpt["normal_reference"]
    assert set(state) == {"frames"}
    frames = state["frames"]
    assert frames.dtype == torch.uint8 and frames.shape[1:] == (36, 36, 3)
    assert np.array_equal(frames.numpy(), _normal_crops(d))
    # Round trip through the cleaning side: the same arrays, no matter which fields.
    ref = checkpoint_reference(load_generator(ckpt_path)[1])
    assert ref is not None and np.array_equal(ref.frames, frames.numpy())
    again = NormalReference.from_state(ref.state(), "test")
    assert all(np.array_equal(getattr(again, k), v.numpy()) for k, v in ref.state().items())


def _mask(argv: list[str], out: Path) -> np.ndarray:
    common = ["--composite", "auto", "--mask-method", "reference", "--mask-rank", "1", "--mask-threshold", "200"]
    tail = ["--mask-video", "--codec", "h264-lossless", "--device", "cpu", "--no-progress"]
    assert main(["clean", *argv, "--out", str(out), *common, *tail]) == 0
    (mask_file,) = [p for p in (out if out.is_dir() else out.parent).iterdir() if p.name.endswith(".mask.mp4")]
    return read_frames(mask_file, range(N))[..., 0].astype(np.int16)


def test_lone_video_uses_the_checkpoints_reference(fitted: tuple[Path, Path], tmp_path: Path) -> None:
    """``clean --video --mask-method reference`` works from the checkpoint alone and gives
    exactly the mask of ``clean --manifest`` (which prefers the checkpoint's reference) and
    of an old checkpoint without one (the manifest's recordings, cut the same way)."""
    d, ckpt = fitted
    video = _mask(
        ["--ckpt", str(ckpt), "--video", str(d / "s1.mp4"), "--bbox", ",".join(map(str, BBOX))],
        tmp_path / "v" / "c.mp4",
    )
    manifest = _mask(["--ckpt", str(ckpt), "--manifest", str(d / "manifest.yaml")], tmp_path / "m")
    assert np.array_equal(video, manifest)

    old = tmp_path / "old.ckpt"
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    state.pop("normal_reference")
    torch.save(state, old)
    recordings = _mask(["--ckpt", str(old), "--manifest", str(d / "manifest.yaml")], tmp_path / "r")
    assert np.array_equal(video, recordings)
    # The square: fully sensor (255); outside it, nothing.
    rows = slice(SQUARE[0].start - BBOX[1], SQUARE[0].stop - BBOX[1])
    cols = slice(SQUARE[1].start - BBOX[0], SQUARE[1].stop - BBOX[0])
    assert video[:, rows, cols].mean() > 250
    outside = np.ones(video.shape[1:], bool)
    outside[rows, cols] = False
    assert (video[:, outside] < 8).mean() > 0.95
