"""Shared I/O below the stages: atomic, resumable outputs (write a temporary file, then
``os.replace``), JSON reading with one-line errors, rejects written aside, disk-full guards.

A file that exists under its final name is complete. Temporary names are unique to the writer
(``<name>.<pid>.<random>.tmp``), so two writers never share one; a ``.tmp`` left by a killed run is
ignored (and swept by :func:`sweep_temp` once the output folder's lock is held). A symlink is
written through to its target (the link stays a link), and a special file (``/dev/stdout``, a FIFO)
is written directly: renaming over it would replace the device node with a regular file.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from retriever.data import Rejected
from retriever.errors import InputError, OutputError, RetrieverError

# ours (``x.parquet.123.ab12cd34.tmp``), and the fixed ``x.parquet.tmp`` of earlier versions
_TEMP_RE = re.compile(r"(\.\d+\.[0-9a-f]{8}|\.[A-Za-z0-9]+)\.tmp$")
# errors that mean "this folder cannot take the output", reported in one line (not a traceback)
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}


def temp_path(path: str | os.PathLike) -> Path:
    """A temporary name beside ``path`` that no other writer (process or thread) uses."""
    p = Path(path)
    return p.with_name(f"{p.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def is_temp(path: str | os.PathLike) -> bool:
    """True for a name made by :func:`temp_path` (or a ``<name>.<ext>.tmp`` of earlier versions)."""
    return bool(_TEMP_RE.search(str(path)))


def sweep_temp(folder: str | os.PathLike) -> int:
    """Delete the temporary files killed writers left under ``folder``; returns how many.

    Only safe while no other process writes there (call it with the folder's lock held).
    """
    n = 0
    root = Path(folder)
    if not root.is_dir():
        return 0
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            if is_temp(f):
                try:
                    os.unlink(os.path.join(dirpath, f))
                    n += 1
                except OSError:
                    pass
    return n


def resolve_target(path: str | os.PathLike) -> Path:
    """Where writing ``path`` should land: the final target of a symlink, else ``path`` itself."""
    p = Path(path)
    if p.is_symlink():
        return Path(os.path.realpath(p))
    return p


def is_special(path: str | os.PathLike) -> bool:
    """True when ``path`` must be written in place: it exists and is not a regular file or folder
    (device, FIFO, socket), or it is a process's descriptor (``/dev/stdout``, ``/proc/self/fd/1``,
    which may point at a pipe or at a file a shell redirected, whose inode must be kept)."""
    ap = os.path.abspath(path)
    if ap.startswith(("/dev/", "/proc/")) and os.path.exists(ap):
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def check_writable(folder: str | os.PathLike, what: str = "output folder") -> Path:
    """Create ``folder`` if needed and check a file can be written there, before any work starts.

    Raises:
        OutputError: the folder cannot be created or written (read-only, permissions, full disk).
    """
    p = Path(folder)
    try:
        p.mkdir(parents=True, exist_ok=True)
        probe = temp_path(p / ".write-check")
        with open(probe, "wb") as fh:
            fh.write(b"ok")
        probe.unlink()
    except OSError as e:
        raise OutputError(
            f"cannot write to the {what} {p} ({e.strerror or e}); pass a writable folder"
        ) from e
    return p


class AtomicWriter:
    """Context manager giving a temporary path that becomes ``path`` only on a clean exit.

    A symlinked ``path`` is written through to its target; a special file (``/dev/stdout``) is
    given as is (written directly, nothing renamed). A writer that outlives one block (a stream
    written over a loop) calls :meth:`commit` or :meth:`abort` itself instead.

    Example:
        >>> with AtomicWriter(out / "shard.parquet") as tmp:
        ...     pq.write_table(table, tmp)
    """

    def __init__(self, path: str | os.PathLike):
        self.direct = is_special(path)
        self.path = Path(path) if self.direct else resolve_target(path)
        self.tmp = self.path if self.direct else temp_path(self.path)

    def __enter__(self) -> Path:
        return self.start()

    def start(self) -> Path:
        """Create the folder; the path to write to (the temporary file)."""
        if not self.direct:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    def commit(self) -> None:
        """Move the finished temporary file into place."""
        if not self.direct:
            os.replace(self.tmp, self.path)

    def abort(self) -> None:
        """Drop the temporary file (a special file written directly is left as it is)."""
        if not self.direct:
            self.tmp.unlink(missing_ok=True)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with AtomicWriter(path) as tmp:
        blob = orjson.dumps(
            obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY, default=str
        )
        with open(tmp, "wb") as fh:
            fh.write(blob)


def replace_dir(
    tmp: str | os.PathLike, final: str | os.PathLike, old: str | os.PathLike | None = None
) -> Path:
    """Put the finished folder ``tmp`` at ``final``: an existing ``final`` is renamed aside (to
    ``old``, a name a resume can look for; default a temporary name), ``tmp`` renamed in, the old
    one deleted. A folder under its final name is always complete."""
    tmp, final = Path(tmp), Path(final)
    old = Path(old) if old is not None else temp_path(final.with_name(final.name + ".old"))
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8), atomically."""
    with AtomicWriter(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")


def read_json(path: str | os.PathLike) -> Any:
    """Parse a JSON file; a hand-edited or truncated one raises a one-line :class:`InputError`."""
    try:
        return orjson.loads(Path(path).read_bytes())
    except orjson.JSONDecodeError as e:
        raise InputError(
            f"{path} is not valid JSON ({e}); restore it or delete it and rerun to rebuild it"
        ) from e


def read_json_object(
    path: str | os.PathLike,
    what: str,
    key: str,
    shape: str,
    missing: type[RetrieverError] = InputError,
) -> dict:
    """The object of a JSON file, or of its ``key`` member when it has one (``{key: {...}}``).

    Args:
        path: the file.
        what: how messages name it (``"mixture file"``).
        key: the wrapper member to unwrap when present.
        shape: what the object must be, for the message (``'{"weights": {pool: weight}}'``).
        missing: the error type of a missing file.

    Raises:
        ``missing``: no file at ``path``.
        ConfigError: not JSON, or not an object.
    """
    from retriever.errors import ConfigError

    p = Path(path)
    if not p.is_file():
        raise missing(f"{what} {path} does not exist")
    try:
        data = orjson.loads(p.read_bytes())
    except orjson.JSONDecodeError as e:
        raise ConfigError(f"{what} {path} is not valid JSON ({e})") from e
    obj = data.get(key, data) if isinstance(data, dict) else None
    if not isinstance(obj, dict):
        raise ConfigError(f"{what} {path}: expected {shape}")
    return obj


class LMFlowStream:
    """Streams an LMFlow ``text_only`` dataset (``{"type": "text_only", "instances": [{"text":
    ...}, ...]}``) into an open binary file: the one LMFlow writer (filter pools, training sets)."""

    def __init__(self, fh: Any):
        self.fh = fh
        self.n = 0
        fh.write(b'{"type": "text_only", "instances": [\n')

    def write(self, text: str) -> None:
        self.fh.write((b",\n" if self.n else b"") + orjson.dumps({"text": text}))
        self.n += 1

    def close(self) -> None:
        """Write the closing brackets (the file itself is the caller's to close)."""
        self.fh.write(b"\n]}\n")


class RejectWriter:
    """Collects rejected records of one shard and writes them as jsonl (atomically) on close.

    Nothing is written when nothing was rejected. Rejects are few by nature, so they are kept in
    memory until the shard ends; the write then happens together with the shard's output.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.rows: list[Rejected] = []

    def add(self, rej: Rejected) -> None:
        self.rows.append(rej)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rows:
            out[r.reason] = out.get(r.reason, 0) + 1
        return out

    def close(self) -> None:
        """Write the rejects; with none, remove a file an earlier run of the shard left."""
        if not self.rows:
            self.path.unlink(missing_ok=True)
            return
        with AtomicWriter(self.path) as tmp, open(tmp, "wb") as fh:
            for r in self.rows:
                fh.write(
                    orjson.dumps({"shard": r.shard, "row": r.row, "reason": r.reason, "raw": r.raw})
                )
                fh.write(b"\n")


@contextmanager
def disk_guard(what: str) -> Iterator[None]:
    """Turn ``ENOSPC`` / ``EDQUOT`` / ``EACCES`` into a one-line :class:`OutputError`."""
    try:
        yield
    except OSError as e:
        if isinstance(e, RetrieverError):
            raise
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise OutputError(
                f"disk full while writing {what}: free some space and rerun the same command "
                "(finished parts are kept; the build is not complete until summary.json exists)"
            ) from e
        if e.errno in (errno.EACCES, errno.EROFS):
            raise OutputError(
                f"cannot write {what} ({e.strerror}); choose another --out folder"
            ) from e
        raise
