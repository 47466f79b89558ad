"""The app's pieces without a browser: path checks, fit arguments, run summaries."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from lightning_app.paths import PathRefused, ServedRoots
from lightning_app.runs import read_metrics, resume_checkpoint, summarize_run
from lightning_app.training import FitLauncher, LaunchError, parse_overrides


@pytest.fixture
def roots(tmp_path: Path) -> ServedRoots:
    (tmp_path / "runs" / "r1").mkdir(parents=True)
    (tmp_path / "runs" / "r1" / "a.txt").write_text("a")
    (tmp_path / "data").mkdir()
    (tmp_path / "secret.txt").write_text("secret")
    os.symlink(tmp_path / "secret.txt", tmp_path / "runs" / "r1" / "link.txt")
    return ServedRoots.create(tmp_path / "runs", tmp_path / "data")


@pytest.mark.parametrize(
    "root, rel",
    [
        ("runs", "../secret.txt"),
        ("runs", "r1/../../secret.txt"),
        ("runs", "/etc/passwd"),
        ("data", "../runs/r1/a.txt"),
        ("runs", "r1/link.txt"),
        ("etc", "passwd"),
        ("runs", ""),
        ("runs", "r1/\x00a.txt"),
    ],
)
def test_paths_outside_the_roots_are_refused(roots: ServedRoots, root: str, rel: str) -> None:
    with pytest.raises(PathRefused):
        roots.resolve(root, rel)


def test_paths_inside_resolve_and_map_to_urls(roots: ServedRoots) -> None:
    path = roots.resolve("runs", "r1/./a.txt")
    assert path.read_text() == "a"
    assert roots.url(path) == "/files/runs/r1/a.txt"
    assert roots.url(roots.runs.parent / "secret.txt") is None
    assert roots.contains(path) and not roots.contains(roots.runs.parent / "secret.txt")


def test_overrides_pass_model_and_data_options_only() -> None:
    assert parse_overrides("--model.ngf 32 --data.fraction=0.05 --trainer.devices 2") == [
        "--model.ngf=32",
        "--data.fraction=0.05",
        "--trainer.devices=2",
    ]
    for bad in (
        "--trainer.default_root_dir /tmp/x",
        "--config other.yaml",
        "--data.manifest /etc/m.yaml",
        "--trainer.logger false",
        "--ckpt_path x",
        "--model.ngf",
        "--model.ngf ${oc.env:HOME}",
        "plain",
    ):
        with pytest.raises(LaunchError):
            parse_overrides(bad)


def test_run_names_stay_under_runs(tmp_path: Path) -> None:
    launcher = FitLauncher(tmp_path)
    assert launcher.run_dir("subj07") == tmp_path.resolve() / "subj07"
    for bad in ("../x", "a/b", "", ".hidden", "x" * 80):
        with pytest.raises(LaunchError):
            launcher.run_dir(bad)


def test_summary_reads_versions_in_order_and_states(tmp_path: Path) -> None:
    run = tmp_path / "run"
    for v, rows in (
        (0, [{"epoch": 0, "step": 1, "train/loss_g_step": 3.0}, {"epoch": 0, "step": 1, "train/loss_g": 2.5}]),
        (
            1,
            [
                {"epoch": 1, "step": 3, "train/loss_g_step": 2.0},
                {"epoch": 1, "step": 3, "train/loss_g": 1.5, "val/cycle": 0.4},
            ],
        ),
    ):
        (run / "csv" / f"version_{v}").mkdir(parents=True)
        pd.DataFrame(rows).to_csv(run / "csv" / f"version_{v}" / "metrics.csv", index=False)
    (run / "csv" / "version_1" / "config.yaml").write_text("subject: s9\ntrainer: {max_epochs: 4}\n")
    assert list(read_metrics(run)["step"]) == [1, 1, 3, 3]
    s = summarize_run(run, now=time.time() + 1000)  # files untouched for a while
    assert (s.subject, s.epochs_done, s.epochs_planned) == ("s9", 2, 4)
    assert s.last_losses == {"train/loss_g_step": 2.0} and s.val_metrics == {"val/cycle": 0.4}
    assert s.state == "incomplete" and not s.report
    assert summarize_run(run, running=True).state == "running"
    ckpts = run / "checkpoints"
    ckpts.mkdir()
    torch.save({"state_dict": {}, "global_step": 6}, ckpts / "last.ckpt")
    torch.save({"state_dict": {}, "global_step": 9}, ckpts / "interrupted.ckpt")  # mid-epoch, after last.ckpt
    os.utime(ckpts / "interrupted.ckpt", (1, 1))  # older: the step decides, not the time
    assert resume_checkpoint(run) == ckpts / "interrupted.ckpt"
    assert summarize_run(run).state == "stopped (resumable)"


def test_cli_rejects_bad_folders_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from lightning_app.cli import main

    assert main(["--runs", str(tmp_path / "runs"), "--data", str(tmp_path / "missing")]) == 2
    assert "--data" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["--runs", str(tmp_path / "file")]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert main(["--runs", str(tmp_path / "runs"), "--max-upload-mb", "0"]) == 2
