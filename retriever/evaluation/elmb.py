"""The four ELMB tasks: names, the shipped lm-eval task configs, and local evaluation files.

Each task is defined once, by the challenge's lm-evaluation-harness YAML shipped in
``retriever/evaluation/tasks/`` (multiple choice, ``acc`` / ``acc_norm``, prompt
``"Question: {question}\\nAnswer:"``, ChatRAG ``"Context: {ctx}\\nQuestion: {question}\\nAnswer:"``,
target ``answer``, choices ``choices``, Hub dataset ``data4elm/ELMB-*`` split ``train``). Offline,
the same task reads a local jsonl file of records with the same fields.

Local files (:func:`local_eval_sets`): function calling and reasoning are the ELMB validation sets
of the shared data (they *are* the benchmark); roleplay and RAG have no ELMB file offline, so
multiple-choice sets are **derived** from the held-out records of :mod:`retriever.holdout`
(right answer vs the answers of three other held-out records): a stand-in, not the benchmark.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from retriever.errors import ConfigError, InputError
from retriever.io import AtomicWriter, read_json, write_json_atomic

TASK_DIR = Path(__file__).resolve().parent / "tasks"
N_CHOICES = 4  # right answer + 3 distractors in the derived sets
MAX_ANSWER_CHARS = 160  # derived answers are cut (at a word) so tiny byte-level proxies fit them


@dataclass(frozen=True)
class ElmbTask:
    """One ELMB task: our name, the lm-eval task name and its Hub dataset."""

    name: str
    harness: str
    hub: str
    has_ctx: bool = False

    @property
    def yaml(self) -> Path:
        return TASK_DIR / f"{self.harness}.yaml"


TASKS: dict[str, ElmbTask] = {
    "function-calling": ElmbTask(
        "function-calling", "elmb_functioncalling", "data4elm/ELMB-FunctionCalling"
    ),
    "reasoning": ElmbTask("reasoning", "elmb_reasoning", "data4elm/ELMB-Reasoning"),
    "roleplay": ElmbTask("roleplay", "elmb_roleplay", "data4elm/ELMB-RolePlay"),
    "rag": ElmbTask("rag", "elmb_chatrag", "data4elm/ELMB-ChatRAG", has_ctx=True),
}


def get_task(name: str) -> ElmbTask:
    """Our task name (``function-calling``) or the harness's (``elmb_functioncalling``)."""
    for t in TASKS.values():
        if name in (t.name, t.harness):
            return t
    raise ConfigError(f"unknown evaluation task {name!r}; use one of {sorted(TASKS)}")


def prompt(rec: dict[str, Any], task: ElmbTask) -> str:
    """The task's ``doc_to_text`` (the decontamination query too)."""
    q = f"Question: {rec['question']}\nAnswer:"
    return f"Context: {rec.get('ctx', '')}\n{q}" if task.has_ctx else q


def record_text(rec: dict[str, Any], task: ElmbTask) -> str:
    """Prompt plus the right answer, as lm-eval joins them (``target_delimiter`` = one space)."""
    return prompt(rec, task) + " " + str(rec["choices"][int(rec["answer"])])


def iter_eval_jsonl(path: str | os.PathLike):
    """``(line number from 0, record)`` of a jsonl evaluation file, blank lines skipped.

    Raises:
        InputError: the file is missing, or a line is not JSON (named by its number).
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"evaluation file {p} does not exist")
    with open(p, "rb") as fh:
        for i, line in enumerate(fh):
            if not line.strip():
                continue
            try:
                yield i, orjson.loads(line)
            except orjson.JSONDecodeError as e:
                raise InputError(f"{p} line {i + 1} is not JSON ({e})") from e


def read_mc_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Multiple-choice records (``question``, ``choices``, ``answer``) of a jsonl file.

    Raises:
        InputError: missing file, a line that is not JSON, or a record without the fields.
    """
    p = Path(path)
    out = []
    for i, rec in iter_eval_jsonl(p):
        ok = (
            isinstance(rec, dict)
            and isinstance(rec.get("choices"), list)
            and isinstance(rec.get("answer"), int)
            and 0 <= rec["answer"] < len(rec["choices"])
            and isinstance(rec.get("question"), str)
        )
        if not ok:
            raise InputError(
                f"{p} line {i + 1}: an evaluation record needs question, choices "
                "(list) and answer (index into choices)"
            )
        out.append(rec)
    if not out:
        raise InputError(f"evaluation file {p} holds no record")
    return out


# -- derived multiple-choice sets (roleplay, RAG) --------------------------------------------------
_TURN = re.compile(r"^\s*([^\n:]{1,80}?)\s*\(speaking\):\s*(.+)$")


def roleplay_qa(text: str) -> tuple[str, str] | None:
    """First interviewer turn and the character's reply of a Character-LLM transcript."""
    turns = []
    for line in text.splitlines():
        m = _TURN.match(line)
        if m:
            turns.append((m.group(1), m.group(2).strip()))
        elif turns and line.strip():
            turns[-1] = (turns[-1][0], turns[-1][1] + " " + line.strip())
        if len(turns) >= 2:
            break
    if len(turns) < 2 or turns[0][0] == turns[1][0] or not turns[0][1] or not turns[1][1]:
        return None
    return f"{turns[0][0]}: {turns[0][1]}", turns[1][1]


def clip_answer(text: str, limit: int = MAX_ANSWER_CHARS) -> str:
    """``text`` cut at the last word boundary before ``limit`` characters."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return cut or text[:limit]


def derive_mc(items: list[dict[str, Any]], seed: int = 0) -> list[dict[str, Any]]:
    """Multiple choice from ``{"id", "question", "answer_text"[, "ctx"]}`` items.

    The choices are the item's own answer and the answers of ``N_CHOICES - 1`` other items (seeded
    by the item id, so the set does not depend on the order of the input); the right one sits at a
    seeded position.
    """
    items = sorted(items, key=lambda it: str(it["id"]))  # the same set whatever the input order
    answers = [it["answer_text"] for it in items]
    out = []
    for i, it in enumerate(items):
        h = int.from_bytes(
            hashlib.blake2b(f"{seed}:{it['id']}".encode(), digest_size=8).digest(), "big"
        )
        rng = np.random.default_rng(h)
        others = [j for j in range(len(items)) if j != i and answers[j] != answers[i]]
        if len(others) < N_CHOICES - 1:
            continue
        picks = [answers[j] for j in rng.choice(others, size=N_CHOICES - 1, replace=False)]
        pos = int(rng.integers(0, N_CHOICES))
        choices = picks[:pos] + [it["answer_text"]] + picks[pos:]
        rec = {
            "id": it["id"],
            "question": it["question"],
            "choices": choices,
            "answer": pos,
            "derived": True,
        }
        if "ctx" in it:
            rec["ctx"] = it["ctx"]
        out.append(rec)
    return out


def _roleplay_items(records) -> list[dict[str, Any]]:
    items = []
    for r in records:
        qa = roleplay_qa(r.text)
        if qa:
            items.append({"id": r.id, "question": qa[0], "answer_text": clip_answer(qa[1])})
    return items


def _rag_items(records) -> list[dict[str, Any]]:
    items = []
    for r in records:
        raw = r.raw
        ctx = " ".join(map(str, raw.get("contexts") or []))
        if raw.get("question") and raw.get("long_answer") and ctx:
            items.append(
                {
                    "id": r.id,
                    "question": raw["question"],
                    "answer_text": clip_answer(raw["long_answer"]),
                    "ctx": ctx,
                }
            )
    return items


def local_eval_sets(
    out_dir: str | os.PathLike, data_dir: str | os.PathLike | None = None, seed: int = 0
) -> dict[str, Path]:
    """Write the four tasks' local evaluation files (``OUT/<task>.jsonl``) from the shared data.

    The records are the ``eval`` role of :func:`retriever.holdout.load_split` (never index gold):
    the ELMB validation sets for function calling and reasoning, derived multiple-choice sets for
    roleplay (Cleopatra interviews) and RAG (half of the PubMedQA oncology questions). Each record
    keeps ``question``, ``choices``, ``answer`` (and ``ctx``), plus ``text`` = prompt + right
    answer. Reused when ``OUT/manifest.json`` says they were made from the same inputs.

    Returns:
        task -> jsonl path.

    Raises:
        InputError: the shared data is missing.
    """
    from retriever.holdout import load_split
    from retriever.manifest import paths_fingerprint

    split = load_split(data_dir)
    sources = sorted({r.source for t in TASKS for r in split.records(t, "eval")})
    settings = {
        "data": paths_fingerprint([str(split.data_dir / s) for s in sources]),
        "seed": seed,
        "n_choices": N_CHOICES,
        "max_answer_chars": MAX_ANSWER_CHARS,
        "version": 2,
    }
    out = Path(out_dir)
    paths = {t: out / f"{t}.jsonl" for t in TASKS}
    man = out / "manifest.json"
    if (
        man.is_file()
        and read_json(man).get("settings") == settings
        and all(p.is_file() for p in paths.values())
    ):
        return paths
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name, task in TASKS.items():
        recs = split.records(name, "eval")
        if name == "roleplay":
            rows = derive_mc(_roleplay_items(recs), seed)
        elif name == "rag":
            rows = derive_mc(_rag_items(recs), seed)
        else:
            rows = [
                {
                    "id": r.id,
                    "question": r.raw["question"],
                    "choices": list(r.raw["choices"]),
                    "answer": int(r.raw["answer"]),
                }
                for r in recs
            ]
        for row in rows:
            row["text"] = record_text(row, task)
        with AtomicWriter(paths[name]) as tmp, open(tmp, "wb") as fh:
            for row in rows:
                fh.write(orjson.dumps(row) + b"\n")
        counts[name] = {
            "records": len(rows),
            "from": len(recs),
            "derived": name in ("roleplay", "rag"),
        }
    write_json_atomic(man, {"settings": settings, "counts": counts})
    return paths


def default_eval_dir() -> Path:
    """Where :func:`local_eval_sets` writes by default: ``$RETRIEVER_EVAL_DIR`` or a user cache."""
    env = os.environ.get("RETRIEVER_EVAL_DIR")
    if env:
        return Path(env)
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "retriever" / "elmb_local"
