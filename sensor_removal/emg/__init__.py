"""Synchronised sEMG: readers, the envelope chain, sync, and the expression <-> muscle
mapping (our extension after EIFER, Büchner et al., CVPR 2025; docs/emg.md).

The notebook API, imported lazily so that ``import sensor_removal.emg`` stays light:

* :func:`load_emg` (a manifest recording -> checked raw channels),
* :func:`envelopes` (chain + sync -> envelopes at the video frames),
* :func:`fit_mapping` / :func:`predict` (per-subject Exp2EMG / EMG2Exp).
"""

from __future__ import annotations

import importlib
from typing import Any

_API = {
    "load_emg": "sensor_removal.emg.recording",
    "envelopes": "sensor_removal.emg.recording",
    "EmgRecording": "sensor_removal.emg.recording",
    "Envelopes": "sensor_removal.emg.recording",
    "ChainSettings": "sensor_removal.emg.chain",
    "read_emg": "sensor_removal.emg.readers",
    "EmgFileError": "sensor_removal.emg.readers",
    "fit_mapping": "sensor_removal.emg.mapping",
    "predict": "sensor_removal.emg.mapping",
    "MappingSettings": "sensor_removal.emg.mapping",
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'sensor_removal.emg' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
