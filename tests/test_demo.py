"""``make demo`` guarded in the default run: the demo's real entry point, end to end.

``python -m sensor_removal demo`` runs as a user runs it (a subprocess, the shipped
``conf/default.yaml`` and ``conf/demo.yaml``), on a short synthetic subject with tiny
networks and one epoch, and the test reads what a user sees: the exit code, the files the
summary names, and the PSNR summary line. A config key that only one parser accepts, a
broken import on the demo's path or a post-fit hook that fails all turn this test red.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parent.parent

#: Tiny settings: one epoch of 4-filter networks at 32 px on 3-second videos.
TINY = [
    "--seconds",
    "3",
    "--trainer.max_epochs=1",
    "--model.ngf=4",
    "--model.ndf=4",
    "--model.n_blocks=1",
    "--model.epochs_constant=1",
    "--model.epochs_decay=1",
    "--data.load_size=36",
    "--data.crop_size=32",
]

SUMMARY = re.compile(
    r"PSNR under the sensor mask vs ground truth: sensor (?P<s>\S+) dB -> clean (?P<c>\S+) dB \((?P<gain>\S+) dB\)"
)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("demo")
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "2"}
    proc = subprocess.run(
        [sys.executable, "-m", "sensor_removal", "demo", "--out", str(out), *TINY],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return proc, out


def _field(stdout: str, name: str) -> str:
    m = re.search(rf"^{name}\s*: (\S+)", stdout, flags=re.MULTILINE)
    assert m, f"the demo summary has no {name!r} line:\n{stdout}"
    return m.group(1)


def test_demo_exits_zero_with_psnr_summary(demo_run) -> None:
    proc, _ = demo_run
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Traceback" not in proc.stderr
    m = SUMMARY.search(proc.stdout)
    assert m, proc.stdout
    sensor, clean, gain = (float(m.group(k)) for k in ("s", "c", "gain"))
    assert all(math.isfinite(v) for v in (sensor, clean, gain))
    assert gain == pytest.approx(clean - sensor, abs=0.011)


def test_demo_leaves_checkpoint_grid_videos_and_report(demo_run) -> None:
    proc, out = demo_run
    assert proc.returncode == 0, proc.stderr[-4000:]
    run = out / "runs" / "synth01"
    ckpt = Path(_field(proc.stdout, "checkpoint"))
    assert ckpt.is_file() and run in ckpt.parents
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert state["epoch"] == 0 and state["hyper_parameters"]["ngf"] == 4  # the tiny override reached the model
    grid = Path(_field(proc.stdout, "grids"))
    assert grid.is_file() and grid.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    clean_dir = Path(_field(proc.stdout, "cleaned videos"))
    cleaned = yaml.safe_load((clean_dir / "manifest.yaml").read_text())
    sensors = [
        r["name"]
        for r in yaml.safe_load((out / "data" / "manifest.yaml").read_text())["recordings"]
        if r["condition"] == "sensor"
    ]
    assert sorted(r["source"] for r in cleaned["recordings"]) == sorted(sensors)
    for rec in cleaned["recordings"]:
        video = clean_dir / rec["path"]
        assert video.is_file() and video.stat().st_size > 1000
    report = Path(_field(proc.stdout, "report"))
    text = report.read_text()
    assert "|" in text and "psnr" in text.lower()  # a markdown table of the ground-truth metrics
    assert not list(out.rglob("*.partial*")), "a half-written file was left behind"


def test_demo_shows_repaint_and_composited_side_by_side(demo_run) -> None:
    """Compositing (our extension) in the demo: the labelled picture and the table rows."""
    import cv2

    proc, _ = demo_run
    assert proc.returncode == 0, proc.stderr[-4000:]
    picture = Path(_field(proc.stdout, "picture"))
    image = cv2.imread(str(picture))
    assert image is not None and image.shape[1] > 4 * 160  # four labelled columns of >= 160 px
    for row in ("S (sensor video)", "C full repaint", "C composited (ours)"):
        assert row in proc.stdout


LANDMARKS = re.compile(
    r"landmark error vs ground truth \(NME, dlib 68 points\): sensor (?P<s>\S+) -> clean (?P<c>\S+); "
    r"detection rate sensor (?P<ds>\S+) % -> clean (?P<dc>\S+) % \(ground truth (?P<dg>\S+) %\)"
)


def test_demo_reports_the_real_landmark_model(demo_run) -> None:
    """The real dlib models judge the demo's cleaning: a landmark line in the summary and
    the landmark tables in the report."""
    proc, _ = demo_run
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert re.search(r"^metrics\s*: .*\blandmarks\b", proc.stdout, flags=re.MULTILINE), proc.stdout
    m = LANDMARKS.search(proc.stdout)
    assert m, proc.stdout
    assert math.isfinite(float(m.group("s")))  # at the ground truth's face boxes: always measurable
    assert float(m.group("dg")) >= 90  # the synthetic face is found on the ground-truth frames
    assert 0 <= float(m.group("ds")) <= 100 and 0 <= float(m.group("dc")) <= 100
    text = Path(_field(proc.stdout, "report")).read_text()
    assert "Landmarks — geometry time series" in text and "Landmarks — error against the ground truth" in text


def test_demo_reports_the_expression_muscle_mapping(demo_run) -> None:
    """Our extension: one summary line with Exp2EMG / EMG2Exp R² from the ground-truth,
    sensor and cleaned videos, and the table it comes from."""
    proc, _ = demo_run
    line = next((x for x in proc.stdout.splitlines() if x.startswith("sEMG mapping (ours):")), None)
    assert line is not None, proc.stdout
    for part in ("Exp2EMG R² GT", "EMG2Exp R² GT", ", S ", ", C "):
        assert part in line, line
    table = Path(line.rsplit("[", 1)[1].split(";")[0])
    assert table.is_file() and "| exp2emg | cleaned |" in table.read_text()
    report = Path(line.rsplit(" in ", 1)[1].rstrip("]"))
    text = report.read_text()
    assert "## Expression <-> muscle mapping (ours" in text and "fig_emg_r_per_muscle.png" in text
    assert (report.parent / "fig_emg_r_per_muscle.png").is_file()
