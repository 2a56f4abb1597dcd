"""Small helpers shared by the ``<stage>/cli.py`` modules (output only; no pipeline logic)."""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import types
import typing
from typing import Any

import orjson

from retriever.errors import ConfigError


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except empty ones (None / False / "" / []) and a required option's."""

    def _get_help_string(self, action):
        d = action.default
        empty = d is None or d is False or (isinstance(d, str | list) and not d)
        if empty or action.required or action.help is None:
            return action.help
        return super()._get_help_string(action)


def print_json(obj: Any) -> None:
    sys.stdout.write(
        orjson.dumps(
            obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY, default=str
        ).decode()
    )
    sys.stdout.write("\n")


def parse_task_values(
    items: list[str] | None, option: str, form: str = "TASK=VALUE", example: str = "rag=0.4"
) -> dict[str, float]:
    """``["rag=0.4", "reasoning=0.35"]`` -> ``{"rag": 0.4, "reasoning": 0.35}`` (``form`` and
    ``example``: what the error says to write, e.g. ``SOURCE=NUMBER`` for other names)."""
    out: dict[str, float] = {}
    for item in items or []:
        task, sep, val = item.partition("=")
        try:
            out[task] = float(val)
        except ValueError:
            sep = ""
        if not sep or not task:
            raise ConfigError(f"{option} expects {form} (e.g. {option} {example}), got {item!r}")
    return out


def field_help(cls: type) -> dict[str, str]:
    """Each field's entry in the docstring table of dataclass ``cls`` (``Args:`` or
    ``Attributes:``; ``a, b: text`` documents several), as a one-line option help: the first
    sentence, Sphinx markup removed."""
    out: dict[str, str] = {}
    lines = (cls.__doc__ or "").expandtabs().splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.strip() in ("Args:", "Attributes:")), None)
    if start is None:
        return out
    entries: list[tuple[list[str], list[str]]] = []
    indent, names = None, ""  # names: a list of names continued on the next line
    for ln in lines[start + 1 :]:
        if not ln.strip():
            break
        lead = len(ln) - len(ln.lstrip())
        indent = lead if indent is None else indent
        if lead < indent:
            break
        line = names + ln.strip()
        m = re.match(r"([\w, ]+):\s*(.*)", line) if lead == indent or names else None
        names = line + " " if re.fullmatch(r"[\w, ]+,", line) else ""
        if m:
            entries.append(([n.strip() for n in m.group(1).split(",")], [m.group(2)]))
        elif entries and not names:
            entries[-1][1].append(ln.strip())
    for keys, text in entries:
        h = _plain(" ".join(text))
        for n in keys:
            out[n] = h
    return out


def _plain(text: str) -> str:
    """Docstring text as argparse help: markup removed, the first sentence, ``%`` escaped."""
    text = re.sub(r":\w+:`~([^`]*)`", lambda m: re.sub(r"\s", "", m.group(1)).split(".")[-1], text)
    text = re.sub(r":\w+:`([^`]*)`", r"\1", text).replace("``", "")
    text = re.sub(r"\s+", " ", text).strip()
    text = re.split(r"(?<=[a-z0-9)])\.\s+(?=[A-Z`(])", text)[0].rstrip(".")
    return text.replace("%", "%%")


def _option_type(t: Any) -> Any:
    """``int`` for ``int | None`` and so on; ``None`` for a type an option cannot parse."""
    if typing.get_origin(t) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(t) if a is not type(None)]
        return _option_type(args[0]) if len(args) == 1 else None
    return t if t in (int, float, str, bool) else None


def add_config_options(
    p: Any, cls: type, names: list[str] | tuple[str, ...], **options: dict[str, Any]
) -> None:
    """One ``--field-name`` option for each of ``names``, fields of the frozen dataclass ``cls``
    (a stage's config): the default is the field's, the type its annotation's (``X | None`` ->
    ``X``; a boolean: ``--flag``, or ``--flag/--no-flag`` when it defaults to true), the help its
    entry in the class's docstring table (:func:`field_help`). So a default lives in one place;
    read the options back with :func:`config_from_args`.

    ``options``: per field, more ``add_argument`` keywords (``choices``, ``metavar``, ``type``
    for a field whose annotation is not a scalar, ``flag``: the option's name (or names) when it
    is not the field's, e.g. ``--batch-tokens`` for ``max_batch_tokens``); never a ``default``
    or a ``help``.

    Raises:
        TypeError: a ``default`` or ``help`` in ``options``, a field without a docstring entry,
            or a field whose type no option parses and no ``type`` is given.
    """
    hints = typing.get_type_hints(cls)
    docs = field_help(cls)
    by_name = {f.name: f for f in dataclasses.fields(cls)}
    from retriever.config import field_default

    for name in names:
        extra = dict(options.get(name, {}))
        for key in ("default", "help"):
            if key in extra:
                raise TypeError(f"{cls.__name__}.{name}: the {key} is the dataclass field's")
        if not docs.get(name):
            raise TypeError(
                f"{cls.__name__}.{name}: document the field in {cls.__name__}'s docstring table "
                "(Args: or Attributes:); its first sentence is the option's help"
            )
        default = field_default(by_name[name])
        kw: dict[str, Any] = {"dest": name, "default": default, "help": docs[name]}
        t = _option_type(hints[name])
        if t is bool:
            kw["action"] = "store_true" if default is False else argparse.BooleanOptionalAction
        elif t is not None and t is not str:
            kw["type"] = t
        elif t is None and "type" not in extra:
            raise TypeError(f"{cls.__name__}.{name}: give the option a `type` to parse it")
        flag = extra.pop("flag", "--" + name.replace("_", "-"))
        flags = (flag,) if isinstance(flag, str) else tuple(flag)
        if t is not bool and "metavar" not in extra:
            kw["metavar"] = flags[-1].lstrip("-").replace("-", "_").upper()
        kw.update(extra)
        action = p.add_argument(*flags, **kw)
        action.config_field = (cls, name)  # read by the tests: the default is the field's
    key = _fields_key(cls)  # what config_from_args reads back (a group shares its parser's)
    p.set_defaults(**{key: (*(p.get_default(key) or ()), *names)})


def _fields_key(cls: type) -> str:
    return f"_config_fields_{cls.__module__}.{cls.__qualname__}"


def config_from_args(cls: type, args: Any, **given: Any) -> Any:
    """``cls`` from the parsed options: the fields :func:`add_config_options` added options for,
    and ``given`` (what the CLI parsed itself: lists, pairs, the reader)."""
    names = getattr(args, _fields_key(cls), ())
    return cls(**{**{n: getattr(args, n) for n in names}, **given})


def add_reader_options(p: Any, tokens: bool = True) -> None:
    """The corpus reader options (:class:`~retriever.corpus.readers.ReaderConfig`), one wording
    for every verb that reads the corpus; read back with :func:`reader_from_args`."""
    from retriever.corpus.readers import ReaderConfig

    names = ["text_field", "id_field"] + (["tokens_field", "detokenizer"] if tokens else [])
    add_config_options(p, ReaderConfig, names)


def reader_from_args(args: Any) -> Any:
    """The :class:`~retriever.corpus.readers.ReaderConfig` of :func:`add_reader_options`."""
    from retriever.corpus.readers import ReaderConfig

    return config_from_args(ReaderConfig, args)


def read_task_table(path: str | None, table: str, what: str) -> dict[str, Any]:
    """The ``[table]`` of the TOML file ``path`` (a ``--prompts`` or ``--patterns`` file: task ->
    value); ``{}`` without a path.

    Raises:
        ConfigError: a missing file, bad TOML, or ``[table]`` not a table.
    """
    if not path:
        return {}
    from retriever.config import read_toml

    _, raw = read_toml(path, what, f"a TOML file with a [{table}] table")
    found = raw.get(table, {})
    if not isinstance(found, dict):
        raise ConfigError(f"{path}: [{table}] must be a table of task = value")
    return dict(found)


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
