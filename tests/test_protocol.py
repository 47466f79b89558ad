"""The evaluation protocol end to end: ``python -m evaluation run`` / ``report``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evaluation.cli import main
from evaluation.pairs import build_pairs
from evaluation.protocol import COLUMNS, draw_frames, run_protocol
from evaluation.settings import ProtocolSettings
from sensor_removal.core.manifest import load_manifest
from tests.conftest import write_cleaned_recordings

pytestmark = pytest.mark.usefixtures("single_thread")


def test_run_groundtruth_and_lpips_via_cli(
    synthetic_subject: Path, fake_torch_weights: Path, tmp_path: Path, capsys
) -> None:
    cleaned = write_cleaned_recordings(synthetic_subject, tmp_path / "cleaned", size=32)
    out = tmp_path / "results"
    rc = main([
        "run", "--manifest", str(synthetic_subject), "--cleaned", str(cleaned), "--out", str(out),
        "--metrics", "groundtruth,lpips", "--lpips-pairs", "4", "--seed", "3",
    ])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 0, err
    # Progress: one line per metric family, one per video (numbered) within it.
    assert "[1/2] lpips: 10 videos" in err and "[2/2] groundtruth:" in err
    assert "(1/10) " in err and "(10/10) " in err
    df = pd.read_csv(out / "results.csv", dtype={"session": str})
    assert list(df.columns) == list(COLUMNS)
    assert set(df["metric"]) == {"lpips", "psnr", "ssim", "flicker"}
    lp = df[df["metric"] == "lpips"]
    # 2 sessions x (2 sensor + 2 clean) + 1 baseline comparisons, 4 segments each.
    assert len(lp) == 9 * 4 and set(lp["kind"]) == {"baseline", "sensor", "clean"}
    assert (lp["n"] == 4).all() and lp["value"].notna().all() and (lp["value"] >= 0).all()
    assert set(lp.loc[lp["kind"] == "baseline", "session"]) == {"1-2"}
    gt = df[df["metric"].isin(["psnr", "ssim"])]
    assert set(gt["kind"]) == {"sensor", "clean"} and set(gt["feature"]) == {"whole", "mask", "outside"}
    assert np.isinf(gt.loc[(gt["kind"] == "clean") & (gt["metric"] == "psnr"), "value"]).all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["subject"] == "synth01" and summary["crop_size"] == 32
    assert summary["settings"]["metrics"] == ["groundtruth", "lpips"] and summary["settings"]["seed"] == 3
    assert summary["means"]["psnr_whole"]["clean"]["whole"] == "inf"
    assert any(p.endswith("alexnet-owt-7be5be79.pth") for p in summary["weights"])
    # Same seed, same numbers (frame draws are seeded).
    out2 = tmp_path / "results2"
    assert (
        main(
            [
                "run",
                "--manifest",
                str(synthetic_subject),
                "--cleaned",
                str(cleaned),
                "--out",
                str(out2),
                "--metrics",
                "lpips",
                "--lpips-pairs",
                "4",
                "--seed",
                "3",
            ]
        )
        == 0
    )
    again = pd.read_csv(out2 / "results.csv")
    np.testing.assert_allclose(again["value"].to_numpy(), lp["value"].to_numpy())
    # And the report runs on it.
    assert main(["report", str(out), "--out", str(tmp_path / "report")]) == 0
    md = (tmp_path / "report" / "report.md").read_text()
    assert "| N–S |" in md and "Ground truth" in md


def test_missing_weights_stop_before_any_work(torch_home: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "results"
    # The manifest does not even exist: weights are checked first.
    rc = main(
        ["run", "--manifest", str(tmp_path / "nope.yaml"), "--out", str(out), "--metrics", "groundtruth,lpips,fid"]
    )
    err = capsys.readouterr().err
    assert rc == 2
    assert str(torch_home / "alexnet-owt-7be5be79.pth") in err
    assert str(torch_home / "weights-inception-2015-12-05-6726825d.pth") in err
    assert "python -m evaluation fetch-weights --metrics lpips,fid" in err
    assert "Traceback" not in err
    assert not out.exists()


def test_user_errors_exit_2_without_traceback(tmp_path: Path, capsys) -> None:
    rc = main(
        ["run", "--manifest", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "r"), "--metrics", "groundtruth"]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "nope.yaml" in err and "Traceback" not in err
    assert main(["run", "--manifest", "m.yaml", "--out", "r", "--metrics", "bogus"]) == 2
    assert main(["report", str(tmp_path / "missing"), "--out", str(tmp_path / "rep")]) == 2
    assert "no results.csv" in capsys.readouterr().err


def test_frame_draws_are_seeded_and_shared(tiny_subject) -> None:
    subject = load_manifest(tiny_subject.manifest)
    cleaned = load_manifest(tiny_subject.cleaned, require_domains=("clean",))
    plan = build_pairs(subject, cleaned)
    s = ProtocolSettings(metrics=("lpips", "fid"), seed=1, lpips_pairs=6, fid_sets=3, fid_set_size=4)
    d1, d2 = draw_frames(plan, s), draw_frames(plan, s)
    d3 = draw_frames(
        plan, ProtocolSettings(metrics=("lpips", "fid"), seed=2, lpips_pairs=6, fid_sets=3, fid_set_size=4)
    )
    key = ("s1_normal", "sentence")
    assert np.array_equal(d1.lpips[key], d2.lpips[key]) and not np.array_equal(d1.lpips[key], d3.lpips[key])
    assert ((d1.lpips[key] >= 10) & (d1.lpips[key] < 16)).all() and len(d1.lpips[key]) == 6
    sets = d1.fid[("s2_normal", "emotion")]  # frames [20, 25): 5 frames, sets of 4 distinct
    assert len(sets) == 3 and all(len(set(x)) == 4 and min(x) >= 20 and max(x) < 25 for x in sets)
    # One draw per (video, segment): the same N1 frames serve N1-S1 and N1-C1.
    assert set(d1.lpips) == {
        (v.name, seg) for v in plan.videos() for seg in ("schaede", "sentence", "emotion", "whole")
    }


def test_fid_rows_through_protocol(tiny_subject, fake_torch_weights: Path, tmp_path: Path) -> None:
    # Inception at 299 px is slow on CPU: one segment, 1 draw of 2 frames per video.
    s = ProtocolSettings(metrics=("fid",), segments=("sentence",), fid_sets=1, fid_set_size=2, batch_size=4)
    results = run_protocol(tiny_subject.manifest, tiny_subject.cleaned, tmp_path / "r", s, log=lambda _: None)
    df = pd.read_csv(results)
    assert len(df) == 5 and set(df["metric"]) == {"fid"} and (df["n"] == 2).all()
    assert df["value"].notna().all() and df["std"].isna().all()  # one draw: no std


def test_lpips_all_pairs_through_protocol(tiny_subject, fake_torch_weights: Path, tmp_path: Path) -> None:
    """--lpips-all-pairs: each row is the exact mean over every frame pair of the two
    segments (checked against the brute-force mean on the same crops), n = the pairs."""
    from evaluation.metrics.perceptual import load_lpips, lpips_distances
    from sensor_removal.core.manifest import load_manifest
    from sensor_removal.core.video import crop_resize, iter_frames

    s = ProtocolSettings(metrics=("lpips",), segments=("sentence", "whole"), lpips_all_pairs=True, batch_size=3)
    df = pd.read_csv(run_protocol(tiny_subject.manifest, tiny_subject.cleaned, tmp_path / "r", s, log=lambda _: None))
    assert len(df) == 10 and set(df["metric"]) == {"lpips"} and df["std"].isna().all()
    subject = load_manifest(tiny_subject.manifest)
    cleaned = load_manifest(tiny_subject.cleaned, require_domains=("clean",))
    plan = build_pairs(subject, cleaned, segments=("sentence", "whole"))
    net = load_lpips()
    checked = [q for q in plan.pairs if q.kind in ("baseline", "clean") and q.session_label in ("1-2", "1")]
    assert len(checked) == 4  # N1–N2 and N1–C1, both segments (frames in both go through AlexNet once)
    for p in checked:
        crops = []
        for rec, (a, b) in ((p.reference, p.reference_frames), (p.other, p.other_frames)):
            frames = [f for i, f in iter_frames(rec.path) if a <= i < b]
            crops.append(np.stack([crop_resize(f, rec.bbox, tiny_subject.crop) for f in frames]))
        ia, ib = np.meshgrid(np.arange(len(crops[0])), np.arange(len(crops[1])), indexing="ij")
        brute = lpips_distances(net, crops[0][ia.ravel()], crops[1][ib.ravel()]).double().mean().item()
        row = df[(df["reference"] == p.reference.name) & (df["other"] == p.other.name) & (df["segment"] == p.segment)]
        assert row["value"].item() == pytest.approx(brute, rel=1e-4)
        assert row["n"].item() == ia.size


class _StubAnalyzer:
    """Stands in for :class:`evaluation.metrics.facial.FacialAnalyzer` (py-feat is tested in
    tests/test_facial.py): deterministic series per video, one no-face frame each; it
    records the crops the shared decoding pass hands it."""

    stride = 1

    def __init__(self, model: str = "xgb") -> None:
        self.model = model
        self.crops: dict[str, list[tuple[int, tuple[int, ...]]]] = {}

    def cache_file(self, path, bbox, size, cache_dir):
        return Path(cache_dir) / f"{Path(path).stem}-{self.model}.csv"

    def load_series(self, cache_file, fps, path):
        return None

    def save_series(self, series, cache_file):
        pass

    def series_builder(self, path, fps, total=None):
        stub = self

        class Builder:
            def add(self, number, frame):
                stub.crops.setdefault(Path(path).name, []).append((number, frame.shape))

            def finish(self):
                return stub._series(Path(path), [n for n, _ in stub.crops[Path(path).name]], fps)

        return Builder()

    def _series(self, path: Path, frames: list[int], fps: float):
        from evaluation.metrics.facial import AU_COLUMNS, EMOTION_COLUMNS, FACE_COLUMNS, FacialSeries

        t = np.array(frames)
        phase = {"normal": 0.0, "sensor": 2.0, "clean": 0.5}[
            next(c for c in ("clean", "sensor", "normal") if c in path.stem)
        ]
        cols = list(AU_COLUMNS) + list(EMOTION_COLUMNS)
        values = pd.DataFrame(
            {c: 0.5 + 0.4 * np.sin((t + phase + i) / 3.0) for i, c in enumerate(cols)}, index=pd.Index(t, name="frame")
        )
        faces = pd.DataFrame(1.0, index=values.index, columns=list(FACE_COLUMNS))
        values.iloc[3] = np.nan
        faces.iloc[3] = np.nan
        return FacialSeries(values=values, faces=faces, stride=1, fps=fps, path=path)


def test_facial_rows_and_series(tiny_subject, tmp_path: Path, monkeypatch) -> None:
    import evaluation.protocol as protocol

    # The facial weights check belongs to evaluation.metrics.facial; the stub needs none.
    monkeypatch.setattr(protocol, "check_weights", lambda metrics, **kw: [])
    stubs: dict[str, _StubAnalyzer] = {}
    out = tmp_path / "r"
    s = ProtocolSettings(metrics=("facial",), segments=("schaede", "whole"), max_shift_s=0.5)
    assert s.au_models == ("xgb", "v2") and s.shift == "joint"  # the paper's two kinds of AU model
    run_protocol(
        tiny_subject.manifest,
        tiny_subject.cleaned,
        out,
        s,
        facial_analyzer=lambda m: stubs.setdefault(m, _StubAnalyzer(m)),
        log=lambda _: None,
    )
    df = pd.read_csv(out / "results.csv", dtype={"session": str})
    from evaluation.metrics.facial import AU_COLUMNS, EMOTION_COLUMNS

    assert set(df["metric"]) == {"dtw", "mape", "mape_shift_s"}
    assert set(df["model"]) == {"xgb", "v2"}
    assert set(df["feature"]) == set(AU_COLUMNS) | set(EMOTION_COLUMNS) | {"au", "emotion"}
    n_features = len(AU_COLUMNS) + len(EMOTION_COLUMNS)
    # models x pairs x segments x (dtw, mape per feature + one shift per table)
    assert len(df) == 2 * 5 * 2 * (2 * n_features + 2)
    # Every video is decoded once for both models, all at the cleaned crop size (32 px),
    # the 48x40 normal and sensor frames cut with their bbox and resized like the crops.
    names = sorted(
        f"{n}.mp4" for n in ("s1_normal", "s2_normal", "s1_sensor", "s2_sensor", "s1_sensor_clean", "s2_sensor_clean")
    )
    for stub in stubs.values():
        assert sorted(stub.crops) == names
        assert {shape for crops in stub.crops.values() for _, shape in crops} == {(32, 32, 3)}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["decoded_frames"] == {n[:-4]: len(stubs["xgb"].crops[n]) for n in names}
    # The sensor series is 2 frames ahead of the normal one: one shift per pair, -0.2 s.
    shift = df[(df["metric"] == "mape_shift_s") & (df["kind"] == "sensor") & (df["segment"] == "whole")]
    assert len(shift) == 2 * 2 * 2 and set(shift["feature"]) == {"au", "emotion"} and np.allclose(shift["value"], -0.2)
    # The MAPE reads the partner outside its segment: 'whole' compares all 24 reference
    # frames less the one without a face, except where the shift runs past the video's end.
    mape = df[(df["metric"] == "mape") & (df["segment"] == "whole") & (df["kind"] == "sensor")]
    assert (mape["n"] >= 21).all() and (shift["n"] >= 21).all()
    series = pd.read_csv(out / "series" / "s1_normal.csv", index_col="frame")
    assert len(series) == 24 and series.iloc[3].drop("time_s").isna().all() and "time_s" in series
    assert (out / "series" / "v2" / "s1_normal.csv").is_file()
    v = summary["videos"]["s1_sensor_clean"]
    assert v["no_face_frames"] == 1 and v["source"] == "s1_sensor" and v["no_face_by_segment"]["schaede"] == 1
    assert set(v["by_model"]) == {"xgb", "v2"}
    assert set(summary["means"]) == {"au_dtw", "au_mape", "emotion_dtw", "emotion_mape"}

    per = ProtocolSettings(
        metrics=("facial",), segments=("whole",), max_shift_s=0.5, au_models=("xgb",), shift="per_series"
    )
    run_protocol(
        tiny_subject.manifest,
        tiny_subject.cleaned,
        tmp_path / "p",
        per,
        facial_analyzer=_StubAnalyzer,
        log=lambda _: None,
    )
    df = pd.read_csv(tmp_path / "p" / "results.csv")
    assert not {"au", "emotion"} & set(df["feature"]) and (df["metric"] == "mape_shift_s").sum() == 5 * n_features


def test_settings_reject_unknown_au_models_and_shift_modes() -> None:
    with pytest.raises(ValueError, match="au_models"):
        ProtocolSettings(au_models=("rf",))
    with pytest.raises(ValueError, match="shift"):
        ProtocolSettings(shift="each")


@pytest.mark.slow
def test_facial_through_real_py_feat_standins(tiny_subject, tmp_path: Path, monkeypatch) -> None:
    """The protocol with the real FacialAnalyzer and py-feat (v2) on stand-in weights
    (tests/feat_standins.py): wiring only, the numbers are meaningless."""
    from evaluation.metrics import facial
    from tests.feat_standins import write_standin_feat_weights

    hub = tmp_path / "feat-hub"
    write_standin_feat_weights(hub, "v2")
    monkeypatch.setenv(facial.CACHE_ENV, str(hub))
    out = tmp_path / "r"
    s = ProtocolSettings(metrics=("facial",), segments=("whole",), au_models=("v2",), batch_size=8, max_shift_s=0.5)
    run_protocol(tiny_subject.manifest, tiny_subject.cleaned, out, s, log=lambda _: None)
    df = pd.read_csv(out / "results.csv")
    assert len(df) == 5 * (2 * (len(facial.AU_COLUMNS) + len(facial.EMOTION_COLUMNS)) + 1)
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["videos"]) == {
        "s1_normal",
        "s2_normal",
        "s1_sensor",
        "s2_sensor",
        "s1_sensor_clean",
        "s2_sensor_clean",
    }
    assert all(v["analysed_frames"] in (24, 25) for v in summary["videos"].values())
    assert len(list((out / "facial_cache").glob("*.csv"))) == 6
