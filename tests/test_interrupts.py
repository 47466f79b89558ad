"""``clean`` as SLURM and users stop it: SIGTERM (what SLURM sends before the kill) and
SIGINT (Ctrl-C) remove the unfinished output, keep the finished recordings in the
cleaned manifest, and end with one line instead of a traceback. Two ``clean`` processes
writing into one folder both keep their manifest entries.

Real subprocesses (``python -m sensor_removal clean``) on tiny videos; a few thousand
48x40 frames keep a recording busy for a few seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from sensor_removal.cli.commands import main as sr_main
from sensor_removal.core.manifest import load_manifest
from tests.checkpoints import write_checkpoint
from tests.videos import make_video

ROOT = Path(__file__).resolve().parent.parent
LONG_FRAMES = 3000


@pytest.fixture(scope="module")
def subject(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Sensor recordings: ``first`` (10 frames) and ``second``/``third`` (long, one file)."""
    d = tmp_path_factory.mktemp("interrupts")
    make_video(d / "short.mp4", n=10, width=48, height=40)
    make_video(d / "long.mp4", n=LONG_FRAMES, width=48, height=40, seed=1, codec="mp4v")
    recs = [
        {"name": name, "path": path, "session": 1, "condition": "sensor", "bbox": [8, 4, 32, 32]}
        for name, path in (("first", "short.mp4"), ("second", "long.mp4"), ("third", "long.mp4"))
    ]
    (d / "manifest.yaml").write_text(yaml.safe_dump({"subject": "subj01", "recordings": recs}))
    write_checkpoint(d / "model.ckpt", d / "manifest.yaml")
    return d


def _clean_args(subject: Path, out: Path, *recordings: str) -> list[str]:
    return [
        "clean",
        "--ckpt",
        str(subject / "model.ckpt"),
        "--manifest",
        str(subject / "manifest.yaml"),
        "--out",
        str(out),
        "--composite",  # the paper's full repaint: these tests are about signals, not masks
        "off",
        "--device",
        "cpu",
        "--no-progress",
        "--codec",
        "mp4v",
        "--recordings",
        *recordings,
    ]


def _clean(subject: Path, out: Path, *recordings: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "sensor_removal", *_clean_args(subject, out, *recordings)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(condition, proc: subprocess.Popen, timeout: float = 240.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"clean ended (exit {proc.returncode}) before the signal could be sent:\n{out}\n{err}")
        if time.monotonic() > end:
            proc.kill()
            pytest.fail("clean did not reach the second recording in time")
        time.sleep(0.02)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_during_clean_removes_partial_keeps_finished(subject: Path, tmp_path: Path, sig: signal.Signals) -> None:
    out = tmp_path / "clean"
    proc = _clean(subject, out, "first", "second")
    # Signal while the second recording's frames are being written (its temporary file has
    # data): the first is done by then.
    _wait_for(
        lambda: (out / "first.mp4").is_file() and any(p.stat().st_size > 0 for p in out.glob(".second.*partial*")), proc
    )
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig
    assert "Traceback" not in err
    assert f"interrupted by {sig.name}" in err
    assert len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in out.iterdir() if not p.name.endswith(".lock")) == ["first.mp4", "manifest.yaml"]
    cleaned = load_manifest(out / "manifest.yaml", require_domains=("clean",))
    assert [r.source for r in cleaned.recordings] == ["first"]


def test_two_cleans_into_one_folder_keep_both_entries(subject: Path, tmp_path: Path) -> None:
    out = tmp_path / "clean"
    procs = [_clean(subject, out, "second"), _clean(subject, out, "third")]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    cleaned = load_manifest(out / "manifest.yaml", require_domains=("clean",))
    assert sorted(r.source for r in cleaned.recordings) == ["second", "third"]


def test_rerun_after_kill_9_removes_stale_partial_and_keeps_finished(
    subject: Path, tmp_path: Path, capfd, single_thread
) -> None:
    """kill -9 (no handler runs): the finished recording is already listed, the rerun
    removes the unfinished one's stale temporary file with one line, and a finished output
    that a killed run wrote but had not listed yet is adopted after checking its source
    tag and frame count (a foreign file in its place is still refused)."""
    out = tmp_path / "clean"
    proc = _clean(subject, out, "first", "second")
    _wait_for(
        lambda: (out / "first.mp4").is_file() and any(p.stat().st_size > 0 for p in out.glob(".second.*partial*")), proc
    )
    proc.kill()
    proc.communicate(timeout=60)
    assert list(out.glob(".second.*partial*"))  # what kill -9 leaves
    cleaned = load_manifest(out / "manifest.yaml", require_domains=("clean",))
    assert [r.source for r in cleaned.recordings] == ["first"]
    # The window before listing: the entry is missing, the file is there.
    (out / "manifest.yaml").unlink()
    assert sr_main(_clean_args(subject, out, "first")) == 0  # in-process: the reruns are short
    err = capfd.readouterr().err
    assert "removed .second." in err and "killed" in err
    assert not list(out.glob(".*partial*"))
    cleaned = load_manifest(out / "manifest.yaml", require_domains=("clean",))
    assert [r.source for r in cleaned.recordings] == ["first"]
    # A foreign file where an output would go is not adopted.
    (out / "manifest.yaml").unlink()
    make_video(out / "first.mp4", n=10, width=32, height=32, seed=5)
    assert sr_main(_clean_args(subject, out, "first")) == 2
    assert "--overwrite" in capfd.readouterr().err
