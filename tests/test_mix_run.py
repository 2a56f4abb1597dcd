"""``retriever mix run``: propose -> build -> train/evaluate proxies -> fit, resumable."""

from __future__ import annotations

import csv
import json

import pytest
from arms_proxies import BigramEvaluator, BigramTrainer
from mix_fixtures import write_mix_run

from retriever.errors import ConfigError, ResumeError
from retriever.mix.run import mix_run


@pytest.fixture
def run_cfg(tmp_path):
    write_mix_run(tmp_path)
    return tmp_path / "run.toml"


def _proxies(root):
    return BigramTrainer(tokens=3000), BigramEvaluator(
        {"function-calling": str(root / "eval" / "fc.jsonl")}
    )


def test_mix_run_end_to_end_and_resume(run_cfg):
    root = run_cfg.parent
    trainer, evaluator = _proxies(root)
    res = mix_run(run_cfg, trainer=trainer, evaluator=evaluator)
    out = root / "run" / "mix"
    assert res.trained == 6 and len(trainer.calls) == 6
    best = json.loads((out / "best_mixture.json").read_text())
    assert set(best["weights"]) == {"function-calling", "reasoning", "general"}
    assert sum(best["weights"].values()) == pytest.approx(1.0, abs=1e-4)
    assert best["goal"] == "min" and best["n_runs"] == 6
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 6 and "bpb/function-calling" in rows[0] and "score/total" in rows[0]
    # the target is the function-calling text's BPB: the proposed mixture leans to that pool
    mean_fc = sum(float(r["weight/function-calling"]) for r in rows) / len(rows)
    assert best["weights"]["function-calling"] > mean_fc
    # every mixture dataset holds the budget (within one document) and the weights' pools only
    for i, r in enumerate(rows):
        s = json.loads((out / "datasets" / f"mix_{i}" / "summary.json").read_text())
        assert s["tokens"] <= 600
        w = {k[len("weight/") :]: float(v) for k, v in r.items() if k.startswith("weight/")}
        assert (
            {k for k, v in w.items() if v >= 0.2}
            <= set(s["pools"])
            <= {k for k, v in w.items() if v > 0}
        )
    # resumable: a rerun trains nothing; a lost proxy is the only one retrained
    again = mix_run(run_cfg, trainer=trainer, evaluator=evaluator)
    assert again.trained == 0 and again.best["weights"] == best["weights"]
    victim = next((out / "proxies").iterdir())
    (victim / "train.json").unlink()
    (out / "best_mixture.json").unlink()
    assert mix_run(run_cfg, trainer=trainer, evaluator=evaluator).trained == 1
    # other settings into the same folder are refused, not mixed
    with pytest.raises(ResumeError):
        mix_run(run_cfg, {"budget": "500"}, trainer=trainer, evaluator=evaluator)


def test_mix_run_needs_enough_mixtures(run_cfg):
    trainer, evaluator = _proxies(run_cfg.parent)
    with pytest.raises(ConfigError, match="n >= 6"):
        mix_run(run_cfg, {"n": 3}, trainer=trainer, evaluator=evaluator)
    with pytest.raises(ConfigError, match="metric"):
        mix_run(run_cfg, {"metric": "loss"}, trainer=trainer, evaluator=evaluator)


def test_the_general_pool_is_read_with_the_corpus_reader_options(tmp_path, gpt2_style_tokenizer):
    """A corpus in other fields ([corpus] text_field, id_field, tokens_field and detokenizer):
    `mix run`'s general pool (links to the corpus shards) is read as the run's dataset step reads
    it, so its token share, ids and texts are the corpus reader's."""
    import pyarrow.parquet as pq
    from conftest import write_field_corpus

    from retriever.tokens import estimate_tokens

    write_mix_run(tmp_path)
    (tmp_path / "corpus" / "web.jsonl").unlink()
    texts = write_field_corpus(tmp_path / "corpus", gpt2_style_tokenizer)
    tok = str(gpt2_style_tokenizer / "gpt2")
    fields = {"text_field": "body", "id_field": "doc_id", "tokens_field": "ids", "detokenizer": tok}
    cfg = tmp_path / "run.toml"
    corpus = '[corpus]\npaths = ["./corpus"]\n'
    lines = "".join(f"{k} = {json.dumps(v)}\n" for k, v in fields.items())
    cfg.write_text(cfg.read_text().replace(corpus, corpus + lines))
    mix_run(cfg, trainer=_proxies(tmp_path)[0], evaluator=_proxies(tmp_path)[1])
    out = tmp_path / "run" / "mix"
    shares = json.loads((out / "mixtures.csv.json").read_text())["shares"]
    assert shares["general"] == sum(estimate_tokens(t) for t in texts.values())
    general = {}
    for part in sorted((out / "datasets").glob("mix_*/parquet/*.parquet")):
        rows = pq.read_table(part).to_pylist()
        general.update({r["id"]: r["text"] for r in rows if r["pool"] == "general"})
    assert general and general == {k: texts[k] for k in general}
    settings = json.loads((out / "manifest.json").read_text())["settings"]
    assert settings["reader"] == {"pools": ["general"], **fields}


def test_mix_run_takes_corpus_pools_as_any_iterable(tmp_path):
    from retriever.mix.run import MixRun, MixRunConfig

    trainer, evaluator = BigramTrainer(tokens=100), BigramEvaluator({})
    pools = {"fc": "a", "general": "b", "other": "c"}
    run = MixRun(
        MixRunConfig(),
        pools,
        1000,
        trainer,
        evaluator,
        tmp_path,
        corpus_pools=(k for k in ("other", "general")),  # a generator: read once
    )
    assert run.corpus_pools == ["general", "other"]  # in the pools' order
