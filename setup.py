"""The one build step pyproject.toml cannot say: ship the repository's ``conf/`` inside the
package as ``sensor_removal/conf``, so a wheel has the paper's defaults, the demo and the
example configs (found by :func:`sensor_removal.core.configs.conf_dir`). A checkout reads
``conf/`` itself; no link, no second copy in the source tree."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithConf(build_py):
    def run(self) -> None:
        super().run()
        source = Path(__file__).resolve().parent / "conf"
        target = Path(self.build_lib) / "sensor_removal" / "conf"
        for path in sorted(source.rglob("*.yaml")):
            dest = target / path.relative_to(source)
            dest.parent.mkdir(parents=True, exist_ok=True)
            self.copy_file(str(path), str(dest), preserve_mode=False)


setup(cmdclass={"build_py": BuildPyWithConf})
