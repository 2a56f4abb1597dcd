"""The perplexity band: cuts and sides (fast), and the stage end to end under a tiny trained
reference LM through the confirm stage's BPB cache (slow)."""

from __future__ import annotations

import math
import random

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import WEB_TEXT, write_jsonl

from retriever.band import BandConfig, band_cuts, band_docs, band_side, spearman
from retriever.errors import ConfigError, ResumeError


def test_cuts_are_quantiles_of_the_finite_values_and_belong_to_the_band():
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0, np.nan, 6.0, 7.0, 8.0, 9.0, 10.0])
    lo, hi = band_cuts(x, 0.1, 0.9)
    assert (lo, hi) == pytest.approx((1.9, 9.1))
    side = band_side(x, lo, hi)
    assert list(side) == ["below"] + ["in"] * 4 + ["none"] + ["in"] * 4 + ["above"]
    assert list(band_side(x, 2.0, 9.0)[[1, 9]]) == ["in", "in"]  # a cut is inside
    assert all(math.isnan(c) for c in band_cuts(np.array([np.nan]), 0.1, 0.9))


def test_spearman_of_ranks_and_its_undefined_cases():
    x = np.array([1.0, 2.0, 3.0, 4.0, np.nan])
    assert spearman(x, np.array([10.0, 20.0, 30.0, 40.0, 0.0])) == pytest.approx(1.0)
    assert spearman(x, np.array([4.0, 3.0, 2.0, 1.0, 9.0])) == pytest.approx(-1.0)
    assert math.isnan(spearman(x, np.ones(5)))  # a constant has no ranks
    assert math.isnan(spearman(np.array([1.0, 2.0]), np.array([1.0, 2.0])))


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"model": ""}, "reference model"),
        ({"low": 0.9, "high": 0.1}, "below high"),
        ({"high": 1.5}, r"\[0, 1\]"),
        ({"max_docs": 0}, "max_docs"),
    ],
)
def test_band_config_errors(bad, match):
    with pytest.raises(ConfigError, match=match):
        BandConfig(**{"model": "m", **bad})
    assert BandConfig(model="org/Some Model").model_name == "Some_Model"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A tiny byte-level GPT-2 trained a few seconds on plain English (the first panel model)."""
    from retriever.confirm.tiny_panel import train_tiny_panel

    rng = random.Random(0)
    texts = [" ".join(rng.sample(WEB_TEXT, 3)) for _ in range(60)]
    out = tmp_path_factory.mktemp("ref")
    train_tiny_panel(out, {"web": texts}, steps=30, n_models=2, seed=0)
    return out / "tiny-0"


def _corpus(path):
    rng = random.Random(1)
    docs = [{"id": f"web{i}", "text": " ".join(rng.sample(WEB_TEXT, 2))} for i in range(16)]
    docs += [{"id": f"boiler{i}", "text": "the " * (60 + i)} for i in range(2)]
    noise = "{}#@~^|\\0123456789QZXJ$%&<>" + "\u00e9\u4e2d\u0416\u03a9"
    docs += [
        {"id": f"noise{i}", "text": "".join(rng.choice(noise) for _ in range(200))}
        for i in range(2)
    ]
    write_jsonl(path, docs)
    return docs


@pytest.mark.slow
def test_band_end_to_end_then_reband_from_the_cache(reference, tmp_path):
    from retriever.cli import main

    docs = _corpus(tmp_path / "corpus" / "c.jsonl")
    cfg = BandConfig(model=str(reference), low=0.1, high=0.9)
    s = band_docs(tmp_path / "corpus", tmp_path / "band", cfg)
    assert s["docs_in"] == len(docs) == s["in_band"] + s["below_band"] + s["above_band"]
    assert s["balanced"] and (s["below_band"], s["above_band"]) == (2, 2)
    t = pq.read_table(tmp_path / "band" / "band.parquet").to_pydict()
    side = dict(zip(t["id"], t["side"], strict=True))
    assert side["boiler0"] == side["boiler1"] == "below"  # too predictable
    assert side["noise0"] == side["noise1"] == "above"  # noise
    bpb = np.asarray(t["bpb"])
    assert (s["cut_low_bpb"], s["cut_high_bpb"]) == pytest.approx(np.quantile(bpb, [0.1, 0.9]))
    assert s["cost"]["computed_docs"] == len(docs)
    # the numbers are the confirm stage's BPB, from its cache layout
    from retriever.confirm.matrix import read_matrix

    ids, models, m, _ = read_matrix(tmp_path / "band")
    assert models == ["tiny-0"] and np.allclose(m[:, 0], bpb)
    # a narrower band through the CLI: nothing computed again
    argv = ["band", "--docs", str(tmp_path / "corpus"), "--out", str(tmp_path / "band")]
    argv += ["--model", str(reference), "--low", "0.25", "--high", "0.75", "--json", "-q"]
    assert main(argv) == 0
    s2 = band_docs(
        tmp_path / "corpus",
        tmp_path / "band",
        BandConfig(model=str(reference), low=0.25, high=0.75),
    )
    assert s2["cost"]["computed_docs"] == 0 and s2["cost"]["cached_docs"] == len(docs)
    lo, hi = np.quantile(bpb, [0.25, 0.75])
    assert s2["in_band"] == int(((bpb >= lo) & (bpb <= hi)).sum()) < s["in_band"]
    # another corpus into the same folder is refused (the cache is keyed by id)
    _corpus(tmp_path / "other" / "c.jsonl")
    (tmp_path / "other" / "c.jsonl").write_text((tmp_path / "other" / "c.jsonl").read_text() + "\n")
    with pytest.raises(ResumeError):
        band_docs(tmp_path / "other", tmp_path / "band", cfg)


@pytest.mark.slow
def test_band_samples_documents_and_reports_rejects(reference, tmp_path):
    docs = _corpus(tmp_path / "corpus" / "c.jsonl")
    with open(tmp_path / "corpus" / "c.jsonl", "a") as f:
        f.write("{not json\n")
    s = band_docs(
        tmp_path / "corpus", tmp_path / "band", BandConfig(model=str(reference), max_docs=10)
    )
    assert s["sampled"] and s["cost"]["computed_docs"] == 10
    assert s["docs_in"] == 11 and s["rejected"].get("bad_json") == 1 and s["balanced"]
    assert pq.read_table(tmp_path / "band" / "band.parquet").num_rows == 10 < len(docs)


def test_report_shows_the_band_histogram_with_both_cuts(tmp_path):
    import json

    from retriever.report.collect import collect_report
    from retriever.report.render import render_report

    x = np.random.default_rng(0).normal(1.2, 0.2, 500)
    counts, edges = np.histogram(x, bins=30)
    summary = {
        "stage": "band",
        "model_name": "ref",
        "low": 0.1,
        "high": 0.9,
        "cut_low_bpb": float(np.quantile(x, 0.1)),
        "cut_high_bpb": float(np.quantile(x, 0.9)),
        "docs_in": 500,
        "in_band": 400,
        "below_band": 50,
        "above_band": 50,
        "spearman_bpb_vs_similarity": {"rag": -0.25},
        "histogram": {"counts": counts.tolist(), "edges": edges.tolist()},
    }
    d = tmp_path / "run" / "band"
    d.mkdir(parents=True)
    (d / "summary.json").write_text(json.dumps(summary))
    (d / "band.parquet").write_bytes(b"")  # found by its name; the summary holds the figures
    data = collect_report(tmp_path / "run")
    assert data["band"]["in_band"] == 400
    html = render_report(**data)
    assert 'id="band"' in html and "Perplexity band" in html
    assert f"q0.1 = {summary['cut_low_bpb']:.3f}" in html
    assert f"q0.9 = {summary['cut_high_bpb']:.3f}" in html
    assert "400 in band, 50 below (too predictable), 50 above (noise) of 500" in html
    assert "rag -0.250" in html
