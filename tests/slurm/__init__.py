"""A one-node SLURM for the sweep tests: ``start_slurm.sh`` and the pytest fixture."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent / "start_slurm.sh"


@dataclass(frozen=True)
class SlurmCluster:
    """A running test cluster: its ``SLURM_CONF`` and how long it took to start."""

    conf: Path
    state: Path
    start_seconds: float

    def run(self, *args: str, check: bool = True) -> str:
        proc = subprocess.run(
            list(args), capture_output=True, text=True, timeout=60, env={**os.environ, "SLURM_CONF": str(self.conf)}
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout


def start_cluster(state: Path) -> Iterator[SlurmCluster]:
    """Start the cluster (installing SLURM with apt-get when missing), point this process's
    ``SLURM_CONF`` at it, stop it afterwards. Skips the test with the reason where SLURM
    can't be started here (not root, no apt-get, no package archive, ...)."""
    started = time.monotonic()
    try:
        proc = subprocess.run(["bash", str(SCRIPT), str(state)], capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot start SLURM: {exc}")
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or [f"start_slurm.sh exited {proc.returncode}"])[-1]
        print(f"SLURM tests skipped: {reason}")
        pytest.skip(reason)
    cluster = SlurmCluster(state / "slurm.conf", state, time.monotonic() - started)
    print(f"SLURM test cluster started in {cluster.start_seconds:.1f} s")
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        yield cluster
    finally:
        subprocess.run(["bash", str(SCRIPT), str(state), "stop"], capture_output=True, timeout=60)
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old
