"""`python -m evaluation report ROOT/*/<point>`: a sweep's run folders, per grid point
and compared across grid points."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from evaluation.cli import main
from evaluation.protocol import COLUMNS
from tests.test_report import _rows

#: The second grid point cleans worse: its N–C LPIPS is higher by this much everywhere.
WORSE = 0.05
#: N1–C1 LPIPS of the first grid point: mean over subjects A (0.12) and B (0.16).
CLEAN_S1 = 0.14


def _sweep_root(tmp_path: Path) -> Path:
    root = tmp_path / "sweep"
    for subject in ("A", "B"):
        for point, shift in (("lr0.0003", 0.0), ("lr0.0001", WORSE)):
            df = pd.DataFrame(_rows(subject), columns=list(COLUMNS))
            worse = (df["kind"] == "clean") & (df["metric"] == "lpips")
            df.loc[worse, "value"] += shift
            d = root / subject / point / "evaluation"
            d.mkdir(parents=True)
            df.to_csv(d / "results.csv", index=False)
    return root


def test_one_grid_point_over_subjects(tmp_path: Path) -> None:
    root = _sweep_root(tmp_path)
    out = tmp_path / "report"
    assert main(["report", *map(str, sorted(root.glob("*/lr0.0003"))), "--out", str(out)]) == 0
    assert "Subjects (2): A, B" in (out / "report.md").read_text()
    t1 = pd.read_csv(out / "table1_perceptual.csv")
    cell = t1[(t1["row"] == "N1–C1") & (t1["group"] == "schaede") & (t1["metric"] == "lpips")]
    assert cell["mean"].item() == pytest.approx(CLEAN_S1) and cell["subjects"].item() == 2
    assert not (out / "grid_points.md").exists()


def test_grid_points_are_reported_and_compared(tmp_path: Path) -> None:
    root = _sweep_root(tmp_path)
    out = tmp_path / "report"
    assert main(["report", *map(str, sorted(root.glob("*/*"))), "--out", str(out)]) == 0
    for point in ("lr0.0003", "lr0.0001"):
        assert "Subjects (2): A, B" in (out / point / "report.md").read_text()
    grid = pd.read_csv(out / "grid_points.csv")
    lpips = grid[
        (grid["table"] == "table1_perceptual")
        & (grid["row"] == "N1–C1")
        & (grid["group"] == "schaede")
        & (grid["metric"] == "lpips")
    ].set_index("grid_point")
    assert lpips.at["lr0.0001", "mean"] - lpips.at["lr0.0003", "mean"] == pytest.approx(WORSE)
    assert (lpips["subjects"] == 2).all()
    sensor = grid[(grid["row"] == "N1–S1") & (grid["metric"] == "lpips")].groupby("grid_point")["mean"].mean()
    assert sensor["lr0.0001"] == pytest.approx(sensor["lr0.0003"])  # only the cleaning differs
    md = (out / "grid_points.md").read_text()
    s = lpips.at["lr0.0003", "std"]
    assert lpips.at["lr0.0003", "mean"] == pytest.approx(CLEAN_S1)
    assert f"| lr0.0003 | N1–C1 | {CLEAN_S1:.2f} ± {s:.2f} |" in md  # the paper's two decimals
    assert f"| lr0.0001 | N1–C1 | {CLEAN_S1 + WORSE:.2f} ± {s:.2f} |" in md


def test_folder_without_results_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "sweep" / "A" / "lr0.0003"
    run.mkdir(parents=True)
    assert main(["report", str(run), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert f"{run}: no results.csv here nor in {run / 'evaluation'}" in err and "Traceback" not in err
