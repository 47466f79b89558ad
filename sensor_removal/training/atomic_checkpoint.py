"""Checkpoints written whole or not at all: Lightning's ``CheckpointIO`` plugin point.

Lightning's own writer opens the final file and streams into it, so a full disk or a
kill during the write leaves a truncated ``last.ckpt`` (and a zero-byte
``interrupted.ckpt``) where the previous, intact one was. :class:`AtomicCheckpointIO`
writes a hidden temporary file in the same folder, syncs it and renames it over the
target: the target is either the old file or the complete new one. The CLI installs it
for every fit unless the config names another ``CheckpointIO``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose saves go through a temporary file and a rename."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not take storage_options (got {storage_options!r})")
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; checkpoints are shared like any output
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
