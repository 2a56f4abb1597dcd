"""One safe pattern for every name that becomes a path (task names, shard output names).

A task name is a folder under ``--output`` / ``indexes/``; a shard name is a file stem under
``scores/``, ``done/``, ``<task>/``. Letters, digits and ``. _ - = + @`` only, not
starting with a dot, at most 200 characters: no ``/``, no ``..``, nothing a shell or file system
treats specially.
"""

from __future__ import annotations

import re

from retriever.errors import UnsafeNameError

SAFE_NAME = re.compile(r"[A-Za-z0-9_=+@-][A-Za-z0-9._=+@-]{0,199}")


def is_safe_name(name: str) -> bool:
    return isinstance(name, str) and SAFE_NAME.fullmatch(name) is not None


def check_name(name: str, what: str = "task name") -> str:
    """Return ``name`` when it is safe as a file or folder name, else raise.

    Raises:
        UnsafeNameError: ``name`` has a path separator, ``..``, a leading dot, a space or
            another character outside ``[A-Za-z0-9._=+-]``.
    """
    if not is_safe_name(name):
        raise UnsafeNameError(
            f"{what} {name!r} cannot be used as a file name: use letters, digits, '.', '_', '-', "
            "'@' (no '/', no leading '.', at most 200 characters)"
        )
    return name
