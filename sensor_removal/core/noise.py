"""Messages from the libraries that a user of this project cannot act on, silenced by
their exact text — nothing else, so every real warning still shows.

Each entry says why it is noise here:

* Lightning's advertisement for ``litlogger`` on every fit (the project logs to W&B);
* the ``LeafSpec`` deprecation that Lightning's own ``_pytree`` helper triggers inside
  torch (fixed by upgrading Lightning, not by the user);
* W&B's "anonymous setting has no effect": Lightning's ``WandbLogger`` always passes the
  setting; :func:`drop_wandb_anonymous` removes it where the logger is built.

Called once by the command-line entry point (:mod:`sensor_removal.cli.commands`), never at
import, so a library user's own warning filters stay theirs.
"""

from __future__ import annotations

import logging
import warnings

#: Warning messages (regular expressions, matched at the start) that are noise here.
IGNORED_WARNINGS: tuple[str, ...] = (r"`isinstance\(treespec, LeafSpec\)` is deprecated",)
#: Start of Lightning log lines that are noise here (logger ``pytorch_lightning.utilities.rank_zero``).
IGNORED_LOG_PREFIXES: tuple[str, ...] = ("💡 Tip:",)


class _DropPrefixes(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(IGNORED_LOG_PREFIXES)


def quiet_known_noise() -> None:
    """Install the filters above (idempotent)."""
    for pattern in IGNORED_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    log = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    if not any(isinstance(f, _DropPrefixes) for f in log.filters):
        log.addFilter(_DropPrefixes())


def drop_wandb_anonymous(logger: object) -> None:
    """Remove the ``anonymous=None`` that Lightning's ``WandbLogger`` hands to
    ``wandb.init`` (W&B >= 0.19 warns about the setting whatever its value)."""
    init = getattr(logger, "_wandb_init", None)
    if isinstance(init, dict) and init.get("anonymous") is None:
        init.pop("anonymous", None)
