"""`python -m sensor_removal fit|validate|predict`: configs, overrides, checkpoints, DDP."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from sensor_removal.cli import main
from tests.videos import make_video

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-recording subject and a tiny-model config with a CSV logger."""
    d = tmp_path_factory.mktemp("cli")
    recs = []
    for i, (name, cond) in enumerate([("n1", "normal"), ("s1", "sensor")]):
        make_video(d / f"{name}.mp4", n=40, width=64, height=48, seed=i)
        recs.append({"name": name, "path": f"{name}.mp4", "session": 1, "condition": cond, "bbox": [10, 4, 36, 36]})
    (d / "manifest.yaml").write_text(yaml.safe_dump({"subject": "tiny", "recordings": recs}))
    (d / "tiny.yaml").write_text(
        f"""
subject: tiny
trainer:
  max_epochs: 2
  accelerator: cpu
  enable_progress_bar: false
  enable_model_summary: false
  logger:
    class_path: pytorch_lightning.loggers.CSVLogger
    init_args:
      save_dir: ${{...default_root_dir}}
  callbacks:
    - class_path: sensor_removal.callbacks.RunCheckpoint
      init_args: {{save_last: true, filename: "epoch{{epoch:03d}}", auto_insert_metric_name: false}}
    - class_path: sensor_removal.callbacks.ImageGrid
model: {{ngf: 4, ndf: 4, n_blocks: 1, epochs_constant: 1, epochs_decay: 2}}
data: {{manifest: {d / 'manifest.yaml'}, fraction: 0.5, load_size: 36, crop_size: 32, batch_size: 4, num_workers: 0}}
"""
    )
    return d


def test_fit_writes_run_and_resumes_from_last(tiny: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["fit", "--config", str(tiny / "tiny.yaml"), "--trainer.default_root_dir", str(run)]
    assert main(args) == 0
    last = run / "checkpoints" / "last.ckpt"
    assert last.is_file()
    # The override reached the ${...default_root_dir} reference of the logger.
    assert (run / "lightning_logs" / "version_0" / "metrics.csv").is_file()
    assert sorted(p.name for p in (run / "grids").iterdir()) == ["epoch_000.png", "epoch_001.png"]
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 1
    assert ckpt["datamodule_hyper_parameters"]["crop_size"] == 32
    steps_per_epoch = ckpt["global_step"] // 2
    # Resume: one more epoch continues the same run and the lr schedule.
    assert main([*args, "--ckpt_path", "last", "--trainer.max_epochs=3"]) == 0
    resumed = torch.load(last, map_location="cpu", weights_only=True)
    assert resumed["epoch"] == 2
    assert resumed["global_step"] == 3 * steps_per_epoch
    # epochs_constant=1, epochs_decay=2: after epoch 2 the scheduler has stepped 3 times.
    assert resumed["lr_schedulers"][0]["last_epoch"] == 3


def test_subject_and_overrides_reach_interpolations(tiny: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as done:
        main(["fit", "--config", str(ROOT / "conf" / "demo.yaml"), "--subject", "subj99",
              "--trainer.max_epochs=2", "--print_config"])
    assert done.value.code == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["trainer"]["default_root_dir"] == "demo/runs/subj99"
    csv, wandb = cfg["trainer"]["logger"]  # a CSV log and W&B, both in the run folder
    assert wandb["init_args"]["group"] == "subj99"
    assert wandb["init_args"]["save_dir"] == csv["init_args"]["save_dir"] == "demo/runs/subj99"
    assert cfg["trainer"]["max_epochs"] == 2
    # Paper defaults come from conf/default.yaml underneath.
    assert cfg["model"]["lr"] == pytest.approx(3e-4) and cfg["data"]["load_size"] == 72
    assert cfg["weights_only"] is True  # --ckpt_path loads without unpickling code


def test_bad_manifest_exits_with_message_and_no_traceback(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.yaml"
    doc = yaml.safe_load((tiny / "manifest.yaml").read_text())
    doc["recordings"][1]["condition"] = "electrodes"
    for r in doc["recordings"]:
        r["path"] = str(tiny / r["path"])
    bad.write_text(yaml.safe_dump(doc))
    code = main(["fit", "--config", str(tiny / "tiny.yaml"), "--data.manifest", str(bad),
                 "--trainer.default_root_dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2
    assert f"{bad}: recording 's1', field 'condition': unknown condition 'electrodes'" in err
    assert "Traceback" not in err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_ddp_two_cpu_processes_train_and_write_one_checkpoint(tiny: Path, tmp_path: Path) -> None:
    """Two gloo processes: the strategy allows unused parameters and only rank 0 writes."""
    run = tmp_path / "ddp"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "sensor_removal", "fit", "--config", str(tiny / "tiny.yaml"),
         "--trainer.default_root_dir", str(run), "--trainer.devices=2", "--trainer.max_epochs=1"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "GLOBAL_RANK: 1" in proc.stderr + proc.stdout
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert ckpts == ["epoch000.ckpt", "last.ckpt"]
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 0 and ckpt["global_step"] > 0


def test_wandb_without_login_says_how_to_go_offline(tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture) -> None:
    for var in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc with a key
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    import wandb

    wandb.teardown()  # forget settings (e.g. offline mode) that earlier tests left in this process
    code = main(["fit", "--config", str(tiny / "tiny.yaml"), "--trainer.default_root_dir", str(tmp_path / "run"),
                 "--trainer.logger", "pytorch_lightning.loggers.WandbLogger",
                 "--trainer.logger.init_args.offline", "false", "--trainer.logger.init_args.project", "t"])
    err = capsys.readouterr().err
    assert code == 2
    assert "Weights & Biases" in err and "WANDB_MODE=offline" in err
    assert "Traceback" not in err
