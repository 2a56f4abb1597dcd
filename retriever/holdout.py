"""The cross-source split of the shared sample data: which records build indexes, which test them.

Random records of the same file are an easy test (the index has seen their siblings). This split
holds out whole *sources* instead, so a figure measured on it says how a stage does on task data it
has never seen the like of:

======================  ==========================================  ==============================
task                    ``gold`` (indexes, students, panels)        ``heldout`` (never in gold)
======================  ==========================================  ==============================
function-calling        xLAM rows 0-1999 + the TinyAgent examples   the ELMB FunctionCalling set
reasoning               GSM8K rows 0-1199                           the ELMB Reasoning set
roleplay                Socrates, Spartacus, Hermione, M. L. King   Cleopatra and Julius Caesar
rag                     PubMedQA outside oncology                   PubMedQA oncology questions
======================  ==========================================  ==============================

``heldout`` is further cut in two disjoint roles for the evaluation loop: ``eval`` (what a proxy
model is scored on; the ELMB sets where they exist, since they *are* the benchmark) and ``planted``
(records to plant in a corpus, to see whether a selection finds them). For function calling and
reasoning, whose held-out source is the ELMB set itself, ``planted`` comes from the gold source's
unused rows (xLAM 2000-2999, GSM8K 1200-): they are in neither the gold nor the eval set.

The corpus is split the same way: ``train`` (documents a stage may learn from as negatives:
``corpus/``) and ``test`` (distractors no stage has seen: ``corpus_large/``, or, when that folder is
absent, the ClimbLab stream file held out of ``corpus/``).

Record ids are ``<file stem>:<line>``, stable across runs. Nothing here is random except the
``test_corpus_limit`` subsample, which is a seeded hash of the id (the same whatever the order).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from retriever.errors import InputError
from retriever.io import AtomicWriter, write_text_atomic

TASKS = ("function-calling", "reasoning", "roleplay", "rag")
ROLES = ("gold", "heldout", "eval", "planted")
CORPUS_ROLES = ("train", "test")

_ONCOLOGY = re.compile(
    r"cancer|tumou?r|carcinoma|oncolog|chemotherap|metasta|lymphoma|leuka?emia|malignan|neoplas|"
    r"radiotherap|sarcoma|melanoma",
    re.IGNORECASE,
)
# Character-LLM spells some characters two ways; both spellings go to the same side.
_HELDOUT_CHARACTERS = {"Cleopatra": "eval", "Caesar": "planted", "Julius Caesar": "planted"}


def default_data_dir() -> Path:
    """``../shared/data`` beside the repository (or ``$RETRIEVER_SHARED_DATA``)."""
    env = os.environ.get("RETRIEVER_SHARED_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "data"


@dataclass(frozen=True, slots=True)
class Record:
    """One record of the shared data: ``text`` as an embedder or LM sees it, ``raw`` its fields."""

    id: str
    task: str  # a task name, or "corpus"
    source: str  # the file it came from, relative to the data folder
    text: str
    raw: dict = field(repr=False, compare=False, hash=False)


def _read(data_dir: Path, rel: str, task: str) -> list[Record]:
    path = data_dir / rel
    if not path.is_file():
        raise InputError(
            f"shared data file {path} is missing: the cross-source split needs ../shared/data "
            "(set RETRIEVER_SHARED_DATA to its folder)"
        )
    out = []
    with path.open(encoding="utf-8") as f:
        for i, line in enumerate(f):
            if not line.strip():
                continue
            raw = json.loads(line)
            text = raw.get("text")
            if isinstance(text, str) and text.strip():
                out.append(Record(f"{path.stem}:{i}", task, rel, text, raw))
    return out


def _unit_hash(key: str, seed: int) -> float:
    """A number in [0, 1) from ``key`` and ``seed``: the same wherever and whenever it is
    computed."""
    h = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2**64


@dataclass
class HoldoutSplit:
    """Records per (task, role) and corpus documents per role; see the module docstring."""

    data_dir: Path
    tasks: dict[str, dict[str, list[Record]]]
    corpus_docs: dict[str, list[Record]]

    def records(self, task: str, role: str) -> list[Record]:
        if task not in self.tasks:
            raise InputError(f"unknown task {task!r}: the split has {', '.join(self.tasks)}")
        if role not in ROLES:
            raise InputError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
        return self.tasks[task][role]

    def corpus(self, role: str) -> list[Record]:
        if role not in CORPUS_ROLES:
            raise InputError(f"unknown corpus role {role!r}: use one of {', '.join(CORPUS_ROLES)}")
        return self.corpus_docs[role]

    def counts(self) -> dict:
        """``{task: {role: {source: n}}}`` and ``{"corpus": {role: {source: n}}}``."""

        def by_source(recs: list[Record]) -> dict[str, int]:
            out: dict[str, int] = {}
            for r in recs:
                out[r.source] = out.get(r.source, 0) + 1
            return out

        out = {t: {r: by_source(v) for r, v in roles.items()} for t, roles in self.tasks.items()}
        out["corpus"] = {r: by_source(v) for r, v in self.corpus_docs.items()}
        return out

    def check_disjoint(self) -> None:
        """Raise :class:`InputError` if a text is in two roles that must not share it."""
        for task, roles in self.tasks.items():
            gold = {_norm(r.text) for r in roles["gold"]}
            ev = {_norm(r.text) for r in roles["eval"]}
            planted = {_norm(r.text) for r in roles["planted"]}
            for name, other in (("eval", ev), ("planted", planted)):
                if gold & other:
                    raise InputError(f"{task}: {len(gold & other)} {name} texts are also gold")
            if ev & planted:
                raise InputError(f"{task}: {len(ev & planted)} texts are both eval and planted")

    def write(self, out: str | os.PathLike) -> Path:
        """Write ``OUT/<role>/<task>.jsonl`` and ``OUT/corpus/<role>.jsonl`` plus ``manifest.json``.

        Each line is ``{"id", "text", "source", ...raw fields}``, so any stage reads the files as
        gold or corpus. Files are written to ``*.tmp`` and renamed.
        """
        out = Path(out)
        for task, roles in self.tasks.items():
            for role, recs in roles.items():
                _write_jsonl(out / role / f"{task}.jsonl", recs)
        for role, recs in self.corpus_docs.items():
            _write_jsonl(out / "corpus" / f"{role}.jsonl", recs)
        manifest = {"data_dir": str(self.data_dir), "counts": self.counts()}
        write_text_atomic(out / "manifest.json", json.dumps(manifest, indent=2))
        return out


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def _write_jsonl(path: Path, recs: list[Record]) -> None:
    with AtomicWriter(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for r in recs:
            row = {k: v for k, v in r.raw.items() if k != "provenance"}
            row.update(id=r.id, text=r.text, source=r.source)
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _roleplay_character(rec: Record) -> str:
    return str(rec.raw.get("character", ""))


def load_split(
    data_dir: str | os.PathLike | None = None,
    *,
    test_corpus_limit: int | None = None,
    seed: int = 0,
) -> HoldoutSplit:
    """Read the shared data and split it by source (see the module docstring).

    Args:
        data_dir: the shared ``data`` folder; default :func:`default_data_dir`.
        test_corpus_limit: keep at most this many ``test`` corpus documents (the ones with the
            smallest seeded hash of their id), to bound the cost of an evaluation.
        seed: seed of that subsample.

    Raises:
        InputError: a file of the shared data is missing.
    """
    d = Path(data_dir) if data_dir is not None else default_data_dir()
    if not d.is_dir():
        raise InputError(
            f"shared data folder {d} not found (set RETRIEVER_SHARED_DATA to ../shared/data)"
        )
    tasks: dict[str, dict[str, list[Record]]] = {t: {r: [] for r in ROLES} for t in TASKS}

    fc = "function-calling"
    xlam = _read(d, "gold/function_calling/xlam_3k.jsonl", fc)
    tasks[fc]["gold"] = xlam[:2000] + _read(
        d, "gold/function_calling/tinyagent_prompt_examples.jsonl", fc
    )
    tasks[fc]["planted"] = xlam[2000:]
    elmb_fc = _read(d, "gold/function_calling/elmb_functioncalling_validation.jsonl", fc)
    tasks[fc]["eval"] = elmb_fc
    tasks[fc]["heldout"] = list(elmb_fc)

    gsm = _read(d, "gold/reasoning/gsm8k_train.jsonl", "reasoning")
    tasks["reasoning"]["gold"] = gsm[:1200]
    tasks["reasoning"]["planted"] = gsm[1200:]
    elmb_r = _read(d, "gold/reasoning/elmb_reasoning_validation.jsonl", "reasoning")
    tasks["reasoning"]["eval"] = elmb_r
    tasks["reasoning"]["heldout"] = list(elmb_r)

    for rec in _read(d, "gold/roleplay/character_llm.jsonl", "roleplay"):
        role = _HELDOUT_CHARACTERS.get(_roleplay_character(rec), "gold")
        tasks["roleplay"][role].append(rec)
        if role != "gold":
            tasks["roleplay"]["heldout"].append(rec)

    for rec in _read(d, "gold/rag/pubmedqa_pqal.jsonl", "rag"):
        ctx = rec.raw.get("contexts") or []
        body = rec.raw.get("question", "") + " " + " ".join(map(str, ctx))
        if not _ONCOLOGY.search(body):
            tasks["rag"]["gold"].append(rec)
            continue
        tasks["rag"]["heldout"].append(rec)
        # eval / planted: half each of the held-out topic, by a stable hash of the id
        tasks["rag"]["eval" if _unit_hash(rec.id, 0) < 0.5 else "planted"].append(rec)

    corpus_dir = d / "corpus"
    train = [
        r
        for p in sorted(corpus_dir.glob("*.jsonl"))
        for r in _read(d, f"corpus/{p.name}", "corpus")
    ]
    large = sorted((d / "corpus_large").glob("*.jsonl")) if (d / "corpus_large").is_dir() else []
    if large:
        test = [r for p in large for r in _read(d, f"corpus_large/{p.name}", "corpus")]
    else:
        held = "climblab_stream_first1000.jsonl"
        test = [r for r in train if r.source.endswith(held)]
        train = [r for r in train if not r.source.endswith(held)]
    if test_corpus_limit is not None and len(test) > test_corpus_limit:
        test = sorted(test, key=lambda r: _unit_hash(r.id, seed))[:test_corpus_limit]
    split = HoldoutSplit(d, tasks, {"train": train, "test": test})
    split.check_disjoint()
    return split


def iter_texts(records: list[Record]) -> Iterator[str]:
    """The texts of ``records``, in order."""
    return (r.text for r in records)
