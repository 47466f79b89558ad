"""Recognising a full disk behind whatever error a writer raised.

Writers wrap the operating system's ``ENOSPC``: torch's zip writer turns it into a
``RuntimeError`` ("unexpected pos …") raised while the ``OSError`` is handled, pandas and
matplotlib re-raise their own types. The commands look through the chain of causes so
that a full disk always ends in one message and exit code 2, never a traceback.
"""

from __future__ import annotations

import errno

#: Errno values that mean "no room to write": a full disk, an exceeded quota.
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


def disk_full(exc: BaseException) -> OSError | None:
    """The ``OSError`` saying "no space" in ``exc`` or its causes / contexts, or None."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in NO_SPACE:
            return e
        todo += [e.__cause__, e.__context__]
    return None


def disk_full_message(err: OSError, what: str) -> str:
    """One line for the user: what was being written and where."""
    where = f" ({err.filename})" if err.filename else ""
    return (
        f"disk full while writing {what}{where}: {err.strerror or 'no space left on device'}; free space and run again"
    )
