"""One writer per output folder: an advisory lock on ``<folder>/.lock``, naming its holder.

Two runs writing into one folder would interleave their files (and one run's done markers could
cover the other's half-written outputs), so every stage that writes a folder holds
:class:`OutputLock` for the whole run. The lock is ``fcntl.flock`` on an open file: the kernel
releases it when the holder exits, even on ``kill -9``, so a crashed run never leaves a stale lock.
Worker processes forked by a local executor inherit it; the lock is re-entrant inside one process
(a stage run from ``retriever run`` may lock a folder its caller already holds).

The file holds the holder's pid, host, command and start time, which the refusal message quotes.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from retriever.errors import LockedError

LOCK_FILE = ".lock"
_HELD: dict[str, list[Any]] = {}  # real path of the lock file -> [fd, depth]
_MUTEX = threading.Lock()


def _holder_info() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300] if sys.argv else "",
        "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def describe_holder(folder: str | os.PathLike) -> str:
    """The holder recorded in ``folder``'s lock file, in words (``"unknown"`` when unreadable)."""
    try:
        info = orjson.loads((Path(folder) / LOCK_FILE).read_bytes())
        return (
            f"pid {info['pid']} on {info['host']} ({info.get('command', '?')!r}, "
            f"since {info.get('since', '?')})"
        )
    except (OSError, ValueError, KeyError, TypeError):
        return "unknown"


class OutputLock:
    """Exclusive lock on an output folder for the duration of a ``with`` block.

    Args:
        folder: the output folder (created if missing).

    Raises:
        LockedError: another process holds the lock (the message names it); at ``__enter__``.

    Example:
        >>> with OutputLock("runs/scores"):
        ...     run_the_stage()
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    @property
    def path(self) -> Path:
        return self.folder / LOCK_FILE

    def acquire(self) -> None:
        import fcntl

        self.folder.mkdir(parents=True, exist_ok=True)
        key = os.path.realpath(self.path)
        with _MUTEX:
            held = _HELD.get(key)
            if held is not None and held[2] == os.getpid():
                held[1] += 1
                return
            fd = os.open(key, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise LockedError(
                    f"{self.folder} is in use by another run: {describe_holder(self.folder)}. "
                    "Wait for it to finish (or stop it), or use another output folder."
                ) from None
            os.ftruncate(fd, 0)
            os.write(fd, orjson.dumps(_holder_info()))
            os.fsync(fd)
            _HELD[key] = [fd, 1, os.getpid()]

    def release(self) -> None:
        key = os.path.realpath(self.path)
        with _MUTEX:
            held = _HELD.get(key)
            if held is None or held[2] != os.getpid():
                return
            held[1] -= 1
            if held[1] == 0:
                del _HELD[key]
                os.close(held[0])  # closing the descriptor releases the flock


def is_locked(folder: str | os.PathLike) -> bool:
    """True when some process (this one included) holds ``folder``'s lock."""
    import fcntl

    p = Path(folder) / LOCK_FILE
    if not p.exists():
        return False
    if os.path.realpath(p) in _HELD:
        return True
    fd = os.open(p, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
