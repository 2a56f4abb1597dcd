"""Bits per byte: windows, the batched kernel against the batch-1 reference, the cached matrix."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import orjson
import pyarrow.parquet as pq
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from retriever.confirm.bpb import LMScorer, naive_bits_per_byte, rolling_windows  # noqa: E402
from retriever.confirm.matrix import BpbMatrix, read_matrix  # noqa: E402
from retriever.confirm.panel import Panel, PanelModel, load_panel  # noqa: E402
from retriever.confirm.tiny_panel import byte_tokenizer, synthetic_corpora, train_tiny_panel  # noqa: E402
from retriever.data import Doc  # noqa: E402
from retriever.errors import ConfigError, ResumeError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def small_panel(tmp_path_factory) -> Path:
    """Three barely trained byte-level models (context 32 bytes, so documents need windows)."""
    out = tmp_path_factory.mktemp("small_panel")
    corpora = synthetic_corpora(30, seed=0)
    return train_tiny_panel(out, corpora, steps=3, n_models=3, n_positions=32, n_embd=32, seed=1)


@pytest.fixture(scope="module")
def scorer(small_panel) -> LMScorer:
    return LMScorer(load_panel(small_panel).models[1], device="cpu", max_batch_tokens=100)


def _texts() -> list[str]:
    c = synthetic_corpora(6, seed=5)
    return (
        c["task"][:3] + c["generic"][:3] + ["short", "Grüße, 東京 🙂 — multi-byte UTF-8 text " * 3]
    )


# -- windows ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "n,max_length,ctx", [(1, 8, 1), (8, 8, 1), (9, 8, 1), (50, 8, 1), (50, 8, 3), (17, 5, 5)]
)
def test_rolling_windows_score_every_token_once_with_the_right_context(n, max_length, ctx):
    tokens = list(range(100, 100 + n))
    wins = rolling_windows(tokens, 7, max_length, ctx)
    assert sum((t for _, t in wins), []) == tokens  # every token predicted once, in order
    assert wins[0][0][0] == 7  # the first token is conditioned on the prefix token
    stream = [7] + tokens
    for inp, tgt in wins:
        assert len(tgt) <= len(inp) <= max_length
        # position p of the input predicts the next token of the stream
        start = stream.index(inp[0]) if inp[0] != 7 else 0
        assert stream[start : start + len(inp)] == inp
        assert stream[start + len(inp) - len(tgt) + 1 : start + len(inp) + 1] == tgt
    if n > max_length:
        # later windows re-read ctx - 1 extra tokens of context beyond the one they need
        assert all(len(i) == max_length for i, _ in wins[1:])
        assert all(len(t) <= max_length - ctx + 1 for _, t in wins[1:])


def test_rolling_windows_rejects_bad_context():
    with pytest.raises(ConfigError):
        rolling_windows([1, 2, 3], 0, 4, context_tokens=5)
    assert rolling_windows([], 0, 4) == []


# -- the kernel ------------------------------------------------------------------------------------
def test_byte_tokenizer_round_trips_bytes_and_loads_by_path(tmp_path):
    from transformers import AutoTokenizer

    byte_tokenizer().save_pretrained(tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    text = 'Grüße 🙂\n\t{"a": 1}'
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert ids == list(text.encode("utf-8"))
    assert tok.decode(ids) == text
    assert (tok.bos_token_id, tok.eos_token_id) == (256, 257)


@pytest.mark.slow
def test_batched_bpb_equals_the_batch_one_reference(scorer):
    texts = _texts()
    fast = scorer.bits_per_byte(texts)
    slow = naive_bits_per_byte(scorer, texts)
    np.testing.assert_allclose(fast.bpb, slow.bpb, rtol=0, atol=1e-5)
    # a byte tokenizer: one token per byte, and long texts needed several 32-token windows
    np.testing.assert_array_equal(fast.n_tokens, fast.n_bytes)
    assert fast.n_tokens.max() > 3 * scorer.max_length
    assert fast.status == ["ok"] * len(texts)


@pytest.mark.slow
def test_bpb_is_minus_log2_likelihood_per_byte_by_hand(scorer):
    text = "héllo"  # 6 bytes, fits in one window
    ids = list(text.encode())
    x = torch.tensor([[scorer.prefix_token] + ids[:-1]])
    with torch.no_grad():
        logp = torch.log_softmax(scorer.model(input_ids=x).logits[0].double(), -1)
    nll = -sum(float(logp[i, t]) for i, t in enumerate(ids))
    got = scorer.bits_per_byte([text])
    assert got.bpb[0] == pytest.approx(nll / math.log(2) / 6, abs=1e-5)


@pytest.mark.slow
def test_batch_budget_does_not_change_results(small_panel):
    m = load_panel(small_panel).models[0]
    texts = _texts()
    a = LMScorer(m, device="cpu", max_batch_tokens=5).bits_per_byte(texts)  # one window per batch
    b = LMScorer(m, device="cpu", max_batch_tokens=4096, max_batch_size=3).bits_per_byte(texts)
    np.testing.assert_allclose(a.bpb, b.bpb, atol=1e-5)


@pytest.mark.slow
def test_cpu_batches_are_capped_by_their_logits_bytes(small_panel, monkeypatch):
    import retriever.confirm.bpb as bpb

    m = load_panel(small_panel).models[0]
    texts = _texts()
    sc = LMScorer(m, device="cpu", max_batch_tokens=4096, max_batch_size=64)
    ref = sc.bits_per_byte(texts)
    rows = []
    hook = sc.model.register_forward_pre_hook(
        lambda mod, args, kwargs: rows.append(kwargs["input_ids"].shape), with_kwargs=True
    )
    try:
        # room for the logits of 2 windows of 32 tokens: batches of <= 2 rows, same BPB
        monkeypatch.setattr(bpb, "CPU_LOGIT_BYTES", 2 * 32 * sc.vocab_size * 4)
        got = sc.bits_per_byte(texts)
    finally:
        hook.remove()
    assert rows and max(b for b, _ in rows) == 2
    np.testing.assert_allclose(got.bpb, ref.bpb, atol=1e-5)


@pytest.mark.slow
def test_overlapping_windows_give_a_different_but_close_bpb(small_panel):
    m = load_panel(small_panel).models[2]
    text = [synthetic_corpora(3, seed=9)["task"][0] * 2]
    disjoint = LMScorer(m, device="cpu", context_tokens=1).bits_per_byte(text)
    sliding = LMScorer(m, device="cpu", context_tokens=16).bits_per_byte(text)
    assert disjoint.n_tokens[0] == sliding.n_tokens[0]
    assert sliding.bpb[0] != disjoint.bpb[0]
    assert abs(sliding.bpb[0] - disjoint.bpb[0]) < 0.5


@pytest.mark.slow
def test_a_nan_model_is_reported_not_averaged(small_panel, tmp_path):
    from transformers import AutoModelForCausalLM

    src = load_panel(small_panel).models[0].path
    bad = AutoModelForCausalLM.from_pretrained(src)
    with torch.no_grad():
        bad.lm_head.weight.fill_(float("nan"))
    bad.save_pretrained(tmp_path / "nan-model")
    byte_tokenizer().save_pretrained(tmp_path / "nan-model")
    res = LMScorer(PanelModel("nan", str(tmp_path / "nan-model")), device="cpu").bits_per_byte(
        ["abc", "de"]
    )
    assert res.status == ["nan", "nan"]
    assert np.isnan(res.bpb).all()


# -- the cached matrix ----------------------------------------------------------------------------
def _docs(n: int = 8) -> list[Doc]:
    c = synthetic_corpora(n, seed=3)
    return [Doc(f"d{i}", t) for i, t in enumerate(c["task"][: n // 2] + c["generic"][: n // 2])]


def _iter(docs):
    def it(ids):
        return (d for d in docs if d.id in ids)

    return it


@pytest.mark.slow
def test_matrix_caches_per_model_and_computes_only_a_new_model(small_panel, tmp_path):
    full = load_panel(small_panel)
    docs = _docs()
    ids = [d.id for d in docs]
    two = Panel(models=full.models[:2])
    r1 = BpbMatrix(tmp_path, two, device="cpu", block_docs=3).run(ids, _iter(docs))
    assert r1.models == ["tiny-0", "tiny-1"] and r1.bpb.shape == (8, 2)
    assert [r1.report["models"][m]["computed"] for m in r1.models] == [8, 8]
    r2 = BpbMatrix(tmp_path, full, device="cpu", block_docs=3).run(ids, _iter(docs))
    assert [r2.report["models"][m]["computed"] for m in r2.models] == [0, 0, 8]
    assert [r2.report["models"][m]["cached"] for m in r2.models] == [8, 8, 0]
    np.testing.assert_array_equal(r2.bpb[:, :2], r1.bpb)
    ids2, models2, bpb2, nb = read_matrix(tmp_path)
    assert ids2 == ids and models2 == r2.models
    np.testing.assert_array_equal(bpb2, r2.bpb)
    assert (nb == [len(d.text.encode()) for d in docs]).all()
    # one more document: only it is computed, for every model
    extra = docs + [Doc("d_new", "one more document")]
    r3 = BpbMatrix(tmp_path, full, device="cpu").run([d.id for d in extra], _iter(extra))
    assert [r3.report["models"][m]["computed"] for m in r3.models] == [1, 1, 1]


@pytest.mark.slow
def test_matrix_blocks_write_one_part_each_and_count_every_document(small_panel, tmp_path):
    """The matrix's blocks (a BatchStep): one part per block, in stream order; the same
    documents, token counts and (up to batching float error) BPB at every block size."""
    panel = Panel(models=load_panel(small_panel).models[:1])
    docs = _docs(7)
    ids = [d.id for d in docs]
    got = {}
    for size in (1, 3, 100):
        res = BpbMatrix(tmp_path / str(size), panel, device="cpu", block_docs=size).run(
            ids, _iter(docs)
        )
        parts = sorted((tmp_path / str(size) / "bpb" / "tiny-0").glob("part-*.parquet"))
        assert len(parts) == math.ceil(len(docs) / size)
        part_ids = [i for p in parts for i in pq.read_table(p, columns=["id"])["id"].to_pylist()]
        assert part_ids == ids
        got[size] = res
    for size in (3, 100):
        a, b = got[1].report["models"]["tiny-0"], got[size].report["models"]["tiny-0"]
        assert a["computed"] == b["computed"] == len(docs) and a["tokens"] == b["tokens"] > 0
        np.testing.assert_allclose(got[size].bpb, got[1].bpb, atol=1e-5)


@pytest.mark.slow
def test_matrix_reports_a_model_that_fails_to_load_and_keeps_the_others(small_panel, tmp_path):
    full = load_panel(small_panel)
    broken = PanelModel("broken", str(tmp_path / "no-such-model"))
    panel = Panel(models=(full.models[0], broken, full.models[1]))
    docs = _docs(4)
    res = BpbMatrix(tmp_path / "out", panel, device="cpu").run([d.id for d in docs], _iter(docs))
    assert res.models == ["tiny-0", "tiny-1"]
    rep = res.report["models"]["broken"]
    assert rep["status"] == "failed" and "no-such-model" in rep["error"]
    saved = orjson.loads((tmp_path / "out" / "bpb" / "report.json").read_bytes())
    assert saved["models"]["broken"]["status"] == "failed"
    assert saved["usable_models"] == ["tiny-0", "tiny-1"]


@pytest.mark.slow
def test_changed_model_settings_refuse_to_mix_caches(small_panel, tmp_path):
    panel = Panel(models=load_panel(small_panel).models[:1])
    docs = _docs(2)
    BpbMatrix(tmp_path, panel, device="cpu").run([d.id for d in docs], _iter(docs))
    with pytest.raises(ResumeError, match="other settings"):
        BpbMatrix(tmp_path, panel, device="cpu", context_tokens=4).run(
            [d.id for d in docs], _iter(docs)
        )


@pytest.mark.slow
def test_a_model_retrained_in_place_does_not_reuse_its_cache(tmp_path):
    """Same name and path, new weights (a tiny panel trained again): the cached BPB must not be
    reused."""
    corpora = synthetic_corpora(20, seed=0)
    pdir = tmp_path / "panel"
    panel_file = train_tiny_panel(
        pdir, corpora, steps=2, n_models=2, n_positions=32, n_embd=32, seed=1
    )
    docs = _docs(2)
    BpbMatrix(tmp_path / "out", load_panel(panel_file), device="cpu").run(
        [d.id for d in docs], _iter(docs)
    )
    train_tiny_panel(pdir, corpora, steps=2, n_models=2, n_positions=32, n_embd=32, seed=2)
    with pytest.raises(ResumeError, match="weights"):
        BpbMatrix(tmp_path / "out", load_panel(panel_file), device="cpu").run(
            [d.id for d in docs], _iter(docs)
        )


@pytest.mark.slow
def test_killed_bpb_run_resumes_without_duplicates_or_gaps(small_panel, tmp_path):
    """Kill `retriever confirm bpb` mid-way (after some parts exist), rerun, compare to a clean
    run."""
    corpus = tmp_path / "corpus.jsonl"
    c = synthetic_corpora(20, seed=11)
    with open(corpus, "wb") as fh:
        for i, t in enumerate(c["task"] + c["generic"]):
            fh.write(orjson.dumps({"id": f"doc{i}", "text": t}) + b"\n")
    cmd = [
        sys.executable,
        "-m",
        "retriever",
        "confirm",
        "bpb",
        "--models",
        str(small_panel),
        "--docs",
        str(corpus),
        "--device",
        "cpu",
        "--block-docs",
        "4",
        "--threads",
        "1",
        "--out",
        str(tmp_path / "killed"),
    ]
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    parts = tmp_path / "killed" / "bpb" / "tiny-1"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not list(parts.glob("part-*.parquet")):
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    assert proc.returncode != 0, "the run finished before it could be killed"
    assert list((tmp_path / "killed" / "bpb" / "tiny-0").glob("part-*.parquet"))
    assert not (tmp_path / "killed" / "bpb" / "matrix.parquet").exists()
    subprocess.run(cmd, cwd=REPO, env=env, check=True, capture_output=True)
    # the uninterrupted reference, in this process, same settings
    from retriever.confirm.docs import open_docs

    docs = open_docs([str(corpus)])
    ref = BpbMatrix(tmp_path / "clean", load_panel(small_panel), device="cpu", block_docs=4).run(
        docs.ids, docs.iter_docs
    )
    ids_k, models_k, bpb_k, _ = read_matrix(tmp_path / "killed")
    assert ids_k == ref.ids and models_k == ref.models and len(ids_k) == 40
    np.testing.assert_allclose(bpb_k, ref.bpb, rtol=0, atol=1e-9)
    import pyarrow.parquet as pq

    for m in models_k:
        got = [
            i
            for p in sorted((tmp_path / "killed" / "bpb" / m).glob("part-*.parquet"))
            for i in pq.read_table(p)["id"].to_pylist()
        ]
        assert sorted(got) == sorted(ids_k), f"{m}: duplicated or missing cached ids"


# -- scorecard pieces ------------------------------------------------------------------------------
@pytest.mark.slow
def test_choice_loglikelihood_matches_a_manual_forward_and_acc_follows_it(scorer):
    from retriever.confirm.scorecard import MCItem, accuracy, choice_loglikelihoods

    items = [
        MCItem("Question: 2+2?\nAnswer:", ["4", "five", "22"], 0),
        MCItem("Question: " + "long prompt " * 10 + "\nAnswer:", ["yes", "no"], 1),
    ]
    lls = choice_loglikelihoods(scorer, items)
    for it, ll in zip(items, lls, strict=True):
        for c, got in zip(it.choices, ll, strict=True):
            ctx = list(it.prompt.encode())
            cont = list((" " + c).encode())
            full = (ctx + cont)[-(scorer.max_length + 1) :]
            x = torch.tensor([full[:-1]])
            with torch.no_grad():
                logp = torch.log_softmax(scorer.model(input_ids=x).logits[0].double(), -1)
            want = sum(float(logp[len(full) - 1 - len(cont) + i, t]) for i, t in enumerate(cont))
            assert got == pytest.approx(want, abs=1e-4)
    acc, acc_norm = accuracy(lls, items)
    want_acc = np.mean([int(np.argmax(ll)) == it.answer for ll, it in zip(lls, items, strict=True)])
    assert acc == want_acc and 0.0 <= acc_norm <= 1.0


def test_read_gold_elmb_multiple_choice(shared_data):
    from retriever.confirm.scorecard import read_gold

    g = read_gold(
        [str(shared_data / "gold" / "reasoning" / "elmb_reasoning_validation.jsonl")], limit=None
    )
    assert g.kind == "multiple_choice" and len(g.items) == 503
    assert g.items[0].prompt.startswith("Question: ") and g.items[0].prompt.endswith("\nAnswer:")
    assert all(0 <= it.answer < len(it.choices) for it in g.items)
    plain = read_gold([str(shared_data / "gold" / "rag" / "pubmedqa_pqal.jsonl")], limit=50)
    assert plain.kind == "text" and len(plain.texts) == 50


@pytest.mark.slow
def test_the_tiny_panel_verb_trains_the_panel_its_options_say(tmp_path, capsys):
    from retriever.cli import main

    out = tmp_path / "panel"
    argv = ["confirm", "tiny-panel", "--out", str(out), "--max-texts", "20", "--steps", "2"]
    assert main([*argv, "--n-models", "2", "--json"]) == 0
    info = orjson.loads((out / "tiny_panel.json").read_bytes())
    assert [m["name"] for m in info["models"]] == ["tiny-0", "tiny-1"] and info["steps"] == 2
    assert len(load_panel(out / "panel.toml").models) == 2
    capsys.readouterr()
    assert main([*argv, "--n-models", "1"]) == 2  # TinyPanelConfig's check, one line
    err = capsys.readouterr().err.strip()
    assert "tiny panel models" in err and ">= 2" in err and len(err.splitlines()) == 1
