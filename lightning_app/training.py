"""Start, watch, stop and resume fits from the app.

A fit started here is the normal command line, ``python -m sensor_removal fit …``, run
as a subprocess, so it is identical to one started in a shell (same config resolution,
same run folder, same checkpoints). The app adds only what puts the run under
``--runs``: ``--subject NAME --trainer.default_root_dir RUNS/NAME``, the chosen manifest
and epochs, and the user's overrides, which are limited to model, data and a few trainer
options (no paths, configs or loggers), so the fit reads the chosen inputs and writes
only under ``--runs`` with the app user's rights.

Stop sends SIGTERM: Lightning stops after the current batch, the configs'
``InterruptCheckpoint`` writes ``checkpoints/interrupted.ckpt`` (once training has begun)
and the fit exits 143, shown as "interrupted"; Resume restarts the same command with
``--ckpt_path`` set to the run's checkpoint with the most training that loads.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lightning_app.runs import LOSS_COLUMNS, read_metrics, resume_checkpoint

#: Run names: a folder name, nothing that walks the file system.
RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
#: Overrides the app passes on (``--key value`` or ``--key=value``).
ALLOWED_OVERRIDE = re.compile(
    r"^--(model\.[A-Za-z_][\w]*|data\.(fraction|seed|load_size|crop_size|val_fraction|batch_size|num_workers)"
    r"|trainer\.(accelerator|devices|precision|log_every_n_steps|limit_train_batches|limit_val_batches|check_val_every_n_epoch)"
    r"|seed_everything)$"
)
#: The fit's output, under the run folder.
LOG_NAME = "app_fit.log"
STOP_TIMEOUT_S = 60.0
#: Exit codes of a fit stopped by SIGTERM / Ctrl-C (the CLI's), or killed by the signal.
INTERRUPTED_CODES = (143, 130, -signal.SIGTERM, -signal.SIGINT)


class LaunchError(ValueError):
    """A fit cannot be started as asked (the message says why)."""


def parse_overrides(text: str) -> list[str]:
    """The user's override arguments, checked against :data:`ALLOWED_OVERRIDE`."""
    try:
        tokens = shlex.split(text or "")
    except ValueError as exc:
        raise LaunchError(f"overrides: {exc}") from None
    out: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        key, eq, value = tok.partition("=")
        if not ALLOWED_OVERRIDE.match(key):
            raise LaunchError(
                f"override {key!r} is not allowed here: the app passes model options, "
                "data sampling/size options and a few trainer options (paths, configs and loggers are fixed)"
            )
        if not eq:
            if i + 1 >= len(tokens):
                raise LaunchError(f"override {key!r} has no value")
            value = tokens[i + 1]
            i += 1
        if "${" in value:
            raise LaunchError(f"override {key}: interpolations are not allowed here")
        out.append(f"{key}={value}")
        i += 1
    return out


def find_manifests(data: Path | None) -> list[Path]:
    """Subject manifests under ``--data`` (YAML files with ``recordings``)."""
    return [p for p in _yaml_files(data) if "recordings" in _top_keys(p)]


def find_configs(conf: Path, data: Path | None) -> list[Path]:
    """Fit configs: the repository's ``conf/`` (but its defaults, which load anyway) and
    YAML files under ``--data`` with ``trainer``/``model``/``data`` sections."""
    found = [p for p in _yaml_files(conf) if p.name != "default.yaml" and {"trainer", "model", "data"} & _top_keys(p)]
    found += [p for p in _yaml_files(data) if {"trainer", "model"} & _top_keys(p) and "recordings" not in _top_keys(p)]
    return found


def _yaml_files(root: Path | None) -> list[Path]:
    if root is None or not root.is_dir():
        return []
    return sorted(p for p in root.rglob("*.yaml") if p.is_file() and len(p.relative_to(root).parts) <= 4)


def _top_keys(path: Path) -> set[str]:
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return set()
    return set(doc) if isinstance(doc, dict) else set()


@dataclass
class FitProcess:
    """One fit subprocess and the command that started it."""

    name: str
    run: Path
    command: list[str]
    popen: subprocess.Popen
    started: float = field(default_factory=time.time)

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None


@dataclass
class Progress:
    """What the Train tab shows about a fit: read from the run's CSV log (written every
    ``log_every_n_steps``) and the tail of its console output."""

    state: str
    epoch: int | None = None
    step: int | None = None
    losses: dict[str, float] = field(default_factory=dict)
    tail: str = ""

    def text(self) -> str:
        parts = [f"state: {self.state}"]
        if self.epoch is not None:
            parts.append(f"epoch {self.epoch}")
            parts.append(f"step {self.step}")
        parts += [f"{k.split('/')[-1].removesuffix('_step')} {v:.4f}" for k, v in self.losses.items()]
        return " · ".join(parts)


def read_progress(run: Path, state: str) -> Progress:
    """The newest logged epoch, step and losses of ``run`` and its console tail."""
    df = read_metrics(run)
    progress = Progress(state)
    if "step" in df and len(df):
        last = df.iloc[-1]
        progress.epoch = int(last["epoch"]) if "epoch" in df and last.notna()["epoch"] else None
        progress.step = int(last["step"])
        progress.losses = {c: float(df[c].dropna().iloc[-1]) for c in LOSS_COLUMNS if c in df and df[c].notna().any()}
    try:
        with (run / LOG_NAME).open("rb") as fh:
            fh.seek(max(0, (run / LOG_NAME).stat().st_size - 16_000))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return progress
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    lines = [ln.rstrip() for ln in re.split(r"[\r\n]+", text) if ln.strip()]
    progress.tail = "\n".join(lines[-12:])
    return progress


class FitLauncher:
    """The fits this app started, by run name. One fit per run folder at a time."""

    def __init__(self, runs: Path, python: str = sys.executable) -> None:
        self.runs = runs.resolve()
        self.python = python
        self.fits: dict[str, FitProcess] = {}

    def run_dir(self, name: str) -> Path:
        if not RUN_NAME.match(name or ""):
            raise LaunchError(f"run name {name!r}: use letters, digits, '_', '-', '.' (a folder name under --runs)")
        run = (self.runs / name).resolve()
        if not run.is_relative_to(self.runs):
            raise LaunchError(f"run name {name!r} leaves --runs")
        return run

    def running(self, name: str) -> bool:
        fit = self.fits.get(name)
        return fit is not None and fit.alive

    def start(
        self, name: str, config: Path, manifest: Path, epochs: int, overrides: str = "", resume: bool = False
    ) -> FitProcess:
        run = self.run_dir(name)
        if self.running(name):
            raise LaunchError(f"{name}: a fit is already running in {run}")
        if not Path(config).is_file():
            raise LaunchError(f"config {config}: not a file")
        if not Path(manifest).is_file():
            raise LaunchError(f"manifest {manifest}: not a file")
        if int(epochs) < 1:
            raise LaunchError(f"epochs must be >= 1, got {epochs}")
        extra = parse_overrides(overrides)
        command = [
            self.python,
            "-m",
            "sensor_removal",
            "fit",
            "--config",
            str(Path(config).resolve()),
            "--subject",
            name,
            "--data.manifest",
            str(Path(manifest).resolve()),
            "--trainer.default_root_dir",
            str(run),
            f"--trainer.max_epochs={int(epochs)}",
            *extra,
        ]
        if resume:
            ckpt = resume_checkpoint(run)
            if ckpt is None:
                raise LaunchError(f"{name}: no checkpoint to resume from in {run / 'checkpoints'}")
            command += ["--ckpt_path", str(ckpt)]
        run.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.setdefault("WANDB_MODE", "offline")  # no login prompt from a background process
        env["PYTHONUNBUFFERED"] = "1"
        log = open(run / LOG_NAME, "ab")  # noqa: SIM115 - handed to the child
        try:
            log.write(f"\n$ {shlex.join(command)}\n".encode())
            log.flush()
            popen = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=str(self.runs)
            )
        finally:
            log.close()
        fit = FitProcess(name, run, command, popen)
        self.fits[name] = fit
        return fit

    def stop(self, name: str, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM, then wait for the fit to write its checkpoint and exit."""
        fit = self.fits.get(name)
        if fit is None or not fit.alive:
            return None if fit is None else fit.popen.returncode
        fit.popen.send_signal(signal.SIGTERM)
        try:
            return fit.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            fit.popen.kill()
            return fit.popen.wait()

    def progress(self, name: str) -> Progress:
        fit = self.fits.get(name)
        if fit is None:
            state = "not started from this app"
        elif fit.alive:
            state = "running"
        elif fit.popen.returncode in INTERRUPTED_CODES:
            state = f"interrupted ({fit.popen.returncode})"
        else:
            state = f"exited ({fit.popen.returncode})"
        return read_progress(self.run_dir(name), state)

    def shutdown(self) -> None:
        """Stop every fit this app started (at app exit)."""
        for name in list(self.fits):
            self.stop(name)
