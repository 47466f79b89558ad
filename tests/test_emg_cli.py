"""``python -m sensor_removal emg fit|predict|report`` end to end on a tiny synthetic
subject (dlib landmarks on its videos; no training of a CycleGAN)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from sensor_removal.cli.commands import main
from sensor_removal.synthetic import make_subject


@pytest.fixture(scope="module")
def subject(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_subject(tmp_path_factory.mktemp("emg_cli") / "data", seconds=4.0, fps=8.0, size=(192, 192), seed=2)


def test_emg_report_fit_predict(subject: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "rep"
    assert main(["emg", "report", "--manifest", str(subject), "--out", str(out)]) == 0
    line = capsys.readouterr().out
    assert "sEMG mapping (ours): Exp2EMG R² GT" in line and "EMG2Exp" in line
    for name in (
        "emg_scores.csv",
        "emg_summary.csv",
        "emg_chain.csv",
        "emg.md",
        "fig_emg_envelopes.png",
        "fig_emg_r_per_muscle.png",
    ):
        assert (out / name).is_file(), name
    scores = pd.read_csv(out / "emg_scores.csv")
    assert set(scores["source"]) == {"ground_truth", "sensor", "control"}
    assert len(scores[(scores["direction"] == "exp2emg") & (scores["source"] == "sensor")]) == 22
    chain = pd.read_csv(out / "emg_chain.csv")
    sync = chain[chain["channel"] == "(sync)"]
    assert (sync["offset_error_s"].abs() <= 1 / 8).all()  # trigger: within a frame
    assert "(ours" in (out / "emg.md").read_text()

    fit = tmp_path / "fit"
    cache = ["--cache", str(out / "landmarks")]
    assert main(["emg", "fit", "--manifest", str(subject), "--source", "ground_truth", "--out", str(fit), *cache]) == 0
    assert (fit / "mapping.pt").is_file() and (fit / "scores.csv").is_file()
    csv = tmp_path / "pred.csv"
    assert (
        main(
            [
                "emg",
                "predict",
                "--manifest",
                str(subject),
                "--mapping",
                str(fit / "mapping.pt"),
                "--recording",
                "s1_sensor_a",
                "--out",
                str(csv),
                *cache,
            ]
        )
        == 0
    )
    pred = pd.read_csv(csv)
    assert len(pred) == 32 and "zygomaticus/left" in pred.columns and "time_s" in pred.columns


def test_emg_fit_without_cleaned_manifest_is_a_clear_error(
    subject: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    code = main(
        [
            "emg",
            "fit",
            "--manifest",
            str(subject),
            "--source",
            "cleaned",
            "--out",
            str(tmp_path / "f"),
            "--cache",
            str(tmp_path / "lm"),
        ]
    )
    assert code == 2
    assert "--cleaned" in capsys.readouterr().err
