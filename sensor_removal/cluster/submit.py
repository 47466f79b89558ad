"""``python -m sensor_removal sweep``: every subject × grid point as one task of a submitit
job array on SLURM (or one after another on this machine), and the sweep's status.

    python -m sensor_removal sweep --config conf/sweep/example.yaml --dry-run
    python -m sensor_removal sweep --config conf/sweep/example.yaml            # submit to SLURM
    python -m sensor_removal sweep --config conf/sweep/example.yaml --executor local
    python -m sensor_removal sweep --status ROOT
    python -m sensor_removal sweep --resubmit-failed ROOT

The engines are submitit (sbatch job arrays, one srun rank per GPU) and Lightning's
SLURMEnvironment (DDP ranks, requeue on preemption); :mod:`sensor_removal.cluster.task`
says what one task does and why a requeued task ends where an uninterrupted one would.
The sweep root holds ``sweep.json`` (the task table and the SLURM job ids), ``.submitit/``
(submitit's pickles and logs) and one run folder per task, ``<root>/<subject>/<point>``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from sensor_removal.cluster.spec import SweepSpec, SweepSpecError, SweepTaskSpec, load_sweep
from sensor_removal.cluster.task import (
    PROGRESS_FILE,
    STATE_FILE,
    FitTask,
    ensure_wandb_id,
    read_json,
    report_complete,
    run_task,
    write_json,
)

SWEEP_FILE = "sweep.json"
EXECUTORS = ("slurm", "local")


def fit_tasks(spec: SweepSpec, executor: str, tasks: list[SweepTaskSpec] | None = None) -> list[FitTask]:
    """The callables of the array: one :class:`FitTask` per task of the table."""
    launch = "slurm" if executor == "slurm" else "local"
    return [
        FitTask(
            task=t,
            configs=spec.configs,
            fit_args=spec.fit_args,
            launch=launch,
            devices=spec.slurm.ntasks_per_node,
            nodes=spec.slurm.nodes if executor == "slurm" else 1,
        )
        for t in (spec.tasks() if tasks is None else tasks)
    ]


def sbatch_header(spec: SweepSpec, n_tasks: int) -> str:
    """The ``#SBATCH`` lines submitit writes for this sweep's array of ``n_tasks``."""
    from submitit.slurm.slurm import _make_sbatch_string  # submitit's own sbatch writer

    params = spec.slurm.sbatch_parameters()
    params["job_name"] = f"sweep-{spec.root.name}"
    text = _make_sbatch_string(
        command="python -u -m submitit.core._submit ...",
        folder=spec.root / ".submitit" / "%j",
        map_count=n_tasks,
        **params,
    )
    return "\n".join(
        line
        for line in text.splitlines()
        if line.startswith("#SBATCH") or line.startswith("# setup") or line in spec.slurm.setup
    )


def dry_run(spec: SweepSpec, out: Any = None) -> None:
    """Print the task table and the sbatch parameters; submit nothing."""
    out = out or sys.stdout
    tasks = spec.tasks()
    print(f"sweep {spec.path}: {len(tasks)} tasks (array 0-{len(tasks) - 1}), root {spec.root}", file=out)
    rows = [(str(i), t.subject, t.point, " ".join(t.tags) or "-", str(t.run_dir)) for i, t in enumerate(tasks)]
    print(_table(("task", "subject", "grid point", "overrides", "run folder"), rows), file=out)
    print("\nsbatch parameters (submitit SlurmExecutor):", file=out)
    print(
        yaml.safe_dump({"array_size": len(tasks), **spec.slurm.sbatch_parameters()}, sort_keys=False).rstrip(), file=out
    )
    print("\n" + sbatch_header(spec, len(tasks)), file=out)


def prepare(spec: SweepSpec, tasks: list[SweepTaskSpec]) -> None:
    """Run folders, fixed W&B ids and the sweep's record, before anything is submitted."""
    spec.root.mkdir(parents=True, exist_ok=True)
    for t in tasks:
        ensure_wandb_id(t.run_dir)
    record = read_json(spec.root / SWEEP_FILE)
    record.update(
        sweep=str(spec.path.resolve()),
        configs=[str(c) for c in spec.configs],
        tasks={
            _key(t): {**{k: str(v) if isinstance(v, Path) else v for k, v in asdict(t).items()}} for t in spec.tasks()
        },
    )
    write_json(spec.root / SWEEP_FILE, record)


def submit(
    spec: SweepSpec, executor: str, tasks: list[SweepTaskSpec] | None = None, wait: bool = False
) -> dict[str, str]:
    """Submit ``tasks`` (default: all) and return their job ids by task key.

    ``slurm``: one submitit job array through :class:`submitit.SlurmExecutor`; returns at
    once unless ``wait``. ``local``: the tasks run one after another on this machine through
    :class:`submitit.LocalExecutor` (a subprocess per rank), always waiting.
    """
    import submitit

    tasks = spec.tasks() if tasks is None else tasks
    prepare(spec, tasks)
    calls = fit_tasks(spec, executor, tasks)
    folder = spec.root / ".submitit" / "%j"
    ids: dict[str, str] = {}
    if executor == "slurm":
        ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=3)
        ex.update_parameters(job_name=f"sweep-{spec.root.name}", **spec.slurm.sbatch_parameters())
        jobs = ex.map_array(run_task, calls)
        ids = {_key(t): j.job_id for t, j in zip(tasks, jobs, strict=True)}
        _record_jobs(spec, ids, executor)
        if wait:
            for job in jobs:
                _wait(job)
        return ids
    for t, call in zip(tasks, calls, strict=True):
        local = submitit.LocalExecutor(folder=folder)
        local.update_parameters(timeout_min=spec.slurm.time_min, tasks_per_node=spec.slurm.ntasks_per_node)
        job = local.submit(run_task, call)
        ids[_key(t)] = str(job.job_id)
        _record_jobs(spec, {_key(t): str(job.job_id)}, executor)
        _wait(job)
    return ids


def _wait(job: Any) -> None:
    """Wait for a submitit job; its failure is recorded in the run folder, not raised."""
    try:
        job.results()
    except Exception as exc:  # noqa: BLE001 - one task's failure must not stop the others
        print(
            f"task {job.job_id} failed: {str(exc).strip().splitlines()[-1] if str(exc).strip() else exc}",
            file=sys.stderr,
        )


def _record_jobs(spec: SweepSpec, ids: dict[str, str], executor: str) -> None:
    record = read_json(spec.root / SWEEP_FILE)
    for key, job_id in ids.items():
        record.setdefault("tasks", {}).setdefault(key, {}).update(job_id=job_id, executor=executor)
    write_json(spec.root / SWEEP_FILE, record)


def _key(t: SweepTaskSpec) -> str:
    return f"{t.subject}/{t.point}"


def _queue_states(job_ids: list[str]) -> dict[str, str] | None:
    """SLURM states of the given jobs from ``squeue`` (None when there is no squeue)."""
    if not shutil.which("squeue") or not job_ids:
        return None
    proc = subprocess.run(
        ["squeue", "-h", "-r", "-o", "%i %T", "-j", ",".join(job_ids)], capture_output=True, text=True, timeout=60
    )
    if proc.returncode != 0 and "Invalid job id" not in proc.stderr:
        return None
    return dict(line.split(maxsplit=1) for line in proc.stdout.splitlines() if line.strip())


def task_status(root: Path) -> list[dict[str, Any]]:
    """One row per task: subject, grid point, state (pending / running / done / failed),
    epoch, last losses, report, job id."""
    record = read_json(Path(root) / SWEEP_FILE)
    if not record.get("tasks"):
        raise SweepSpecError(f"{root}: no {SWEEP_FILE} with tasks here (is this a sweep root?)")
    tasks = record["tasks"]
    queue = _queue_states(
        [str(t["job_id"]) for t in tasks.values() if t.get("job_id") and t.get("executor") == "slurm"]
    )
    rows = []
    for key, t in tasks.items():
        run = Path(t["run_dir"])
        state = read_json(run / STATE_FILE)
        progress = read_json(run / PROGRESS_FILE)
        job_id = t.get("job_id") or state.get("job_id")
        if t.get("executor") == "local":  # a local job's id is its process id
            queued, have_queue = ("RUNNING" if job_id and _alive(int(job_id)) else None), True
        else:
            queued, have_queue = ((queue or {}).get(str(job_id)) if job_id else None), queue is not None
        rows.append(
            {
                "task": key,
                "subject": t["subject"],
                "point": t["point"],
                "state": _state(state.get("state"), queued, have_queue),
                "epoch": progress.get("epoch"),
                "losses": {
                    k.removeprefix("train/"): v
                    for k, v in progress.get("losses", {}).items()
                    if k in ("train/loss_g", "train/loss_d")
                },
                "report": str(run / "report" / "report.md") if report_complete(run) else None,
                "job_id": job_id,
                "error": state.get("error"),
            }
        )
    return rows


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _state(recorded: str | None, queued: str | None, have_queue: bool) -> str:
    if recorded == "done":
        return "done"
    if recorded == "failed":
        return "failed"
    if queued in ("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "SUSPENDED"):
        return "pending"
    if queued in ("RUNNING", "COMPLETING"):
        return "running"
    if recorded is None:
        return "pending"
    # Started, not finished, and no longer in the queue: it died (node failure, timeout).
    return "failed" if have_queue and queued is None else "running"


def print_status(rows: list[dict[str, Any]], out: Any = None) -> None:
    out = out or sys.stdout
    table = [
        (
            r["subject"],
            r["point"],
            r["state"],
            "-" if r["epoch"] is None else str(r["epoch"]),
            " ".join(f"{k} {v:.3f}" for k, v in r["losses"].items()) or "-",
            r["report"] or "-",
            str(r["job_id"] or "-"),
        )
        for r in rows
    ]
    print(_table(("subject", "grid point", "state", "epoch", "losses", "report", "job"), table), file=out)
    for r in rows:
        if r["state"] == "failed" and r["error"]:
            print(f"{r['task']}: {r['error']}", file=out)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    print(", ".join(f"{n} {s}" for s, n in sorted(counts.items())), file=out)


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([line(header), line(tuple("-" * w for w in widths)), *(line(r) for r in rows)])


def resubmit_failed(root: Path, executor: str, wait: bool = False) -> dict[str, str]:
    """Submit again only the tasks whose state is ``failed`` (they resume from their
    newest checkpoint)."""
    record = read_json(Path(root) / SWEEP_FILE)
    failed = {r["task"] for r in task_status(root) if r["state"] == "failed"}
    if not failed:
        return {}
    spec = load_sweep(record["sweep"], root=root)
    tasks = [t for t in spec.tasks() if _key(t) in failed]
    return submit(spec, executor, tasks, wait=wait)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m sensor_removal sweep",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--config", type=Path, help="the sweep file (e.g. conf/sweep/example.yaml)")
    what.add_argument("--status", type=Path, metavar="ROOT", help="one row per task of the sweep in ROOT")
    what.add_argument("--resubmit-failed", type=Path, metavar="ROOT", help="submit again the failed tasks of ROOT")
    ap.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="slurm",
        help="slurm: one submitit job array; local: the tasks one after another on this machine",
    )
    ap.add_argument("--root", type=Path, default=None, help="output root (replaces the sweep file's `root`)")
    ap.add_argument("--dry-run", action="store_true", help="print the task table and sbatch parameters; submit nothing")
    ap.add_argument("--wait", action="store_true", help="with slurm: wait until every task has ended")
    ap.add_argument("--json", action="store_true", help="with --status: print the rows as JSON")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from sensor_removal.core.manifest import ManifestError

    if args.status is None and importlib.util.find_spec("submitit") is None:
        print(
            "error: `sweep` needs submitit: pip install 'sensor-removal[cluster]' (or pip install 'submitit>=1.5,<2')",
            file=sys.stderr,
        )
        return 2
    try:
        if args.status is not None:
            rows = task_status(args.status)
            if args.json:
                print(json.dumps(rows, indent=1))
            else:
                print_status(rows)
            return 0
        if args.resubmit_failed is not None:
            ids = resubmit_failed(args.resubmit_failed, args.executor, wait=args.wait)
            print(f"resubmitted {len(ids)} failed task(s)" + (f": {', '.join(ids)}" if ids else ""))
            return _exit_code(args.resubmit_failed, args.executor, args.wait)
        spec = load_sweep(args.config, root=args.root)
        if args.dry_run:
            dry_run(spec)
            return 0
        start = time.monotonic()
        ids = submit(spec, args.executor, wait=args.wait)
        verb = "ran" if args.executor == "local" or args.wait else "submitted"
        print(
            f"{verb} {len(ids)} task(s) in {time.monotonic() - start:.0f} s; "
            f"`python -m sensor_removal sweep --status {spec.root}` shows where they are"
        )
        return _exit_code(spec.root, args.executor, args.wait)
    except (SweepSpecError, ManifestError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _exit_code(root: Path, executor: str, waited: bool) -> int:
    """1 when tasks that were waited for failed (their errors are in ``--status``)."""
    if executor == "slurm" and not waited:
        return 0
    rows = task_status(root)
    failed = [r for r in rows if r["state"] == "failed"]
    if failed:
        print_status(rows, sys.stderr)
    return 1 if failed else 0
