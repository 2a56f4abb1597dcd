"""Keyword prefilter: counts per task, one-pass matcher = per-pattern reference, accounting,
resume."""

from __future__ import annotations

import gzip
import json
import re

import numpy as np
import pytest
from conftest import MATH_GOLD, TOOLS_GOLD, WEB_TEXT, write_jsonl

from retriever.errors import ConfigError, ResumeError
from retriever.prefilter import KeywordMatcher, PrefilterConfig, prefilter_corpus, read_matches
from retriever.prefilter.matcher import REGEX_PREFIX

PATTERNS = {
    "tools": ('"arguments":', "api_key", r"re:\b[a-z]+(?:_[a-z]+)+\("),
    "math": ("how many", r"re:\d+\s*[-+*/]\s*\d+\s*=\s*\d"),
}


def _reference(patterns, text):
    """Each pattern scanned on its own (keywords: case-insensitive, overlapping occurrences)."""
    out = []
    for pats in patterns.values():
        n = 0
        for p in pats:
            if p.startswith(REGEX_PREFIX):
                n += len(re.findall(p[len(REGEX_PREFIX) :], text, re.MULTILINE))
            else:
                k, low = p.lower(), text.lower()
                n += sum(1 for i in range(len(low)) if low.startswith(k, i))
        out.append(n)
    return out


def test_counts_equal_a_per_pattern_scan():
    m = KeywordMatcher(PATTERNS)
    texts = TOOLS_GOLD + MATH_GOLD + WEB_TEXT + ['{"arguments": 1, "API_KEY": 2} get_user_info(']
    got = m.count_batch(texts)
    want = np.array([_reference(PATTERNS, t) for t in texts])
    np.testing.assert_array_equal(got, want)
    assert got[-1, 0] == 3 and got[len(TOOLS_GOLD), 1] >= 2  # "How many" + "3 + 5 = 8"
    assert got[len(TOOLS_GOLD) + len(MATH_GOLD) : -1].sum() == 0  # web text matches nothing


def test_default_patterns_separate_task_formats():
    m = KeywordMatcher()
    tools = m.count(TOOLS_GOLD[3])
    math = m.count(MATH_GOLD[0])
    assert tools[m.tasks.index("function-calling")] >= 2
    assert math[m.tasks.index("reasoning")] >= 2
    play = m.count("Socrates (speaking): My friend, *smiles* what is virtue?\nMan: I do not know.")
    assert play.argmax() == m.tasks.index("roleplay")


def test_bad_patterns_are_config_errors():
    with pytest.raises(ConfigError, match="task 'x'"):
        KeywordMatcher({"x": ("re:([unclosed",)})
    with pytest.raises(ConfigError, match="empty"):
        KeywordMatcher({"x": ("  ",)})
    with pytest.raises(ConfigError, match="min_matches"):
        PrefilterConfig(min_matches=0)
    with pytest.raises(ConfigError, match="no prefilter patterns"):
        PrefilterConfig(tasks=("unknown-task",))


def test_corpus_run_accounts_for_every_doc_and_resumes(tmp_path):
    shard = tmp_path / "corpus" / "a.jsonl"
    recs = [{"id": f"t{i}", "text": t} for i, t in enumerate(TOOLS_GOLD + MATH_GOLD + WEB_TEXT)]
    write_jsonl(shard, recs)
    with shard.open("a") as f:
        f.write("{not json\n")
        f.write(json.dumps({"id": "e", "text": "   "}) + "\n")
    cfg = PrefilterConfig(tasks=("tools", "math"), patterns=PATTERNS, mode="drop", min_matches=1)
    s = prefilter_corpus([str(shard.parent)], tmp_path / "out", cfg, progress=False)
    n = len(recs) + 2
    assert s["docs_in"] == n and s["balanced"]
    assert s["kept"] + sum(s["dropped"].values()) + sum(s["rejected"].values()) == n
    assert s["rejected"] == {"bad_json": 1, "empty": 1}
    table = read_matches(tmp_path / "out")
    assert table.num_rows == len(recs)
    kept_ids = [
        json.loads(x)["id"] for x in gzip.open(tmp_path / "out/kept/corpus__a.jsonl.gz", "rt")
    ]
    expect = [r["id"] for r in recs if max(_reference(PATTERNS, r["text"])) >= 1]
    assert kept_ids == expect and len(expect) == s["kept"]
    assert not any(i.startswith("t1") and int(i[1:]) >= 12 for i in kept_ids)  # no web text
    # a rerun skips the done shard and gives the same summary; other settings are refused
    again = prefilter_corpus([str(shard.parent)], tmp_path / "out", cfg, progress=False)
    assert again["kept"] == s["kept"] and again["docs_in"] == n
    with pytest.raises(ResumeError):
        prefilter_corpus(
            [str(shard.parent)],
            tmp_path / "out",
            PrefilterConfig(tasks=("tools", "math"), patterns=PATTERNS, mode="drop", min_matches=3),
            progress=False,
        )


def test_cli_prefilter_then_features_mode(tmp_path, capsys):
    from retriever.cli import main

    write_jsonl(tmp_path / "c" / "s.jsonl", [{"text": t} for t in MATH_GOLD + WEB_TEXT])
    rc = main(
        [
            "prefilter",
            "--corpus",
            str(tmp_path / "c"),
            "--out",
            str(tmp_path / "o"),
            "--mode",
            "features",
            "--json",
            "--indexes-dir",
            str(tmp_path / "none"),
        ]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["kept"] == len(MATH_GOLD + WEB_TEXT) and out["matched_share"]["reasoning"] > 0
    assert not (tmp_path / "o" / "kept" / "c__s.jsonl.gz").exists()


@pytest.mark.slow
def test_run_prefilter_in_drop_mode_feeds_the_score_step(tiny_indexes, tmp_path):
    """`[prefilter] mode = "drop"`: the run's score step embeds only what the prefilter kept."""
    import shutil

    from retriever.run.config import load_run_config
    from retriever.run.job import RunJob

    docs = [{"id": f"d{i}", "text": t} for i, t in enumerate(TOOLS_GOLD + MATH_GOLD + WEB_TEXT)]
    write_jsonl(tmp_path / "corpus" / "c.jsonl", docs)
    cfg_path = tmp_path / "run.toml"
    cfg_path.write_text(
        f'[run]\nout = "{tmp_path / "run"}"\n'
        f'[tasks.tools]\ngold = ["{tiny_indexes["tools"]}"]\n'
        f'[tasks.math]\ngold = ["{tiny_indexes["math"]}"]\n'
        f'[corpus]\npaths = ["{tmp_path / "corpus"}"]\n[score]\nstore = false\n'
        '[prefilter]\nmode = "drop"\npatterns = {tools = ["join()", "call:"], math = ["="]}\n'
    )
    job = RunJob(load_run_config(cfg_path), progress=False)
    for t in ("tools", "math"):
        shutil.copytree(tiny_indexes[t], job.index_dir(t))
    pf = job._prefilter()
    kept = [
        d for d in docs if "join()" in d["text"] or "call:" in d["text"].lower() or "=" in d["text"]
    ]
    assert pf["docs_in"] == len(docs) and pf["kept"] == len(kept) < len(docs)
    sc = job._score()
    assert sc["scored"] == len(kept)  # the web pages were never embedded


def _byte_bpe(folder, texts):
    """A small byte-level BPE trained here and saved as a transformers folder (a stand-in for the
    GPT-2 tokenizer of nvidia/ClimbLab's token ids: same model family, offline)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=400, initial_alphabet=alphabet))
    PreTrainedTokenizerFast(tokenizer_object=tok).save_pretrained(folder)
    return tok


def test_token_id_corpus_is_detokenized_by_the_shared_reader(tmp_path, capsys):
    """A ClimbLab-style parquet shard of token ids (``tokens``, ``token_count``, ``cluster_id``):
    the prefilter reads it through the shared ReaderConfig, counts on the decoded text, writes the
    decoded text to kept/, and rejects a row of bad ids as ``bad_tokens``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from retriever.cli import main
    from retriever.corpus import ReaderConfig
    from retriever.errors import InputError

    texts = TOOLS_GOLD + MATH_GOLD + WEB_TEXT
    tok = _byte_bpe(tmp_path / "tok", texts)
    ids = [tok.encode(t).ids for t in texts]
    decoded = [tok.decode(i) for i in ids]
    assert decoded == texts  # byte-level: the ids give the text back
    rows = {
        "tokens": ids + [[1, -5]],
        "token_count": [len(i) for i in ids] + [2],
        "cluster_id": [i % 3 + 1 for i in range(len(ids) + 1)],
    }
    (tmp_path / "c").mkdir()
    pq.write_table(pa.table(rows), tmp_path / "c" / "cluster_1_001.parquet")
    cfg = PrefilterConfig(
        tasks=("tools", "math"),
        patterns=PATTERNS,
        mode="drop",
        reader=ReaderConfig(detokenizer=str(tmp_path / "tok")),
    )
    s = prefilter_corpus([str(tmp_path / "c")], tmp_path / "out", cfg, progress=False)
    assert s["docs_in"] == len(texts) + 1 and s["rejected"] == {"bad_tokens": 1}
    table = read_matches(tmp_path / "out").to_pydict()
    want = [_reference(PATTERNS, t) for t in texts]
    assert [[a, b] for a, b in zip(table["kw_tools"], table["kw_math"], strict=True)] == want
    kept = [json.loads(x) for x in gzip.open(tmp_path / "out/kept/c__cluster_1_001.jsonl.gz", "rt")]
    assert [k["text"] for k in kept] == [t for t, w in zip(texts, want, strict=True) if max(w)]
    assert all(k["metadata"]["cluster_id"] in (1, 2, 3) for k in kept)  # scalar fields kept
    assert 0 < s["kept"] < len(texts)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["settings"]["detokenizer"] == str(tmp_path / "tok")
    # without a detokenizer, a token shard is a one-line error, not every record rejected
    with pytest.raises(InputError, match="detokenizer"):
        prefilter_corpus(
            [str(tmp_path / "c")], tmp_path / "out2", PrefilterConfig(), progress=False
        )
    # the CLI passes --detokenizer the same way
    argv = ["prefilter", "--corpus", str(tmp_path / "c"), "--out", str(tmp_path / "o3"), "--json"]
    argv += ["--detokenizer", str(tmp_path / "tok"), "--indexes-dir", str(tmp_path / "none")]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["rejected"] == {"bad_tokens": 1}
