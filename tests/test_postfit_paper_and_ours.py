"""The post-fit benchmark reports the paper's method and ours apart.

With ``composite="auto"`` (the default, like ``clean``) the hook evaluates twice: the
paper's full repaint (``NAME.repaint.mp4``, through ``clean/manifest.repaint.yaml``) into
``<run>/evaluation`` — the paper's tables, file names and W&B keys — and the composited
videos into ``<run>/evaluation_ours`` — a report section labelled as our extension,
``composited_*`` files, W&B keys under ``ours/``. With ``composite="off"`` it evaluates
once. One tiny fit (the synthetic subject of test_callbacks, 4-filter networks) serves
every test here; the ``off`` run reuses its checkpoint without training again.

Comparisons between the two evaluations: rows that compare the same videos (N1–N2,
N–S) must agree to 1e-9 (same decoding, same seeded frame draws); rows of C must differ
(by more than 1e-6) since the composited video keeps the recorded pixels outside the mask.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
from pytorch_lightning.loggers import WandbLogger

from sensor_removal.cleaning import CleanError, write_repaint_manifest
from sensor_removal.core.manifest import load_manifest
from sensor_removal.training.callbacks import RunCheckpoint
from sensor_removal.training.data import FramesDataModule
from sensor_removal.training.module import CycleGAN
from sensor_removal.workflows.postfit import OURS_RESULTS, PostFitBenchmark

pytestmark = pytest.mark.usefixtures("single_thread")

DATA = dict(fraction=0.5, load_size=36, crop_size=32, val_fraction=0.25, batch_size=4, num_workers=0)
MODEL = dict(ngf=4, ndf=4, n_blocks=1, epochs_constant=1, epochs_decay=1)
METRICS = ["groundtruth", "temporal", "lpips"]
SAME, DIFFERENT = 1e-9, 1e-6
KEY = ["session", "segment", "kind", "reference", "other", "metric", "feature", "model"]


class RecordingWandbLogger(WandbLogger):
    """A W&B logger that also keeps the scalars it was given (an offline run's record log
    holds them in protobuf, which this wandb version has no public reader for)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.scalars: dict[str, float] = {}

    def log_metrics(self, metrics, step=None) -> None:
        self.scalars.update(metrics)
        super().log_metrics(metrics, step)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory, fake_weight_store: dict[str, Path]):
    """One fit with the default (compositing) hook and an offline W&B run: the run folder,
    the hook, the subject's manifest and the W&B run's folder."""
    from sensor_removal.synthetic import make_subject

    root = tmp_path_factory.mktemp("postfit_ours")
    manifest = make_subject(root / "synth", seconds=2.0, fps=6.0, size=(64, 64), seed=0)
    checkpoints = root / "torch_home" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    for name, src in fake_weight_store.items():
        shutil.copy(src, checkpoints / name)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(root / "torch_home"))
        mp.setenv("WANDB_MODE", "offline")
        mp.setenv("WANDB_SILENT", "true")
        mp.setenv("WANDB_DIR", str(root / "wandb_dir"))
        mp.delenv("WANDB_API_KEY", raising=False)
        import wandb

        wandb.teardown()  # settings an earlier test left in this process (e.g. online without a key)

        run = root / "run"
        logger = RecordingWandbLogger(project="sensor-removal-test", save_dir=str(run), offline=True)
        hook = PostFitBenchmark(metrics=METRICS, device="cpu", batch_size=16, lpips_pairs=8)
        pl.seed_everything(0, workers=True)
        trainer = pl.Trainer(
            default_root_dir=str(run),
            max_epochs=2,
            accelerator="cpu",
            logger=logger,
            callbacks=[RunCheckpoint(save_last=True, filename="last_epoch"), hook],
            enable_progress_bar=False,
            enable_model_summary=False,
            log_every_n_steps=1,
        )
        trainer.fit(CycleGAN(**MODEL), datamodule=FramesDataModule(str(manifest), **DATA))
        wandb.finish()
        (wb_run,) = sorted((run / "wandb").glob("offline-run-*"))
        yield SimpleNamespace(
            run=run, hook=hook, manifest=manifest, wandb=wb_run, scalars=logger.scalars, torch_home=root / "torch_home"
        )


def results(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "results.csv", dtype={"session": str, "feature": str, "model": str}).fillna(
        {"model": "", "feature": ""}
    )


def cleaned_manifest(folder: Path):
    summary = json.loads((folder / "summary.json").read_text())
    return load_manifest(summary["cleaned"], require_domains=("clean",))


def test_composite_auto_evaluates_the_repaint_as_the_paper_and_the_composite_as_ours(fitted) -> None:
    run, out = fitted.run, fitted.hook.outcome
    assert fitted.hook.clean_options.composite == "auto"  # the default, as `clean`
    assert out is not None and out.error is None, out and out.error
    assert out.results_dir == run / "evaluation" and out.ours_results_dir == run / OURS_RESULTS
    assert set(out.timings_s) == {"clean", "evaluate", "evaluate_ours", "report"}

    # The paper's evaluation read the repaints, ours the composited videos: same recordings.
    paper_videos, ours_videos = cleaned_manifest(run / "evaluation"), cleaned_manifest(run / OURS_RESULTS)
    assert paper_videos.manifest_path == run / "clean" / "manifest.repaint.yaml"
    assert ours_videos.manifest_path == run / "clean" / "manifest.yaml"
    paper_paths = {r.name: r.path for r in paper_videos.recordings}
    ours_paths = {r.name: r.path for r in ours_videos.recordings}
    assert sorted(paper_paths) == sorted(ours_paths) and len(paper_paths) == 4
    for name, path in ours_paths.items():
        assert not path.name.endswith(".repaint.mp4")
        assert paper_paths[name] == path.with_name(f"{path.stem}.repaint.mp4") and paper_paths[name].is_file()

    paper, ours = results(run / "evaluation"), results(run / OURS_RESULTS)
    assert "repaint" not in set(paper["kind"]) and "repaint" in set(ours["kind"])
    both = paper.merge(ours, on=KEY, suffixes=("_paper", "_ours"))
    gap = (both["value_paper"] - both["value_ours"]).abs()
    same_videos = both["kind"].isin(["baseline", "sensor"])
    assert same_videos.sum() > 0 and (gap[same_videos] <= SAME).all()
    for metric in ("psnr", "temporal", "lpips"):
        cleaned = (both["kind"] == "clean") & (both["metric"] == metric)
        assert cleaned.sum() > 0 and gap[cleaned].max() > DIFFERENT, metric
    # Ours' "full repaint" ground-truth rows are the paper's cleaned rows: the same file.
    gt = ["psnr", "ssim", "flicker"]
    rep = ours[(ours.kind == "repaint") & ours.metric.isin(gt)].assign(kind="clean")
    rep = rep.assign(reference=rep["reference"], other=rep["other"].str.removesuffix(":repaint"))
    pc = paper[(paper.kind == "clean") & paper.metric.isin(gt)]
    m = pc.merge(rep, on=["session", "segment", "kind", "metric", "feature", "other"], suffixes=("_p", "_o"))
    assert len(m) == len(pc) > 0
    np.testing.assert_allclose(m["value_p"], m["value_o"], rtol=0, atol=SAME)
    # Both evaluations share one py-feat and one landmark cache (keyed by video content):
    # N and S are analysed once.
    for field, folder in (("facial_cache", "facial_cache"), ("landmark_cache", "landmark_cache")):
        used = {
            json.loads((d / "summary.json").read_text())["settings"][field]
            for d in (out.results_dir, out.ours_results_dir)
        }
        assert used == {str(run / "evaluation" / folder)}, field


def test_report_has_the_paper_tables_and_ours_apart(fitted) -> None:
    report = fitted.run / "report"
    md = (report / "report.md").read_text()
    paper_at, ours_at = md.index("## Tables 1–3 in the paper's layout"), md.index("## Our extension: the same tables")
    assert paper_at < ours_at and "computed on the paper's method" in md[paper_at:ours_at].lower()
    files = fitted.hook.outcome.files
    assert "composited C (ours)" in md[ours_at:] and "composited C (ours)" not in md[:ours_at]
    # The ground-truth table explains the composite (and the mask scores) only where it has one.
    note = "Composited C (our extension)"
    assert note in md[ours_at:] and note not in md[:ours_at]

    def table(name: str) -> pd.DataFrame:
        assert files[name] == report / f"{name}.csv"
        return pd.read_csv(files[name]).dropna(subset=["mean"]).set_index(["row", "group", "metric"])["mean"]

    # Table 1 (paper layout and ours) and the temporal table: rows without C agree, rows with C differ.
    for name in ("table1_perceptual", "ours_table1_perceptual", "table_temporal"):
        paper, ours = table(name), table(f"composited_{name}")
        assert list(paper.index) == list(ours.index), name
        with_c = paper.index.get_level_values("row").str.contains("C")
        assert (~with_c).any() and with_c.any(), name
        np.testing.assert_allclose(paper[~with_c], ours[~with_c], rtol=0, atol=SAME, err_msg=name)
        assert (paper[with_c] - ours[with_c]).abs().max() > DIFFERENT, name
    # Ground truth: the paper's C is the full repaint, the very row ours shows as such; ours adds
    # the composited video (and its mask scores), labelled as ours.
    paper, ours = table("table_groundtruth"), table("composited_table_groundtruth")
    assert set(paper.index.get_level_values("row")) == {"S (no cleaning)", "C (cleaned)"}
    assert set(ours.index.get_level_values("row")) == {"S (no cleaning)", "C full repaint (paper)", "C cleaned (ours)"}

    def rows(t: pd.Series, row: str) -> pd.Series:
        return t.xs(row, level="row")

    np.testing.assert_allclose(rows(paper, "S (no cleaning)"), rows(ours, "S (no cleaning)"), rtol=0, atol=SAME)
    np.testing.assert_allclose(rows(paper, "C (cleaned)"), rows(ours, "C full repaint (paper)"), rtol=0, atol=SAME)
    composited = rows(ours, "C cleaned (ours)").drop(["iou", "precision", "recall"], level="metric")
    assert (rows(paper, "C (cleaned)") - composited).abs().min() > DIFFERENT


def test_wandb_keeps_the_paper_names_and_puts_ours_under_ours(fitted) -> None:
    records = next(fitted.wandb.glob("*.wandb")).read_bytes()
    for key in ("lpips/N-C", "lpips/N-S", "psnr_mask/GT-C", "temporal/N-C", "table1_perceptual", "results"):
        assert f"benchmark/{key}".encode() in records, key
        assert f"ours/benchmark/{key}".encode() in records, key
    assert b"benchmark/composited_" not in records
    # The logged scalars are the two evaluations' own means; each paper name has its ours twin.
    summary = {k: v for k, v in fitted.scalars.items() if isinstance(v, float)}  # not the tables and clip
    benchmark = {k for k in summary if k.startswith("benchmark/")}
    assert benchmark and {k for k in summary if k.startswith("ours/")} == {f"ours/{k}" for k in benchmark}
    paper = json.loads((fitted.run / "evaluation" / "summary.json").read_text())["means"]
    ours = json.loads((fitted.run / OURS_RESULTS / "summary.json").read_text())["means"]
    assert summary["benchmark/psnr_mask/GT-C"] == pytest.approx(paper["psnr_mask"]["clean"]["whole"], abs=1e-9)
    assert summary["ours/benchmark/psnr_mask/GT-C"] == pytest.approx(ours["psnr_mask"]["clean"]["whole"], abs=1e-9)
    assert abs(summary["benchmark/psnr_mask/GT-C"] - summary["ours/benchmark/psnr_mask/GT-C"]) > DIFFERENT


def test_composite_off_evaluates_once(fitted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The paper's full repaint only: one evaluation, no ours section, and a previous
    run's ``evaluation_ours`` and repaint manifest do not survive to be mistaken for this run's."""
    monkeypatch.setenv("TORCH_HOME", str(fitted.torch_home))
    run = tmp_path / "run"
    (run / OURS_RESULTS).mkdir(parents=True)
    (run / OURS_RESULTS / "results.csv").write_text("an old run's\n")
    (run / "clean").mkdir()
    (run / "clean" / "manifest.repaint.yaml").write_text("an old run's\n")
    trainer = SimpleNamespace(
        default_root_dir=str(run),
        checkpoint_callback=SimpleNamespace(last_model_path=str(fitted.hook.outcome.checkpoint)),
        datamodule=SimpleNamespace(hparams=SimpleNamespace(manifest=str(fitted.manifest))),
        loggers=[],
    )
    hook = PostFitBenchmark(metrics=["groundtruth"], device="cpu", batch_size=16, composite="off")
    out = hook.run(trainer)
    assert out.error is None, out.error
    assert out.ours_results_dir is None and not (run / OURS_RESULTS).exists()
    assert set(out.timings_s) == {"clean", "evaluate", "report"}
    assert not (run / "clean" / "manifest.repaint.yaml").exists()
    assert not list((run / "clean").glob("*.repaint.mp4"))
    assert cleaned_manifest(run / "evaluation").manifest_path == run / "clean" / "manifest.yaml"
    assert "## Our extension: the same tables" not in (run / "report" / "report.md").read_text()
    assert not [n for n in out.files if n.startswith("composited_")] and "table_groundtruth" in out.files


def test_repaint_manifest_refuses_a_folder_with_repaints_for_some_recordings(fitted, tmp_path: Path) -> None:
    clean = tmp_path / "clean"
    shutil.copytree(fitted.run / "clean", clean)
    (clean / "manifest.repaint.yaml").unlink()
    cleaned = load_manifest(clean / "manifest.yaml", check_videos=False, require_domains=("clean",))
    gone = cleaned.recordings[0]
    assert gone.path.is_relative_to(clean)  # the copy's own files (the manifest's paths are relative)
    gone.path.with_name(f"{gone.path.stem}.repaint.mp4").unlink()
    with pytest.raises(CleanError, match=rf"manifest.yaml: recording\(s\) \['{gone.name}'\] have no full repaint"):
        write_repaint_manifest(clean / "manifest.yaml")
    assert not (clean / "manifest.repaint.yaml").exists()
