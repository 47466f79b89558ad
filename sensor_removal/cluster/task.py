"""One sweep task: the normal ``fit`` (+ post-fit benchmark) of one subject × grid point,
safe to start again after a preemption.

What a requeued task keeps (so a preempted fit ends exactly where an uninterrupted one
would):

* **the checkpoint** — it resumes from the newest of ``<run>/checkpoints/last.ckpt`` and
  Lightning's ``<run>/hpc_ckpt_N.ckpt`` (the latter is written on the requeue signal);
* **the frame sample** — it is seeded (``data.seed``), and the frame cache that holds it
  is found again on disk;
* **the lr curve** — both schedulers live in the checkpoint (one step per epoch);
* **the W&B run** — its id is written to ``<run>/wandb_id.txt`` at submission and passed
  to ``WandbLogger(id=…, resume="allow")`` on every start.

**One owner of requeue: Lightning.** ``SLURMEnvironment(auto_requeue=True,
requeue_signal=SIGUSR2)`` catches the signal sbatch sends ``signal_delay_s`` before the
time limit (``--signal=USR2@90``, the one submitit writes), saves a full trainer checkpoint
from inside the training loop on every rank, and runs ``scontrol requeue``. Submitit's own
handler for the same signal is removed before the fit: it would requeue *without* a
checkpoint (our callable has no trainer state to pickle), and Lightning only installs its
handler when no other is present.

The post-fit benchmark runs once, at the end, and is skipped when the run folder already
has a complete report (``report/report.md``, written last, and no ``benchmark_error.txt``).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import string
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from sensor_removal.cluster.spec import SweepTaskSpec

STATE_FILE = "sweep_state.json"
PROGRESS_FILE = "progress.json"
WANDB_ID_FILE = "wandb_id.txt"
#: Lightning's SLURM environment, requeueing on the signal submitit asks sbatch to send.
SLURM_PLUGIN = json.dumps(
    {
        "class_path": "lightning_fabric.plugins.environments.SLURMEnvironment",
        "init_args": {"auto_requeue": True, "requeue_signal": "SIGUSR2"},
    }
)


def write_json(path: Path, doc: dict[str, Any]) -> None:
    """Write ``doc`` atomically (a reader never sees half a file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=str))
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def report_complete(run: Path) -> bool:
    """Has this run a complete post-fit report (the report's completion marker, written
    after all its files)?"""
    from evaluation.report import report_is_complete

    return report_is_complete(run / "report") and not (run / "benchmark_error.txt").exists()


def newest_checkpoint(run: Path) -> Path | None:
    """The checkpoint a restarted task resumes from: of ``checkpoints/*.ckpt`` and
    Lightning's ``hpc_ckpt_*.ckpt``, the one with the most training that loads
    (:func:`sensor_removal.core.checkpoint.resume_candidate`)."""
    from sensor_removal.core.checkpoint import resume_candidate, run_checkpoints

    return resume_candidate(run_checkpoints(run))


def ensure_wandb_id(run: Path) -> str:
    """The run's W&B id, created once (at submission) and kept in the run folder."""
    path = run / WANDB_ID_FILE
    if path.is_file():
        return path.read_text().strip()
    run.mkdir(parents=True, exist_ok=True)
    # W&B's id alphabet (lower-case letters and digits), 8 characters like its own ids.
    run_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(run_id + "\n")
    os.replace(tmp, path)
    return run_id


class SweepProgress(pl.Callback):
    """Rank 0 writes ``<run>/progress.json`` after every training epoch: the epoch, the
    epoch losses, and per epoch the learning rate and frame sample it trained with — what
    ``sweep --status`` shows and what a resumed run can be compared against."""

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        path = Path(trainer.default_root_dir) / PROGRESS_FILE
        doc = read_json(path)
        metrics = {
            k: float(v)
            for k, v in trainer.callback_metrics.items()
            if k.startswith("train/") and not k.endswith("_step") and getattr(v, "numel", lambda: 1)() == 1
        }
        lr = {str(trainer.current_epoch): [g["lr"] for opt in trainer.optimizers for g in opt.param_groups]}
        cache = getattr(trainer.datamodule, "cache", None)  # type: ignore[attr-defined]  # Lightning sets it at run time
        doc.update(
            epoch=trainer.current_epoch,
            global_step=trainer.global_step,
            losses=metrics,
            lr={**doc.get("lr", {}), **lr},
            frame_cache=_cache_paths(cache),
            updated=time.time(),
        )
        write_json(path, doc)


def _cache_paths(cache: Any) -> str | list[str] | None:
    """The frame cache folder of the fit, or a population fit's folders (one per subject)."""
    if cache is None:
        return None
    paths = getattr(cache, "paths", None)
    return [str(p) for p in paths] if paths is not None else str(cache.path)


@dataclass(frozen=True)
class FitTask:
    """What one array element runs (picklable for submitit).

    ``launch``: ``slurm`` (ranks started by srun; Lightning's SLURMEnvironment),
    ``local`` (ranks started by submitit's LocalExecutor; exported as torch's env://
    variables) or ``none`` (one process, no cluster).
    """

    task: SweepTaskSpec
    configs: tuple[Path, ...]
    fit_args: tuple[str, ...] = ()
    launch: str = "none"
    devices: int = 1
    nodes: int = 1

    def cli_args(self, wandb_id: str | None = None) -> list[str]:
        """The ``fit`` arguments of this task: base configs, subject, manifest, run folder,
        the sweep's ``init_from`` checkpoint, the grid point's overrides, the sweep's extra
        arguments, the process layout."""
        t = self.task
        args: list[str] = []
        for config in self.configs:
            args += ["--config", str(config)]
        args += [
            "--subject",
            t.subject,
            "--data.manifest",
            str(t.manifest),
            "--trainer.default_root_dir",
            str(t.run_dir),
        ]
        if t.init_from is not None:  # before the grid and fit_args, which may override it
            args += ["--model.init_from", str(t.init_from)]
        args += [f"--{key}={_cli_value(value)}" for key, value in t.overrides.items()]
        args += list(self.fit_args)
        if self.launch != "none":
            args += [f"--trainer.devices={self.devices}", f"--trainer.num_nodes={self.nodes}"]
        if self.launch == "slurm":
            args += ["--trainer.plugins", SLURM_PLUGIN]
        return args

    def __call__(self) -> dict[str, Any]:
        run = self.task.run_dir
        run.mkdir(parents=True, exist_ok=True)
        rank = self._prepare_ranks()
        wandb_id = ensure_wandb_id(run)
        state_path = run / STATE_FILE
        ckpt = newest_checkpoint(run)
        if rank == 0:
            state = read_json(state_path)
            attempts = state.get("attempts", [])
            attempts.append(
                {
                    "job_id": _job_id(),
                    "started": time.time(),
                    "resumed_from": str(ckpt) if ckpt else None,
                    "resumed_epoch": _checkpoint_epoch(ckpt),
                }
            )
            write_json(
                state_path, {**state, "state": "running", "job_id": _job_id(), "attempts": attempts, "error": None}
            )
        sigterm = SigtermSeen.install()
        try:
            summary = self._fit(wandb_id, ckpt)
        except BaseException as exc:
            from pytorch_lightning.utilities.exceptions import SIGTERMException

            # SIGTERM (preemption, requeue, scancel, time limit) is not a failure of the
            # task: a requeued job continues from the newest checkpoint. The signal also
            # stops helper processes (W&B's service), so whatever error follows it counts
            # as the interruption too. Anything else is a failure.
            interrupted = isinstance(exc, SIGTERMException) or sigterm.seen
            if rank == 0:
                error = f"{type(exc).__name__}: {exc}"
                if isinstance(exc, SystemExit):  # the CLI said why on stderr
                    error = f"fit exited with code {exc.code}; its message is in {_log_path() or 'the job log'}"
                write_json(
                    state_path,
                    {
                        **read_json(state_path),
                        "state": "interrupted" if interrupted else "failed",
                        "error": None if interrupted else error,
                    },
                )
            if interrupted and not isinstance(exc, SystemExit):
                # No result for submitit to record: the requeued job writes the real one.
                raise SystemExit(128 + signal.SIGTERM) from exc
            raise
        if rank == 0:
            failed = summary.get("benchmark_error")
            write_json(
                state_path,
                {
                    **read_json(state_path),
                    "state": "failed" if failed else "done",
                    "error": failed,
                    "finished": time.time(),
                    **summary,
                },
            )
        return summary

    def _prepare_ranks(self) -> int:
        """Global rank of this process; sets up torch's env:// variables for local DDP."""
        if self.launch == "slurm":
            # Lightning owns requeue (module docstring): drop submitit's handler so that
            # Lightning installs its own for the same signal.
            signal.signal(signal.SIGUSR2, signal.SIG_DFL)
            return int(os.environ.get("SLURM_PROCID", "0"))
        if self.launch == "local" and self.devices > 1:
            from submitit.helpers import TorchDistributedEnvironment

            env = TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
            os.environ["NODE_RANK"] = "0"
            return env.rank
        return 0

    def _fit(self, wandb_id: str, ckpt: Path | None) -> dict[str, Any]:
        from sensor_removal.training.cli import build_cli
        from sensor_removal.workflows.postfit import PostFitBenchmark

        run = self.task.run_dir
        config = self.write_config(wandb_id, skip_benchmark=report_complete(run))
        args = ["fit", "--config", str(config)]
        if ckpt is not None:
            args += ["--ckpt_path", str(ckpt)]
        cli = build_cli(args)
        trainer = cli.trainer
        if "wandb" in sys.modules:
            import wandb

            # Flush the W&B run now: when the task returns, SLURM ends the job step and
            # with it W&B's service process, which may still hold unwritten history.
            if wandb.run is not None:
                wandb.finish()
        summary: dict[str, Any] = {
            "run": str(run),
            "wandb_id": wandb_id,
            "epoch": trainer.current_epoch - 1,
            "checkpoint": str(run / "checkpoints" / "last.ckpt"),
        }
        hooks = [cb for cb in trainer.callbacks if isinstance(cb, PostFitBenchmark)]  # type: ignore[attr-defined]  # Lightning sets it at run time
        if hooks and hooks[0].outcome is not None:
            summary["benchmark_error"] = hooks[0].outcome.error
        summary["report"] = str(run / "report" / "report.md") if report_complete(run) else None
        return summary

    def write_config(self, wandb_id: str, skip_benchmark: bool) -> Path:
        """The task's complete ``fit`` config, ``<run>/sweep_fit.yaml``: the base configs
        with the task's arguments, resolved by the CLI itself (``--print_config``), then
        the same W&B run (fixed id, ``resume: allow``, group = subject, tags + the grid
        point's overrides), the progress callback, and no post-fit benchmark when a
        complete report exists."""
        import contextlib
        import io

        import yaml

        from sensor_removal.training.cli import build_cli

        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            try:
                build_cli(["fit", *self.cli_args(), "--print_config"])
            except SystemExit as done:
                if done.code not in (0, None):
                    raise
        cfg = yaml.safe_load(buffer.getvalue())
        trainer = cfg.setdefault("trainer", {})
        loggers = trainer.get("logger")
        for logger in loggers if isinstance(loggers, list) else [loggers]:
            if isinstance(logger, dict) and str(logger.get("class_path", "")).endswith("WandbLogger"):
                init = logger.setdefault("init_args", {})
                tags = [t for t in (init.get("tags") or []) if t not in self.task.tags]
                init.update(id=wandb_id, group=self.task.subject, tags=[*tags, *self.task.tags], resume="allow")
        callbacks = [
            cb
            for cb in trainer.get("callbacks") or []
            if not (skip_benchmark and str(cb.get("class_path", "")).endswith("PostFitBenchmark"))
        ]
        if not any(str(cb.get("class_path", "")).endswith("SweepProgress") for cb in callbacks):
            callbacks.append({"class_path": "sensor_removal.cluster.task.SweepProgress"})
        trainer["callbacks"] = callbacks
        path = self.task.run_dir / "sweep_fit.yaml"
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(
            "# Written by `python -m sensor_removal sweep` for this task; the fit it ran.\n"
            + yaml.safe_dump(cfg, sort_keys=False)
        )
        os.replace(tmp, path)
        return path


class SigtermSeen:
    """Remembers whether SIGTERM arrived, then hands it on to the handler that was there
    before (submitit's; Lightning adds its own on top during ``fit`` and keeps ours)."""

    def __init__(self, previous: Any) -> None:
        self.seen = False
        self.previous = previous

    @classmethod
    def install(cls) -> SigtermSeen:
        handler = cls(signal.getsignal(signal.SIGTERM))
        signal.signal(signal.SIGTERM, handler)
        return handler

    def __call__(self, signum: int, frame: Any) -> None:
        self.seen = True
        if callable(self.previous):
            self.previous(signum, frame)
        elif self.previous == signal.SIG_DFL:
            raise SystemExit(128 + signum)


def run_task(task: FitTask) -> dict[str, Any]:
    """Entry point submitit pickles (``map_array(run_task, tasks)``)."""
    return task()


def _cli_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _job_id() -> str | None:
    array, index = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and index:
        return f"{array}_{index}"
    return os.environ.get("SLURM_JOB_ID") or os.environ.get("SUBMITIT_LOCAL_JOB_ID")


def _log_path() -> str | None:
    """The stderr log of this job (submitit's), where a rejected argument is explained."""
    try:
        from submitit import JobEnvironment

        return str(JobEnvironment().paths.stderr)
    except Exception:  # noqa: BLE001 - not inside a submitit job
        return None


def _checkpoint_epoch(ckpt: Path | None) -> int | None:
    if ckpt is None:
        return None
    import torch

    try:
        return int(torch.load(ckpt, map_location="cpu", weights_only=True)["epoch"])
    except Exception:  # noqa: BLE001 - informational only
        return None
