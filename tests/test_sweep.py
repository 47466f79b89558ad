"""`python -m sensor_removal sweep`: task table, dry run, local executor (incl. 2-process
CPU DDP), the frame-cache lock, and a real one-node SLURM (sweep, status, preemption)."""

from __future__ import annotations

import multiprocessing
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml

from sensor_removal.cli.commands import main
from sensor_removal.cluster.spec import load_sweep
from sensor_removal.cluster.submit import task_status
from sensor_removal.cluster.task import PROGRESS_FILE, STATE_FILE, WANDB_ID_FILE, read_json
from tests.slurm import SlurmCluster, start_cluster

ROOT = Path(__file__).resolve().parent.parent

FIT_YAML = """
trainer:
  max_epochs: {epochs}
  accelerator: cpu
  enable_progress_bar: false
  enable_model_summary: false
  log_every_n_steps: 1
  logger:
    class_path: pytorch_lightning.loggers.WandbLogger
    init_args:
      project: sweep-test
      save_dir: ${{...default_root_dir}}
      offline: true
      tags: [test]
  callbacks:
    - class_path: sensor_removal.training.callbacks.RunCheckpoint
      init_args: {{save_last: true, filename: "epoch{{epoch:03d}}", auto_insert_metric_name: false}}
{postfit}model: {{ngf: 4, ndf: 4, n_blocks: 1, epochs_constant: {constant}, epochs_decay: {decay}}}
data: {{fraction: {fraction}, load_size: 36, crop_size: 32, batch_size: 4, num_workers: 0}}
"""
POSTFIT = """    - class_path: sensor_removal.workflows.postfit.PostFitBenchmark
      init_args: {metrics: [groundtruth], device: cpu, batch_size: 8}
"""


def write_fit(path: Path, epochs: int = 2, postfit: bool = True, fraction: float = 0.5) -> Path:
    constant = epochs // 2
    path.write_text(
        FIT_YAML.format(
            epochs=epochs,
            postfit=POSTFIT if postfit else "",
            constant=constant,
            decay=epochs - constant,
            fraction=fraction,
        )
    )
    return path


def write_sweep(path: Path, subjects: list[str], fit: Path, root: Path, grid: dict | None = None, **slurm) -> Path:
    doc = {
        "subjects": subjects,
        "configs": [str(fit)],
        "grid": grid or {},
        "root": str(root),
        "slurm": {"gpus_per_node": 0, "cpus_per_task": 1, "time_min": 30, **slurm},
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def subjects(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two short synthetic subjects (64 px, 12 frames per video) with ground truth."""
    from sensor_removal.synthetic import make_subject

    d = tmp_path_factory.mktemp("subjects")
    for i in (1, 2):
        make_subject(d / f"s{i}", seconds=1.5, fps=8.0, size=(64, 64), seed=i, subject=f"synth0{i}")
    return d


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    yield from start_cluster(tmp_path_factory.mktemp("slurm"))


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))


# ----------------------------------------------------------------------------- no cluster


def test_task_table_is_subjects_times_grid_points(subjects: Path, tmp_path: Path) -> None:
    fit = write_fit(tmp_path / "fit.yaml")
    spec = load_sweep(
        write_sweep(
            tmp_path / "s.yaml",
            [str(subjects / "*" / "manifest.yaml")],
            fit,
            tmp_path / "out",
            grid={"model.lr": [3e-4, 1e-4], "model.lambda_identity": [0.5]},
        )
    )
    tasks = spec.tasks()
    assert [(t.subject, t.point) for t in tasks] == [
        ("synth01", "lr0.0003_lambda_identity0.5"),
        ("synth01", "lr0.0001_lambda_identity0.5"),
        ("synth02", "lr0.0003_lambda_identity0.5"),
        ("synth02", "lr0.0001_lambda_identity0.5"),
    ]
    assert tasks[1].run_dir == (tmp_path / "out" / "synth01" / "lr0.0001_lambda_identity0.5").resolve()
    assert tasks[1].tags == ["model.lr=0.0001", "model.lambda_identity=0.5"]


def test_bad_sweep_file_is_one_clear_error(subjects: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"subjects": [str(tmp_path / "nope" / "*.yaml")], "configs": [], "root": "x"}))
    assert main(["sweep", "--config", str(bad), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: subjects: '{tmp_path / 'nope' / '*.yaml'}' matches no file" in err and "Traceback" not in err


def test_dry_run_multi_gpu_spec_prints_array_and_sbatch_parameters(
    subjects: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    fit = write_fit(tmp_path / "fit.yaml")
    sweep = write_sweep(
        tmp_path / "s.yaml",
        [str(subjects / "*" / "manifest.yaml")],
        fit,
        tmp_path / "out",
        grid={"model.lr": [3e-4, 1e-4]},
        nodes=2,
        gpus_per_node=4,
        cpus_per_task=8,
        partition="gpu",
        time_min=600,
        setup=["module load cuda"],
    )
    assert main(["sweep", "--config", str(sweep), "--dry-run"]) == 0
    out = capsys.readouterr().out
    params = yaml.safe_load(out.split("sbatch parameters (submitit SlurmExecutor):\n", 1)[1].split("\n\n", 1)[0])
    assert params["array_size"] == 4
    assert (params["nodes"], params["ntasks_per_node"], params["gpus_per_node"]) == (2, 4, 4)
    for line in (
        "#SBATCH --array=0-3%4",
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks-per-node=4",
        "#SBATCH --gpus-per-node=4",
        "#SBATCH --partition=gpu",
        "#SBATCH --signal=USR2@90",
        "#SBATCH --time=600",
        "module load cuda",
    ):
        assert line in out.splitlines(), line
    assert len(re.findall(r"^\d+\s+synth0[12]\s+lr0\.000[13]\s", out, re.M)) == 4
    assert not (tmp_path / "out").exists()  # nothing submitted, nothing written


def test_frame_cache_is_built_once_by_concurrent_processes(subjects: Path, tmp_path: Path) -> None:
    """Two processes asking for the same cache at once: one decodes, the other waits."""
    ctx = multiprocessing.get_context("fork")
    log = tmp_path / "decodes.log"
    procs = [
        ctx.Process(target=_build_cache, args=(subjects / "s1" / "manifest.yaml", tmp_path / "cache", log))
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    caches = [line.split()[1] for line in log.read_text().splitlines() if line.startswith("cache ")]
    decodes = [line for line in log.read_text().splitlines() if line.startswith("decode ")]
    assert len(caches) == 2 and caches[0] == caches[1]
    recordings = {line.split()[1] for line in decodes}
    assert len(decodes) == len(recordings) > 0  # every recording decoded once, not twice


def _build_cache(manifest: Path, cache: Path, log: Path) -> None:
    import sensor_removal.training.frame_cache as frame_cache
    from sensor_removal.core.manifest import load_manifest

    decode = frame_cache.decode_crops

    def counted(rec, frames, load_size):
        with open(log, "a") as f:
            f.write(f"decode {rec.name}\n")
        time.sleep(0.5)  # widen the window in which the other process would race
        return decode(rec, frames, load_size)

    frame_cache.decode_crops = counted
    built = frame_cache.build_frame_cache(load_manifest(manifest), cache, 0.5, 0, 36)
    with open(log, "a") as f:
        f.write(f"cache {built.path}\n")


@pytest.mark.slow  # DDP stays in the default run through tests/test_cli.py; this adds the sweep path
def test_local_executor_runs_two_process_ddp(subjects: Path, tmp_path: Path) -> None:
    """`sweep --executor local` with 2 processes per task: submitit starts both ranks,
    Lightning trains with DDP (gloo) and only rank 0 writes checkpoint and state."""
    fit = write_fit(tmp_path / "fit.yaml", epochs=1, postfit=False)
    sweep = write_sweep(
        tmp_path / "s.yaml", [str(subjects / "s1" / "manifest.yaml")], fit, tmp_path / "out", tasks_per_node=2
    )
    proc = subprocess.run(
        [sys.executable, "-m", "sensor_removal", "sweep", "--config", str(sweep), "--executor", "local"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    run = tmp_path / "out" / "synth01" / "default"
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 0 and ckpt["global_step"] > 0
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["epoch000.ckpt", "last.ckpt"]
    logs = "".join(p.read_text() for p in (tmp_path / "out" / ".submitit").rglob("*_log.*"))
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in logs
    assert "devices: '2'" in (run / "sweep_fit.yaml").read_text()
    [row] = task_status(tmp_path / "out")
    assert row["state"] == "done" and row["epoch"] == 0


# ------------------------------------------------------------------------------- SLURM


def wandb_record(run: Path) -> tuple[str, list[bytes]]:
    """The run's stored W&B id and the bytes of each offline W&B run file of it."""
    run_id = (run / WANDB_ID_FILE).read_text().strip()
    files = sorted((run / "wandb").glob("offline-run-*/run-*.wandb"))
    return run_id, [f.read_bytes() for f in files if f.name == f"run-{run_id}.wandb"]


@pytest.mark.slurm
def test_slurm_sweep_two_subjects_two_grid_points(
    slurm: SlurmCluster, subjects: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    fit = write_fit(tmp_path / "fit.yaml", epochs=1)
    sweep = write_sweep(
        tmp_path / "s.yaml",
        [str(subjects / "*" / "manifest.yaml")],
        fit,
        tmp_path / "out",
        grid={"model.lr": [3e-4, 1e-4]},
    )
    started = time.monotonic()
    assert main(["sweep", "--config", str(sweep), "--wait"]) == 0
    with capsys.disabled():
        print(f"\n4-task SLURM sweep: {time.monotonic() - started:.0f} s (cluster start {slurm.start_seconds:.1f} s)")
    record = read_json(tmp_path / "out" / "sweep.json")
    array_ids = {t["job_id"].split("_")[0] for t in record["tasks"].values()}
    assert len(array_ids) == 1  # one job array
    for subject in ("synth01", "synth02"):
        for point, lr in (("lr0.0003", "0.0003"), ("lr0.0001", "0.0001")):
            run = tmp_path / "out" / subject / point
            assert (run / "checkpoints" / "last.ckpt").is_file()
            assert (run / "report" / "report.md").is_file()
            run_id, records = wandb_record(run)
            assert len(records) == 1
            assert f"model.lr={lr}".encode() in records[0] and b"test" in records[0]  # tags
            assert subject.encode() in records[0]  # group
            assert read_json(run / STATE_FILE)["job_id"] == record["tasks"][f"{subject}/{point}"]["job_id"]
    capsys.readouterr()
    assert main(["sweep", "--status", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert len(re.findall(r"^synth0[12]\s+lr0\.000[13]\s+done\s+0\s", out, re.M)) == 4, out
    assert out.strip().splitlines()[-1] == "4 done"


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.parametrize("how", ["scontrol", "signal"])
def test_slurm_requeue_resumes_same_epoch_lr_sample_and_wandb_run(
    slurm: SlurmCluster, subjects: Path, tmp_path: Path, how: str
) -> None:
    """A running task is requeued — from outside (`scontrol requeue`: SIGTERM, the task
    resumes from its last epoch checkpoint) or by the time-limit signal (`USR2`: Lightning
    saves an hpc checkpoint and requeues the job itself). It resumes from the saved
    checkpoint and ends with the lr curve and frame sample of an uninterrupted run, in the
    same W&B run."""
    epochs = 4
    fit = write_fit(tmp_path / "fit.yaml", epochs=epochs, postfit=False, fraction=1.0)
    manifests = [str(subjects / "s2" / "manifest.yaml")]
    sweep = write_sweep(tmp_path / "s.yaml", manifests, fit, tmp_path / "pre")
    ref = write_sweep(tmp_path / "r.yaml", manifests, fit, tmp_path / "ref")
    assert main(["sweep", "--config", str(sweep)]) == 0
    run = tmp_path / "pre" / "synth02" / "default"
    job = read_json(tmp_path / "pre" / "sweep.json")["tasks"]["synth02/default"]["job_id"]
    deadline = time.monotonic() + 600
    while read_json(run / PROGRESS_FILE).get("epoch") is None:
        assert time.monotonic() < deadline, "the task never finished an epoch"
        time.sleep(0.2)
    if how == "scontrol":
        slurm.run("scontrol", "requeue", job)
    else:
        slurm.run("scancel", "--signal=USR2", job)
    while "PENDING" not in slurm.run("squeue", "-h", "-r", "-o", "%T", "-j", job, check=False):
        assert time.monotonic() < deadline, "the task was not requeued"
        time.sleep(0.2)
    time.sleep(6)  # KillWait: the first attempt is gone
    resume_from = sorted(run.glob("hpc_ckpt_*.ckpt")) if how == "signal" else [run / "checkpoints" / "last.ckpt"]
    assert len(resume_from) == 1, "Lightning wrote no hpc checkpoint on the requeue signal"
    saved = torch.load(resume_from[0], map_location="cpu", weights_only=True)["epoch"]
    assert saved < epochs - 1, "the task finished before it was requeued: make its epochs longer"
    # Not a failure: interrupted (or still "running" when SIGKILL came first), and pending.
    assert read_json(run / STATE_FILE)["state"] in ("interrupted", "running")
    assert [r["state"] for r in task_status(tmp_path / "pre")] == ["pending"]
    slurm.run("scontrol", "update", f"JobId={job}", "StartTime=now")  # requeued jobs wait 2 min otherwise
    while not (
        len(read_json(run / STATE_FILE).get("attempts", [])) == 2
        and read_json(run / STATE_FILE).get("state") in ("done", "failed")
    ):
        assert time.monotonic() < deadline + 600, "the requeued task did not finish"
        time.sleep(1)
    # The uninterrupted reference: the same task, run to the end in one go.
    assert main(["sweep", "--config", str(ref), "--executor", "local"]) == 0
    ref_run = tmp_path / "ref" / "synth02" / "default"
    state = read_json(run / STATE_FILE)
    assert state["state"] == "done"
    assert [(a["resumed_from"], a["resumed_epoch"]) for a in state["attempts"]] == [
        (None, None),
        (str(resume_from[0]), saved),
    ]
    assert {a["job_id"] for a in state["attempts"]} == {job}
    pre, ref_progress = read_json(run / PROGRESS_FILE), read_json(ref_run / PROGRESS_FILE)
    assert pre["lr"] == ref_progress["lr"] and len(pre["lr"]) == epochs
    assert pre["frame_cache"] == ref_progress["frame_cache"]
    a = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    b = torch.load(ref_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert a["epoch"] == b["epoch"] == epochs - 1
    assert a["lr_schedulers"] == b["lr_schedulers"]
    if how == "scontrol":  # resumed at an epoch boundary: exactly the same steps
        assert a["global_step"] == b["global_step"]
    run_id, records = wandb_record(run)
    assert len(records) == 2  # two attempts, one W&B run id
    assert state["wandb_id"] == run_id
    if how == "signal":  # one owner of requeue: Lightning, not submitit
        logs = "".join(p.read_text() for p in (tmp_path / "pre" / ".submitit").rglob("*_log.err"))
        assert "Handling auto-requeue signal" in logs and "Requeued SLURM job" in logs
        assert "Caught signal SIGUSR2" not in logs


# ------------------------------------------------------------------------ shipped files


def test_example_sweep_file_dry_runs(
    subjects: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "data").symlink_to(subjects)
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", "--config", str(ROOT / "conf" / "sweep" / "example.yaml"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "8 tasks (array 0-7)" in out
    assert str(tmp_path / "runs" / "sweep-lr-identity" / "synth02" / "lr0.0002_lambda_identity0.0") in out
    assert "#SBATCH --gpus-per-node=1" in out and "#SBATCH --partition=gpu" in out


def test_wandb_sweep_parameters_are_fit_options(capsys: pytest.CaptureFixture) -> None:
    """Every parameter of conf/sweep/wandb.yaml, as `wandb agent` passes it (`--key=value`),
    is accepted by `fit` and reaches the config."""
    doc = yaml.safe_load((ROOT / "conf" / "sweep" / "wandb.yaml").read_text())
    assert doc["command"][-1] == "${args}" and "sensor_removal fit" in doc["command"][2]
    args = [f"--{k}={v['values'][-1]}" for k, v in doc["parameters"].items()]
    with pytest.raises(SystemExit) as done:
        main(["fit", *args, "--trainer.default_root_dir", "runs/wandb-sweep/x", "--print_config"])
    assert done.value.code == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["model"]["lr"] == doc["parameters"]["model.lr"]["values"][-1]
    assert cfg["model"]["lambda_identity"] == doc["parameters"]["model.lambda_identity"]["values"][-1]
    assert cfg["subject"] == "subj07" and cfg["trainer"]["default_root_dir"] == "runs/wandb-sweep/x"


def test_resubmit_failed_runs_only_the_failed_tasks(
    subjects: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    fit = write_fit(tmp_path / "fit.yaml", epochs=1, postfit=False)
    sweep = write_sweep(
        tmp_path / "s.yaml",
        [str(subjects / "s1" / "manifest.yaml")],
        fit,
        tmp_path / "out",
        grid={"data.crop_size": [32, 30]},
    )  # 30 is not divisible by 4: that task fails
    assert main(["sweep", "--config", str(sweep), "--executor", "local"]) == 1
    capsys.readouterr()
    rows = {r["point"]: r for r in task_status(tmp_path / "out")}
    assert rows["crop_size32"]["state"] == "done" and rows["crop_size30"]["state"] == "failed"
    assert "data.crop_size (30)" in rows["crop_size30"]["error"]
    assert main(["sweep", "--resubmit-failed", str(tmp_path / "out"), "--executor", "local"]) == 1
    assert "resubmitted 1 failed task(s): synth01/crop_size30" in capsys.readouterr().out
    attempts = {
        p: len(read_json(tmp_path / "out" / "synth01" / p / STATE_FILE)["attempts"])
        for p in ("crop_size32", "crop_size30")
    }
    assert attempts == {"crop_size32": 1, "crop_size30": 2}
