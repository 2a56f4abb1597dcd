"""build-dataset: budgeted selection (pure core against a brute-force reference), pools, token
counting, outputs, resume after a failure, and the errors a user meets."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from retriever.cli import main as cli_main
from retriever.dataset import (
    Candidates,
    DatasetBuilder,
    TokenCounter,
    discover_pools,
    parse_budget,
    parse_mixture,
    read_pool_shard,
    select_budgeted,
    split_budget,
)
from retriever.dataset.select import id_key, rank, text_key
from retriever.errors import ConfigError, InputError, OutputError, ResumeError
from retriever.stats import Stats
from retriever.tokens import estimate_tokens

REPO = Path(__file__).resolve().parents[1]


# -- helpers ---------------------------------------------------------------------------------------
def cands(tokens, scores, ids=None, texts=None) -> Candidates:
    n = len(tokens)
    ids = ids or [f"d{i}" for i in range(n)]
    texts = texts or [f"text of {i}" for i in ids]
    return Candidates(
        n_tokens=np.asarray(tokens, dtype=np.int64),
        score=np.asarray(scores, dtype=np.float64),
        id_hash=np.asarray([id_key(i) for i in ids], dtype=np.uint64),
        text_hash=np.asarray([text_key(t) for t in texts], dtype=np.uint64),
    )


def write_pool(path: Path, task: str, recs: list[dict], key: str = "prob_{task}") -> Path:
    """A pool shard in the filter stage's layout (jsonl.gz or parquet); ``key``: the score's
    metadata key (``prob/{task}``: a pool written before the one naming scheme)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [
        {
            "id": r["id"],
            "text": r["text"],
            "metadata": {
                "shard": r.get("shard", "corpus_0"),
                "row": i,
                key.format(task=task): r["p"],
                **({"cluster_id": r["cluster"]} if "cluster" in r else {}),
                **({"token_count": r["tc"]} if "tc" in r else {}),
            },
        }
        for i, r in enumerate(recs)
    ]
    if path.name.endswith(".parquet"):
        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        with gzip.open(path, "wb") as fh:
            for r in rows:
                fh.write(orjson.dumps(r) + b"\n")
    return path


def make_pools(root: Path, key: str = "prob_{task}") -> Path:
    """Two tasks; 'shared-*' documents sit in both pools; texts say which task and rank they are.

    Token counts come from ``token_count`` (10 per doc, 40 for 'fc-long') so budgets are exact.
    ``key``: the score's metadata key (see :func:`write_pool`).
    """
    fc = [
        {
            "id": f"fc-{i}",
            "text": f"function call example {i}",
            "p": 1 - i / 40,
            "cluster": i % 3,
            "tc": 10,
        }
        for i in range(30)
    ]
    fc[5] = {
        "id": "fc-long",
        "text": "a long function call document",
        "p": 0.99,
        "cluster": 0,
        "tc": 40,
    }
    rp = [
        {"id": f"rp-{i}", "text": f"roleplay dialogue {i}", "p": 1 - i / 40, "cluster": 7, "tc": 10}
        for i in range(30)
    ]
    shared = [
        {"id": f"shared-{i}", "text": f"shared document {i}", "p": 0.995, "cluster": 1, "tc": 10}
        for i in range(3)
    ]
    write_pool(root / "function-calling" / "s0.jsonl.gz", "function-calling", shared + fc[:15], key)
    write_pool(root / "function-calling" / "s1.parquet", "function-calling", fc[15:], key)
    write_pool(root / "roleplay" / "s0.jsonl.gz", "roleplay", rp[:10] + shared, key)
    write_pool(root / "roleplay" / "s1.jsonl.gz", "roleplay", rp[10:], key)
    (root / "manifest.json").write_text("{}")  # the filter's manifest is not a pool
    (root / "logs").mkdir()
    (root / "logs" / "stats.json").write_text("{}")
    return root


def read_lmflow(out: Path) -> list[str]:
    texts = []
    for f in sorted((out / "lmflow").glob("part_*.json")):
        d = json.loads(f.read_text())
        assert d["type"] == "text_only"
        texts.extend(x["text"] for x in d["instances"])
    return texts


def read_parquet_parts(out: Path) -> pa.Table:
    return pa.concat_tables(
        [pq.read_table(f) for f in sorted((out / "parquet").glob("part_*.parquet"))]
    )


# -- the pure selection core -----------------------------------------------------------------------
def test_the_dataset_config_and_its_cli_load_no_numpy():
    """DatasetConfig's orders and tiers live with it: the CLI parser and the run config read it
    at start-up without the selection core's numpy (or pyarrow)."""
    code = (
        "import sys, retriever.dataset.config, retriever.dataset.cli; "
        "print(sorted(m for m in ('numpy', 'pyarrow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_the_package_gives_parse_budget_and_the_config_without_pyarrow():
    """``retriever.dataset``'s lazy names come from the module each lives in: parse_budget and
    DatasetConfig from the light config module, not through the builder's pyarrow."""
    code = (
        "import sys; from retriever.dataset import DatasetConfig, parse_budget; "
        "assert parse_budget('2k') == 2000; "
        "print(sorted(m for m in ('numpy', 'pyarrow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_top_order_takes_highest_scores_and_never_exceeds_budget():
    c = cands([10, 10, 10, 10, 10], [0.1, 0.9, 0.5, np.nan, 0.7])
    sel = select_budgeted({"a": c}, {"a": 30})
    p = sel.pools["a"]
    assert p.selected.tolist() == [1, 4, 2]  # 0.9, 0.7, 0.5
    assert p.tokens == 30 and p.shortfall == 0
    assert sorted(p.budget_dropped.tolist()) == [0, 3]  # NaN score ranks last


def test_pool_stops_at_first_document_that_would_overflow():
    # the 50-token doc ranks second: the pool stops there rather than skipping to smaller docs
    c = cands([10, 50, 10, 10], [0.9, 0.8, 0.7, 0.6])
    p = select_budgeted({"a": c}, {"a": 40}).pools["a"]
    assert p.selected.tolist() == [0]
    assert p.tokens == 10 and p.shortfall == 30
    assert p.budget_dropped.tolist() == [1, 2, 3]


@pytest.mark.parametrize("seed,block", [(0, 5), (1, 17), (2, 1 << 16), (3, 5), (4, 17)])
def test_single_pool_matches_brute_force_prefix(seed, block, monkeypatch):
    from retriever.dataset.select import _Cursor

    monkeypatch.setattr(_Cursor, "BLOCK", block)  # awkward block sizes: same result
    rng = np.random.default_rng(seed)
    n = 200
    tokens = rng.integers(1, 60, n)
    scores = rng.random(n)
    budget = int(rng.integers(100, 3000))
    p = select_budgeted({"a": cands(tokens, scores)}, {"a": budget}).pools["a"]
    order = np.argsort(-scores, kind="stable")
    cum = np.cumsum(tokens[order])
    expect = order[: int(np.searchsorted(cum, budget, side="right"))]
    assert p.selected.tolist() == expect.tolist()
    assert p.tokens == int(tokens[expect].sum()) <= budget


def test_document_in_two_pools_goes_in_once_and_records_the_taker():
    texts = ["Shared doc", "only in a", "only in b"]
    a = cands([10, 10], [0.9, 0.5], ids=["x", "a1"], texts=[texts[0], texts[1]])
    # same normalized text under another id: still a duplicate
    b = cands([10, 10], [0.9, 0.5], ids=["y", "b1"], texts=["  shared   DOC ", texts[2]])
    sel = select_budgeted({"a": a, "b": b}, {"a": 100, "b": 100})
    assert sel.pools["a"].selected.tolist() == [0, 1]
    assert sel.pools["b"].selected.tolist() == [1]
    assert sel.pools["b"].duplicates.tolist() == [0]
    assert sel.pools["b"].duplicate_of == ["a"]


def test_pools_take_turns_so_a_shared_document_does_not_starve_one_pool():
    # both pools rank the same 4 shared docs first; turn-taking splits them 2/2
    ids = [f"s{i}" for i in range(4)]
    a = cands([10] * 4, [0.9, 0.8, 0.7, 0.6], ids=ids)
    b = cands([10] * 4, [0.9, 0.8, 0.7, 0.6], ids=ids)
    sel = select_budgeted({"a": a, "b": b}, {"a": 20, "b": 20})
    got = sorted(sel.pools["a"].selected.tolist() + sel.pools["b"].selected.tolist())
    assert got == [0, 1, 2, 3]
    assert sel.pools["a"].tokens == 20 and sel.pools["b"].tokens == 20


@pytest.mark.parametrize("seed", range(4))
def test_every_candidate_is_selected_duplicate_or_dropped_exactly_once(seed, monkeypatch):
    from retriever.dataset.select import _Cursor

    monkeypatch.setattr(_Cursor, "BLOCK", 7)
    rng = np.random.default_rng(seed)
    shared = [f"s{i}" for i in range(30)]
    pools, budgets = {}, {}
    for k in range(3):
        ids = list(rng.choice(shared, 15, replace=False)) + [f"p{k}-{i}" for i in range(40)]
        pools[f"p{k}"] = cands(rng.integers(1, 30, len(ids)), rng.random(len(ids)), ids=ids)
        budgets[f"p{k}"] = int(rng.integers(50, 600))
    sel = select_budgeted(pools, budgets, order="weighted" if seed % 2 else "top", seed=seed)
    taken_ids = []
    for name, p in sel.pools.items():
        parts = np.concatenate([p.selected, p.duplicates, p.budget_dropped])
        assert sorted(parts.tolist()) == list(range(len(pools[name])))
        assert p.tokens == int(pools[name].n_tokens[p.selected].sum()) <= budgets[name]
        taken_ids += pools[name].id_hash[p.selected].tolist()
    assert len(taken_ids) == len(set(taken_ids))  # no document twice


def test_weighted_order_samples_proportionally_to_score():
    c = cands([1, 1], [0.75, 0.25])
    first = [rank(c, "weighted", np.random.default_rng(s))[0] for s in range(2000)]
    share = first.count(0) / len(first)
    assert 0.71 < share < 0.79  # P(doc 0 first) = 0.75


def test_split_budget_and_parse_budget():
    assert split_budget(1000, {"a": 3, "b": 1}) == {"a": 750, "b": 250}
    assert parse_budget("10B") == 10_000_000_000
    assert parse_budget("2.5k") == 2500
    assert parse_budget("1_000") == 1000
    with pytest.raises(ConfigError, match="not a number of tokens"):
        parse_budget("lots")
    with pytest.raises(ConfigError):
        parse_budget("0")
    with pytest.raises(ConfigError, match=">= 0"):
        split_budget(10, {"a": -1.0, "b": 1.0})


# -- mixtures --------------------------------------------------------------------------------------
def test_parse_mixture_forms(tmp_path):
    assert parse_mixture("a=0.6, b=0.4") == {"a": 0.6, "b": 0.4}
    assert parse_mixture("equal", ["a", "b"]) == {"a": 1.0, "b": 1.0}
    (tmp_path / "best.json").write_text(
        json.dumps({"weights": {"a": 0.2, "b": 0.8}, "target": "x"})
    )
    assert parse_mixture(str(tmp_path / "best.json")) == {"a": 0.2, "b": 0.8}
    (tmp_path / "m.csv").write_text("mix_id,weight/a,weight/b\n0,0.5,0.5\n1,0.9,0.1\n")
    assert parse_mixture(str(tmp_path / "m.csv"), mix_id=1) == {"a": 0.9, "b": 0.1}
    with pytest.raises(ConfigError, match="--mix-id"):
        parse_mixture(str(tmp_path / "m.csv"))
    with pytest.raises(ConfigError, match="no mixture with mix_id 7"):
        parse_mixture(str(tmp_path / "m.csv"), mix_id=7)
    with pytest.raises(ConfigError, match="not a number"):
        parse_mixture("a=lots")
    with pytest.raises(ConfigError, match="not understood"):
        parse_mixture("function-calling")


# -- pools and token counting ----------------------------------------------------------------------
def test_pool_reader_flattens_metadata_and_rejects_bad_records(tmp_path):
    p = tmp_path / "t" / "s.jsonl.gz"
    p.parent.mkdir()
    lines = [
        orjson.dumps({"id": "a", "text": "good", "metadata": {"prob/t": 0.5, "cluster_id": 3}}),
        b"{not json",
        orjson.dumps({"id": "b", "metadata": {}}),
        orjson.dumps({"id": "c", "text": "  "}),
        orjson.dumps(["not", "a", "record"]),
    ]
    p.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    out = list(read_pool_shard(str(p)))
    assert (
        out[0].id == "a" and out[0].metadata["prob/t"] == 0.5 and out[0].metadata["cluster_id"] == 3
    )
    assert out[0].metadata["pool_row"] == 0
    assert [getattr(r, "reason", None) for r in out[1:]] == [
        "bad_json",
        "no_text",
        "empty",
        "bad_record",
    ]


def test_a_corpus_pool_is_read_with_the_reader_options(tmp_path, gpt2_style_tokenizer, capsys):
    """A general pool of corpus files is a read of the corpus: its ids and texts (token ids
    detokenized) are the corpus reader's, so a domains map keyed by them reaches its documents; a
    stage's pool beside it is read as written."""
    from dataclasses import replace

    from conftest import write_field_corpus

    from retriever.corpus import ReaderConfig
    from retriever.dataset import DatasetConfig

    corpus = tmp_path / "c"
    texts = write_field_corpus(corpus, gpt2_style_tokenizer)
    tok = str(gpt2_style_tokenizer / "gpt2")
    reader = ReaderConfig(text_field="body", id_field="doc_id", tokens_field="ids", detokenizer=tok)
    rd = reader.reader()  # how the score and filter stages read the corpus
    assert {d.id: d.text for f in sorted(corpus.iterdir()) for d in rd.read(str(f))} == texts
    write_pool(
        tmp_path / "pools" / "fc" / "s0.jsonl.gz", "fc", [{"id": "fc-0", "text": "fc", "p": 1}]
    )
    (tmp_path / "pools" / "manifest.json").write_text("{}")  # the filter's: its output folder
    pools = discover_pools(tmp_path / "pools", {"general": str(corpus)})
    cfg = DatasetConfig(reader=reader, formats=("parquet",))
    s = DatasetBuilder(pools, {"fc": 1, "general": 1}, 10_000, cfg, corpus_pools=["general"]).build(
        tmp_path / "ds"
    )
    out = pq.read_table(tmp_path / "ds" / "parquet" / "part_00000.parquet").to_pylist()
    assert {r["id"]: r["text"] for r in out if r["pool"] == "general"} == texts
    assert {r["id"]: r["text"] for r in out if r["pool"] == "fc"} == {"fc-0": "fc"}
    assert s["pools"]["general"]["counts"] == {"seen": 6, "kept": 6} | {
        k: 0 for k in ("dropped/budget", "dropped/duplicate")
    }
    settings = json.loads((tmp_path / "ds" / "manifest.json").read_text())["settings"]
    want = {"text_field": "body", "id_field": "doc_id", "tokens_field": "ids", "detokenizer": tok}
    assert settings["reader"] == {"pools": ["general"], **want}
    # the domains of the corpus's ids (the score stage's) are the general pool's documents'
    (tmp_path / "dom").mkdir()
    dom = {"id": list(texts), "domain": ["k1"] * 3 + ["k2"] * 3}
    pq.write_table(pa.table(dom), tmp_path / "dom" / "domains.parquet")
    by_domain = replace(cfg, domains=str(tmp_path / "dom"))
    DatasetBuilder(pools, {"domain/k2": 1}, 10_000, by_domain, corpus_pools=["general"]).build(
        tmp_path / "ds_dom"
    )
    chosen = pq.read_table(tmp_path / "ds_dom" / "selection.parquet").column("id").to_pylist()
    assert sorted(chosen) == ["D3", "D4", "D5"]
    # the CLI: --pool pools are corpus files, read with the shared reader options
    argv = ["build-dataset", "--pools", str(tmp_path / "pools"), "--pool", f"general={corpus}"]
    argv += ["--mixture", "equal", "--budget", "10k", "--format", "parquet", "--json"]
    argv += ["--text-field", "body", "--id-field", "doc_id", "--tokens-field", "ids"]
    assert cli_main([*argv, "--detokenizer", tok, "--out", str(tmp_path / "cli")]) == 0
    assert json.loads(capsys.readouterr().out)["pools"]["general"]["docs"] == 6
    cli_out = pq.read_table(tmp_path / "cli" / "parquet" / "part_00000.parquet")
    assert cli_out.drop(["score"]).to_pylist() == [  # (no score: NaN, never equal)
        {k: v for k, v in r.items() if k != "score"} for r in out
    ]
    # other reader options are another scan: a shared cache never hands back the other ids
    cache = tmp_path / "scan"
    jsonl = {"general": str(corpus / "a.jsonl")}
    ids = []
    for r in (ReaderConfig(text_field="body"), ReaderConfig(text_field="body", id_field="doc_id")):
        c = DatasetConfig(reader=r, scan_cache=str(cache))
        b = DatasetBuilder(jsonl, {"general": 1}, 10_000, c, corpus_pools=["general"])
        b.build(tmp_path / f"ds_{len(ids)}")
        ids.append(
            pq.read_table(tmp_path / f"ds_{len(ids)}" / "selection.parquet")["id"].to_pylist()
        )
    assert ids == [["c__a:0", "c__a:1", "c__a:2"], ["D0", "D1", "D2"]]
    # read as a stage's pool, or with the default text field, its records have no text
    with pytest.raises(InputError, match="pool records need a 'text' field"):
        DatasetBuilder(jsonl, {"general": 1}, 100, cfg).build(tmp_path / "as_pool")
    with pytest.raises(InputError, match="corpus records need a 'text' field.*--text-field"):
        DatasetBuilder(jsonl, {"general": 1}, 100, corpus_pools=["general"]).build(tmp_path / "x")
    with pytest.raises(ConfigError, match="not among the pools"):
        DatasetBuilder(jsonl, {"general": 1}, 100, corpus_pools=["web"])


def test_lmflow_file_is_a_valid_pool(tmp_path):
    p = tmp_path / "g.json"
    p.write_text(json.dumps({"type": "text_only", "instances": [{"text": "one"}, {"text": "two"}]}))
    docs = list(read_pool_shard(str(p)))
    assert [d.text for d in docs] == ["one", "two"]
    assert docs[1].id.endswith(":1")


def test_discover_pools_skips_bookkeeping(tmp_path):
    root = make_pools(tmp_path / "pools")
    pools = discover_pools(root, {"general": str(tmp_path / "g")})
    assert sorted(pools) == ["function-calling", "general", "roleplay"]
    with pytest.raises(ConfigError, match="both a task folder"):
        discover_pools(root, {"roleplay": "x"})
    with pytest.raises(InputError, match="does not exist"):
        discover_pools(tmp_path / "nope")


def test_token_counter_methods_and_estimate():
    from retriever.data import Doc

    docs = [Doc("a", "abcdefgh", {"token_count": 3}), Doc("b", "abcdefghi", {}), Doc("c", "é", {})]
    counts, how = TokenCounter().count(docs)
    assert counts == [3, 3, 1] and how == ["token_count", "estimate", "estimate"]
    counts, how = TokenCounter(use_token_count=False).count(docs)
    assert counts == [2, 3, 1] and set(how) == {"estimate"}
    assert estimate_tokens("x" * 401) == 101


def test_tokenizer_counts_are_exact(tmp_path, gpt2_style_tokenizer):
    from tokenizers import Tokenizer

    from retriever.data import Doc

    ref = Tokenizer.from_file(str(gpt2_style_tokenizer / "tokenizer.json"))
    docs = [
        Doc(str(i), t, {"token_count": 999})
        for i, t in enumerate(["function call", "a zebra said hi " * 300])
    ]
    expect = [len(ref.encode(d.text).ids) for d in docs]
    for path in (gpt2_style_tokenizer / "gpt2", gpt2_style_tokenizer / "tokenizer.json"):
        counts, how = TokenCounter(path).count(docs)
        assert counts == expect and set(how) == {"tokenizer"}  # the tokenizer wins over token_count
    with pytest.raises(InputError, match="does not exist"):
        TokenCounter(tmp_path / "missing")


# -- end to end ------------------------------------------------------------------------------------
def test_build_writes_budgeted_deduplicated_lmflow_and_parquet(tmp_path):
    root = make_pools(tmp_path / "pools")
    pools = discover_pools(root)
    b = DatasetBuilder(pools, {"function-calling": 0.5, "roleplay": 0.5}, 200, part_tokens=60)
    s = b.build(tmp_path / "out")
    out = tmp_path / "out"
    fc, rp = s["pools"]["function-calling"], s["pools"]["roleplay"]
    assert fc["budget"] == rp["budget"] == 100
    # fc: 3 shared (0.995) + fc-long (40 tokens, 0.99) + top fc docs; every doc 10 tokens except
    # fc-long
    assert fc["tokens"] == 100 and rp["tokens"] == 100
    texts = read_lmflow(out)
    table = read_parquet_parts(out)
    assert texts == table.column("text").to_pylist()
    assert len(set(table.column("id").to_pylist())) == len(table) == s["docs"]
    shared = [i for i in table.column("id").to_pylist() if i.startswith("shared-")]
    assert sorted(shared) == ["shared-0", "shared-1", "shared-2"]  # each exactly once
    dups = pq.read_table(out / "duplicates.parquet").to_pylist()
    assert sorted(d["id"] for d in dups) == ["shared-0", "shared-1", "shared-2"]
    assert all(d["kept_by"] != d["pool"] for d in dups)
    assert "a long function call document" in texts  # ranked high and fits
    # highest score first: the lowest-ranked fc doc taken beats every fc doc left out
    fc_rows = table.filter(pa.compute.equal(table.column("pool"), "function-calling"))
    kept_scores = fc_rows.column("score").to_numpy()
    assert kept_scores.min() >= 1 - 10 / 40
    # accounting
    assert s["balanced"] and fc["balanced"] and rp["balanced"]
    assert s["counts"]["seen"] == 66 and s["counts"]["kept"] == s["docs"]
    assert sum(fc["tokens_per_cluster"].values()) == fc["tokens"]
    assert set(rp["tokens_per_cluster"]) <= {"7", "1"}
    assert s["token_counting"]["docs_by_method"] == {"token_count": 66}
    assert all(p["tokens"] <= 60 for p in s["parts"]) and len(s["parts"]) >= 4
    assert not list(out.rglob("*.tmp"))


def test_budget_above_supply_reports_shortfall(tmp_path):
    root = make_pools(tmp_path / "pools")
    s = DatasetBuilder(discover_pools(root), {"roleplay": 1.0}, 10_000).build(tmp_path / "out")
    rp = s["pools"]["roleplay"]
    assert rp["docs"] == 33 and rp["tokens"] == 330 and rp["shortfall"] == 10_000 - 330
    assert s["unused_pools"] == ["function-calling"]


def test_weighted_order_is_seeded(tmp_path):
    root = make_pools(tmp_path / "pools")
    pools = discover_pools(root)
    ids = []
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        b = DatasetBuilder(
            pools,
            {"roleplay": 1},
            100,
            order="weighted",
            seed=seed,
            formats=("parquet",),
            scan_cache=tmp_path / "scan",
        )
        b.build(tmp_path / name)
        ids.append(read_parquet_parts(tmp_path / name).column("id").to_pylist())
    assert ids[0] == ids[1] and ids[0] != ids[2]


def test_scan_cache_is_reused_and_invalidated_by_a_changed_pool(tmp_path):
    root = make_pools(tmp_path / "pools")
    pools = discover_pools(root)
    cache = tmp_path / "scan"
    DatasetBuilder(pools, {"roleplay": 1}, 50, scan_cache=cache).build(tmp_path / "o1")
    before = sorted(p.name for p in cache.rglob("*.parquet"))
    mtimes = {p: p.stat().st_mtime_ns for p in cache.rglob("*.parquet")}
    DatasetBuilder(pools, {"roleplay": 1}, 80, scan_cache=cache).build(tmp_path / "o2")
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*.parquet")} == mtimes  # not rescanned
    write_pool(
        root / "roleplay" / "s1.jsonl.gz",
        "roleplay",
        [{"id": "new", "text": "new doc", "p": 1.0, "tc": 5}],
    )
    s = DatasetBuilder(pools, {"roleplay": 1}, 80, scan_cache=cache).build(tmp_path / "o3")
    assert len(sorted(p.name for p in cache.rglob("*.parquet"))) == len(before) + 1
    assert "new" in read_parquet_parts(tmp_path / "o3").column("id").to_pylist()
    assert s["pools"]["roleplay"]["counts"]["seen"] == 14


def test_rerun_is_a_noop_and_other_settings_are_refused(tmp_path):
    root = make_pools(tmp_path / "pools")
    pools = discover_pools(root)
    s1 = DatasetBuilder(pools, {"roleplay": 1}, 50).build(tmp_path / "out")
    s2 = DatasetBuilder(pools, {"roleplay": 1}, 50).build(tmp_path / "out")
    assert s1 == s2
    with pytest.raises(ResumeError, match="budget"):
        DatasetBuilder(pools, {"roleplay": 1}, 60).build(tmp_path / "out")


def test_failed_part_resumes_to_the_same_output(tmp_path, monkeypatch):
    root = make_pools(tmp_path / "pools")
    pools = discover_pools(root)
    mix = {"function-calling": 0.5, "roleplay": 0.5}
    DatasetBuilder(pools, mix, 300, part_tokens=40).build(tmp_path / "ref")

    import retriever.dataset.parts as parts

    real = parts.write_part
    calls = []

    def failing(rows, paths, *rest):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("simulated crash while writing part 3")
        return real(rows, paths, *rest)

    monkeypatch.setattr(parts, "write_part", failing)
    with pytest.raises(OSError, match="simulated"):
        DatasetBuilder(pools, mix, 300, part_tokens=40).build(tmp_path / "out")
    out = tmp_path / "out"
    assert not (out / "summary.json").exists()  # not mistaken for a finished build
    done = {p: p.stat().st_mtime_ns for p in (out / "lmflow").glob("*.json")}
    assert len(done) == 2 and not list(out.rglob("*.tmp"))
    monkeypatch.setattr(parts, "write_part", real)
    s = DatasetBuilder(pools, mix, 300, part_tokens=40).build(out)
    assert {p: p.stat().st_mtime_ns for p in done} == done  # finished parts kept
    assert read_lmflow(out) == read_lmflow(tmp_path / "ref")
    assert read_parquet_parts(out).equals(read_parquet_parts(tmp_path / "ref"))
    assert s["tokens"] == json.loads((tmp_path / "ref" / "summary.json").read_text())["tokens"]


KILL_SCRIPT = """
import os, signal, sys
from retriever.dataset import DatasetBuilder, discover_pools
import retriever.dataset.parts as P
real = P.write_part
n = []
def write_then_die(rows, paths, *rest):
    n.append(1)
    if len(n) == 3:
        # hard kill in the middle of part 3: its .tmp files are half written
        for p in paths.values():
            open(str(p) + ".tmp", "wb").write(b'{"type": "text_only", "instan')
        os.kill(os.getpid(), signal.SIGKILL)
    return real(rows, paths, *rest)
P.write_part = write_then_die
pools = discover_pools(sys.argv[1])
weights = {"function-calling": 0.5, "roleplay": 0.5}
DatasetBuilder(pools, weights, 300, part_tokens=40).build(sys.argv[2])
"""


def test_killed_build_resumes_without_duplicates_or_gaps(tmp_path):
    root = make_pools(tmp_path / "pools")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(root), str(out)], cwd=REPO)
    assert proc.returncode == -9
    assert not (out / "summary.json").exists() and list(out.rglob("*.tmp"))
    rc = cli_main(
        [
            "build-dataset",
            "--pools",
            str(root),
            "--mixture",
            "function-calling=0.5,roleplay=0.5",
            "--budget",
            "300",
            "--part-tokens",
            "40",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    DatasetBuilder(
        discover_pools(root), {"function-calling": 0.5, "roleplay": 0.5}, 300, part_tokens=40
    ).build(tmp_path / "ref")
    got, ref = read_lmflow(out), read_lmflow(tmp_path / "ref")
    assert got == ref and len(got) == len(set(got))
    assert not list(out.rglob("*.tmp"))


def test_shared_data_pools_report_tokens_per_cluster(tmp_path, shared_data):
    """Real ClimbLab documents (with their cluster_id) as pools, scored by a stand-in rule."""
    src = shared_data / "corpus" / "climblab_clusters_sample.jsonl"
    recs = [json.loads(line) for line in src.read_text().splitlines()[::5]]  # every cluster
    for task, key in (("reasoning", "number"), ("rag", "study")):
        rows = [
            {
                "id": f"climb:{i}",
                "text": r["text"],
                "p": float(key in r["text"].lower()),
                "cluster": r["cluster_id"],
            }
            for i, r in enumerate(recs)
        ]
        write_pool(tmp_path / "pools" / task / "s.parquet", task, rows)
    s = DatasetBuilder(
        discover_pools(tmp_path / "pools"), {"reasoning": 1, "rag": 1}, 40_000
    ).build(tmp_path / "out")
    table = read_parquet_parts(tmp_path / "out")
    longest = max(estimate_tokens(r["text"]) for r in recs)
    for task in ("reasoning", "rag"):  # each pool stops short by less than one document
        assert 0 <= s["pools"][task]["shortfall"] < longest
    assert len(set(table.column("id").to_pylist())) == len(table)  # the two pools share every id
    assert s["counts"]["dropped/duplicate"] > 0
    for task in ("reasoning", "rag"):
        p = s["pools"][task]
        assert sum(p["tokens_per_cluster"].values()) == p["tokens"]
        assert len(p["tokens_per_cluster"]) > 3
    assert s["token_counting"]["docs_by_method"] == {"estimate": 2 * len(recs)}


# -- errors ----------------------------------------------------------------------------------------
def test_config_errors(tmp_path):
    root = make_pools(tmp_path / "pools")
    pools = discover_pools(root)
    with pytest.raises(ConfigError, match="function-caling"):
        DatasetBuilder(pools, {"function-caling": 1.0}, 100)
    with pytest.raises(ConfigError, match="order"):
        DatasetBuilder(pools, {"roleplay": 1.0}, 100, order="best")
    with pytest.raises(ConfigError, match="formats"):
        DatasetBuilder(pools, {"roleplay": 1.0}, 100, formats=("csv",))
    empty = tmp_path / "empty"
    (empty / "task").mkdir(parents=True)
    with pytest.raises(ConfigError, match="no pool found"):
        discover_pools(empty)


def test_pool_without_text_field_is_a_clear_error(tmp_path):
    p = tmp_path / "pools" / "rag" / "s.jsonl"
    p.parent.mkdir(parents=True)
    p.write_text(
        "".join(json.dumps({"id": str(i), "content": "no text field"}) + "\n" for i in range(3))
    )
    with pytest.raises(InputError, match="'text' field"):
        DatasetBuilder(discover_pools(tmp_path / "pools"), {"rag": 1}, 100).build(tmp_path / "out")
    assert not (tmp_path / "out" / "summary.json").exists()


def test_full_disk_is_a_one_line_error_and_no_summary(tmp_path, monkeypatch):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    import retriever.io as writers

    root = make_pools(tmp_path / "pools")
    out = tmp_path / "out"
    real_temp = writers.temp_path

    def full_temp(path):  # the first part's temporary file is the full device: ENOSPC
        tmp = real_temp(path)
        if Path(path).name == "part_00000.json":
            tmp.parent.mkdir(parents=True, exist_ok=True)
            os.symlink("/dev/full", tmp)
        return tmp

    monkeypatch.setattr(writers, "temp_path", full_temp)
    with pytest.raises(OutputError, match="disk full"):
        DatasetBuilder(discover_pools(root), {"roleplay": 1}, 100).build(out)
    assert not (out / "summary.json").exists()


def test_cli_json_and_error_message(tmp_path, capsys):
    root = make_pools(tmp_path / "pools")
    rc = cli_main(
        [
            "build-dataset",
            "--pools",
            str(root),
            "--mixture",
            "equal",
            "--budget",
            "120",
            "--out",
            str(tmp_path / "out"),
            "--format",
            "parquet",
            "--json",
        ]
    )
    assert rc == 0
    s = json.loads(capsys.readouterr().out)
    assert (
        s["complete"] and s["tokens"] <= 120 and set(s["pools"]) == {"function-calling", "roleplay"}
    )
    assert not (tmp_path / "out" / "lmflow").exists()
    rc = cli_main(
        [
            "build-dataset",
            "--pools",
            str(root),
            "--mixture",
            "roleplai=1",
            "--budget",
            "1k",
            "--out",
            str(tmp_path / "o2"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "roleplai" in err and len(err.strip().splitlines()) == 1


def test_pools_of_the_old_naming_scheme_give_the_same_training_set(tmp_path):
    """Pools written before the one naming scheme (``prob/<task>``) score and build the same."""
    mix = {"function-calling": 0.6, "roleplay": 0.4}
    out = {}
    for name, key in (("new", "prob_{task}"), ("old", "prob/{task}")):
        pools = discover_pools(make_pools(tmp_path / name, key))
        rec = next(read_pool_shard(str(tmp_path / name / "roleplay" / "s0.jsonl.gz")))
        assert key.format(task="roleplay") in rec.metadata
        out[name] = DatasetBuilder(pools, mix, 250).build(tmp_path / f"{name}-out")
    for s in out.values():
        assert all(p["no_score"] == 0 for p in s["pools"].values())
    assert read_parquet_parts(tmp_path / "new-out").equals(read_parquet_parts(tmp_path / "old-out"))
    drop_path = [{k: v for k, v in p.items() if k != "path"} for p in out["new"]["pools"].values()]
    assert drop_path == [
        {k: v for k, v in p.items() if k != "path"} for p in out["old"]["pools"].values()
    ]


def test_a_build_that_recorded_the_old_score_keys_resumes(tmp_path):
    """A folder whose manifest spells the default score keys the old way is the same build."""
    pools = discover_pools(make_pools(tmp_path / "pools", "prob/{task}"))
    old_keys = ("prob/{pool}", "sim/{pool}", "score", "quality")
    s1 = DatasetBuilder(pools, {"roleplay": 1}, 50, score_keys=old_keys).build(tmp_path / "out")
    manifest = (tmp_path / "out" / "manifest.json").read_bytes()
    assert DatasetBuilder(pools, {"roleplay": 1}, 50).build(tmp_path / "out") == s1
    assert (tmp_path / "out" / "manifest.json").read_bytes() == manifest
    with pytest.raises(ResumeError, match="score_keys"):
        DatasetBuilder(pools, {"roleplay": 1}, 50, score_keys=("quality",)).build(tmp_path / "out")


def test_parallel_scan_gives_the_same_training_set(tmp_path):
    root = make_pools(tmp_path / "pools")
    pools = discover_pools(root)
    mix = {"function-calling": 0.6, "roleplay": 0.4}
    s1 = DatasetBuilder(pools, mix, 250).build(tmp_path / "serial")
    s2 = DatasetBuilder(pools, mix, 250, workers=2).build(tmp_path / "parallel")
    assert read_lmflow(tmp_path / "serial") == read_lmflow(tmp_path / "parallel")
    assert s1["pools"] == s2["pools"]
    with pytest.raises(ConfigError, match="workers"):
        DatasetBuilder(pools, mix, 250, workers=0)


def test_many_small_parts_equal_one_big_part(tmp_path):
    """Parts continue reading a pool file where the previous part stopped: same documents."""
    root = make_pools(tmp_path / "pools")
    pools = discover_pools(root)
    mix = {"function-calling": 0.5, "roleplay": 0.5}
    small = DatasetBuilder(pools, mix, 400, part_tokens=10).build(tmp_path / "small")
    big = DatasetBuilder(pools, mix, 400, part_tokens=10**6).build(tmp_path / "big")
    assert len(small["parts"]) > 20 and len(big["parts"]) == 1
    assert read_lmflow(tmp_path / "small") == read_lmflow(tmp_path / "big")
    assert read_parquet_parts(tmp_path / "small").equals(read_parquet_parts(tmp_path / "big"))


def test_scan_index_is_the_same_at_every_batch_size(tmp_path):
    """The scan (a BatchStep): rows, rejects and counters do not depend on its batch size."""
    from dataclasses import replace

    leak = (
        "A coin is heads up. Alice flips the coin. Bob does not flip the coin. Carol flips the "
        "coin. Is the coin still heads up?"
    )
    ev = tmp_path / "eval.jsonl"
    ev.write_text(json.dumps({"id": "q", "question": leak, "choices": ["yes", "no"], "answer": 0}))
    recs = [
        {"id": f"d{i}", "text": f"pool document {i} " * (1 + i % 5), "p": i / 700, "cluster": i % 3}
        for i in range(700)
    ]
    for i in (3, 255, 256, 600):
        recs[i]["text"] = f"Worked {i}: {leak}"
    path = write_pool(tmp_path / "pools" / "fc" / "s0.jsonl.gz", "fc", recs)
    with gzip.open(path, "ab") as fh:
        fh.write(b"{oops\n" + orjson.dumps({"id": "no-text", "metadata": {}}) + b"\n")
    b = DatasetBuilder(
        {"fc": str(path.parent)}, {"fc": 1.0}, 100, decontaminate={"reasoning": str(ev)}
    )
    got = {}
    for size in (1, 7, 256, 10_000):
        scan = replace(b.scanner(), scan_batch=size).scan("fc", [str(path)], tmp_path / f"c{size}")
        files = sorted((tmp_path / f"c{size}" / "fc").iterdir())
        raw = {f.suffix: f.read_bytes() for f in files if f.suffix != ".json"}
        got[size] = (raw, dict(scan.stats.counts), scan.table)
    c = got[1][1]
    assert c["seen"] == 702 and c["candidates"] == c["kept"] == 696
    assert c["dropped/contaminated"] == 4 and sum(v for k, v in c.items() if "rejected/" in k) == 2
    assert Stats(Counter(c)).balanced()
    assert got[1][2].column("id").to_pylist()[:4] == ["d0", "d1", "d2", "d4"]
    for size in (7, 256, 10_000):
        assert got[size][0] == got[1][0] and got[size][1] == c and got[size][2].equals(got[1][2])


def test_corpus_pools_are_told_from_a_stages_output_by_what_is_on_disk(
    tmp_path, gpt2_style_tokenizer, capsys
):
    """With reader options away from the defaults, a pool is read with them when it is corpus
    files (a folder, or links to its shards) and as written when a stage wrote it (the filter's
    task folder or one of its files, links to them, a build-dataset folder's parts), whichever
    option it came from; a pool holding both kinds is refused."""
    import shutil

    from conftest import write_field_corpus

    from retriever.arms.datasets import _link_corpus
    from retriever.corpus import ReaderConfig
    from retriever.dataset import corpus_pools

    corpus = tmp_path / "c"
    texts = write_field_corpus(corpus, gpt2_style_tokenizer)
    tok = str(gpt2_style_tokenizer / "gpt2")
    reader = ReaderConfig(text_field="body", id_field="doc_id", tokens_field="ids", detokenizer=tok)
    filt = tmp_path / "filter"
    fc = [{"id": f"fc-{i}", "text": f"fc document {i}", "p": 1 - i / 10} for i in range(3)]
    shard = write_pool(filt / "fc" / "s0.jsonl.gz", "fc", fc)
    (filt / "manifest.json").write_text("{}")
    (tmp_path / "fc_links").mkdir()
    (tmp_path / "fc_links" / "s0.jsonl.gz").symlink_to(shard)
    DatasetBuilder({"fc": str(filt / "fc")}, {"fc": 1}, 10_000).build(tmp_path / "ds")
    pools = {
        "general": str(corpus),
        "links": str(_link_corpus((str(corpus),), tmp_path / "links")),
        "one_shard": str(corpus / "t.parquet"),
        "fc": str(filt / "fc"),
        "fc_file": str(shard),
        "fc_links": str(tmp_path / "fc_links"),
        "filter": str(filt),
        "dataset": str(tmp_path / "ds" / "parquet"),
    }
    assert corpus_pools(pools, reader) == ["general", "links", "one_shard"]
    assert corpus_pools(pools) == ["general", "links", "one_shard"]
    # both kinds in one folder: refused where the two readings differ
    shutil.copytree(corpus, tmp_path / "mixed" / "c")
    shutil.copytree(filt, tmp_path / "mixed" / "filter")
    with pytest.raises(InputError, match="holds both a stage's output .* pass them as two pools"):
        corpus_pools({"m": str(tmp_path / "mixed")}, reader)
    assert corpus_pools({"m": str(tmp_path / "mixed")}) == ["m"]  # default options: one reading
    # build-dataset: a filter task folder through --pool is read as written, the corpus with the
    # reader options (before, every --pool pool was read with them: fc's records had no text)
    argv = ["build-dataset", "--pool", f"fc={filt / 'fc'}", "--pool", f"general={corpus}"]
    argv += ["--mixture", "equal", "--budget", "10k", "--format", "parquet", "--json"]
    argv += ["--text-field", "body", "--id-field", "doc_id", "--tokens-field", "ids"]
    assert cli_main([*argv, "--detokenizer", tok, "--out", str(tmp_path / "cli")]) == 0
    assert json.loads(capsys.readouterr().out)["docs"] == 9
    rows = pq.read_table(tmp_path / "cli" / "parquet" / "part_00000.parquet").to_pylist()
    assert {r["id"]: r["text"] for r in rows if r["pool"] == "general"} == texts
    assert {r["id"]: r["text"] for r in rows if r["pool"] == "fc"} == {
        r["id"]: r["text"] for r in fc
    }
    settings = json.loads((tmp_path / "cli" / "manifest.json").read_text())["settings"]
    assert settings["reader"]["pools"] == ["general"]
