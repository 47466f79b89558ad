"""Training callbacks and the post-fit benchmark, inside tiny CPU fits.

* :class:`~sensor_removal.training.callbacks.ImageGrid` — one PNG per epoch, rows
  ``sensor | G_S→N | cycle`` and ``normal | G_N→S | cycle``, also in W&B (offline run).
* :class:`~sensor_removal.workflows.fit_metrics.PerceptualMetrics` — ``val/{lpips,fid}_{clean,sensor}``
  with stand-in weights; the checkpoint monitors ``val/fid_clean``; missing weights stop the
  fit before training; under 2-process DDP the logged values equal a one-process
  recomputation from the saved checkpoint.
* :class:`~sensor_removal.workflows.postfit.PostFitBenchmark` — clean, evaluate, report after fit,
  tables in W&B; a failure is reported and never costs the trained checkpoints.

The subject is the built-in synthetic one, small (2 s at 6 fps, 64 px): 12 normal and 24
sensor frames sampled, of which 3 and 6 are validation frames; networks of 4 filters.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
import yaml
from pytorch_lightning.loggers import CSVLogger, Logger

from evaluation.protocol import COLUMNS
from sensor_removal.core.tensors import to_tensor, to_uint8
from sensor_removal.training.callbacks import ImageGrid, RunCheckpoint, center_crop, label_bands
from sensor_removal.training.data import FramesDataModule
from sensor_removal.training.module import CycleGAN
from sensor_removal.workflows.fit_metrics import PerceptualMetrics
from sensor_removal.workflows.postfit import PostFitBenchmark
from tests.conftest import ALEXNET_FILE, INCEPTION_FILE

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.usefixtures("single_thread")

#: Data and model of every fit here (also the CLI config below).
DATA = dict(fraction=0.5, load_size=36, crop_size=32, val_fraction=0.25, batch_size=4, num_workers=0)
MODEL = dict(ngf=4, ndf=4, n_blocks=1, epochs_constant=1, epochs_decay=1)
CROP = DATA["crop_size"]
PAD = 2  # ImageGrid's tile padding
KEYS = PerceptualMetrics.KEYS


@pytest.fixture(scope="module")
def subject(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic subject, small; its frame cache is shared by the tests of this module."""
    from sensor_removal.synthetic import make_subject

    return make_subject(tmp_path_factory.mktemp("callbacks") / "synth", seconds=2.0, fps=6.0, size=(64, 64), seed=0)


def datamodule(manifest: Path) -> FramesDataModule:
    return FramesDataModule(str(manifest), **DATA)


def fit(
    run: Path, manifest: Path, callbacks: list[pl.Callback], logger: Logger | None = None, max_epochs: int = 2
) -> tuple[pl.Trainer, CycleGAN, FramesDataModule]:
    """A tiny fit into ``run`` (CSV logger unless ``logger``)."""
    pl.seed_everything(0, workers=True)
    model, dm = CycleGAN(**{**MODEL, "epochs_decay": max_epochs - 1}), datamodule(manifest)
    trainer = pl.Trainer(
        default_root_dir=str(run),
        max_epochs=max_epochs,
        accelerator="cpu",
        logger=logger if logger is not None else CSVLogger(str(run), name="csv"),
        callbacks=callbacks,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
    )
    trainer.fit(model, datamodule=dm)
    return trainer, model, dm


def read_png(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, path
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


TOP, LEFT = label_bands(CROP)  # the label bands above and left of the tiles


def grid_shape(rows: int) -> tuple[int, int, int]:
    return (TOP + rows * (CROP + PAD) + PAD, LEFT + 3 * (CROP + PAD) + PAD, 3)


def tiles(grid: np.ndarray, n_rows: int, n_cols: int = 3) -> np.ndarray:
    """Cut a grid written by ImageGrid back into ``(rows, cols, CROP, CROP, 3)`` tiles."""
    step = CROP + PAD
    y0, x0 = TOP + PAD, LEFT + PAD
    return np.stack(
        [
            np.stack(
                [
                    grid[y0 + i * step : y0 + i * step + CROP, x0 + j * step : x0 + j * step + CROP]
                    for j in range(n_cols)
                ]
            )
            for i in range(n_rows)
        ]
    )


def check_labels(grid: np.ndarray, rows: int) -> None:
    """Text (dark pixels) in the title band above every column and in the label band left
    of every row; the corner and the gaps between labels stay white."""
    step = CROP + PAD
    dark = grid.min(axis=2) < 128
    for j in range(3):
        assert dark[:TOP, LEFT + PAD + j * step : LEFT + PAD + j * step + CROP].sum() >= 5, f"column {j} has no title"
    for i in range(rows):
        assert dark[TOP + PAD + i * step : TOP + PAD + i * step + min(TOP, CROP), :LEFT].sum() >= 5, (
            f"row {i} has no label"
        )
        below = TOP + PAD + i * step + min(TOP, CROP) + 1
        assert not dark[below : TOP + PAD + (i + 1) * step - 1, :LEFT].any()
    assert not dark[:TOP, :LEFT].any()


def grid_inputs(grid: np.ndarray, dm: FramesDataModule, n_s: int, n_n: int) -> dict[str, np.ndarray]:
    """The input column of a grid, checked to be distinct, differing validation frames
    (centre-cropped) of each domain."""
    inputs = tiles(grid, n_s + n_n)[:, 0]
    out = {"sensor": inputs[:n_s], "normal": inputs[n_s:]}
    for domain, shown in out.items():
        val = center_crop(dm.frames(domain, "val"), CROP)
        where = [next(k for k, f in enumerate(val) if np.array_equal(f, x)) for x in shown]
        assert len(set(where)) == len(where), (domain, where)
        for a in range(len(shown)):
            for b in range(a):
                assert np.abs(shown[a].astype(int) - shown[b].astype(int)).mean() > 1.0, (domain, a, b)
    return out


def check_grids(run: Path, model: CycleGAN, dm: FramesDataModule, num_frames: int, epochs: int) -> list[Path]:
    """One PNG per epoch of the right geometry; the last one shows what the final
    generators make of the fixed validation frames, in the documented row/column order."""
    paths = sorted((run / "grids").iterdir())
    assert [p.name for p in paths] == [f"epoch_{e:03d}.png" for e in range(epochs)]
    n_s, n_n = min(num_frames, 6), min(num_frames, 3)  # 6 / 3 validation frames
    rows = n_s + n_n
    grids = [read_png(p) for p in paths]
    for g in grids:
        assert g.shape == grid_shape(rows)
        check_labels(g, rows)
    frames = grid_inputs(grids[-1], dm, n_s, n_n)
    # The final weights are those of the last validation (the scheduler step changes none).
    model.eval()
    with torch.no_grad():
        expect = []
        for domain, forward, back in (
            ("sensor", model.gen_s2n, model.gen_n2s),
            ("normal", model.gen_n2s, model.gen_s2n),
        ):
            y = forward(to_tensor(frames[domain]))
            expect += list(np.stack([frames[domain], to_uint8(y), to_uint8(back(y))], axis=1))
    got = tiles(grids[-1], rows)
    np.testing.assert_array_equal(got, np.stack(expect))
    # The same fixed inputs every epoch; the translations move as the generators learn.
    first = tiles(grids[0], rows)
    np.testing.assert_array_equal(first[:, 0], got[:, 0])
    assert not np.array_equal(first[:, 1], got[:, 1])
    return paths


def check_benchmark(run: Path, hook: PostFitBenchmark, best: Path) -> None:
    """The post-fit hook cleaned, evaluated (groundtruth) and reported into the run."""
    from sensor_removal.core.manifest import load_manifest

    out = hook.outcome
    assert out is not None and out.error is None, out and out.error
    assert out.checkpoint == best
    cleaned = load_manifest(run / "clean" / "manifest.yaml", require_domains=("clean",))
    assert sorted(r.source for r in cleaned.recordings) == ["s1_sensor_a", "s1_sensor_b", "s2_sensor_a", "s2_sensor_b"]
    assert all(r.path.is_file() for r in cleaned.recordings)
    df = pd.read_csv(run / "evaluation" / "results.csv")
    assert tuple(df.columns) == COLUMNS
    for metric in ("psnr", "ssim"):
        for kind in ("sensor", "clean"):
            sel = df[(df.metric == metric) & (df.kind == kind)]
            assert len(sel) > 0 and np.isfinite(sel.value).all(), (metric, kind)
    assert (run / "report" / "report.md").is_file()
    table = pd.read_csv(run / "report" / "table_groundtruth.csv")
    assert {"S (no cleaning)", "C (cleaned)"} <= set(table["row"])
    assert out.files["table_groundtruth"] == run / "report" / "table_groundtruth.csv"
    assert all(p.is_file() for p in out.files.values())
    assert not (run / "benchmark_error.txt").exists()
    assert not [p for p in run.rglob("*") if ".partial" in p.name]


# --------------------------------------------------------------------- grid + benchmark


def test_csv_fit_writes_grids_and_post_fit_benchmark(subject: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    # A previous run's failure report must not survive a successful benchmark.
    (run / "benchmark_error.txt").write_text("post-fit benchmark failed: an old failure\n")
    hook = PostFitBenchmark(metrics=["groundtruth"], device="cpu", batch_size=16)
    ckpt = RunCheckpoint(save_last=True, filename="epoch{epoch:03d}", auto_insert_metric_name=False)
    trainer, model, dm = fit(run, subject, [ckpt, ImageGrid(every_n_epochs=1, num_frames=4), hook])

    check_grids(run, model, dm, num_frames=4, epochs=2)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["epoch001.ckpt", "last.ckpt"]
    # The paper's model: the hook cleaned with the final epoch's checkpoint, last.ckpt.
    check_benchmark(run, hook, run / "checkpoints" / "last.ckpt")
    assert hook.checkpoint == "last"


def test_checkpoint_choice_last_by_default_best_as_option(tmp_path: Path) -> None:
    from sensor_removal.workflows.postfit import checkpoint_for_benchmark

    best, last = tmp_path / "epoch004-fid12.0.ckpt", tmp_path / "last.ckpt"
    best.write_bytes(b"b")
    last.write_bytes(b"l")
    trainer = SimpleNamespace(checkpoint_callback=SimpleNamespace(best_model_path=str(best), last_model_path=str(last)))
    assert checkpoint_for_benchmark(trainer) == last
    assert checkpoint_for_benchmark(trainer, "best") == best
    last.unlink()
    assert checkpoint_for_benchmark(trainer) is None  # never silently the other one
    with pytest.raises(ValueError, match="checkpoint"):
        PostFitBenchmark(checkpoint="first")
    with pytest.raises(ValueError, match="au_models"):
        PostFitBenchmark(au_models=["rf"])


def test_best_by_metric_needs_full_size_fid() -> None:
    from sensor_removal.workflows.postfit import check_best_by_metric

    hook = PostFitBenchmark(checkpoint="best")
    with pytest.raises(ValueError, match="needs the PerceptualMetrics"):
        check_best_by_metric(SimpleNamespace(callbacks=[hook]))
    with pytest.raises(ValueError, match="heldout_frames >= 128"):
        check_best_by_metric(SimpleNamespace(callbacks=[PerceptualMetrics(), hook]))
    with pytest.raises(ValueError, match="fid_set_size >= 128"):
        check_best_by_metric(SimpleNamespace(callbacks=[PerceptualMetrics(fid_set_size=64, heldout_frames=128), hook]))
    check_best_by_metric(SimpleNamespace(callbacks=[PerceptualMetrics(heldout_frames=128), hook]))


def test_heldout_frames_come_from_outside_the_training_sample(subject: Path) -> None:
    dm = datamodule(subject)
    dm.setup()
    five = dm.heldout_frames("normal", 5)
    assert five.shape == (5, DATA["load_size"], DATA["load_size"], 3) and five.dtype == np.uint8
    np.testing.assert_array_equal(five, dm.heldout_frames("normal", 5))  # seeded
    # 2 normal videos of 12 frames, half of them sampled for training: 12 remain.
    sampled = len(dm.cache.refs["normal"])
    assert sampled == 12 and len(dm.heldout_frames("normal", 100)) == 24 - sampled


def test_every_n_epochs_skips_grids(subject: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    grid = ImageGrid(every_n_epochs=2, num_frames=1)
    fit(run, subject, [RunCheckpoint(save_last=True), grid], max_epochs=2)
    assert [p.name for p in (run / "grids").iterdir()] == ["epoch_001.png"]
    assert grid.last_path == run / "grids" / "epoch_001.png"
    assert read_png(grid.last_path).shape == grid_shape(2)


@pytest.fixture
def offline_wandb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """W&B in offline mode, no network or account; the run is finished afterwards."""
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_dir"))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    wandb.teardown()  # settings an earlier test left in this process (e.g. online without a key)
    yield wandb
    wandb.finish()


def test_wandb_offline_run_holds_grids_and_benchmark_tables(subject: Path, tmp_path: Path, offline_wandb) -> None:
    from pytorch_lightning.loggers import WandbLogger

    run = tmp_path / "run"
    logger = WandbLogger(project="sensor-removal-test", save_dir=str(run), offline=True)
    hook = PostFitBenchmark(metrics=["groundtruth"], device="cpu", batch_size=16)
    ckpt = RunCheckpoint(save_last=True, filename="epoch{epoch:03d}", auto_insert_metric_name=False)
    trainer, model, dm = fit(run, subject, [ckpt, ImageGrid(every_n_epochs=1, num_frames=2), hook], logger=logger)
    offline_wandb.finish()  # flush the run's files

    grids = check_grids(run, model, dm, num_frames=2, epochs=2)
    check_benchmark(run, hook, run / "checkpoints" / "last.ckpt")
    (wb_run,) = sorted((run / "wandb").glob("offline-run-*"))
    (record_log,) = wb_run.glob("*.wandb")
    records = record_log.read_bytes()
    media = wb_run / "files" / "media"

    # Every grid of the run folder was logged as val/grid, pixel for pixel, and each
    # logged file is referenced by the run's record log.
    logged = sorted((media / "images" / "val").glob("grid_*.png"))
    assert len(logged) == len(grids)
    ours = [read_png(p) for p in grids]
    matched = []
    for p in logged:
        image = read_png(p)
        matched += [i for i, g in enumerate(ours) if np.array_equal(image, g)]
        assert str(p.relative_to(wb_run / "files")).encode() in records
    assert sorted(matched) == list(range(len(grids)))

    # The benchmark's table, as logged, equals the report's CSV.
    (table_json,) = (media / "table" / "benchmark").glob("table_groundtruth_*.table.json")
    doc = json.loads(table_json.read_text())
    table = pd.read_csv(run / "report" / "table_groundtruth.csv")
    assert doc["columns"] == list(table.columns)
    logged_table = pd.DataFrame(doc["data"], columns=doc["columns"])
    pd.testing.assert_frame_equal(logged_table, table, check_dtype=False)
    assert str(table_json.relative_to(wb_run / "files")).encode() in records
    assert b"benchmark/table_groundtruth" in records
    # results.csv as a table, a sensor | cleaned sample clip, headline scalars per comparison.
    (results_json,) = (media / "table" / "benchmark").glob("results_*.table.json")
    doc = json.loads(results_json.read_text())
    assert doc["columns"] == list(COLUMNS) and len(doc["data"]) == len(pd.read_csv(run / "evaluation" / "results.csv"))
    (clip,) = (media / "videos" / "benchmark").glob("sample_*.mp4")
    from sensor_removal.core.video import probe

    info = probe(clip)
    assert info.width == 2 * info.height and info.frame_count >= 1  # sensor | cleaned, side by side
    for key in (b"benchmark/psnr_mask/GT-C", b"benchmark/psnr_mask/GT-S", b"benchmark/ssim_whole/GT-C"):
        assert key in records, key


def test_benchmark_plots_and_tables_go_to_wandb(tmp_path: Path, offline_wandb) -> None:
    """The hook's logging step on its own: CSV files as tables, PNG plots as images
    (a groundtruth-only benchmark has no plots; py-feat's curves are PNGs)."""
    from pytorch_lightning.loggers import WandbLogger

    from sensor_removal.training.callbacks import save_png
    from sensor_removal.workflows.postfit import BenchmarkOutcome

    plot = save_png(tmp_path / "au_curves", np.tile(np.arange(48, dtype=np.uint8)[:, None, None], (1, 40, 3)))
    table = tmp_path / "table_lpips_fid.csv"
    pd.DataFrame({"row": ["N1-N2", "Nk-Ck"], "mean": [0.25, 0.5]}).to_csv(table, index=False)
    logger = WandbLogger(project="sensor-removal-test", save_dir=str(tmp_path / "run"), offline=True)
    trainer = SimpleNamespace(loggers=[CSVLogger(str(tmp_path / "csv")), logger])
    PostFitBenchmark._log(
        trainer, BenchmarkOutcome(files={"au_curves": plot, "table_lpips_fid": table, "report.md": tmp_path / "x.md"})
    )
    offline_wandb.finish()

    (wb_run,) = (tmp_path / "run" / "wandb").glob("offline-run-*")
    media = wb_run / "files" / "media"
    (image,) = (media / "images" / "benchmark").glob("au_curves_*.png")
    np.testing.assert_array_equal(read_png(image), read_png(plot))
    (logged,) = (media / "table" / "benchmark").glob("table_lpips_fid_*.table.json")
    doc = json.loads(logged.read_text())
    assert doc["columns"] == ["row", "mean"] and doc["data"] == [["N1-N2", 0.25], ["Nk-Ck", 0.5]]


def effective_callbacks(config: Path) -> list[dict]:
    """``trainer.callbacks`` of a config file over conf/default.yaml (a list replaces)."""
    default = yaml.safe_load((ROOT / "conf" / "default.yaml").read_text())
    doc = yaml.safe_load(config.read_text())
    return (doc.get("trainer") or {}).get("callbacks") or default["trainer"]["callbacks"]


@pytest.mark.parametrize(
    "config",
    sorted((ROOT / "conf").glob("*.yaml")) + sorted((ROOT / "conf" / "subjects").glob("*.yaml")),
    ids=lambda p: p.name,
)
def test_configs_monitor_fid_only_with_the_metrics_callback(config: Path) -> None:
    callbacks = effective_callbacks(config)
    by_class = {c["class_path"].rsplit(".", 1)[-1]: c.get("init_args") or {} for c in callbacks}
    # last.ckpt is the final epoch's model, the one the paper evaluates.
    assert "RunCheckpoint" in by_class and by_class["RunCheckpoint"].get("save_last") is True
    ckpt = by_class["RunCheckpoint"]
    hook = by_class.get("PostFitBenchmark")
    if hook is not None:
        assert hook.get("checkpoint", "last") == "last"  # the paper's default in every shipped config
    if ckpt.get("monitor") is not None:
        assert ckpt.get("monitor") == "val/fid_clean" and ckpt.get("mode") == "min"
        assert "PerceptualMetrics" in by_class
        # The checkpoint must see the metric every time it looks for it.
        assert by_class["PerceptualMetrics"].get("every_n_epochs", 1) == (ckpt.get("every_n_epochs") or 1)
    else:
        assert "val/" not in ckpt.get("filename", "")


# ---------------------------------------------------------------- perceptual metrics


def load_model(ckpt_path: Path) -> tuple[CycleGAN, dict]:
    """The CycleGAN of a checkpoint, read with ``weights_only=True``."""
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    names = inspect.signature(CycleGAN.__init__).parameters
    model = CycleGAN(**{k: v for k, v in ckpt["hyper_parameters"].items() if k in names})
    model.load_state_dict(ckpt["state_dict"])
    return model, ckpt


def recompute(model: CycleGAN, dm: FramesDataModule, epoch: int, **kwargs) -> dict[str, float]:
    """The callback's measurement in this one process (world size 1) for ``epoch``."""
    cb = PerceptualMetrics(**kwargs)
    trainer = SimpleNamespace(datamodule=dm, global_rank=0, world_size=1, current_epoch=epoch)
    cb.setup(trainer, model, "fit")
    return cb.measure(trainer, model)


def epoch_metrics(metrics_csv: Path) -> pd.DataFrame:
    """Per epoch, the four logged perceptual values (one row each)."""
    df = pd.read_csv(metrics_csv)
    return df.dropna(subset=["val/fid_clean"]).set_index("epoch")[list(KEYS)]


def test_perceptual_metrics_logged_and_best_checkpoint_is_min_fid(
    subject: Path, tmp_path: Path, fake_torch_weights: Path
) -> None:
    run = tmp_path / "run"
    ckpt = RunCheckpoint(
        monitor="val/fid_clean",
        mode="min",
        save_last=True,
        filename="epoch{epoch:03d}-fid{val/fid_clean:.6f}",
        auto_insert_metric_name=False,
    )
    trainer, model, dm = fit(run, subject, [PerceptualMetrics(every_n_epochs=1), ckpt], max_epochs=3)

    for key in KEYS:
        assert key in trainer.callback_metrics, key
        assert math.isfinite(float(trainer.callback_metrics[key])), key
    per_epoch = epoch_metrics(run / "csv" / "version_0" / "metrics.csv")
    assert list(per_epoch.index) == [0, 1, 2]
    assert np.isfinite(per_epoch.to_numpy()).all()
    assert (per_epoch["val/lpips_clean"] > 0).all() and (per_epoch["val/fid_sensor"] > 0).all()
    # The reference FID (all frames, no draw) does not depend on the generator; the cleaned one does.
    assert per_epoch["val/fid_sensor"].nunique() == 1
    assert per_epoch["val/fid_clean"].nunique() == 3
    for key in KEYS:
        assert float(trainer.callback_metrics[key]) == pytest.approx(per_epoch.loc[2, key], rel=1e-6)

    # Best = lowest val/fid_clean over the epochs; only it and last.ckpt are kept.
    best_epoch = int(per_epoch["val/fid_clean"].idxmin())
    assert float(ckpt.best_model_score) == pytest.approx(per_epoch["val/fid_clean"].min(), rel=1e-6)
    best = Path(ckpt.best_model_path)
    assert best.name.startswith(f"epoch{best_epoch:03d}-fid")
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == sorted([best.name, "last.ckpt"])
    _, saved = load_model(best)
    assert saved["epoch"] == best_epoch

    # Held-out frames join the validation frames; the count is logged.
    cb = PerceptualMetrics(heldout_frames=4)
    t = SimpleNamespace(datamodule=dm, global_rank=0, world_size=1, current_epoch=2)
    cb.setup(t, model, "fit")
    assert all(math.isfinite(v) for v in cb.measure(t, model).values())
    assert cb.frames_used == {d: len(dm.frames(d, "val")) + 4 for d in ("sensor", "normal")}

    # The logged values are what the metrics give for the final generator.
    final, _ = load_model(run / "checkpoints" / "last.ckpt")
    again = recompute(final, dm, epoch=2)
    for key in KEYS:
        assert again[key] == pytest.approx(per_epoch.loc[2, key], rel=1e-5, abs=1e-6), key


CLI_CONFIG = """
subject: synth
trainer:
  max_epochs: 2
  accelerator: cpu
  enable_progress_bar: false
  enable_model_summary: false
  log_every_n_steps: 1
  logger:
    class_path: pytorch_lightning.loggers.CSVLogger
    init_args:
      save_dir: ${{...default_root_dir}}
      name: csv
  callbacks:
{callbacks}
model: {model}
data: {data}
"""

METRICS_CALLBACKS = """\
    - class_path: sensor_removal.workflows.fit_metrics.PerceptualMetrics
      init_args: {every_n_epochs: 1}
    - class_path: sensor_removal.training.callbacks.RunCheckpoint
      init_args:
        monitor: val/fid_clean
        mode: min
        save_last: true
        filename: "epoch{epoch:03d}"
        auto_insert_metric_name: false
"""

PLAIN_CALLBACKS = """\
    - class_path: sensor_removal.training.callbacks.RunCheckpoint
      init_args: {save_last: true, filename: "epoch{epoch:03d}", auto_insert_metric_name: false}
"""


def write_config(path: Path, manifest: Path, callbacks: str) -> Path:
    data = {**DATA, "manifest": str(manifest)}
    path.write_text(CLI_CONFIG.format(callbacks=callbacks.rstrip("\n"), model=json.dumps(MODEL), data=json.dumps(data)))
    yaml.safe_load(path.read_text())  # a valid YAML file
    return path


def test_missing_weights_stop_the_fit_before_training(
    subject: Path, tmp_path: Path, torch_home: Path, capsys: pytest.CaptureFixture
) -> None:
    from sensor_removal.cli.commands import main

    run = tmp_path / "run"
    config = write_config(tmp_path / "metrics.yaml", subject, METRICS_CALLBACKS)
    code = main(["fit", "--config", str(config), "--trainer.default_root_dir", str(run)])
    err = capsys.readouterr().err
    assert code == 2
    assert str(torch_home / ALEXNET_FILE) in err and str(torch_home / INCEPTION_FILE) in err
    assert "python -m evaluation fetch-weights" in err
    assert "Traceback" not in err
    assert not (run / "checkpoints").exists()
    assert not list(run.rglob("*.ckpt")) and not list(run.rglob("metrics.csv"))

    # Without the callback (and without its monitor) the same machine trains.
    plain = write_config(tmp_path / "plain.yaml", subject, PLAIN_CALLBACKS)
    assert main(["fit", "--config", str(plain), "--trainer.default_root_dir", str(run), "--trainer.max_epochs=1"]) == 0
    assert (run / "checkpoints" / "last.ckpt").is_file()


DDP_CALLBACKS = (
    METRICS_CALLBACKS
    + """\
    - class_path: sensor_removal.training.callbacks.ImageGrid
      init_args: {num_frames: 2}
    - class_path: sensor_removal.workflows.postfit.PostFitBenchmark
      init_args: {metrics: [groundtruth], device: cpu}
"""
)


def test_ddp_metrics_equal_one_process_recomputation(subject: Path, tmp_path: Path, fake_torch_weights: Path) -> None:
    """Two gloo processes: each translates its share of the validation frames, the
    metrics gather them, and the logged values are those of one process over all frames
    (recomputed here from the saved checkpoint: the trained generator itself depends on
    the number of processes, so a 1-process *fit* would not be comparable)."""
    datamodule(subject).setup()  # the frame cache exists before the processes start
    run = tmp_path / "ddp"
    config = write_config(tmp_path / "ddp.yaml", subject, DDP_CALLBACKS)
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "1",
        "TORCH_HOME": str(fake_torch_weights.parent.parent),
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sensor_removal",
            "fit",
            "--config",
            str(config),
            "--trainer.default_root_dir",
            str(run),
            "--trainer.devices=2",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "GLOBAL_RANK: 1" in out

    per_epoch = epoch_metrics(run / "csv" / "version_0" / "metrics.csv")
    assert list(per_epoch.index) == [0, 1]
    final, ckpt = load_model(run / "checkpoints" / "last.ckpt")
    assert ckpt["epoch"] == 1
    single = recompute(final, datamodule(subject), epoch=1)
    for key in KEYS:
        assert per_epoch.loc[1, key] == pytest.approx(single[key], rel=1e-5, abs=1e-6), key

    # Rank 0 alone wrote the grids and ran the benchmark, once: each of its two evaluations
    # (compositing by default: the paper's full repaint, then ours) wrote its results once.
    assert sorted(p.name for p in (run / "grids").iterdir()) == ["epoch_000.png", "epoch_001.png"]
    wrote = re.findall(r"wrote (\S+results\.csv)", out)
    assert sorted(Path(w).parent.name for w in wrote) == ["evaluation", "evaluation_ours"], out[-4000:]
    assert (run / "report" / "report.md").is_file() and not (run / "benchmark_error.txt").exists()


# ------------------------------------------------------------------ benchmark failure


def check_checkpoints_intact(run: Path) -> None:
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["epoch001.ckpt", "last.ckpt"]
    for name in names:
        ckpt = torch.load(run / "checkpoints" / name, map_location="cpu", weights_only=True)
        assert ckpt["epoch"] == 1
        assert any(k.startswith("gen_s2n.") for k in ckpt["state_dict"])


def no_results(run: Path) -> None:
    assert not (run / "evaluation" / "results.csv").exists() and not (run / "evaluation" / "summary.json").exists()
    assert not (run / "report").exists()
    assert not [p for p in run.rglob("*") if ".partial" in p.name]


def test_benchmark_missing_weights_keeps_checkpoints(subject: Path, tmp_path: Path, torch_home: Path) -> None:
    run = tmp_path / "run"
    hook = PostFitBenchmark(metrics=["lpips"], device="cpu")
    ckpt = RunCheckpoint(save_last=True, filename="epoch{epoch:03d}", auto_insert_metric_name=False)
    with pytest.warns(UserWarning, match="post-fit benchmark will fail"):
        trainer, _, _ = fit(run, subject, [ckpt, hook])

    assert trainer.state.finished and trainer.current_epoch == 2
    check_checkpoints_intact(run)
    assert hook.outcome is not None and hook.outcome.error is not None
    assert hook.outcome.error.startswith("post-fit benchmark failed: missing pretrained weights for lpips")
    assert hook.outcome.checkpoint == run / "checkpoints" / "last.ckpt"
    text = (run / "benchmark_error.txt").read_text()
    assert str(torch_home / ALEXNET_FILE) in text and "python -m evaluation fetch-weights --metrics lpips" in text
    # Checked before cleaning: nothing was cleaned or evaluated for a benchmark that cannot run.
    assert not (run / "clean").exists()
    no_results(run)


class BreakVideo(pl.Callback):
    """Makes a sensor video unreadable once training is over (the frame cache was built)."""

    def __init__(self, video: Path) -> None:
        self.video = video

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.video.write_bytes(b"not a video any more")


def test_benchmark_unreadable_video_keeps_checkpoints(tmp_path: Path) -> None:
    from sensor_removal.synthetic import make_subject

    manifest = make_subject(tmp_path / "synth", seconds=2.0, fps=6.0, size=(64, 64), seed=0)
    run = tmp_path / "run"
    hook = PostFitBenchmark(metrics=["groundtruth"], device="cpu", raise_on_failure=True)
    ckpt = RunCheckpoint(save_last=True, filename="epoch{epoch:03d}", auto_insert_metric_name=False)
    broken = tmp_path / "synth" / "s2_sensor_b.mp4"
    with pytest.raises(RuntimeError, match="post-fit benchmark failed: cleaning failed"):
        fit(run, manifest, [BreakVideo(broken), ckpt, hook])

    check_checkpoints_intact(run)
    assert hook.outcome is not None and "s2_sensor_b" in hook.outcome.error
    text = (run / "benchmark_error.txt").read_text()
    assert "cleaning failed" in text and str(broken) in text and "cannot open video" in text
    no_results(run)
    # What was cleaned is complete and says what it holds: the broken recording is not in it.
    from sensor_removal.core.manifest import load_manifest

    cleaned = load_manifest(run / "clean" / "manifest.yaml", require_domains=("clean",))
    assert sorted(r.source for r in cleaned.recordings) == ["s1_sensor_a", "s1_sensor_b", "s2_sensor_a"]


def test_postfit_hands_compositing_and_the_steady_fill_to_the_cleaner(tmp_path: Path, monkeypatch) -> None:
    """``PostFitBenchmark.steady`` (ours) reaches the cleaning, with the mask settings and
    the kept repaint the ground-truth table compares against; a bad value is a config
    error when the callback is built, not after the fit."""
    from sensor_removal.cleaning.steady import SteadySettings

    with pytest.raises(ValueError, match="strength"):
        PostFitBenchmark(steady=1.5)
    seen: dict = {}

    def clean_subject(ckpt, manifest, out_dir, options):
        seen.update({f.name: getattr(options, f.name) for f in dataclasses.fields(options)}, ckpt=ckpt)
        raise RuntimeError("stop after the call")

    monkeypatch.setattr("sensor_removal.cleaning.clean_subject", clean_subject)
    last = tmp_path / "last.ckpt"
    last.write_bytes(b"x")
    trainer = SimpleNamespace(
        default_root_dir=str(tmp_path),
        checkpoint_callback=SimpleNamespace(last_model_path=str(last)),
        datamodule=SimpleNamespace(hparams=SimpleNamespace(manifest=str(tmp_path / "m.yaml"))),
    )
    hook = PostFitBenchmark(
        metrics=["groundtruth"], composite="auto", mask_method="reference", steady=0.9, steady_motion=25.0
    )
    outcome = hook.run(trainer)
    assert "stop after the call" in str(outcome.error)
    assert seen["ckpt"] == last and seen["composite"] == "auto" and seen["keep_repaint"]
    assert seen["steady"] == SteadySettings(strength=0.9, motion=25.0) and seen["mask"].method == "reference"
