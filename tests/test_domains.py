"""Domains (cluster ids or k-means of stored embeddings) and the stratified order of
build-dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import MATH_GOLD, TOOLS_GOLD, WEB_TEXT, write_jsonl

from retriever.dataset.select import Candidates, select_budgeted, stratified_order
from retriever.errors import ConfigError, InputError


def _cands(score, domain, tokens=None):
    n = len(score)
    return Candidates(
        n_tokens=np.asarray(tokens if tokens is not None else [10] * n, dtype=np.int64),
        score=np.asarray(score, dtype=np.float64),
        id_hash=np.arange(n, dtype=np.uint64),
        text_hash=np.arange(n, dtype=np.uint64) + 1000,
        domain=np.asarray(domain, dtype=np.int64),
    )


def test_stratified_fills_tiers_by_share_within_domains():
    rng = np.random.default_rng(0)
    # domain 0: 100 documents with high scores; domain 1: 100 with low scores
    score = np.r_[rng.uniform(0.5, 1.0, 100), rng.uniform(0.0, 0.5, 100)]
    dom = np.r_[np.zeros(100), np.ones(100)].astype(int)
    c = _cands(score, dom)
    order = stratified_order(c, ((0.1, 0.7), (0.5, 0.3)))
    assert sorted(order.tolist()) == list(range(200))  # a permutation
    # "top" would take domain 0 only; stratified takes each domain's best in proportion
    sel = select_budgeted({"p": c}, {"p": 200}, order="stratified").pools["p"].selected
    assert len(sel) == 20
    assert abs((dom[sel] == 0).sum() - (dom[sel] == 1).sum()) <= 2
    top = select_budgeted({"p": c}, {"p": 200}, order="top").pools["p"].selected
    assert (dom[top] == 0).all()
    # tier 0 (top 10% of each domain: 20 docs) gives ~70% of the 20 picks, tier 1 the rest
    q_rank = {}
    for d in (0, 1):
        idx = np.flatnonzero(dom == d)
        for r, i in enumerate(idx[np.argsort(-score[idx])]):
            q_rank[int(i)] = r / len(idx)
    tier0 = sum(q_rank[int(i)] < 0.1 for i in sel)
    assert 13 <= tier0 <= 15
    assert all(q_rank[int(i)] < 0.5 for i in sel)
    # documents below the last cut come after all tiered ones
    below = [i for i in order if q_rank[int(i)] >= 0.5]
    assert order[-len(below) :].tolist() == below


def test_stratified_tiers_are_checked():
    c = _cands([0.5, 0.4], [0, 0])
    for bad in (((0.5, 0.5), (0.1, 0.5)), ((0.1, -1.0),), ((1.5, 1.0),), ()):
        with pytest.raises(ConfigError):
            stratified_order(c, bad)


@pytest.mark.slow
def test_domains_from_kmeans_and_cluster_ids_then_stratified_dataset(
    tiny_indexes, embedder, tmp_path
):
    from retriever.cli import main
    from retriever.domains import DomainConfig, assign_domains, read_domains
    from retriever.score import score_corpus

    docs = [
        {"id": f"d{i}", "text": t, "cluster_id": i % 2}
        for i, t in enumerate(TOOLS_GOLD + MATH_GOLD + WEB_TEXT)
    ]
    write_jsonl(tmp_path / "corpus" / "a.jsonl", docs)
    idx = [str(tiny_indexes["tools"]), str(tiny_indexes["math"])]
    score_corpus(idx, [str(tmp_path / "corpus")], tmp_path / "scores", store=None)
    s = assign_domains(tmp_path / "scores", tmp_path / "dom", DomainConfig(source="kmeans", k=3))
    assert s["method"] == "kmeans" and sum(d["size"] for d in s["domains"]) == len(docs)
    dom = read_domains(tmp_path / "dom")
    assert set(dom) == {d["id"] for d in docs} and len(set(dom.values())) <= 3
    # the math gold lands mostly in one k-means domain: embeddings group by kind of text
    math_doms = [dom[f"d{i}"] for i in range(len(TOOLS_GOLD), len(TOOLS_GOLD) + len(MATH_GOLD))]
    assert max(math_doms.count(x) for x in set(math_doms)) >= 4
    # same seed, same domains
    assign_domains(tmp_path / "scores", tmp_path / "dom2", DomainConfig(source="kmeans", k=3))
    assert read_domains(tmp_path / "dom2") == dom
    c = assign_domains(tmp_path / "scores", tmp_path / "domc", DomainConfig(source="auto"))
    assert c["method"] == "cluster_id" and {d["domain"] for d in c["domains"]} == {"0", "1"}
    with pytest.raises(ConfigError, match="k-means"):
        assign_domains(tmp_path / "scores", tmp_path / "x", DomainConfig(source="kmeans", k=99))
    # build-dataset --order stratified --domains reads them
    pool = [
        {"id": d["id"], "text": d["text"], "metadata": {"prob/p": (i % 7) / 7}}
        for i, d in enumerate(docs)
    ]
    write_jsonl(tmp_path / "pools" / "p" / "x.jsonl", pool)
    rc = main(
        [
            "build-dataset",
            "--pools",
            str(tmp_path / "pools"),
            "--mixture",
            "p=1",
            "--budget",
            "400",
            "--out",
            str(tmp_path / "ds"),
            "--order",
            "stratified",
            "--domains",
            str(tmp_path / "dom"),
            "-q",
        ]
    )
    assert rc == 0
    summary = json.loads((tmp_path / "ds" / "summary.json").read_text())
    assert 0 < summary["tokens"] <= 400
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert manifest["settings"]["tiers"] == [[0.1, 0.7], [0.5, 0.3]]
    with pytest.raises(InputError):
        read_domains(tmp_path / "nowhere")


@pytest.mark.slow
def test_run_domains_step_feeds_the_stratified_dataset(tiny_indexes, embedder, tmp_path):
    """``[domains]`` in a run config: the step writes RUN/domains from the run's score folder and
    the dataset step fills its stratified tiers within them (the manifest names the file)."""
    from retriever.domains import read_domains
    from retriever.run.config import load_run_config
    from retriever.run.job import RunJob
    from retriever.score import score_corpus

    docs = [{"id": f"d{i}", "text": t} for i, t in enumerate(TOOLS_GOLD + MATH_GOLD + WEB_TEXT)]
    write_jsonl(tmp_path / "corpus" / "a.jsonl", docs)
    cfg_path = tmp_path / "run.toml"
    cfg_path.write_text(
        f'[run]\nout = "{tmp_path / "run"}"\n'
        f'[tasks.tools]\ngold = ["{tiny_indexes["tools"]}"]\n'
        f'[corpus]\npaths = ["{tmp_path / "corpus"}"]\n'
        '[domains]\nk = 3\nsource = "kmeans"\n'
        '[dataset]\nbudget = "400"\nmixture = "equal"\norder = "stratified"\n'
    )
    job = RunJob(load_run_config(cfg_path), progress=False)
    score_corpus([str(tiny_indexes["tools"])], [str(tmp_path / "corpus")], job.out / "scores")
    r = job._domains()
    assert r["method"] == "kmeans" and r["documents"] == len(docs) and r["domains"] == 3
    dom = read_domains(job.out / "domains")
    assert set(dom) == {d["id"] for d in docs}
    pool = [
        {"id": d["id"], "text": d["text"], "metadata": {"prob/tools": (i % 7) / 7}}
        for i, d in enumerate(docs)
    ]
    write_jsonl(job.out / "pools" / "tools" / "x.jsonl", pool)
    s = job._dataset()
    assert 0 < s["tokens"] <= 400
    manifest = json.loads((job.out / "dataset" / "manifest.json").read_text())
    assert manifest["settings"]["domains"][0] == str(job.out / "domains")
    from retriever.report.collect import collect_report

    assert collect_report(job.out)["domains"]["method"] == "kmeans"  # the report finds them


def test_report_shows_the_domains(tmp_path):
    from retriever.report.collect import collect_report
    from retriever.report.render import render_report

    d = tmp_path / "run" / "domains"
    d.mkdir(parents=True)
    (d / "domains.parquet").write_bytes(b"")
    doms = [
        {
            "domain": "k000",
            "size": 30,
            "share": 0.6,
            "top_terms": ["function", "api"],
            "samples": ["call <get_weather> with city"],
        },
        {"domain": "k001", "size": 20, "share": 0.4, "top_terms": ["apples"], "samples": []},
    ]
    (d / "domains.json").write_text(json.dumps({"method": "kmeans", "n_docs": 50, "domains": doms}))
    data = collect_report(tmp_path / "run")
    assert data["facts"]["domains"] == "2 (kmeans)"
    html = render_report(**data)
    assert 'id="domains"' in html and "2 domains by kmeans over 50 documents" in html
    assert "function, api" in html and "60.0%" in html
    assert "call &lt;get_weather&gt; with city" in html  # previews are escaped
