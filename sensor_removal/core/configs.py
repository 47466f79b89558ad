"""Where the shipped YAML configs are: ``conf/`` of the repository, installed with the
package as ``sensor_removal/conf`` (in the source tree a link to ``../conf``).

Found through :mod:`importlib.resources`, so a wheel or ``pip install .`` has the paper's
defaults (``default.yaml``), the demo and the example subjects exactly as a clone does,
wherever the current directory is.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def conf_dir() -> Path:
    """The folder holding ``default.yaml``, ``demo.yaml`` and ``subjects/``."""
    return Path(str(files("sensor_removal") / "conf"))


def config_file(name: str) -> Path:
    """A shipped config by its name inside ``conf/`` (e.g. ``"default.yaml"``)."""
    return conf_dir() / name
