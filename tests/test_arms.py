"""``retriever evaluate`` arms: interval maths, arm datasets, caching, outputs, the CLI table."""

from __future__ import annotations

import gzip
import json
import math

import pyarrow.parquet as pq
import pytest
from arms_proxies import BigramEvaluator, BigramTrainer, dataset_texts
from conftest import TOOLS_GOLD, WEB_TEXT, write_jsonl

from retriever.arms import (
    ArmsEvaluation,
    ArmSources,
    EvaluateConfig,
    build_arm_dataset,
    format_table,
    mean_interval,
    paired_difference,
    summarize_arms,
)
from retriever.errors import ConfigError, InputError
from retriever.proxy import ProxyConfig


# -- interval maths ------------------------------------------------------------------------------
def test_mean_interval_is_student_t_over_seeds():
    iv = mean_interval([1.0, 2.0, 3.0])
    # mean 2, sd 1, t(0.975, 2) = 4.3027: half-width 4.3027 / sqrt(3)
    assert iv.mean == pytest.approx(2.0)
    assert iv.hi - iv.mean == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)
    assert iv.n == 3
    one = mean_interval([5.0])
    assert one.mean == 5.0 and math.isnan(one.lo) and math.isnan(one.hi)
    assert mean_interval([math.nan, 1.0, 3.0]).n == 2  # NaN values are left out, not averaged
    assert mean_interval([]).n == 0


def test_paired_difference_pairs_by_seed():
    # arm is 0.5 below the reference on every seed; the seed-to-seed spread cancels
    ref = {0: 3.0, 1: 5.0, 2: 4.0}
    arm = {0: 2.5, 1: 4.5, 2: 3.5, 3: 9.0}  # seed 3 has no partner
    d = paired_difference(arm, ref)
    assert d.mean == pytest.approx(-0.5) and d.n == 3
    assert d.lo == pytest.approx(-0.5) and d.hi == pytest.approx(-0.5)
    assert d.excludes_zero


def test_summarize_arms_direction_of_better():
    rows = []
    for s, (r, p) in enumerate([(2.0, 1.5), (2.2, 1.6), (2.1, 1.4)]):
        rows += [
            {"arm": "random", "seed": s, "task": "t", "metric": "bpb", "value": r},
            {"arm": "pipeline", "seed": s, "task": "t", "metric": "bpb", "value": p},
            {"arm": "random", "seed": s, "task": "t", "metric": "acc", "value": 0.5},
            {"arm": "pipeline", "seed": s, "task": "t", "metric": "acc", "value": 0.5 + s / 10},
        ]
    out = {(r["arm"], r["metric"]): r for r in summarize_arms(rows)}
    assert out[("pipeline", "bpb")]["better"] is True  # lower BPB is better
    assert out[("pipeline", "bpb")]["diff"] == pytest.approx(-0.6)
    assert out[("pipeline", "acc")]["better"] is None  # 0, +0.1, +0.2: interval holds 0
    assert "diff" not in out[("random", "bpb")]


def test_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="unknown arm"):
        EvaluateConfig(arms=("random", "mine"))
    EvaluateConfig(arms=("random", "mine"), datasets={"mine": "x"})
    with pytest.raises(ConfigError, match="seeds"):
        EvaluateConfig(seeds=0)
    with pytest.raises(ConfigError, match="per arm run"):
        EvaluateConfig(proxy=ProxyConfig(seed=1))
    with pytest.raises(ConfigError, match="must be a ProxyConfig"):
        EvaluateConfig(proxy={"tokens": 5})


# -- a tiny run: corpus, pools, evaluation records -------------------------------------------------
def _web(i: int) -> str:
    return f"{WEB_TEXT[i % len(WEB_TEXT)]} Story number {i} continues with more plain prose here."


@pytest.fixture
def tiny(tmp_path):
    tools = [f"{t}\nCall id {i}." for i, t in enumerate(TOOLS_GOLD * 3)]
    corpus = [{"id": f"web-{i}", "text": _web(i)} for i in range(80)]
    corpus += [{"id": f"tool-{i}", "text": t} for i, t in enumerate(tools)]
    write_jsonl(tmp_path / "corpus" / "a.jsonl", corpus[::2])
    write_jsonl(tmp_path / "corpus" / "b.jsonl", corpus[1::2])
    pool = [
        {"id": f"tool-{i}", "text": t, "metadata": {"prob/function-calling": 0.9}}
        for i, t in enumerate(tools)
    ]
    pool += [
        {"id": f"web-{i}", "text": _web(i), "metadata": {"prob/function-calling": 0.2}}
        for i in range(5)
    ]
    p = tmp_path / "pools" / "function-calling" / "a.jsonl.gz"
    p.parent.mkdir(parents=True)
    with gzip.open(p, "wt") as f:
        f.write("\n".join(json.dumps(r) for r in pool) + "\n")
    ev = [
        {
            "question": "Text Dan that I am late.",
            "choices": ['get_phone_number("Dan")', "the bakery opens at seven"],
            "answer": 0,
        },
        {
            "question": "Email Eve the notes.",
            "choices": ["a heated pool and sea views", 'get_email_address("Eve")'],
            "answer": 1,
        },
    ]
    for r in ev:
        r["text"] = f"Question: {r['question']}\nAnswer: {r['choices'][r['answer']]}"
    write_jsonl(tmp_path / "eval" / "function-calling.jsonl", ev)
    write_jsonl(tmp_path / "mine" / "m.jsonl", [{"text": _web(i)} for i in range(100, 130)])
    return tmp_path


def _sources(root) -> ArmSources:
    return ArmSources(corpus=(str(root / "corpus"),), pools=str(root / "pools"))


def test_arm_datasets_are_built_at_one_budget(tiny):
    src = _sources(tiny)
    rnd = build_arm_dataset("random", src, 400, tiny / "out")
    pipe = build_arm_dataset("pipeline", src, 400, tiny / "out")
    for ds in (rnd, pipe):
        assert 300 < ds.tokens <= 400  # ends short by less than one document
    pipe_texts = dataset_texts(pipe.path)
    assert sum("Question:" in t or "User:" in t for t in pipe_texts) == len(pipe_texts)
    assert any(t.startswith(tuple(WEB_TEXT)) for t in dataset_texts(rnd.path))
    again = build_arm_dataset("random", src, 400, tiny / "out")
    assert again.fingerprint == rnd.fingerprint  # seeded: the same sample
    other = build_arm_dataset("random", ArmSources(corpus=src.corpus, seed=1), 400, tiny / "out2")
    assert other.fingerprint != rnd.fingerprint
    with pytest.raises(InputError, match="pools"):
        build_arm_dataset("pipeline", ArmSources(corpus=src.corpus), 400, tiny / "out3")
    with pytest.raises(InputError, match="score folder"):
        build_arm_dataset("similarity", src, 400, tiny / "out3")


def _evaluation(root, arms, trainer, seeds=2, datasets=None):
    cfg = EvaluateConfig(arms=arms, seeds=seeds, datasets=datasets or {})
    ev = BigramEvaluator({"function-calling": str(root / "eval" / "function-calling.jsonl")})
    return ArmsEvaluation(cfg, _sources(root), root / "evaluate", 400, trainer, ev)


def test_pipeline_arm_reads_a_staged_general_pool_as_written(tiny):
    """As the run's dataset step: a general pool that is a stage's output (a manifest beside its
    records) is read as written, not with the corpus reader's other fields."""
    from retriever.corpus.readers import ReaderConfig

    staged = tiny / "staged"
    write_jsonl(
        staged / "g" / "a.jsonl", [{"id": f"g-{i}", "text": _web(200 + i)} for i in range(5)]
    )
    (staged / "manifest.json").write_text("{}")
    src = ArmSources(
        pools=str(tiny / "pools"),
        general_pool=str(staged / "g"),
        reader=ReaderConfig(text_field="body"),
    )
    texts = dataset_texts(build_arm_dataset("pipeline", src, 400, tiny / "out").path)
    assert any(t == _web(200 + i) for t in texts for i in range(5))


def test_two_arm_evaluation_end_to_end_and_cache(tiny):
    trainer = BigramTrainer()
    res = _evaluation(tiny, ("random", "pipeline"), trainer).run()
    assert res.trained == 4 and len(trainer.calls) == 4  # 2 arms x 2 seeds
    # outputs: every (arm, seed, task, metric) in the parquet, intervals in the summary
    t = pq.read_table(tiny / "evaluate" / "results.parquet").to_pylist()
    assert {(r["arm"], r["seed"], r["metric"]) for r in t} == {
        (a, s, m)
        for a in ("random", "pipeline")
        for s in (0, 1)
        for m in ("acc", "acc_norm", "bpb")
    }
    summary = json.loads((tiny / "evaluate" / "summary.json").read_text())
    rows = {(r["arm"], r["metric"]): r for r in summary["table"]}
    # the pipeline's data is all tool calls: its proxies predict the tool-call eval text better
    assert rows[("pipeline", "bpb")]["mean"] < rows[("random", "bpb")]["mean"]
    assert rows[("pipeline", "bpb")]["diff"] < 0
    assert summary["arms"]["pipeline"]["tokens"] <= 400
    text = format_table(summary)
    assert "pipeline" in text and "dbpb vs random" in text
    # adding an arm trains only that arm; the others come from the cache
    res2 = _evaluation(
        tiny, ("random", "pipeline", "mine"), trainer, datasets={"mine": str(tiny / "mine")}
    ).run()
    assert res2.trained == 2 and res2.reused == 4 and len(trainer.calls) == 6
    assert {c[0] for c in trainer.calls[4:]} == {str(tiny / "evaluate" / "datasets" / "mine")}
    # one more seed: one more proxy per arm
    res3 = _evaluation(
        tiny,
        ("random", "pipeline", "mine"),
        trainer,
        seeds=3,
        datasets={"mine": str(tiny / "mine")},
    ).run()
    assert res3.trained == 3
    # another proxy setting is another cache entry
    res4 = _evaluation(tiny, ("random",), BigramTrainer(tokens=2000), seeds=1).run()
    assert res4.trained == 1


def test_run_config_evaluate_section(tiny):
    from retriever.arms import load_evaluate_config
    from retriever.run.config import load_run_config

    cfgp = tiny / "run.toml"
    cfgp.write_text(
        '[run]\nout = "./run"\n[tasks.function-calling]\ngold = ["./g.jsonl"]\n'
        '[corpus]\npaths = ["./corpus"]\n[dataset]\nbudget = "400"\n'
        '[evaluate]\narms = ["random", "mine"]\nseeds = 2\ndatasets = {mine = "./mine"}\n'
        'eval_data = {function-calling = "./eval/function-calling.jsonl"}\nproxy = {tokens = '
        "1000}\n"
    )
    cfg = load_run_config(cfgp)
    ec = load_evaluate_config(cfg, {"seeds": None, "budget": "300"})
    assert ec.arms == ("random", "mine") and ec.seeds == 2 and ec.budget == "300"
    assert ec.datasets["mine"] == str(tiny / "mine")
    assert ec.eval_tasks(cfg.task_names) == ["function-calling"]
    cfgp.write_text(cfgp.read_text() + "typo = 1\n")
    with pytest.raises(ConfigError, match="typo"):
        load_evaluate_config(load_run_config(cfgp))


def test_report_section_renders_arms(tiny):
    from retriever.report.render import render_report

    _evaluation(tiny, ("random", "pipeline"), BigramTrainer()).run()
    summary = json.loads((tiny / "evaluate" / "summary.json").read_text())
    html = render_report(arms=summary)
    assert 'id="arms"' in html and "pipeline" in html and "<svg" in html


def _score_tools(tiny, embedder) -> None:
    """A real score folder ``tiny/scores``: the tool-call gold's index (embedder + FAISS) over
    ``tiny/corpus``."""
    from retriever.index import build_index
    from retriever.score import score_corpus

    write_jsonl(tiny / "gold.jsonl", [{"text": t} for t in TOOLS_GOLD])
    idx = build_index(
        "function-calling",
        gold=[str(tiny / "gold.jsonl")],
        out=tiny / "indexes" / "function-calling",
        embedder=embedder,
    )
    assert idx.ntotal == len(TOOLS_GOLD)
    score_corpus(
        [str(tiny / "indexes" / "function-calling")],
        [str(tiny / "corpus")],
        tiny / "scores",
        top_fraction=0.2,
        store=None,
    )


@pytest.mark.slow
def test_similarity_arm_takes_the_top_scored_documents(tiny, embedder):
    """A real score folder (embedder + FAISS index): the similarity arm holds the tool documents."""
    _score_tools(tiny, embedder)
    src = ArmSources(
        corpus=(str(tiny / "corpus"),), scores=str(tiny / "scores"), pools=str(tiny / "pools")
    )
    sim = build_arm_dataset("similarity", src, 400, tiny / "out")
    assert 300 < sim.tokens <= 400
    texts = dataset_texts(sim.path)
    assert all(t.startswith(("Question:", "User:")) for t in texts)  # tool calls, no web text
    pools = json.loads((tiny / "out" / "_pools" / "similarity" / "pools.json").read_text())
    # the pool holds 3x the budget's worth of the best-scored documents, not the whole corpus
    assert pools["docs"]["function-calling"] < 80
    assert build_arm_dataset("similarity", src, 400, tiny / "out").fingerprint == sim.fingerprint


def test_band_arm_is_named_explicitly_and_reads_the_band(tmp_path):
    import pyarrow as pa

    from retriever.arms.config import EvaluateConfig
    from retriever.arms.datasets import band_ids

    band = tmp_path / "band"
    band.mkdir()
    pq.write_table(
        pa.table({"id": ["a", "b", "c"], "in_band": [True, False, True]}), band / "band.parquet"
    )
    assert band_ids(band) == {"a", "c"}
    with pytest.raises(InputError, match=r"\[band\] section"):
        band_ids(tmp_path / "none")
    assert EvaluateConfig(arms=("random", "band")).arms == ("random", "band")
    assert "band" not in EvaluateConfig().arms  # never run unless named
    with pytest.raises(ConfigError, match="band"):
        EvaluateConfig(arms=("bands",))


@pytest.mark.slow
def test_band_arm_is_the_similarity_arm_inside_the_band(tiny, embedder):
    import pyarrow as pa

    from retriever.score import read_scores

    _score_tools(tiny, embedder)
    t = read_scores(tiny / "scores", columns=["id", "score_function-calling"]).to_pydict()
    pairs = zip(t["score_function-calling"], t["id"], strict=True)
    ranked = [i for _, i in sorted(pairs, reverse=True)]
    out_of_band = set(ranked[::2])  # every other document, the best one included
    (tiny / "band").mkdir()
    pq.write_table(
        pa.table({"id": ranked, "in_band": [i not in out_of_band for i in ranked]}),
        tiny / "band" / "band.parquet",
    )
    src = ArmSources(
        corpus=(str(tiny / "corpus"),), scores=str(tiny / "scores"), band=str(tiny / "band")
    )
    band = build_arm_dataset("band", src, 400, tiny / "out")
    sim = build_arm_dataset("similarity", src, 400, tiny / "out")
    assert band.fingerprint != sim.fingerprint and 300 < band.tokens <= 400
    texts = set(dataset_texts(band.path))
    by_id = {
        d["id"]: d["text"]
        for f in ("a.jsonl", "b.jsonl")
        for d in map(json.loads, (tiny / "corpus" / f).open())
    }
    assert not texts & {by_id[i] for i in out_of_band}


def test_prefilter_and_rating_arms_are_named_explicitly_and_read_their_steps(tmp_path):
    import pyarrow as pa

    from retriever.arms.config import EvaluateConfig
    from retriever.arms.datasets import prefilter_ids, rated_low_ids

    pf = tmp_path / "prefilter"
    (pf / "matches").mkdir(parents=True)
    (pf / "manifest.json").write_text(json.dumps({"settings": {"min_matches": 2}}))
    pq.write_table(
        pa.table({"id": ["a", "b", "c"], "kw_fc": [0, 2, 5], "kw_rag": [3, 1, 0]}),
        pf / "matches" / "s.parquet",
    )
    assert prefilter_ids(pf, ["fc", "rag"]) == {"fc": {"b", "c"}, "rag": {"a"}}
    with pytest.raises(InputError, match="roleplay"):
        prefilter_ids(pf, ["roleplay"])
    with pytest.raises(InputError, match=r"\[prefilter\] section"):
        prefilter_ids(tmp_path / "none", ["fc"])
    rate = tmp_path / "rate"
    (rate / "labels").mkdir(parents=True)
    pq.write_table(
        pa.table({"id": ["a", "b", "c"], "label": ["positive", "negative", "negative"]}),
        rate / "labels" / "fc.parquet",
    )
    assert rated_low_ids(rate, ["fc"]) == {"fc": {"b", "c"}}
    with pytest.raises(InputError, match=r"\[rate\] section"):
        rated_low_ids(rate, ["rag"])
    assert EvaluateConfig(arms=("random", "prefilter", "rating")).arms[1:] == (
        "prefilter",
        "rating",
    )
    assert not {"prefilter", "rating"} & set(EvaluateConfig().arms)  # only when named


@pytest.mark.slow
def test_prefilter_and_rating_arms_restrict_the_similarity_arm(tiny, embedder):
    """On a real score folder: the prefilter arm takes only documents its patterns match, the
    rating arm never a document rated below the threshold, the similarity arm takes both kinds."""
    import pyarrow as pa

    from retriever.prefilter import PrefilterConfig, prefilter_corpus

    _score_tools(tiny, embedder)
    cfg = PrefilterConfig(tasks=("function-calling",), patterns={"function-calling": ["join()"]})
    prefilter_corpus([str(tiny / "corpus")], tiny / "prefilter", cfg, progress=False)
    by_id = {
        d["id"]: d["text"]
        for f in ("a.jsonl", "b.jsonl")
        for d in map(json.loads, (tiny / "corpus" / f).open())
    }
    low = [i for i, t in by_id.items() if "Call:" in t]  # the LLM "rated" these 1 of 5
    (tiny / "rate" / "labels").mkdir(parents=True)
    pq.write_table(
        pa.table({"id": low, "label": ["negative"] * len(low)}),
        tiny / "rate" / "labels" / "function-calling.parquet",
    )
    src = ArmSources(
        corpus=(str(tiny / "corpus"),),
        scores=str(tiny / "scores"),
        prefilter=str(tiny / "prefilter"),
        rate=str(tiny / "rate"),
    )
    sim = dataset_texts(build_arm_dataset("similarity", src, 400, tiny / "out").path)
    assert any("Call:" in t for t in sim) and any("join()" not in t for t in sim)
    pf = build_arm_dataset("prefilter", src, 400, tiny / "out")
    assert pf.tokens > 0 and all("join()" in t for t in dataset_texts(pf.path))
    rated = build_arm_dataset("rating", src, 400, tiny / "out")
    texts = dataset_texts(rated.path)
    assert 300 < rated.tokens <= 400 and not any("Call:" in t for t in texts)
    assert len({pf.fingerprint, rated.fingerprint}) == 2
    # a mixture over domains: the similarity pools' union, split between the domains
    dom = _domains_folder(tiny / "dom", {i: i.split("-")[0] for i in by_id})
    src = ArmSources(
        corpus=(str(tiny / "corpus"),), scores=str(tiny / "scores"), mixture="domain/web=1",
        domains=dom,
    )  # fmt: skip
    web = dataset_texts(build_arm_dataset("similarity", src, 400, tiny / "out_dom").path)
    assert web and all(t.startswith(tuple(WEB_TEXT)) for t in web)


def _domains_folder(path, ids_to_domain: dict[str, str]):
    import pyarrow as pa

    path.mkdir(parents=True, exist_ok=True)
    ids = list(ids_to_domain)
    pq.write_table(
        pa.table({"id": ids, "domain": [ids_to_domain[i] for i in ids]}),
        path / "domains.parquet",
    )
    return str(path)


def test_pipeline_arm_with_a_mixture_over_domains(tiny):
    """A run whose dataset mixture is over domains (`mix run --over domains`' best mixture): the
    pipeline arm splits its budget between the domains of the pools' documents, as the run does."""
    ids = [f"tool-{i}" for i in range(18)] + [f"web-{i}" for i in range(80)]
    dom = _domains_folder(tiny / "dom", {i: i.split("-")[0] for i in ids})
    src = ArmSources(pools=str(tiny / "pools"), mixture="domain/web=1", domains=dom)
    web = build_arm_dataset("pipeline", src, 400, tiny / "out")
    texts = dataset_texts(web.path)
    assert len(texts) == 5 and all(t.startswith(tuple(WEB_TEXT)) for t in texts)  # pool's 5 web
    src = ArmSources(pools=str(tiny / "pools"), mixture="domain/tool=3,domain/web=1", domains=dom)
    both = build_arm_dataset("pipeline", src, 400, tiny / "out2")
    s = json.loads((tiny / "out2" / "pipeline" / "summary.json").read_text())
    assert s["over"] == "domains" and s["pools"]["domain/tool"]["budget"] == 300
    assert 250 < s["pools"]["domain/tool"]["tokens"] <= 300 and both.tokens <= 400
