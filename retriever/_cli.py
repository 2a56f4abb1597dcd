"""Small helpers shared by the ``<stage>/cli.py`` modules (output only; no pipeline logic)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from retriever.errors import ConfigError


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except empty ones (None / False)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or action.help is None:
            return action.help
        return super()._get_help_string(action)


def print_json(obj: Any) -> None:
    sys.stdout.write(
        orjson.dumps(
            obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY, default=str
        ).decode()
    )
    sys.stdout.write("\n")


def parse_task_values(items: list[str] | None, option: str) -> dict[str, float]:
    """``["rag=0.4", "reasoning=0.35"]`` -> ``{"rag": 0.4, "reasoning": 0.35}``."""
    out: dict[str, float] = {}
    for item in items or []:
        task, sep, val = item.partition("=")
        try:
            out[task] = float(val)
        except ValueError:
            sep = ""
        if not sep or not task:
            raise ConfigError(f"{option} expects TASK=VALUE (e.g. {option} rag=0.4), got {item!r}")
    return out


def add_repeated(p: Any, flag: str, metavar: str, help: str) -> None:
    """A repeatable ``flag NAME=PATH`` option (read back with :func:`parse_named_paths`)."""
    p.add_argument(flag, action="append", default=[], metavar=metavar, help=help)


def parse_named_paths(items: list[str] | None, option: str, form: str = "NAME=PATH") -> dict:
    """``["fc=pools/fc", "web=/data/web"]`` -> ``{"fc": "pools/fc", "web": "/data/web"}``.

    Raises:
        ConfigError: an item without a name, an ``=`` or a path (the message shows ``form``).
    """
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"{option} {item!r}: write {form}")
        out[name] = path
    return out


def show_progress() -> bool:
    """Progress bars for this command: on a terminal, unless ``--quiet``."""
    from retriever.progress import progress_enabled

    return progress_enabled()
