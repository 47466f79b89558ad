"""The one base of every error whose message is for the user (exit code 2, no traceback).

Each layer raises its own subclass (``ManifestError``, ``VideoError``, ``CleanError``,
``WeightsError``, ...); a command line that catches :class:`UserError` catches them all,
whichever layer they come from, without importing that layer.
"""

from __future__ import annotations


class UserError(RuntimeError):
    """Bad input or a missing prerequisite; ``str(err)`` names the file, field or option."""


class DeviceError(UserError):
    """The requested device is not on this machine (``--device cuda`` without CUDA)."""
