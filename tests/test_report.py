"""Paper-style tables over subjects (Tables 1–3, ground truth) and curve plots."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evaluation.protocol import COLUMNS
from evaluation.report import ReportError, facial_table, make_report, perceptual_table

TASKS = ("schaede", "emotion", "sentence", "whole")  # the paper's column order, then ours
# Per subject: the value of every row of a kind is base[kind] + 0.1 * (session - 1), so
# the per-subject mean over sessions 1 and 2 is base + 0.05 (baseline: one row, base).
BASE = {"A": {"baseline": 0.10, "sensor": 0.20, "clean": 0.12}, "B": {"baseline": 0.30, "sensor": 0.50, "clean": 0.16}}


def _rows(subject: str) -> list[dict]:
    rows = []

    def add(kind, session, segment, metric, feature, value, other=None, model=""):
        ref = "s1_normal" if kind == "baseline" else f"s{session}_normal"
        other = (
            other
            or {"baseline": "s2_normal", "sensor": f"s{session}_sensor", "clean": f"s{session}_sensor_clean"}[kind]
        )
        rows.append(
            dict(
                zip(
                    COLUMNS,
                    (
                        subject,
                        "1-2" if kind == "baseline" else str(session),
                        segment,
                        kind,
                        ref,
                        other,
                        metric,
                        feature,
                        value,
                        math.nan,
                        10,
                        model,
                    ),
                    strict=True,
                )
            )
        )

    for seg in TASKS:
        for kind in ("baseline", "sensor", "clean"):
            sessions = [1] if kind == "baseline" else [1, 2]
            for s in sessions:
                v = BASE[subject][kind] + (0.1 * (s - 1) if kind != "baseline" else 0.0)
                add(kind, s, seg, "lpips", "image", v)
                add(kind, s, seg, "fid", "image", 100 * v)
                # AUs: AU01 = v, AU12 = 3 v (mean 2 v); AU43 is huge and must be ignored.
                for metric, scale in (("dtw", 10.0), ("mape", 1.0)):
                    add(kind, s, seg, metric, "AU01", scale * v, model="xgb")
                    add(kind, s, seg, metric, "AU12", scale * 3 * v, model="xgb")
                    add(kind, s, seg, metric, "AU43", 1e6, model="xgb")
                    add(kind, s, seg, metric, "happiness", scale * 5 * v, model="xgb")
                    add(kind, s, seg, metric, "sadness", scale * 7 * v, model="xgb")
                    # A second AU model with other numbers: its own blocks, never mixed in.
                    add(kind, s, seg, metric, "AU04", 99.0, model="v2")
                    add(kind, s, seg, metric, "happiness", 99.0, model="v2")
                add(kind, s, seg, "mape_shift_s", "au", 0.5, model="xgb")
    for s in (1, 2):
        for kind, psnr in (("sensor", 20.0 if subject == "A" else 24.0), ("clean", math.inf)):
            for feature, delta in (("whole", 10.0), ("mask", 0.0)):
                rows.append(
                    dict(
                        zip(
                            COLUMNS,
                            (
                                subject,
                                str(s),
                                "whole",
                                kind,
                                f"s{s}_sensor:ground_truth",
                                f"s{s}_sensor" + ("_clean" if kind == "clean" else ""),
                                "psnr",
                                feature,
                                psnr + delta,
                                math.nan,
                                12,
                                "",
                            ),
                            strict=True,
                        )
                    )
                )
                rows.append(
                    dict(
                        zip(
                            COLUMNS,
                            (
                                subject,
                                str(s),
                                "whole",
                                kind,
                                f"s{s}_sensor:ground_truth",
                                f"s{s}_sensor" + ("_clean" if kind == "clean" else ""),
                                "ssim",
                                feature,
                                1.0 if kind == "clean" else 0.8,
                                math.nan,
                                12,
                                "",
                            ),
                            strict=True,
                        )
                    )
                )
    return rows


def _write(tmp_path: Path, subject: str) -> Path:
    d = tmp_path / f"results_{subject}"
    d.mkdir()
    pd.DataFrame(_rows(subject), columns=list(COLUMNS)).to_csv(d / "results.csv", index=False)
    return d


def _expected(kind: str, scale: float) -> tuple[float, float]:
    per_subject = []
    for s in ("A", "B"):
        b = BASE[s][kind]
        per_subject.append(scale * (b if kind == "baseline" else b + 0.05))
    return float(np.mean(per_subject)), float(np.std(per_subject, ddof=1))


def test_tables_have_paper_layout_and_mean_std(tmp_path: Path) -> None:
    dirs = [_write(tmp_path, "A"), _write(tmp_path, "B")]
    df = pd.concat([pd.read_csv(d / "results.csv", dtype={"session": str}) for d in dirs])
    t1 = perceptual_table(df)
    assert list(t1.mean.index) == ["N1–N2", "N–S", "N–C"]
    assert list(t1.mean.columns) == [(s, m) for s in TASKS for m in ("lpips", "fid")]
    for row, kind in (("N1–N2", "baseline"), ("N–S", "sensor"), ("N–C", "clean")):
        m, s = _expected(kind, 1.0)
        assert t1.mean.at[row, ("schaede", "lpips")] == pytest.approx(m)
        assert t1.std.at[row, ("schaede", "lpips")] == pytest.approx(s)
        assert t1.mean.at[row, ("emotion", "fid")] == pytest.approx(100 * m)
        assert t1.count.at[row, ("whole", "fid")] == 2
    t2 = facial_table(df, "au", "xgb")
    # AU average of a comparison: (v + 3 v) / 2 = 2 v (AU43 excluded), DTW scale 10.
    m, s = _expected("sensor", 20.0)
    assert t2.mean.at["N–S", ("sentence", "dtw")] == pytest.approx(m)
    assert t2.std.at["N–S", ("sentence", "dtw")] == pytest.approx(s)
    assert t2.mean.at["N–C", ("whole", "mape")] == pytest.approx(_expected("clean", 2.0)[0])
    assert list(t2.mean.columns) == [(s, m) for s in TASKS for m in ("dtw", "mape")]
    t3 = facial_table(df, "emotion", "xgb")
    # Emotion average: (5 v + 7 v) / 2 = 6 v.
    assert t3.mean.at["N1–N2", ("emotion", "mape")] == pytest.approx(_expected("baseline", 6.0)[0])


def test_make_report_writes_markdown_latex_csv(tmp_path: Path) -> None:
    dirs = [_write(tmp_path, "A"), _write(tmp_path, "B")]
    out = tmp_path / "report"
    written = make_report(dirs, out)
    md = (out / "report.md").read_text()
    tex = (out / "tables.tex").read_text()
    for label in ("N1–N2", "N–S", "N–C"):
        assert f"| {label} |" in md
    assert "Schaede LPIPS" in md and "Whole FID" in md and "Emotion MAPE" in md
    m, s = _expected("sensor", 1.0)
    assert f"{m:.3f} ± {s:.3f}" in md
    assert f"{m:.3f} $\\pm$ {s:.3f}" in tex
    # Paper layout: Table 1, Tables 2 and 3 per AU model (2); ours: the same three-row
    # tables and ground truth; appendix: the paper layout per subject (2 subjects).
    assert tex.count("\\begin{tabular}") == 5 + 6 + 2 * 5
    assert "N--S" in tex and "\\multicolumn{2}{c}{Schaede}" in tex
    # Ground truth table: the cleaned rows are perfect (PSNR inf), the sensor rows not.
    gt = pd.read_csv(out / "table_groundtruth.csv")
    clean_psnr = gt[(gt["row"] == "C (cleaned)") & (gt["group"] == "whole") & (gt["metric"] == "psnr")]
    assert np.isinf(clean_psnr["mean"]).all()
    sensor_psnr = gt[(gt["row"] == "S (no cleaning)") & (gt["group"] == "mask") & (gt["metric"] == "psnr")]
    assert sensor_psnr["mean"].item() == pytest.approx(22.0)
    assert "∞" in md
    t1 = pd.read_csv(written["table1_perceptual"])
    assert set(t1.columns) == {"row", "group", "metric", "mean", "std", "subjects"}
    assert written["A_table1_perceptual"].parent.name == "subjects"
    # Subjects are counted in whole numbers, in the CSV text too.
    assert set(pd.read_csv(written["table1_perceptual"], dtype=str)["subjects"]) == {"2"}
    # Table 1's caption names the FID set size the rows used (n = 10 in these results).
    assert "sets of N = 10 frames" in md and "sets of N = 10 frames" in tex
    assert "Tables not shown" not in md  # every table is there


def test_groundtruth_csv_has_region_as_group_and_metric_as_metric(tmp_path: Path) -> None:
    written = make_report([_write(tmp_path, "A")], tmp_path / "report")
    gt = pd.read_csv(written["table_groundtruth"])
    assert set(gt["group"]) == {"whole", "mask"} and set(gt["metric"]) == {"psnr", "ssim"}


def test_report_says_which_tables_are_missing_and_why(tmp_path: Path, torch_home: Path) -> None:
    """A groundtruth-only evaluation (no LPIPS/FID weights here): the report names the
    missing paper tables, the metrics the evaluation ran and the fetch command."""
    d = tmp_path / "results_A"
    d.mkdir()
    rows = [r for r in _rows("A") if r["metric"] in ("psnr", "ssim")]
    pd.DataFrame(rows, columns=list(COLUMNS)).to_csv(d / "results.csv", index=False)
    (d / "summary.json").write_text(
        json.dumps({"subject": "A", "settings": {"metrics": ["groundtruth"]}, "skipped": []})
    )
    md = (tmp_path / "report" / "report.md").read_text() if make_report([d], tmp_path / "report") else ""
    section = md[md.index("### Tables not shown") :]
    line1 = next(line for line in section.splitlines() if line.startswith("- Table 1 (LPIPS, FID)"))
    assert "ran with metrics groundtruth, without lpips,fid" in line1
    assert "python -m evaluation fetch-weights --metrics lpips,fid" in line1
    assert any(line.startswith("- Tables 2 and 3") for line in section.splitlines())


def test_single_subject_has_no_std_and_plots_curves(tmp_path: Path) -> None:
    d = _write(tmp_path, "A")
    (d / "series").mkdir()
    t = np.arange(40)
    videos = {}
    for name, cond, src, shift in (
        ("s1_normal", "normal", None, 0),
        ("s1_sensor", "sensor", None, 3),
        ("s1_sensor_clean", "clean", "s1_sensor", 1),
    ):
        table = pd.DataFrame(
            {
                "time_s": t / 10.0,
                "AU01": 0.5 + 0.4 * np.sin((t + shift) / 5),
                "AU43": 0.1,
                "happiness": 0.3,
                "sadness": 0.2,
            },
            index=pd.Index(t, name="frame"),
        )
        table.loc[5, ["AU01", "AU43", "happiness", "sadness"]] = np.nan
        table.to_csv(d / "series" / f"{name}.csv")
        videos[name] = {
            "condition": cond,
            "session": 1,
            "source": src,
            "analysed_frames": 40,
            "no_face_frames": 1,
            "no_face_by_segment": {"whole": 1},
        }
    (d / "summary.json").write_text(json.dumps({"subject": "A", "videos": videos}))
    out = tmp_path / "report"
    written = make_report([d], out)
    md = (out / "report.md").read_text()
    m = BASE["A"]["sensor"] + 0.05
    assert f"| {m:.3f} |" in md or f" {m:.3f} " in md
    row = next(line for line in md.splitlines() if line.startswith("| N–S |"))
    assert f" {m:.3f} " in row and "±" not in row  # one subject: no std
    for name in ("fig_au_A", "fig_emotion_A"):
        png = written[name]
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    nf = pd.read_csv(written["no_face_frames"])
    assert set(nf["video"]) == set(videos) and (nf["no_face_frames"] == 1).all()


def test_report_errors(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="no results.csv"):
        make_report([tmp_path / "nothing"], tmp_path / "out")


def _paper_expected(kind: str, session: int, scale: float) -> tuple[float, float]:
    per_subject = [scale * (BASE[s][kind] + (0.1 * (session - 1) if kind != "baseline" else 0.0)) for s in ("A", "B")]
    return float(np.mean(per_subject)), float(np.std(per_subject, ddof=1))


def test_paper_layout_five_rows_task_columns_and_precision(tmp_path: Path) -> None:
    from evaluation.report import paper_facial_table, paper_perceptual_table

    dirs = [_write(tmp_path, "A"), _write(tmp_path, "B")]
    df = pd.concat([pd.read_csv(d / "results.csv", dtype={"session": str}) for d in dirs])
    t1 = paper_perceptual_table(df)
    assert list(t1.mean.index) == ["N1–N2", "N1–S1", "N1–C1", "N2–S2", "N2–C2"]
    assert list(t1.mean.columns) == [(s, m) for s in ("schaede", "emotion", "sentence") for m in ("lpips", "fid")]
    for row, kind, session in (("N1–N2", "baseline", 1), ("N1–S1", "sensor", 1), ("N2–C2", "clean", 2)):
        m, s = _paper_expected(kind, session, 1.0)
        assert t1.mean.at[row, ("sentence", "lpips")] == pytest.approx(m)
        assert t1.std.at[row, ("sentence", "lpips")] == pytest.approx(s)
    # Precision: LPIPS 2 decimals, FID 1. N2–S2: subjects 0.30 and 0.60 -> 0.45 ± 0.21.
    assert t1.cell("N2–S2", ("schaede", "lpips")) == "0.45 ± 0.21"
    assert t1.cell("N2–S2", ("schaede", "fid")) == "45.0 ± 21.2"
    t2 = paper_facial_table(df, "au", "xgb")
    # AU mean of a comparison 2 v (AU43 out), DTW x 10: N1–C1 subjects 2.4 and 3.2 -> 2.8 ± 0.6; MAPE 0.28 ± 0.06.
    assert t2.cell("N1–C1", ("emotion", "dtw")) == "2.8 ± 0.6"
    assert t2.cell("N1–C1", ("emotion", "mape")) == "0.28 ± 0.06"
    assert "AU01, AU12" in t2.caption and "2 AUs compared" in t2.caption and "random decision forest" in t2.caption
    v2 = paper_facial_table(df, "au", "v2")
    assert v2.mean.at["N1–S1", ("schaede", "dtw")] == pytest.approx(99.0)  # its own rows only
    assert "JAA-Net" in v2.caption and "lacks of the paper model's 12 AUs" in v2.caption
    # Table 3: MAPE with one decimal as published (emotions 6 v: N1–C1 subjects 0.72, 0.96).
    t3 = paper_facial_table(df, "emotion", "xgb")
    assert t3.cell("N1–C1", ("emotion", "mape")) == "0.8 ± 0.2" and t3.cell("N1–C1", ("emotion", "dtw")) == "8.4 ± 1.7"
    for t in (t1, t2, t3):  # every caption says what the mean ± std is over
        assert "Mean ± std over subjects" in t.caption and "within a subject first the mean over" in t.caption
    assert (
        "fraction (×100 for percent)" in t2.caption and "AU43 excluded" in t2.caption and "the 7 emotions" in t3.caption
    )

    out = tmp_path / "report"
    written = make_report(dirs, out)
    md = (out / "report.md").read_text()
    paper, rest = md.split("## Our addition", 1)
    ours, appendix = rest.split("## Appendix: per-subject tables", 1)
    assert "| N2–C2 |" in paper and "| N–S |" not in paper and "Whole" not in paper
    assert (
        "| Schaede LPIPS | Schaede FID | Emotion LPIPS | Emotion FID | Sentence LPIPS | Sentence FID |"
        in paper.replace("  ", " ")
    )
    assert "Table 2 — Action Unit time series — xgb" in paper and "Table 2 — Action Unit time series — v2" in paper
    assert "| N–S |" in ours and "Whole FID" in ours and "our addition" in ours
    assert "### Subject A" in appendix and "### Subject B" in appendix and "| N2–C2 |" in appendix
    # The appendix holds each subject's own number (no std): subject A, N2–S2, LPIPS 0.30.
    a_table = pd.read_csv(written["A_table1_perceptual"])
    row = a_table[(a_table["row"] == "N2–S2") & (a_table["group"] == "schaede") & (a_table["metric"] == "lpips")]
    assert row["mean"].item() == pytest.approx(0.30) and row["std"].isna().all()


# ------------------------------------------------------------- the paper's values


DATA = Path(__file__).parent / "data" / "paper_tables_small.csv"


def test_shipped_paper_values_load_and_hold_only_valid_cells() -> None:
    from evaluation.report.published import COLUMNS as PCOLS
    from evaluation.report.published import PUBLISHED_CSV, load_published

    shipped = load_published()
    assert PUBLISHED_CSV.is_file() and tuple(shipped.columns) == PCOLS
    assert set(shipped["table"]) <= {1, 2, 3}  # the loader validated every line
    small = load_published(DATA)
    assert len(small) == 9 and set(small["row"]) == {"N1–N2", "N1–S1", "N1–C1", "N2–S2", "N2–C2"}


@pytest.mark.parametrize(
    "line, field",
    [
        ("4,,N1-N2,schaede,lpips,0.1,0.0", "table"),
        ("1,,N3-N4,schaede,lpips,0.1,0.0", "row"),
        ("2,rdf,N1-N2,schaede,lpips,0.1,0.0", "metric"),
        ("2,,N1-N2,schaede,dtw,0.1,0.0", "model"),
        ("1,,N1-N2,whole,lpips,0.1,0.0", "task"),
        ("1,,N1-N2,schaede,lpips,x,0.0", "mean"),
    ],
)
def test_bad_paper_values_name_file_line_and_field(tmp_path: Path, line: str, field: str) -> None:
    from evaluation.report.published import PublishedDataError, load_published

    f = tmp_path / "p.csv"
    f.write_text("# comment\ntable,model,row,task,metric,mean,std\n1,,N1-N2,schaede,lpips,0.1,0.0\n" + line + "\n")
    with pytest.raises(PublishedDataError, match=rf"p\.csv, line 4: {field}"):
        load_published(f)


def test_report_prints_the_paper_block_under_ours_with_checks(tmp_path: Path) -> None:
    """Under our Table 1: the paper's block in the same rows, columns and precision, then
    the checks for both; a table the data has no cell for says so."""
    from evaluation.report.published import load_published, published_block, qualitative_checks

    dirs = [_write(tmp_path, "A"), _write(tmp_path, "B")]
    make_report(dirs, tmp_path / "report", published_csv=DATA)
    md = (tmp_path / "report" / "report.md").read_text()
    paper, _ = md.split("## Our addition", 1)
    ours_t1, after = paper.split("### Paper, Table 1 — as published", 1)
    assert "### Table 1 — perceptual distance" in ours_t1  # ours first, the paper's below it
    block, rest = after.split("### Table 2", 1)
    header = "| Schaede LPIPS | Schaede FID | Emotion LPIPS | Emotion FID | Sentence LPIPS | Sentence FID |"
    assert header in ours_t1.replace("  ", " ") and header in block.replace("  ", " ")
    assert "| N2–S2 | 0.50 ± 0.05 |" in block and "12.3 ± 5.6" in block  # the paper's precision
    # Checks, Schaede LPIPS: ours N–N 0.20 (mean of A, B), N–S 0.40, N–C 0.19 -> closer, gap closed 1.05;
    # the paper's block: N–N 0.10, N–S 0.40, N–C 0.20 -> closer, 0.67.
    assert "| ours: N–C closer to N–N than N–S (gap closed) | yes (1.05) |" in block
    assert "| paper: N–C closer to N–N than N–S (gap closed) | yes (0.67) |" in block
    assert (
        "*The paper's Table 2 (JAA-Net): not shipped" in rest
        and "*The paper's Table 3 (ResMaskNet): not shipped" in rest
    )
    assert "### Paper, Table 2, RDF — as published" in rest
    # An N–C further from the baseline than N–S is a "no" (the small data's Table 2 emotion MAPE).
    from evaluation.report import paper_facial_table

    df = pd.concat([pd.read_csv(d / "results.csv", dtype={"session": str}) for d in dirs])
    t2 = paper_facial_table(df, "au", "xgb")
    rdf = published_block(t2, load_published(DATA), 2, "rdf")
    assert list(rdf.mean.columns) == list(t2.mean.columns) and list(rdf.mean.index) == list(t2.mean.index)
    closer, gap = qualitative_checks(rdf)[("emotion", "mape")]
    assert not closer and gap == pytest.approx(-1 / 3)
    assert qualitative_checks(rdf)[("schaede", "dtw")] is None  # no cells, no verdict
    # The shipped file (no verified cells yet): every block says it is not shipped.
    make_report(dirs, tmp_path / "shipped")
    shipped_md = (tmp_path / "shipped" / "report.md").read_text()
    assert "*The paper's Table 1: not shipped" in shipped_md and "| ours: N–C closer" in shipped_md
