"""Where logs go: ours on the terminal, third-party ones (datatrove/loguru, LanceDB, transformers,
Python warnings) in a log file, and on the terminal only with ``-v`` (or when they are errors).

:func:`setup_logging` is called once by the CLI; :func:`log_to_file` adds the run folder's log file
(``RUN/logs/run.log``) for the duration of a command. datatrove logs through loguru, and each of its
tasks re-adds a raw ``sys.stderr`` sink (with colour codes); those sinks are turned into records of
the stdlib logger ``datatrove`` here, so they follow the same rule.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_OWN = "retriever"
_LEVELS = {
    "TRACE": logging.DEBUG,
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "SUCCESS": logging.INFO,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
    "CRITICAL": logging.CRITICAL,
}
_state = {"verbose": False, "patched": False, "configured": False}
# how a worker process started by an executor (forkserver / spawn) finds the parent's set-up
ENV_VERBOSE, ENV_FILE = "RETRIEVER_LOG_VERBOSE", "RETRIEVER_LOG_FILE"


class _TerminalFilter(logging.Filter):
    """Our records always; third-party ones with ``-v`` or from ERROR up."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _state["verbose"] or record.levelno >= logging.ERROR:
            return True
        return record.name == _OWN or record.name.startswith(_OWN + ".")


class _TerminalHandler(logging.StreamHandler):
    """Writes to the current ``sys.stderr`` (pytest's capture, a replaced stream)."""

    def __init__(self):
        super().__init__()
        self.addFilter(_TerminalFilter())
        self.setFormatter(logging.Formatter(FORMAT))

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):  # StreamHandler.__init__ sets it
        pass


class _LoguruToLogging:
    """A file-like loguru sink: each formatted line becomes a record of the ``datatrove`` logger."""

    def write(self, message: str) -> None:
        for line in str(message).splitlines():
            if not line.strip():
                continue
            parts = [p.strip() for p in line.split("|", 2)]
            level = _LEVELS.get(parts[1], logging.INFO) if len(parts) == 3 else logging.INFO
            logging.getLogger("datatrove").log(level, parts[2] if len(parts) == 3 else line)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:  # loguru colourizes only terminals
        return False


def setup_logging(verbose: bool = False) -> None:
    """Terminal logging for a CLI command (idempotent; ``verbose`` shows debug and third-party
    logs)."""
    _state["verbose"] = bool(verbose)
    _state["configured"] = True
    os.environ[ENV_VERBOSE] = "1" if verbose else "0"
    root = logging.getLogger()
    for h in list(root.handlers):
        if isinstance(h, _TerminalHandler):
            root.removeHandler(h)
    root.addHandler(_TerminalHandler())
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger(_OWN).setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.captureWarnings(True)  # warnings -> the "py.warnings" logger (file; terminal with -v)
    if not verbose:
        # raised in every forked child (datatrove workers, tokenizers); harmless for our one-writer
        # use
        warnings.filterwarnings(
            "ignore", message="lancedb fork support is experimental", category=RuntimeWarning
        )
        os.environ.setdefault("DATATROVE_COLORIZE_LOGS", "0")
    _route_loguru()


def _route_loguru() -> None:
    try:
        from loguru import logger
    except ImportError:
        return
    logger.remove()
    logger.add(
        _LoguruToLogging(),
        level="DEBUG",
        colorize=False,
        format="{time:HH:mm:ss} | {level} | {name}:{function} - {message}",
    )


def worker_logging() -> None:
    """In an executor's worker: the parent's routing (a forked worker has it already)."""
    if _state["configured"]:
        return
    setup_logging(verbose=os.environ.get(ENV_VERBOSE) == "1")
    path = os.environ.get(ENV_FILE)
    if path:
        handler = _LazyFileHandler(path, encoding="utf-8", delay=True)
        handler.setFormatter(logging.Formatter(FORMAT))
        logging.getLogger().addHandler(handler)
    route_datatrove_logs()


def route_datatrove_logs() -> None:
    """Make datatrove's per-task ``sys.stderr`` sink a record of the ``datatrove`` logger.

    Called where datatrove executors are built (it imports datatrove); forked workers inherit it.
    """
    if _state["patched"]:
        return
    import datatrove.executor.base as dt_base
    import datatrove.utils.logging as dt_logging

    def ours(fn):
        def wrapper(*args, **kwargs):
            # datatrove adds `sys.stderr` as a loguru sink (per task, and again after each task as
            # its "default logger"): hand it our sink instead
            real_sys = dt_logging.sys
            dt_logging.sys = SimpleNamespace(stderr=_LoguruToLogging())
            try:
                return fn(*args, **kwargs)
            finally:
                dt_logging.sys = real_sys

        return wrapper

    original = dt_logging.add_task_logger
    dt_logging.add_task_logger = ours(original)
    if getattr(dt_base, "add_task_logger", None) is original:
        dt_base.add_task_logger = dt_logging.add_task_logger
    # close_task_logger calls it through the module: the stats block after a run comes here too
    dt_logging.setup_default_logger = ours(dt_logging.setup_default_logger)
    dt_logging.setup_default_logger()  # replaces the stderr sink datatrove added when imported
    _state["patched"] = True


class _LazyFileHandler(logging.FileHandler):
    """Creates its folder and file at the first record (a command failing at once leaves none)."""

    def _open(self):
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()


@contextlib.contextmanager
def log_to_file(path: str | os.PathLike) -> Iterator[Path]:
    """Every log record (ours at DEBUG, third-party from INFO) also goes to ``path`` meanwhile."""
    path = Path(path)
    handler = _LazyFileHandler(path, encoding="utf-8", delay=True)
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    old, old_env = root.level, os.environ.get(ENV_FILE)
    root.setLevel(min(old, logging.INFO) if old else logging.INFO)
    os.environ[ENV_FILE] = str(path.resolve())
    try:
        yield path
    finally:
        root.removeHandler(handler)
        root.setLevel(old)
        handler.close()
        if old_env is None:
            os.environ.pop(ENV_FILE, None)
        else:
            os.environ[ENV_FILE] = old_env
