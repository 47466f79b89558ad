"""Nothing lost, nothing trusted wrongly: a fit's checkpoints and frame cache under faults.

A failed resume writes no untrained checkpoint, and the checkpoint a resume takes is the
one with the most training that loads; SIGTERM / Ctrl-C exit 143 / 130 (real signals to
a real ``python -m sensor_removal fit``); a damaged frame cache is rebuilt with one line;
checkpoints are written whole or not at all (a real full disk on a small tmpfs where the
test may mount one, a fault-injecting writer everywhere).
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from sensor_removal.cli.commands import main
from tests.videos import make_video

ROOT = Path(__file__).resolve().parent.parent

CONFIG = """
subject: tiny
trainer:
  max_epochs: 1
  accelerator: cpu
  enable_progress_bar: false
  enable_model_summary: false
  logger:
    class_path: pytorch_lightning.loggers.CSVLogger
    init_args: {{save_dir: "${{...default_root_dir}}", name: csv}}
  callbacks:
    - class_path: sensor_removal.training.callbacks.RunCheckpoint
      init_args: {{save_last: true, filename: "epoch{{epoch:03d}}", auto_insert_metric_name: false}}
    - class_path: sensor_removal.training.callbacks.InterruptCheckpoint
      init_args: {{dirpath: "${{....default_root_dir}}/checkpoints", filename: interrupted}}
model: {{ngf: 4, ndf: 4, n_blocks: 1, epochs_constant: 1000, epochs_decay: 0}}
data:
  manifest: {manifest}
  fraction: 0.5
  load_size: 36
  crop_size: 32
  batch_size: 4
  num_workers: 0
  cache_dir: {cache}
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("reliability")
    recs = []
    for i, (name, cond) in enumerate([("n1", "normal"), ("s1", "sensor")]):
        make_video(d / f"{name}.mp4", n=24, width=48, height=40, seed=i)
        recs.append({"name": name, "path": f"{name}.mp4", "session": 1, "condition": cond, "bbox": [8, 4, 32, 32]})
    (d / "manifest.yaml").write_text(yaml.safe_dump({"subject": "tiny", "recordings": recs}))
    (d / "tiny.yaml").write_text(CONFIG.format(manifest=d / "manifest.yaml", cache=d / "cache"))
    return d


@pytest.fixture(scope="module")
def trained(tiny: Path) -> Path:
    """A run folder after one epoch of the tiny fit."""
    run = tiny / "trained"
    torch.set_num_threads(1)
    assert main(["fit", "--config", str(tiny / "tiny.yaml"), "--trainer.default_root_dir", str(run)]) == 0
    return run


def _args(tiny: Path, run: Path, *more: str) -> list[str]:
    return ["fit", "--config", str(tiny / "tiny.yaml"), "--trainer.default_root_dir", str(run), *more]


def _step(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=True)["global_step"]


# ----------------------------------------------------------- 3: a resume that fails in setup


def test_resume_failing_in_setup_writes_no_checkpoint(tiny: Path, trained: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")  # the frame cache cannot be built here: setup fails
    code = main(
        _args(tiny, run, "--ckpt_path", "last", "--trainer.max_epochs=3", "--data.cache_dir", str(blocker / "c"))
    )
    assert code == 2
    assert "frame cache" in capsys.readouterr().err
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before  # no interrupted.ckpt
    from lightning_app.runs import resume_checkpoint

    assert resume_checkpoint(run) == run / "checkpoints" / "last.ckpt"


def test_resume_prefers_most_training_over_newest(tmp_path: Path) -> None:
    from lightning_app.runs import resume_checkpoint
    from sensor_removal.training.cli import _checkpoint_file

    ckpts = tmp_path / "checkpoints"
    ckpts.mkdir()
    torch.save({"state_dict": {}, "global_step": 40}, ckpts / "last.ckpt")
    torch.save({"state_dict": {}, "global_step": 20}, ckpts / "epoch000.ckpt")
    time.sleep(0.01)
    torch.save({"state_dict": {}, "global_step": 0}, ckpts / "interrupted.ckpt")  # newest, untrained
    assert resume_checkpoint(tmp_path) == ckpts / "last.ckpt"
    # A truncated newest last.ckpt (full disk): the intact epoch checkpoint is taken.
    data = (ckpts / "last.ckpt").read_bytes()
    (ckpts / "last.ckpt").write_bytes(data[: len(data) // 2])
    assert resume_checkpoint(tmp_path) == ckpts / "epoch000.ckpt"
    assert _checkpoint_file("last", tmp_path) == ckpts / "epoch000.ckpt"


# ----------------------------------------------------------------- 4: signals to a real fit


@pytest.mark.parametrize(
    "sig", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)], ids=["SIGTERM", "SIGINT"]
)
def test_signal_to_fit_exits_128_plus_signal(tiny: Path, tmp_path: Path, sig: signal.Signals) -> None:
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sensor_removal", *_args(tiny, run, "--trainer.max_epochs=1000")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    end = time.monotonic() + 240
    while not (run / "checkpoints" / "epoch000.ckpt").is_file():  # training has begun
        if proc.poll() is not None or time.monotonic() > end:
            proc.kill()
            pytest.fail("fit ended or hung before the signal:\n" + proc.communicate()[1][-2000:])
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err[-2000:]
    assert f"interrupted by {sig.name}" in err
    assert _step(run / "checkpoints" / "interrupted.ckpt") > 0


# ------------------------------------------------------------------- 5: frame cache damage


def _cache_folder(tiny: Path) -> Path:
    (folder,) = [p for p in (tiny / "cache").iterdir() if p.is_dir() and not p.name.startswith(".")]
    return folder


@pytest.mark.parametrize("damage", ["truncate", "zero", "missing", "empty-index", "bad-index"])
def test_damaged_frame_cache_is_rebuilt_with_one_line(tiny: Path, trained: Path, damage: str, caplog) -> None:
    from sensor_removal.training.data import FramesDataModule

    dm = FramesDataModule(
        str(tiny / "manifest.yaml"), fraction=0.5, load_size=36, crop_size=32, cache_dir=str(tiny / "cache")
    )
    dm.setup("fit")
    good = {d: dm.cache.frames[d].copy() for d in ("sensor", "normal")}
    folder = _cache_folder(tiny)
    npy = folder / "normal.npy"
    if damage == "truncate":
        npy.write_bytes(npy.read_bytes()[:1000])
    elif damage == "zero":  # same size: only the checksum notices
        data = npy.read_bytes()
        npy.write_bytes(data[:128] + bytes(len(data) - 128))
    elif damage == "missing":
        npy.unlink()
    else:
        (folder / "index.json").write_text("" if damage == "empty-index" else "{not json")
    caplog.set_level(logging.WARNING, logger="sensor_removal.training.data")
    again = FramesDataModule(
        str(tiny / "manifest.yaml"), fraction=0.5, load_size=36, crop_size=32, cache_dir=str(tiny / "cache")
    )
    again.setup("fit")
    lines = [r.getMessage() for r in caplog.records if "rebuilding" in r.getMessage()]
    assert len(lines) == 1 and str(folder) in lines[0], lines
    for d in ("sensor", "normal"):
        assert (again.cache.frames[d] == good[d]).all()
    caplog.clear()
    FramesDataModule(
        str(tiny / "manifest.yaml"), fraction=0.5, load_size=36, crop_size=32, cache_dir=str(tiny / "cache")
    ).setup("fit")
    assert not [r for r in caplog.records if "rebuilding" in r.getMessage()]  # whole now: reused


# ---------------------------------------------------------------- 6: checkpoints on a full disk


def test_atomic_checkpoint_keeps_old_file_when_the_write_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault-injecting writer: the disk fills after some bytes of the new checkpoint."""
    import sensor_removal.training.atomic_checkpoint as atomic

    target = tmp_path / "last.ckpt"
    io = atomic.AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "global_step": 1}, target)
    old = target.read_bytes()

    def full_disk(obj, f):
        f.write(b"PK\x03\x04" + bytes(1000))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.torch, "save", full_disk)
    with pytest.raises(OSError, match="No space"):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "global_step": 2}, target)
    assert target.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no partial left


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 700 KiB tmpfs (root only): room for one tiny checkpoint, not for two."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root; the fault-injecting test above covers the writer")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=700k", "tmpfs", str(mnt)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_full_disk_during_checkpoint_leaves_loadable_files_and_exit_2(
    tiny: Path, trained: Path, small_disk: Path, capsys
) -> None:
    from sensor_removal.training.cli import _checkpoint_file
    from sensor_removal.training.data import FramesDataModule

    FramesDataModule(
        str(tiny / "manifest.yaml"), fraction=0.5, load_size=36, crop_size=32, cache_dir=str(tiny / "cache")
    ).setup("fit")
    size = (trained / "checkpoints" / "last.ckpt").stat().st_size
    assert 350_000 < size < 700_000, size  # the tmpfs holds one checkpoint, not two
    run = small_disk / "run"
    code = main(_args(tiny, run, "--trainer.max_epochs=1", "--trainer.logger=false"))
    err = capsys.readouterr().err
    assert code == 2, err[-2000:]
    assert "disk full" in err and "Traceback" not in err
    files = sorted((run / "checkpoints").iterdir())
    assert not [p for p in files if p.name.startswith(".")], files  # no partial files
    for p in files:  # whatever is there loads
        assert _step(p) > 0, p
    found = _checkpoint_file("last", run)
    assert found is not None and _step(found) > 0


def test_fresh_start_drops_an_earlier_attempts_interrupted_checkpoint(tmp_path: Path) -> None:
    """It would out-step the new run's checkpoints and be taken by the next resume."""
    from types import SimpleNamespace

    from sensor_removal.training.callbacks import InterruptCheckpoint

    cb = InterruptCheckpoint(dirpath=str(tmp_path), filename="interrupted")
    stale = tmp_path / "interrupted.ckpt"
    stale.write_bytes(b"old")
    cb.on_train_start(SimpleNamespace(ckpt_path=str(stale), is_global_zero=True), None)  # resumed from it: kept
    assert stale.is_file()
    cb.on_train_start(SimpleNamespace(ckpt_path=None, is_global_zero=True), None)  # a fresh start: dropped
    assert not stale.exists()
