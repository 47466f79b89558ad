"""Saving and loading a fitted mapping: one ``torch.save`` file of tensors, numbers and
strings only, read back with ``torch.load(..., weights_only=True)`` (no pickled code)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sensor_removal.core.video import atomic_output
from sensor_removal.emg.mapping import Mapping, MappingSettings

_ARRAYS = ("in_mean", "in_std", "basis", "out_mean", "out_std")


def save_mapping(mapping: Mapping, path: Path, **meta: str) -> Path:
    """Write ``mapping`` (and ``meta``, e.g. direction and source) atomically."""
    doc: dict[str, Any] = {
        "settings": asdict(mapping.settings),
        "input_names": list(mapping.input_names),
        "output_names": list(mapping.output_names),
        "meta": dict(meta),
        **{k: torch.from_numpy(np.ascontiguousarray(getattr(mapping, k))) for k in _ARRAYS},
    }
    if "w" in mapping.weights:
        doc["w"] = torch.from_numpy(np.ascontiguousarray(mapping.weights["w"]))
    else:
        mlp = mapping.weights["mlp"]
        doc["mlp"] = {"state": mlp["state"], "n_in": int(mlp["n_in"]), "n_out": int(mlp["n_out"])}
    with atomic_output(path) as tmp:
        torch.save(doc, tmp)
    return path


def load_mapping(path: Path) -> tuple[Mapping, dict[str, str]]:
    """The mapping saved by :func:`save_mapping` and its ``meta``."""
    try:
        doc = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"{path}: mapping file not found (write it with `emg fit`)") from None
    except Exception as exc:  # torch's unpickling errors
        raise ValueError(f"{path}: not a mapping file written by `emg fit` ({exc})") from None
    settings = MappingSettings(**doc["settings"])
    weights = {"w": doc["w"].numpy()} if "w" in doc else {"mlp": doc["mlp"]}
    mapping = Mapping(
        settings,
        tuple(doc["input_names"]),
        tuple(doc["output_names"]),
        in_mean=doc["in_mean"].numpy(),
        in_std=doc["in_std"].numpy(),
        basis=doc["basis"].numpy(),
        out_mean=doc["out_mean"].numpy(),
        out_std=doc["out_std"].numpy(),
        weights=weights,
    )
    return mapping, dict(doc["meta"])
