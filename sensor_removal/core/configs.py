"""Where the shipped YAML configs are: ``conf/`` of the repository, installed with the
package as ``sensor_removal/conf`` (``setup.py``'s build step copies it into the wheel).

An installed package finds its copy through :mod:`importlib.resources`; a checkout (or an
editable install) reads the repository's ``conf/`` beside the package. Either way the
paper's defaults (``default.yaml``), the demo and the example subjects are the same files,
wherever the current directory is.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

#: The repository's conf/, seen from sensor_removal/core/configs.py.
CHECKOUT_CONF = Path(__file__).resolve().parents[2] / "conf"


def conf_dir() -> Path:
    """The folder holding ``default.yaml``, ``demo.yaml`` and ``subjects/``: the installed
    package's ``sensor_removal/conf``, else the checkout's ``conf/``."""
    packaged = Path(str(files("sensor_removal") / "conf"))
    for where in (packaged, CHECKOUT_CONF):
        if (where / "default.yaml").is_file():
            return where
    raise FileNotFoundError(
        f"no shipped configs: neither {packaged} (installed package) nor {CHECKOUT_CONF} (checkout) "
        "holds default.yaml; reinstall the package (pip install --force-reinstall sensor-removal)"
    )


def config_file(name: str) -> Path:
    """A shipped config by its name inside ``conf/`` (e.g. ``"default.yaml"``)."""
    return conf_dir() / name
