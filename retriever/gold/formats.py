"""How one gold record becomes one text, per source format.

Each formatter takes a record (dict) and returns the text, or ``None`` when the record does not have
what the format needs (the loader then rejects it as ``no_text``).
"""

from __future__ import annotations

import ast
from typing import Any

import orjson


def _as_list(v: Any) -> list | None:
    """ELMB ``choices`` arrive as a list, or as its JSON / Python repr string in some exports."""
    if isinstance(v, list):
        return v
    if isinstance(v, str):
        for parse in (orjson.loads, ast.literal_eval):
            try:
                out = parse(v)
            except (ValueError, SyntaxError, orjson.JSONDecodeError):
                continue
            if isinstance(out, list):
                return out
    return None


def elmb_prompt(rec: dict) -> str | None:
    """The ELMB prompt of a record, as lm-eval renders it (ChatRAG adds the context)."""
    q = rec.get("question")
    if not isinstance(q, str) or not q.strip():
        return None
    ctx = rec.get("ctx")
    if isinstance(ctx, str) and ctx.strip():
        return f"Context: {ctx}\nQuestion: {q}\nAnswer:"
    return f"Question: {q}\nAnswer:"


def elmb_choices(rec: dict) -> tuple[list[str], int] | None:
    """``(choices, index of the right one)`` of an ELMB multiple-choice record, or ``None``."""
    choices = _as_list(rec.get("choices"))
    try:
        answer = int(rec["answer"])
    except (KeyError, TypeError, ValueError):
        return None
    if not choices or not 0 <= answer < len(choices):
        return None
    return [str(c) for c in choices], answer


def elmb_text(rec: dict) -> str | None:
    """ELMB multiple choice: the prompt followed by the correct choice (what a model should
    learn)."""
    prompt = elmb_prompt(rec)
    mc = elmb_choices(rec)
    if prompt is None or mc is None:
        return None
    choices, answer = mc
    return f"{prompt} {choices[answer]}"


def tinyagent_text(rec: dict) -> str | None:
    """TinyAgent: the user query, then the plan steps' numbered calls (``1.
    get_email_address(...)``).

    The planner prompt (``raw_input``) is left out: it repeats the same tool list in every record
    and would make every exemplar look alike to an embedder.
    """
    query = rec.get("input")
    if not isinstance(query, str) or not query.strip():
        return None
    parts = [f"Question: {query}"]
    steps = rec.get("output")
    if isinstance(steps, list):
        for step in steps:
            if isinstance(step, dict) and step.get("type") in ("plan", "replan"):
                out = step.get("raw_output")
                if isinstance(out, str) and out.strip():
                    parts.append(out.strip())
    return "\n".join(parts)


def is_elmb(rec: dict) -> bool:
    return "question" in rec and "choices" in rec and "answer" in rec


def is_tinyagent(rec: dict) -> bool:
    return "input" in rec and isinstance(rec.get("output"), list)


def format_record(
    rec: Any, fmt: str, text_field: str = "text", template: str | None = None
) -> str | None:
    """Text of ``rec`` under format ``fmt`` (see :class:`retriever.config.GoldSource`)."""
    if not isinstance(rec, dict):
        return None
    if fmt == "auto":
        fmt = "elmb" if is_elmb(rec) else "tinyagent" if is_tinyagent(rec) else "text"
    if fmt == "elmb":
        return elmb_text(rec)
    if fmt == "tinyagent":
        return tinyagent_text(rec)
    if fmt == "template":
        try:
            return template.format(**rec) if template else None
        except (KeyError, IndexError, ValueError):
            return None
    v = rec.get(text_field)
    return v if isinstance(v, str) else None
