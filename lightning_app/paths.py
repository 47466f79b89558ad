"""Which files the app may serve: only those under its ``--runs`` and ``--data`` folders.

A request names a root (``runs`` or ``data``) and a path relative to it. The path is
resolved (symbolic links and ``..`` followed) and must still lie inside the resolved
root; anything else is refused. Nothing here trusts a path that came from a request.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

#: URL prefix of the file route (:mod:`lightning_app.server`).
FILES_ROUTE = "/files"


class PathRefused(ValueError):
    """A requested path lies outside the served folders (or names no served root)."""


@dataclass(frozen=True)
class ServedRoots:
    """The folders the app serves, by the name used in URLs."""

    runs: Path
    data: Path | None = None

    @classmethod
    def create(cls, runs: str | Path, data: str | Path | None = None) -> ServedRoots:
        return cls(Path(runs).resolve(), None if data is None else Path(data).resolve())

    def as_dict(self) -> dict[str, Path]:
        roots = {"runs": self.runs}
        if self.data is not None:
            roots["data"] = self.data
        return roots

    def resolve(self, root: str, relative: str) -> Path:
        """The file ``relative`` under root ``root``; :class:`PathRefused` when the
        resolved path leaves the root, is absolute, or the root is unknown."""
        base = self.as_dict().get(root)
        if base is None:
            raise PathRefused(f"unknown root {root!r}")
        if not relative or "\x00" in relative or Path(relative).is_absolute():
            raise PathRefused(f"refused path {relative!r}")
        target = (base / relative).resolve()
        if not target.is_relative_to(base):
            raise PathRefused(f"refused path {relative!r}: outside the served folder")
        return target

    def contains(self, path: str | Path) -> bool:
        """Whether ``path`` (resolved) lies under one of the roots."""
        p = Path(path).resolve()
        return any(p.is_relative_to(base) for base in self.as_dict().values())

    def url(self, path: str | Path) -> str | None:
        """The file route URL of ``path``, or None when it is not under a served root."""
        p = Path(path).resolve()
        for name, base in self.as_dict().items():
            if p.is_relative_to(base):
                return f"{FILES_ROUTE}/{name}/{quote(p.relative_to(base).as_posix())}"
        return None
