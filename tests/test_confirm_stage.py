"""End to end: a real tiny panel trained here, scorecard, ``retriever confirm`` labels, score
folders.

The panel: 5 byte-level GPT-2 models, each trained for seconds on its own share of task text
(function-calling records from ../shared/data when present, synthetic ones otherwise) and generic
text. The test asserts that held-out task documents get clearly higher correlations than generic
documents, and that the labels follow docs/contracts.md.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import numpy as np
import orjson
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pq = pytest.importorskip("pyarrow.parquet")

from retriever.cli import main  # noqa: E402
from retriever.confirm.tiny_panel import build_tiny_panel, synthetic_corpora  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RETRIEVER_SHARED_DATA", REPO.parent / "shared" / "data"))
TASK = "function-calling"
LABEL_COLUMNS = [
    "id",
    "text",
    "task",
    "similarity",
    "correlation",
    "label",
    "reason",
    "shard",
    "row",
    "source",
]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _jsonl(path: Path, rows: list[dict]) -> Path:
    with open(path, "wb") as fh:
        for r in rows:
            fh.write(orjson.dumps(r) + b"\n")
    return path


def _read_texts(path: Path, n: int, skip: int = 0, clip: int = 1200) -> list[str]:
    out = []
    with open(path, "rb") as fh:
        for i, line in enumerate(fh):
            if i < skip:
                continue
            out.append(orjson.loads(line)["text"][:clip])
            if len(out) == n:
                break
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    """Training texts, and a test corpus of held-out task documents and other generic documents."""
    d = tmp_path_factory.mktemp("confirm_data")
    if (SHARED / "gold").is_dir():
        xlam = SHARED / "gold" / "function_calling" / "xlam_3k.jsonl"
        gold = _read_texts(xlam, 200)
        generic = _read_texts(SHARED / "corpus" / "climblab_stream_first1000.jsonl", 200)
        test_task = _read_texts(xlam, 12, skip=2500)
        test_generic = _read_texts(
            SHARED / "corpus" / "wikitext2_articles.jsonl", 6, clip=800
        ) + _read_texts(SHARED / "corpus" / "climblab_clusters_sample.jsonl", 6, clip=800)
    else:
        c = synthetic_corpora(240, seed=0)
        gold, generic = c["task"][:200], c["generic"][:200]
        test_task, test_generic = c["task"][200:212], c["generic"][200:212]
    rows = [{"id": f"task-{i}", "text": t} for i, t in enumerate(test_task)]
    rows += [{"id": f"generic-{i}", "text": t} for i, t in enumerate(test_generic)]
    corpus = _jsonl(d / "corpus.jsonl", rows)
    with open(corpus, "ab") as fh:
        fh.write(b"this line is not json\n")
    return {
        "gold": _jsonl(d / "gold.jsonl", [{"text": t} for t in gold]),
        "generic": _jsonl(d / "generic.jsonl", [{"text": t} for t in generic]),
        "corpus": corpus,
        "n_task": len(test_task),
        "n_generic": len(test_generic),
    }


@pytest.fixture(scope="module")
def panel(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny_panel")
    build_tiny_panel(
        out,
        gold=[str(data["gold"])],
        generic=[str(data["generic"])],
        task=TASK,
        holdout=0.2,
        n_models=5,
        steps=70,
        seed=0,
    )
    return out / "panel.toml"


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


def _confirm(models, docs, out, *argv) -> tuple[int, str, str]:
    """``retriever confirm --models MODELS --docs DOCS --out OUT ARGV...``"""
    return _cli("confirm", "--models", models, "--docs", docs, "--out", out, *argv)


@pytest.mark.slow
def test_tiny_panel_loads_with_auto_classes_and_its_task_skill_grows_with_the_task_share(panel):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    info = orjson.loads((panel.parent / "tiny_panel.json").read_bytes())
    share = [m["mix"]["task"] for m in info["models"]]
    score = [m["score"] for m in info["models"]]
    from scipy.stats import spearmanr

    assert spearmanr(share, score)[0] >= 0.7, (share, score)
    m = AutoModelForCausalLM.from_pretrained(panel.parent / "tiny-0")
    tok = AutoTokenizer.from_pretrained(panel.parent / "tiny-0")
    assert m.config.vocab_size == 258 and tok("ab", add_special_tokens=False)["input_ids"] == [
        97,
        98,
    ]


@pytest.mark.slow
def test_confirm_labels_task_documents_positive_and_generic_ones_negative(panel, data, tmp_path):
    out = tmp_path / "out"
    rc, stdout, _ = _confirm(
        panel,
        data["corpus"],
        out,
        "--json",
        "--device",
        "cpu",
        "--block-docs",
        "7",
    )
    assert rc == 0, stdout
    summary = orjson.loads(stdout)
    table = pq.read_table(out / "labels" / f"{TASK}.parquet")
    assert table.column_names == LABEL_COLUMNS
    assert [str(t) for t in table.schema.types] == [
        "string",
        "string",
        "string",
        "double",
        "double",
        "string",
        "string",
        "string",
        "int64",
        "string",
    ]
    rows = table.to_pylist()
    # the source column says what each row is to the student (a plain corpus: all candidates)
    src_of = {"positive": "confirmed", "negative": "hard-negative", "uncertain": "candidate"}
    assert all(r["source"] == src_of[r["label"]] for r in rows)
    n = data["n_task"] + data["n_generic"]
    assert len(rows) == n and all(r["task"] == TASK for r in rows)
    assert all(r["reason"].startswith(r["label"] + ":") for r in rows)
    corr = {r["id"]: r["correlation"] for r in rows}
    task_c = np.array([v for k, v in corr.items() if k.startswith("task-")])
    gen_c = np.array([v for k, v in corr.items() if k.startswith("generic-")])
    assert task_c.mean() > gen_c.mean() + 0.5, (task_c, gen_c)
    labels = {r["id"]: r["label"] for r in rows}
    assert (
        sum(labels[f"task-{i}"] == "positive" for i in range(data["n_task"]))
        >= 0.75 * data["n_task"]
    )
    assert (
        sum(labels[f"generic-{i}"] == "positive" for i in range(data["n_generic"]))
        <= 0.25 * data["n_generic"]
    )
    # every document in is accounted for: labelled, or rejected and written aside
    assert summary["docs"] == {"in": n + 1, "unique": n, "rejected": {"bad_json": 1}}
    assert sum(summary["tasks"][TASK]["labels"].values()) == n
    assert (
        summary["tasks"][TASK]["balanced"]
        and summary["tasks"][TASK]["stats"]["rejected/bad_json"] == 1
    )
    rej = [orjson.loads(x) for x in (out / "rejected.jsonl").read_bytes().splitlines()]
    assert [r["reason"] for r in rej] == ["bad_json"]
    corr_tbl = pq.read_table(out / "correlations" / f"{TASK}.parquet").to_pydict()
    assert set(corr_tbl) >= {"spearman", "concordance", "sign_cdf", "weight_linear", "weight_l2"}
    assert sum(corr_tbl["weight_linear"]) == pytest.approx(1.0)

    # re-thresholding reuses the BPB cache: no model computes anything, labels follow the new rule
    rc, stdout, _ = _confirm(
        panel,
        data["corpus"],
        out,
        "--json",
        "--device",
        "cpu",
        "--positive-min",
        "0.95",
        "--negative-max",
        "0.5",
    )
    assert rc == 0
    again = orjson.loads(stdout)
    assert all(m["computed"] == 0 for m in again["bpb"]["models"].values())
    rows2 = pq.read_table(out / "labels" / f"{TASK}.parquet").to_pylist()
    for r in rows2:
        want = (
            "positive"
            if r["correlation"] >= 0.95
            else "negative"
            if r["correlation"] <= 0.5
            else "uncertain"
        )
        assert r["label"] == want


@pytest.mark.slow
def test_confirm_reads_a_score_folder_candidates_and_random_negatives(
    panel, data, tmp_path, embedder
):
    pytest.importorskip("faiss")
    from retriever.index import build_index
    from retriever.score import score_corpus

    idx = tmp_path / "idx"
    build_index(TASK, gold=[str(data["gold"])], indexes_dir=tmp_path, out=idx, embedder=embedder)
    scores = tmp_path / "scores"
    score_corpus(
        [str(idx)], [str(data["corpus"])], scores, top_fraction=0.5, store=None, batch_size=8
    )
    out = tmp_path / "out"
    rc, stdout, _ = _confirm(
        panel,
        scores,
        out,
        "--json",
        "--top-fraction",
        "0.4",
        "--negatives-per-positive",
        "0.5",
        "--device",
        "cpu",
    )
    assert rc == 0, stdout
    info = orjson.loads(stdout)["tasks"][TASK]
    sims = np.sort(pq.read_table(scores / "scores").column(f"score_{TASK}").to_numpy())[::-1]
    k = int(
        (sims >= sims[int(np.ceil(0.4 * len(sims))) - 1]).sum()
    )  # top 40%, ties at the cut kept
    assert info["candidates"] == k and info["random_negatives"] == round(0.5 * k)
    rows = pq.read_table(out / "labels" / f"{TASK}.parquet").to_pylist()
    cands = [r for r in rows if "random non-candidate" not in r["reason"]]
    rand = [r for r in rows if "random non-candidate" in r["reason"]]
    assert len(cands) == k and len(rand) == round(0.5 * k)
    assert min(r["similarity"] for r in cands) >= max(r["similarity"] for r in rand)
    assert all(r["label"] == "negative" and np.isnan(r["correlation"]) for r in rand)
    assert all(np.isfinite(r["correlation"]) for r in cands)
    assert all(r["shard"] and r["row"] >= 0 for r in rows)
    # the BPB was computed for the candidates only
    assert pq.read_table(out / "bpb" / "matrix.parquet").num_rows == k


@pytest.mark.slow
def test_cli_errors_say_what_to_do(panel, data, tmp_path):
    rc, _, err = _confirm(
        panel,
        data["corpus"],
        tmp_path / "o",
        "--tasks",
        "roleplay",
    )
    assert rc == 2 and "scorecard" in err
    rc, _, err = _cli("confirm", "--models", panel, "--out", tmp_path / "o")
    assert rc == 2 and "--docs" in err
    rc, _, err = _confirm(
        tmp_path / "none.toml",
        data["corpus"],
        tmp_path / "o",
    )
    assert rc == 2 and "does not exist" in err
    rc, _, err = _confirm(
        panel,
        data["corpus"],
        tmp_path / "o",
        "--positive-min",
        "0.1",
        "--negative-max",
        "0.3",
    )
    assert rc == 2 and "below positive_min" in err


@pytest.mark.slow
def test_scorecard_cli_on_multiple_choice_gold(panel, tmp_path):
    gold = _jsonl(
        tmp_path / "mc.jsonl",
        [
            {
                "question": "Which call gets the weather in Paris?",
                "choices": ['get_weather(city="Paris")', "the river valley was settled"],
                "answer": 0,
            },
            {
                "question": "Pick the tool call",
                "choices": ["bridge monks abbey", 'send_email(to="a")'],
                "answer": 1,
            },
            {"question": "broken record", "choices": ["a"], "answer": 5},
        ],
    )
    out = tmp_path / "scores.csv"
    rc, stdout, _ = _cli(
        "confirm",
        "scorecard",
        "--models",
        panel,
        "--task",
        "mc-task",
        "--gold",
        gold,
        "--out",
        out,
        "--json",
        "--device",
        "cpu",
    )
    assert rc == 0
    rep = orjson.loads(stdout)
    assert rep["kind"] == "multiple_choice" and rep["records"] == 2 and rep["skipped"] == 1
    from retriever.confirm.panel import load_scores

    scores = load_scores(out)
    assert {s.metric for s in scores} == {"acc", "acc_norm"} and len(scores) == 10
    assert all(s.score in (0.0, 0.5, 1.0) for s in scores)
