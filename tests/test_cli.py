"""`python -m sensor_removal fit|validate|predict`: configs, overrides, checkpoints, DDP."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from sensor_removal.cli.commands import main
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
    - class_path: sensor_removal.training.callbacks.RunCheckpoint
      init_args: {{save_last: true, filename: "epoch{{epoch:03d}}", auto_insert_metric_name: false}}
    - class_path: sensor_removal.training.callbacks.ImageGrid
model: {{ngf: 4, ndf: 4, n_blocks: 1, epochs_constant: 1, epochs_decay: 2}}
data: {{manifest: {d / "manifest.yaml"}, fraction: 0.5, load_size: 36, crop_size: 32, batch_size: 4, num_workers: 0}}
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
        main(
            [
                "fit",
                "--config",
                str(ROOT / "conf" / "demo.yaml"),
                "--subject",
                "subj99",
                "--trainer.max_epochs=2",
                "--print_config",
            ]
        )
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


def test_bad_manifest_exits_with_message_and_no_traceback(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    bad = tmp_path / "bad.yaml"
    doc = yaml.safe_load((tiny / "manifest.yaml").read_text())
    doc["recordings"][1]["condition"] = "electrodes"
    for r in doc["recordings"]:
        r["path"] = str(tiny / r["path"])
    bad.write_text(yaml.safe_dump(doc))
    code = main(
        [
            "fit",
            "--config",
            str(tiny / "tiny.yaml"),
            "--data.manifest",
            str(bad),
            "--trainer.default_root_dir",
            str(tmp_path / "run"),
        ]
    )
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
        [
            sys.executable,
            "-m",
            "sensor_removal",
            "fit",
            "--config",
            str(tiny / "tiny.yaml"),
            "--trainer.default_root_dir",
            str(run),
            "--trainer.devices=2",
            "--trainer.max_epochs=1",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "GLOBAL_RANK: 1" in proc.stderr + proc.stdout
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert ckpts == ["epoch000.ckpt", "last.ckpt"]
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 0 and ckpt["global_step"] > 0


def test_wandb_without_login_says_how_to_go_offline(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    for var in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc with a key
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    import wandb

    wandb.teardown()  # forget settings (e.g. offline mode) that earlier tests left in this process
    code = main(
        [
            "fit",
            "--config",
            str(tiny / "tiny.yaml"),
            "--trainer.default_root_dir",
            str(tmp_path / "run"),
            "--trainer.logger",
            "pytorch_lightning.loggers.WandbLogger",
            "--trainer.logger.init_args.offline",
            "false",
            "--trainer.logger.init_args.project",
            "t",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "Weights & Biases" in err and "WANDB_MODE=offline" in err
    assert "Traceback" not in err


def _wandb_records(run_dir: Path) -> list:
    """The records of the offline W&B run under ``run_dir`` (the ``.wandb`` file is a
    LevelDB-style log of protobuf records: 32 KiB blocks, 7-byte chunk headers)."""
    import struct

    from wandb.proto import wandb_internal_pb2 as pb2

    (path,) = (run_dir / "wandb").glob("offline-run-*/*.wandb")
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, chunks, pending = 7, 32768, [], b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0:
            pos += left
            continue
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 1:
            chunks.append(chunk)
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            chunks.append(pending + chunk)
    records = []
    for raw in chunks:
        record = pb2.Record()
        record.ParseFromString(raw)
        records.append(record)
    return records


def test_fit_off_a_terminal_prints_progress_lines_and_wandb_holds_the_run(tiny: Path, tmp_path: Path) -> None:
    """stdout captured (not a terminal): plain progress lines with epoch, step/total,
    rate, ETA and losses; the offline W&B run is named after the subject and holds the
    full resolved config with the library versions, and no ``_instantiator``."""
    import json

    # A separate process, as on a cluster node: stdout is a pipe, and W&B's process-wide
    # state (its service, settings) is this run's alone.
    env = {
        **os.environ,
        "WANDB_MODE": "offline",
        "WANDB_DIR": str(tmp_path / "wandb_dir"),
        "WANDB_SILENT": "false",
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    run = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "sensor_removal", "fit", "--config", str(tiny / "tiny.yaml"),
         "--trainer.default_root_dir", str(run),
         "--trainer.enable_progress_bar", "true", "--progress_every_s", "0", "--subject", "subj42",
         "--trainer.logger", "pytorch_lightning.loggers.WandbLogger",
         "--trainer.logger.init_args.offline", "true", "--trainer.logger.init_args.save_dir", str(run)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    out, err = proc.stdout, proc.stderr
    assert proc.returncode == 0, err[-2000:]
    lines = out.splitlines()
    steps = [x for x in lines if x.startswith("epoch ") and "steps (" in x]
    # Every batch (every_s = 0) of both epochs: 40 frames x 0.5, 10 % validation -> 18 per
    # domain, batches of 4 -> 5 per epoch.
    assert len(steps) == 10, "\n".join(lines)
    assert steps[0].startswith("epoch 1/2, batch 1/5, fit: 1/10 steps (10%)")
    assert steps[-1].startswith("epoch 2/2, batch 5/5, fit: 10/10 steps (100%)")
    for x in steps:
        assert " steps/s" in x and "ETA " in x and "loss_g " in x and "loss_d " in x
    assert sum(x.startswith("epoch ") and " validated " in x and "cycle " in x for x in lines) == 2
    assert any(x.startswith("fit finished: 10/10 steps") for x in lines)
    assert "\r" not in out  # no redrawn bar in a log file
    assert "💡 Tip" not in err and "anonymous setting" not in err and "LeafSpec" not in err

    records = _wandb_records(run)
    (run_record,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert run_record.display_name == "subj42" and run_record.run_group == "subj42"
    config = {}
    for r in records:
        kind = r.WhichOneof("record_type")
        items = r.run.config.update if kind == "run" else r.config.update if kind == "config" else []
        config.update({item.key: json.loads(item.value_json) for item in items})
    assert {"trainer", "model", "data", "subject", "versions", "seed_everything"} <= set(config)
    assert config["subject"] == "subj42" and config["trainer"]["max_epochs"] == 2
    assert config["model"]["ngf"] == 4 and config["data"]["crop_size"] == 32
    assert [c["class_path"].rsplit(".", 1)[-1] for c in config["trainer"]["callbacks"]] == [
        "RunCheckpoint",
        "ImageGrid",
    ]
    assert (
        config["versions"]["torch"] == torch.__version__.split("+")[0]
        or config["versions"]["torch"] == torch.__version__
    )
    assert "pytorch-lightning" in config["versions"] and "python" in config["versions"]
    assert not [k for k in config if "_instantiator" in k]
    assert "_instantiator" not in json.dumps(config)


def test_fit_without_a_manifest_says_which_option_sets_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    code = main(["fit", "--trainer.default_root_dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "no manifest given: set --data.manifest PATH (or data.manifest in your config)" in err
    assert "???" not in err


def test_missing_lpips_fid_weights_name_the_fit_side_switch(
    tiny: Path, tmp_path: Path, torch_home: Path, capsys: pytest.CaptureFixture
) -> None:
    config = tmp_path / "with_metrics.yaml"
    doc = yaml.safe_load((tiny / "tiny.yaml").read_text())
    doc["trainer"]["callbacks"].append({"class_path": "sensor_removal.workflows.fit_metrics.PerceptualMetrics"})
    config.write_text(yaml.safe_dump(doc))
    code = main(["fit", "--config", str(config), "--trainer.default_root_dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "alexnet-owt-7be5be79.pth" in err
    assert "--perceptual_metrics false" in err
    assert "(--metrics)" not in err  # the evaluation's option is not a fit option


def test_perceptual_metrics_switch_removes_the_callback_and_its_ranking(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One switch: the paper's default config without LPIPS/FID trains with no weights."""
    from sensor_removal.training.callbacks import RunCheckpoint
    from sensor_removal.training.cli import SensorRemovalCLI, build_cli
    from sensor_removal.workflows.fit_metrics import PerceptualMetrics

    monkeypatch.setattr(SensorRemovalCLI, "_run_subcommand", lambda self, subcommand: None)  # build, don't fit
    args = [
        "fit",
        "--data.manifest",
        str(tiny / "manifest.yaml"),
        "--trainer.default_root_dir",
        str(tmp_path / "run"),
        "--trainer.logger",
        "false",
        "--data.fraction",
        "0.5",
    ]  # 40 frames: 2 % would draw 1
    on = build_cli(args)
    assert any(isinstance(c, PerceptualMetrics) for c in on.trainer.callbacks)
    assert on.trainer.checkpoint_callback.monitor is None  # the paper cleans with the final epoch's model
    off = build_cli([*args, "--perceptual_metrics", "false"])
    assert not any(isinstance(c, PerceptualMetrics) for c in off.trainer.callbacks)
    ckpt = off.trainer.checkpoint_callback
    assert isinstance(ckpt, RunCheckpoint) and ckpt.monitor is None and "{val/" not in ckpt.filename
