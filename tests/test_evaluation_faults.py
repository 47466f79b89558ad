"""Evaluation under faults: a cleaned video of the wrong recording is refused, a full
disk ends in one message and exit 2 (a real full tmpfs where the test may mount one, a
fault-injecting writer everywhere), a report is complete only when all its files are,
and two runs into one ``--out`` do not interleave.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from evaluation.cli import main as evaluation_main
from sensor_removal.cli.commands import main as sr_main
from tests.checkpoints import write_checkpoint
from tests.videos import make_video


@pytest.fixture(scope="module")
def cleaned(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A subject with two equally long sensor recordings, cleaned by the real ``clean``."""
    d = tmp_path_factory.mktemp("evalfaults")
    recs = []
    for i, (name, cond, session) in enumerate(
        [("n1", "normal", 1), ("s1", "sensor", 1), ("n2", "normal", 2), ("s2", "sensor", 2)]
    ):
        make_video(d / f"{name}.mp4", n=12, width=48, height=40, seed=i)
        recs.append(
            {"name": name, "path": f"{name}.mp4", "session": session, "condition": cond, "bbox": [8, 4, 32, 32]}
        )
    (d / "manifest.yaml").write_text(yaml.safe_dump({"subject": "ev", "recordings": recs}))
    write_checkpoint(d / "model.ckpt", d / "manifest.yaml")
    code = sr_main(
        [
            "clean",
            "--ckpt",
            str(d / "model.ckpt"),
            "--manifest",
            str(d / "manifest.yaml"),
            "--out",
            str(d / "clean"),
            "--device",
            "cpu",
            "--no-progress",
            "--codec",
            "mp4v",
        ]
    )
    assert code == 0
    return {"dir": d, "manifest": d / "manifest.yaml", "cleaned": d / "clean" / "manifest.yaml"}


def _run(c: dict[str, Path], cleaned: Path, out: Path) -> int:
    return evaluation_main(
        [
            "run",
            "--manifest",
            str(c["manifest"]),
            "--cleaned",
            str(cleaned),
            "--out",
            str(out),
            "--metrics",
            "temporal",
            "--device",
            "cpu",
            "--segments",
            "whole",
        ]
    )


def test_cleaned_manifest_records_content_ids(cleaned) -> None:
    doc = yaml.safe_load(cleaned["cleaned"].read_text())
    assert all(len(r["source_id"]) == 32 and len(r["video_id"]) == 32 for r in doc["recordings"])


def test_swapped_cleaned_videos_are_refused_naming_both(cleaned, tmp_path: Path, capfd) -> None:
    assert _run(cleaned, cleaned["cleaned"], tmp_path / "ok") == 0  # the control: as clean wrote it
    capfd.readouterr()
    # The two entries' files swapped in the manifest (equal frame counts: not caught before).
    doc = yaml.safe_load(cleaned["cleaned"].read_text())
    a, b = doc["recordings"]
    a["path"], b["path"] = b["path"], a["path"]
    swapped = cleaned["cleaned"].with_name("swapped.yaml")
    swapped.write_text(yaml.safe_dump(doc))
    assert _run(cleaned, swapped, tmp_path / "bad") == 2
    err = capfd.readouterr().err
    assert "Traceback" not in err and "s2.mp4" in err and ("s1" in err) and "clean" in err
    assert not (tmp_path / "bad" / "results.csv").exists()
    # The files swapped on disk, the manifest untouched.
    folder = tmp_path / "clean"
    shutil.copytree(cleaned["cleaned"].parent, folder)
    (folder / "s1.mp4").rename(folder / "tmp.mp4")
    (folder / "s2.mp4").rename(folder / "s1.mp4")
    (folder / "tmp.mp4").rename(folder / "s2.mp4")
    assert _run(cleaned, folder / "manifest.yaml", tmp_path / "bad2") == 2
    assert "replaced or swapped" in capfd.readouterr().err


def test_second_run_into_one_out_is_refused(cleaned, tmp_path: Path, capfd) -> None:
    from filelock import FileLock

    out = tmp_path / "res"
    with FileLock(str(tmp_path / ".res.evaluation.lock")):
        assert _run(cleaned, cleaned["cleaned"], out) == 2
    err = capfd.readouterr().err
    assert "another `evaluation run`" in err and str(out) in err
    assert not (out / "results.csv").exists()


def test_report_is_complete_only_with_all_its_files(
    cleaned, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd
) -> None:
    """Fault-injecting writer: the disk fills between report.md and tables.tex."""
    import evaluation.report.make as make
    from evaluation.report import report_is_complete
    from sensor_removal.cluster.task import report_complete

    res = tmp_path / "run" / "evaluation"
    assert _run(cleaned, cleaned["cleaned"], res) == 0
    capfd.readouterr()
    real = make._write_text

    def full_at_tex(path: Path, text: str) -> Path:
        if path.name == "tables.tex":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, text)

    monkeypatch.setattr(make, "_write_text", full_at_tex)
    out = tmp_path / "run" / "report"
    assert evaluation_main(["report", str(res), "--out", str(out)]) == 2
    err = capfd.readouterr().err
    assert "disk full" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert (out / "report.md").is_file() and not report_is_complete(out)
    assert not report_complete(tmp_path / "run")  # the sweep reruns this subject's report
    monkeypatch.setattr(make, "_write_text", real)
    assert evaluation_main(["report", str(res), "--out", str(out)]) == 0
    assert report_is_complete(out) and report_complete(tmp_path / "run")


@pytest.fixture
def full_disk(tmp_path: Path):
    """A small tmpfs filled to the last byte (root only)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root; the fault-injecting test above covers the writers")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        fd = os.open(mnt / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, bytes(4096)):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_full_disk_in_run_and_report_exits_2(cleaned, full_disk: Path, tmp_path: Path, capfd) -> None:
    assert _run(cleaned, cleaned["cleaned"], full_disk / "res") == 2
    err = capfd.readouterr().err
    assert "disk full" in err and "Traceback" not in err, err[-2000:]
    assert not (full_disk / "res" / "results.csv").exists()
    res = tmp_path / "res"
    assert _run(cleaned, cleaned["cleaned"], res) == 0
    capfd.readouterr()
    assert evaluation_main(["report", str(res), "--out", str(full_disk / "report")]) == 2
    err = capfd.readouterr().err
    assert "disk full" in err and "Traceback" not in err, err[-2000:]
    from evaluation.report import report_is_complete

    assert not report_is_complete(full_disk / "report")
