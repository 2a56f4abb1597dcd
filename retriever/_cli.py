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


def add_reader_options(p: Any, tokens: bool = True) -> None:
    """The corpus reader options (:class:`~retriever.corpus.readers.ReaderConfig`), one wording
    for every verb that reads the corpus; read back with :func:`reader_from_args`."""
    from retriever.corpus.readers import ReaderConfig

    d = ReaderConfig()
    p.add_argument("--text-field", default=d.text_field, help="text field of corpus records")
    p.add_argument(
        "--id-field", default=d.id_field, help="id field of corpus records (absent: shard:row)"
    )
    if tokens:
        p.add_argument(
            "--tokens-field",
            default=d.tokens_field,
            help="token-id field, read with --detokenizer when a record has no text field",
        )
        p.add_argument(
            "--detokenizer",
            default=d.detokenizer,
            help="tokenizer (local folder or Hub id) turning token ids into text: gpt2 for "
            "nvidia/ClimbLab",
        )


def reader_from_args(args: Any) -> Any:
    """The :class:`~retriever.corpus.readers.ReaderConfig` of :func:`add_reader_options`."""
    from retriever.corpus.readers import ReaderConfig

    d = ReaderConfig()
    return ReaderConfig(
        text_field=args.text_field,
        id_field=args.id_field,
        tokens_field=getattr(args, "tokens_field", d.tokens_field),
        detokenizer=getattr(args, "detokenizer", d.detokenizer),
    )


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
