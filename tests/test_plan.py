"""``retriever plan``: counts from parquet metadata / an exact read, sample and cap arithmetic,
rates from a file, the ceiling that makes ``retriever run`` refuse, bad input."""

from __future__ import annotations

import json

import pytest
from conftest import run_config

from retriever.cli import main
from retriever.errors import ConfigError
from retriever.plan import Rates, load_rates, make_plan, profile_corpus
from retriever.run.config import load_run_config
from retriever.run.job import RunJob
from retriever.score.job import DocSampler


def _corpus(root, n_clusters=3, per_shard=40, shards_per_cluster=2):
    import pyarrow as pa
    import pyarrow.parquet as pq

    for c in range(1, n_clusters + 1):
        for k in range(shards_per_cluster):
            p = root / "corpus" / f"cluster_{c}" / f"cluster_{c}_{k:03d}.parquet"
            p.parent.mkdir(parents=True, exist_ok=True)
            rows = [
                {"text": f"document {c}-{k}-{i} " + "word " * (i % 7 + 3)} for i in range(per_shard)
            ]
            pq.write_table(pa.Table.from_pylist(rows), p)


@pytest.fixture()
def cfg_path(tmp_path):
    _corpus(tmp_path)
    (tmp_path / "gold.jsonl").write_text('{"text": "q"}\n')

    def write(sample="50%", exact_limit=100_000, **plan):
        return run_config(
            tmp_path / "run.toml",
            {"a": "./gold.jsonl", "b": "./gold.jsonl"},
            "./corpus",
            seed=2,
            score={"sample": sample, "top_fraction": 0.5},
            confirm={"max_candidates": 10},
            distill={"multilabel": True},
            filter={"threshold": 0.5},
            dataset={"budget": "5k"},
            plan={"cores": 64, "gpus": 8, "exact_limit": exact_limit, **plan},
        )

    return write


def test_plan_counts_are_exact_on_a_small_corpus(cfg_path):
    cfg = load_run_config(cfg_path())
    plan = make_plan(cfg, Rates())
    assert plan.corpus["docs"] == 240 and plan.corpus["exact"] and plan.corpus["shards"] == 6
    ids = [
        f"cluster_{c}__cluster_{c}_{k:03d}:{i}"
        for c in (1, 2, 3)
        for k in (0, 1)
        for i in range(40)
    ]
    want = sum(DocSampler(0.5, seed=2).keep(i) for i in ids)
    score = plan.stage("score")
    assert score.docs == want and score.forwards == want and score.exact
    conf = plan.stage("confirm")
    assert conf.docs == 20 and conf.exact  # min(10 cap, 0.5 x sampled) x 2 tasks
    filt = plan.stage("filter")
    assert filt.docs == 240 and filt.forwards == 240  # multi-label: one prediction per document
    chars = sum(
        len(f"document {c}-{k}-{i} " + "word " * (i % 7 + 3))
        for c in (1, 2, 3)
        for k in (0, 1)
        for i in range(40)
    )
    assert plan.corpus["chars"] == chars
    d = plan.to_dict()
    assert set(d["totals"]) >= {
        "core_hours",
        "gpu_hours",
        "wall_hours_64_cores",
        "wall_hours_8_gpus",
    }


def test_plan_from_metadata_without_a_full_read(cfg_path):
    cfg = load_run_config(cfg_path(sample=60, exact_limit=0))
    prof = profile_corpus(list(cfg.corpus.paths), RunJob(cfg).corpus_reader(), exact_limit=0)
    assert prof.docs == 240 and prof.ids is None and "parquet metadata" in prof.method
    plan = make_plan(cfg, Rates(), prof)
    # a count becomes a fraction of the metadata's row count: 60 of 240 expected
    assert plan.stage("score").docs == 60 and not plan.stage("score").exact
    assert "fraction 0.25" in " ".join(plan.stage("score").notes)


def test_rates_file_and_bad_rates(tmp_path):
    f = tmp_path / "rates.json"
    f.write_text(json.dumps({"rates": {"embed_docs_per_s_gpu": 12_345}}))
    r = load_rates(f)
    assert r.embed_docs_per_s_gpu == 12_345 and r.sources["embed_docs_per_s_gpu"].startswith(
        "passed in"
    )
    f.write_text(json.dumps({"embed_speed": 3}))
    with pytest.raises(ConfigError, match="unknown rate"):
        load_rates(f)
    with pytest.raises(ConfigError, match="positive"):
        Rates().with_values({"gpu_flops": -1}, "x")


def test_plan_cli_and_run_refuses_a_plan_over_the_ceiling(cfg_path, capsys, tmp_path):
    p = cfg_path(max_core_hours=1e-9)
    assert main(["plan", str(p), "--no-calibrate", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["stages"][0]["stage"] == "score" and out["totals"]["over_ceiling"]
    assert main(["plan", str(p), "--no-calibrate"]) == 0
    assert "OVER THE CEILING" in capsys.readouterr().out
    assert main(["run", str(p)]) == 2
    err = capsys.readouterr().err
    assert "exceeds the configured ceiling" in err and "--yes" in err
    assert not (tmp_path / "out" / "run.json").exists()  # nothing ran
    with pytest.raises(ConfigError, match=r"\[plan\]"):
        load_run_config(cfg_path(calibrate_docs=0))
    with pytest.raises(ConfigError, match="unknown rate"):
        load_run_config(cfg_path(rates={"fast": 1}))


def test_plan_counts_the_optional_band_and_rate_steps(tmp_path):
    _corpus(tmp_path)
    (tmp_path / "gold.jsonl").write_text('{"text": "q"}\n')
    p = run_config(
        tmp_path / "run.toml",
        {"a": "./gold.jsonl", "b": "./gold.jsonl"},
        "./corpus",
        seed=0,
        score={"top_fraction": 0.1},
        band={"model": "gpt2", "max_docs": 100},
        rate={"model": "m", "max_candidates": 5, "negatives_per_positive": 1.0},
    )
    plan = make_plan(load_run_config(p), Rates(rate_requests_per_s=2.0))
    band, rate = plan.stage("band"), plan.stage("rate")
    assert band.docs == 100 and band.gpu_hours is not None and band.gpu_hours > 0
    # min(5, 10% of 240 = 24) candidates + as many random documents, for 2 tasks
    assert rate.docs == rate.forwards == 20 and rate.seconds_here == pytest.approx(10.0)
    assert rate.core_hours is None and "max_requests" not in " ".join(rate.notes)
    capped = run_config(
        tmp_path / "capped.toml",
        {"a": "./gold.jsonl"},
        "./corpus",
        seed=0,
        rate={"model": "m", "max_requests": 7},
    )
    rate = make_plan(load_run_config(capped), Rates()).stage("rate")
    assert rate.docs == 7 and "capped at max_requests = 7" in " ".join(rate.notes)
    assert "band" not in [s.stage for s in make_plan(load_run_config(capped), Rates()).stages]
