"""Task specs: one TOML file per task under ``indexes/`` naming its gold sources and embedder.

Example (``indexes/function-calling.toml``)::

    task = "function-calling"
    model = "sentence-transformers/all-MiniLM-L6-v2"
    factory = "Flat"

    [[sources]]
    path = "squeeze-ai-lab/TinyAgent-dataset"   # a Hub dataset id
    format = "tinyagent"
    data_files = ["training_data.json"]

    [[sources]]
    path = "../../shared/data/gold/function_calling"   # local, relative to this file
    optional = true                                     # skipped with a warning when absent

Specs are frozen dataclasses: loading does no I/O beyond reading the TOML, and never ``assert``s on
user input (every problem is a :class:`~retriever.errors.ConfigError` naming the key).
"""

from __future__ import annotations

import os
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import tomllib

from retriever.errors import ConfigError
from retriever.names import check_name

GOLD_FORMATS = ("auto", "text", "elmb", "tinyagent", "template")


@dataclass(frozen=True)
class GoldSource:
    """Where gold exemplars come from and how a record becomes text.

    Args:
        path: local file or folder (jsonl / json / parquet, optionally .gz/.zst), or a Hub dataset
            id (``org/name`` or ``hf://org/name``).
        format: ``auto`` (ELMB when a record has question/choices/answer, TinyAgent for a JSON
        object
            of {input, output} records, else ``text_field``), or one of ``text``, ``elmb``,
            ``tinyagent``, ``template``.
        text_field: field holding the text for ``format="text"``.
        template: Python format string over record fields for ``format="template"``
            (``"{question}\\n{answer}"``).
        split: Hub split (default ``train``); ``data_files``: Hub files to read (TinyAgent).
        name: label of the source in ids and manifests (default: the file or dataset name).
        optional: skip with a warning when a local path does not exist (sample data).
        limit: read at most this many records (``None``: all).
    """

    path: str
    format: str = "auto"
    text_field: str = "text"
    template: str | None = None
    split: str | None = None
    data_files: tuple[str, ...] = ()
    name: str | None = None
    optional: bool = False
    limit: int | None = None

    def __post_init__(self) -> None:
        if self.format not in GOLD_FORMATS:
            raise ConfigError(
                f"gold source {self.path!r}: format {self.format!r} is not one of {GOLD_FORMATS}"
            )
        if self.format == "template" and not self.template:
            raise ConfigError(
                f"gold source {self.path!r}: format 'template' needs a `template` string"
            )
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"gold source {self.path!r}: limit must be >= 1")

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        p = self.path.rstrip("/")
        if p.startswith("hf://"):
            p = p[5:]
        return Path(p).name.split(".")[0] or p


@dataclass(frozen=True)
class TaskSpec:
    """One task: its name, gold sources, embedding model and FAISS factory string."""

    task: str
    sources: tuple[GoldSource, ...]
    model: str = "sentence-transformers/all-MiniLM-L6-v2"
    factory: str = "Flat"
    description: str = ""
    # keyword prefilter patterns (keywords, or "re:<regex>"); empty: the prefilter's defaults
    patterns: tuple[str, ...] = ()
    # the 0-5 additive rubric of `retriever rate` (one line per point); empty: no rating prompt
    rubric: str = ""
    spec_path: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        check_name(self.task, "task name")
        if not self.sources:
            raise ConfigError(
                f"task {self.task!r} has no gold sources; add [[sources]] or pass --gold"
            )

    def with_sources(self, paths: list[str]) -> TaskSpec:
        """The same task with its sources replaced by ``paths`` (``--gold`` on the command line)."""
        return replace(self, sources=tuple(GoldSource(path=p) for p in paths))


def _type_ok(v: Any, t: Any) -> bool:
    origin = typing.get_origin(t)
    if t is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(v, a) for a in typing.get_args(t))
    if t is type(None):
        return v is None
    if t is bool:
        return isinstance(v, bool)
    if t is int:
        return isinstance(v, int) and not isinstance(v, bool)
    if t is float:
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if t is str:
        return isinstance(v, str)
    if origin in (tuple, list) or t in (tuple, list):
        args = [a for a in typing.get_args(t) if a is not Ellipsis]
        return (
            isinstance(v, (list, tuple)) and all(_type_ok(x, args[0]) for x in v)
            if args
            else isinstance(v, (list, tuple))
        )
    if origin is dict or t is dict:
        return isinstance(v, dict)
    return True  # a type this check does not know: the dataclass checks it


def _type_name(t: Any) -> str:
    if typing.get_origin(t) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(t))
    if t is type(None):
        return "absent"
    if typing.get_origin(t) in (tuple, list):
        return "an array"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        t, getattr(t, "__name__", str(t))
    )


def check_field_types(cls: type, data: dict[str, Any], where: str) -> None:
    """Raise :class:`ConfigError` when a TOML value has the wrong type for ``cls``'s field.

    TOML has types; a quoted number (``limit = "10"``) or a word for a boolean
    (``optional = "no"``, which Python would take as true) is refused with the key named.
    """
    hints = typing.get_type_hints(cls)
    for k, v in data.items():
        t = hints.get(k)
        if t is not None and not _type_ok(v, t):
            raise ConfigError(f"{where}: `{k}` must be {_type_name(t)}, got {v!r}")


def field_default(f: Any) -> Any:
    """The default of dataclass field ``f`` (``MISSING`` when it has none)."""
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


def changed_fields(obj: Any, exclude: Iterable[str] = ()) -> dict[str, Any]:
    """The fields of dataclass ``obj`` set away from their defaults (``exclude`` left out), as
    plain values: what a run step's fingerprint records, so writing a default out in a config, or
    a new option with a default, reruns nothing."""
    out: dict[str, Any] = {}
    skip = set(exclude)
    for f in fields(obj):
        v = getattr(obj, f.name)
        if f.name in skip or not f.init or v == field_default(f):
            continue
        out[f.name] = dict(v) if isinstance(v, Mapping) else list(v) if isinstance(v, tuple) else v
    return out


def _source_from_dict(d: dict[str, Any], base: Path | None, where: str) -> GoldSource:
    known = {f.name for f in fields(GoldSource)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {unknown} in [[sources]]; known: {sorted(known)}"
        )
    check_field_types(GoldSource, d, f"{where} [[sources]]")
    if "path" not in d:
        raise ConfigError(f"{where}: a [[sources]] entry needs `path`")
    d = dict(d)
    path = str(d["path"])
    # local relative paths are relative to the spec file; Hub ids stay as they are
    if base is not None and not path.startswith("hf://") and not os.path.isabs(path):
        cand = base / path
        if cand.exists() or path.startswith((".", "..")):
            path = os.path.normpath(cand)
    d["path"] = path
    if "data_files" in d:
        d["data_files"] = tuple(d["data_files"])
    return GoldSource(**d)


def read_toml(
    path: str | os.PathLike, what: str, hint: str, error: type[Exception] = ConfigError
) -> tuple[Path, dict[str, Any]]:
    """``(path, table)`` of a TOML file; ``error`` (naming ``what`` and ``hint``) when it is missing
    or not TOML."""
    p = Path(path)
    if not p.is_file():
        raise error(f"{what} {p} does not exist; {hint}")
    try:
        return p, tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise error(f"{p} is not valid TOML: {e}") from e


def load_task_spec(path: str | os.PathLike) -> TaskSpec:
    """Read a task spec TOML.

    Raises:
        ConfigError: the file is missing, is not TOML, or has unknown/missing keys.
    """
    p, raw = read_toml(path, "task spec", "see indexes/*.toml for examples")
    known = {f.name for f in fields(TaskSpec)} - {"spec_path"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{p}: unknown key(s) {unknown}; known: {sorted(known)}")
    srcs = raw.get("sources", [])
    if not isinstance(srcs, list):
        raise ConfigError(f"{p}: `sources` must be an array of tables ([[sources]])")
    sources = tuple(_source_from_dict(s, p.parent, str(p)) for s in srcs)
    kw = {k: v for k, v in raw.items() if k != "sources"}
    check_field_types(TaskSpec, kw, str(p))
    kw.setdefault("task", p.stem)
    if "patterns" in kw:
        pats = kw["patterns"]
        if not isinstance(pats, list) or not all(isinstance(x, str) for x in pats):
            raise ConfigError(f"{p}: `patterns` must be an array of strings (keywords or 're:...')")
        kw["patterns"] = tuple(pats)
    return TaskSpec(sources=sources, spec_path=str(p), **kw)


def spec_patterns(specs: Mapping[str, str | os.PathLike]) -> dict[str, tuple[str, ...]]:
    """Each task's keyword-prefilter ``patterns`` from its spec file (``{task: path}``), for the
    specs that exist and have some."""
    out = {}
    for task, path in specs.items():
        if Path(path).is_file():
            pats = load_task_spec(path).patterns
            if pats:
                out[task] = pats
    return out


def find_task_spec(task_or_path: str, indexes_dir: str | os.PathLike = "indexes") -> TaskSpec:
    """A spec by task name (``indexes/<task>.toml``) or by path to a TOML file."""
    if task_or_path.endswith(".toml") or os.sep in task_or_path:
        return load_task_spec(task_or_path)
    p = Path(indexes_dir) / f"{task_or_path}.toml"
    if not p.is_file():
        have = sorted(x.stem for x in Path(indexes_dir).glob("*.toml"))
        raise ConfigError(
            f"no spec for task {task_or_path!r} in {indexes_dir}/ (have: {have or 'none'}); "
            "write one, or pass --gold PATH to build from files"
        )
    return load_task_spec(p)
