"""What a sweep is: subjects × grid points, read from one YAML file.

The paper trains one CycleGAN per subject (36 subjects, Sec. 4); a study sweeps a few
hyperparameters on top. A sweep file names the subjects (manifests or a glob), the base
``fit`` config(s), a grid of overrides and the SLURM resources; every subject × grid point
becomes one task that runs the normal ``fit`` (+ the post-fit benchmark) into its own run
folder ``<root>/<subject>/<grid point>``. This module only expands the file into that task
table; :mod:`sensor_removal.cluster.submit` submits it, :mod:`sensor_removal.cluster.task` runs one task.
"""

from __future__ import annotations

import glob
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sensor_removal.core.manifest import load_manifest


class SweepSpecError(ValueError):
    """A sweep file that can't be used; the message names the file and the field."""


@dataclass(frozen=True)
class SlurmResources:
    """The sbatch resources of every task (one array element = one subject × grid point).

    ``gpus_per_node`` > 1 launches one process per GPU (``ntasks_per_node = gpus_per_node``,
    srun per rank), the way Lightning's ``SLURMEnvironment`` expects for DDP.
    ``tasks_per_node`` sets the processes per node explicitly (CPU-only DDP, e.g. 2 for a
    test on a laptop); ``time_min`` is the time limit in minutes.
    """

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time_min: int = 24 * 60
    nodes: int = 1
    gpus_per_node: int = 1
    tasks_per_node: int | None = None
    cpus_per_task: int = 4
    mem_gb: float | None = None
    array_parallelism: int = 64
    signal_delay_s: int = 90
    setup: tuple[str, ...] = ()
    additional: dict[str, Any] = field(default_factory=dict)

    @property
    def ntasks_per_node(self) -> int:
        return self.tasks_per_node or max(1, self.gpus_per_node)

    def sbatch_parameters(self) -> dict[str, Any]:
        """Parameters for ``submitit.SlurmExecutor.update_parameters`` (sbatch flag names)."""
        params: dict[str, Any] = {
            "time": self.time_min,
            "nodes": self.nodes,
            "ntasks_per_node": self.ntasks_per_node,
            "cpus_per_task": self.cpus_per_task,
            "array_parallelism": self.array_parallelism,
            "signal_delay_s": self.signal_delay_s,
        }
        if self.gpus_per_node > 0:
            params["gpus_per_node"] = self.gpus_per_node
        for key in ("partition", "account", "qos"):
            if getattr(self, key):
                params[key] = getattr(self, key)
        if self.mem_gb:
            params["mem"] = f"{int(self.mem_gb * 1024)}MB"
        if self.setup:
            params["setup"] = list(self.setup)
        if self.additional:
            params["additional_parameters"] = dict(self.additional)
        return params


@dataclass(frozen=True)
class SweepTaskSpec:
    """One subject × grid point: what to fit and where its run folder is."""

    subject: str
    manifest: Path
    point: str
    overrides: dict[str, Any]
    run_dir: Path
    #: Starting weights of the fit (``--model.init_from``; ours: a population warm start).
    init_from: Path | None = None

    @property
    def tags(self) -> list[str]:
        """W&B tags of the run: the grid point's overrides, ``key=value``."""
        return [f"{k}={v}" for k, v in self.overrides.items()]


@dataclass(frozen=True)
class SweepSpec:
    """A parsed sweep file (see ``conf/sweep/example.yaml``)."""

    path: Path
    root: Path
    configs: tuple[Path, ...]
    manifests: tuple[Path, ...]
    grid: dict[str, list[Any]]
    slurm: SlurmResources
    fit_args: tuple[str, ...] = ()
    #: A population checkpoint every task starts from (``--model.init_from``; ours).
    init_from: Path | None = None

    def points(self) -> list[tuple[str, dict[str, Any]]]:
        """Every grid point (the Cartesian product of the grid), named for its values."""
        if not self.grid:
            return [("default", {})]
        keys = list(self.grid)
        return [
            (point_name(dict(zip(keys, combo, strict=True))), dict(zip(keys, combo, strict=True)))
            for combo in itertools.product(*(self.grid[k] for k in keys))
        ]

    def tasks(self) -> list[SweepTaskSpec]:
        """The task table: subjects (in file order) × grid points. Manifests are validated
        here, so a bad one stops the sweep before anything is submitted."""
        out = []
        seen: dict[str, Path] = {}
        for manifest in self.manifests:
            subject = load_manifest(manifest).subject
            if subject in seen:
                raise SweepSpecError(
                    f"{self.path}: subjects: {manifest} and {seen[subject]} are both subject {subject!r}"
                )
            seen[subject] = manifest
            for name, overrides in self.points():
                run = self.root / subject / name
                out.append(SweepTaskSpec(subject, manifest, name, overrides, run, init_from=self.init_from))
        return out


def point_name(overrides: dict[str, Any]) -> str:
    """Folder-safe name of a grid point: ``lr0.0001_lambda_identity0`` for
    ``{model.lr: 1e-4, model.lambda_identity: 0}`` (last component of each key + value)."""
    parts = []
    for key, value in overrides.items():
        text = f"{key.rsplit('.', 1)[-1]}{_value_text(value)}"
        parts.append(re.sub(r"[^A-Za-z0-9._-]+", "-", text))
    return "_".join(parts) or "default"


def _value_text(value: Any) -> str:
    if isinstance(value, float):
        return repr(value) if abs(value) >= 1e-3 or value == 0 else f"{value:g}"
    return str(value)


def _need(doc: dict[str, Any], key: str, path: Path) -> Any:
    if key not in doc or doc[key] in (None, "", []):
        raise SweepSpecError(f"{path}: field {key!r} is missing")
    return doc[key]


def _paths(value: Any, base: Path, path: Path, key: str) -> list[Path]:
    """A list of paths or glob patterns, relative to the sweep file's folder or the
    working directory (whichever exists), expanded and sorted per pattern."""
    items = [value] if isinstance(value, str) else list(value)
    out: list[Path] = []
    for item in items:
        pattern = str(item)
        candidates = [pattern] if Path(pattern).is_absolute() else [pattern, str(base / pattern)]
        found: list[str] = []
        for cand in candidates:
            found = sorted(glob.glob(cand)) if glob.has_magic(cand) else ([cand] if Path(cand).exists() else [])
            if found:
                break
        if not found:
            raise SweepSpecError(f"{path}: {key}: {pattern!r} matches no file")
        out.extend(Path(f).resolve() for f in found)
    return out


def load_sweep(path: str | Path, root: str | Path | None = None) -> SweepSpec:
    """Read a sweep file. ``root`` replaces the file's ``root`` (the output folder)."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise SweepSpecError(f"{path}: cannot read the sweep file ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise SweepSpecError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise SweepSpecError(f"{path}: expected a mapping with subjects, configs, grid, root, slurm")
    base = path.resolve().parent
    known = {"subjects", "configs", "grid", "root", "slurm", "fit_args", "init_from"}
    unknown = sorted(set(doc) - known)
    if unknown:
        raise SweepSpecError(f"{path}: unknown field(s) {unknown}; expected some of {sorted(known)}")
    grid = doc.get("grid") or {}
    if not isinstance(grid, dict):
        raise SweepSpecError(f"{path}: field 'grid' must map override keys (e.g. model.lr) to lists of values")
    grid = {str(k): (list(v) if isinstance(v, list) else [v]) for k, v in grid.items()}
    for key, values in grid.items():
        if not values:
            raise SweepSpecError(f"{path}: grid: {key!r} has no values")
    slurm_doc = doc.get("slurm") or {}
    fields = set(SlurmResources.__dataclass_fields__)
    bad = sorted(set(slurm_doc) - fields)
    if bad:
        raise SweepSpecError(f"{path}: slurm: unknown field(s) {bad}; expected some of {sorted(fields)}")
    init_from = None
    if doc.get("init_from") is not None:
        if not isinstance(doc["init_from"], str):
            raise SweepSpecError(f"{path}: field 'init_from' must be one checkpoint path, got {doc['init_from']!r}")
        found = _paths(doc["init_from"], base, path, "init_from")
        if len(found) != 1 or not found[0].is_file():
            raise SweepSpecError(f"{path}: init_from: {doc['init_from']!r} must name one checkpoint file")
        init_from = found[0]
    if "setup" in slurm_doc:
        slurm_doc = {**slurm_doc, "setup": tuple(slurm_doc["setup"] or ())}
    out_root = Path(root) if root is not None else Path(_need(doc, "root", path))
    if not out_root.is_absolute() and root is None:
        out_root = Path.cwd() / out_root
    return SweepSpec(
        path=path,
        root=out_root.resolve(),
        configs=tuple(_paths(doc["configs"], base, path, "configs")) if doc.get("configs") else (),
        manifests=tuple(_paths(_need(doc, "subjects", path), base, path, "subjects")),
        grid=grid,
        slurm=SlurmResources(**slurm_doc),
        fit_args=tuple(str(a) for a in doc.get("fit_args") or ()),
        init_from=init_from,
    )
