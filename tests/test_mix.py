"""RegMix: proposals around the token shares, and a fit that must recover a synthetic ground
truth."""

from __future__ import annotations

import csv
import gzip
import json

import numpy as np
import orjson
import pytest

from retriever.cli import main as cli_main
from retriever.errors import ConfigError, InputError
from retriever.mix import (
    ProxyResults,
    cross_validate,
    fit_mixture,
    propose_mixtures,
    read_results,
    smooth_prior,
    upper_bounds,
)

SHARES = {"fc": 0.4, "rp": 0.3, "rag": 0.2, "reason": 0.1}
W_STAR = np.array([0.45, 0.15, 0.25, 0.15])  # the synthetic best mixture, inside the simplex


def weights(mixes: list[dict]) -> np.ndarray:
    return np.array([[m[k] for k in SHARES] for m in mixes])  # [n_runs, n_pools]


def runs(X: np.ndarray, y: np.ndarray, name: str = "score/total") -> ProxyResults:
    return ProxyResults(list(SHARES), [str(i) for i in range(len(X))], X, {name: y})


# -- proposals ------------------------------------------------------------------------------------
def test_proposals_are_distinct_mixtures_on_the_grid_and_seeded():
    a = propose_mixtures(SHARES, 64, seed=3)
    b = propose_mixtures(SHARES, 64, seed=3)
    c = propose_mixtures(SHARES, 64, seed=4)
    assert a == b and a != c
    X = weights(a)
    assert X.shape == (64, 4)
    assert np.allclose(X.sum(axis=1), 1, atol=3e-3)
    assert np.allclose(X * 1000, np.round(X * 1000), atol=1e-6)  # multiples of minimum=1e-3
    assert len({tuple(r) for r in X.round(6)}) == 64
    # spread from near-corners to near the centre (RegMix's strength range)
    assert X.max() > 0.9 and (X == 0).any()


def test_proposals_centre_on_smoothed_token_shares():
    X = weights(propose_mixtures(SHARES, 400, seed=0, oversample=20))
    prior = smooth_prior(SHARES, 0.5)  # shares ** 0.5, normalized
    assert np.allclose(prior, np.sqrt([0.4, 0.3, 0.2, 0.1]) / np.sqrt([0.4, 0.3, 0.2, 0.1]).sum())
    assert np.abs(X.mean(axis=0) - prior).max() < 0.05
    assert list(np.argsort(-X.mean(axis=0))) == [0, 1, 2, 3]


def test_bounds_and_empty_pools_are_respected():
    tokens = {"fc": 4e9, "rp": 1e8, "rag": 2e9, "reason": 0}
    up = upper_bounds(tokens, budget=2_000_000_000, max_epochs=4)
    assert up.tolist() == [1.0, 0.2, 1.0, 0.0]
    X = weights(propose_mixtures(tokens, 32, seed=0, upper=up))
    assert X[:, 1].max() <= 0.2 + 1e-9
    assert (X[:, 3] == 0).all()  # a pool with no tokens is never proposed
    with pytest.raises(ConfigError, match="distinct mixtures"):
        propose_mixtures({"a": 1, "b": 1}, 64, upper=np.array([0.01, 0.01]))
    with pytest.raises(ConfigError):
        smooth_prior({"a": -1.0, "b": 1.0})
    with pytest.raises(ConfigError, match="two non-empty pools"):
        propose_mixtures({"a": 5e9, "b": 0}, 8)


# -- fit -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1])
def test_fit_recovers_an_interior_optimum(seed):
    """Proxy score = -|w - w*|^2 + noise: the fit must find w* better than any proxy run did."""
    X = weights(propose_mixtures(SHARES, 64, seed=seed))
    y = -((X - W_STAR) ** 2).sum(axis=1) + np.random.default_rng(seed).normal(0, 0.005, len(X))
    out = fit_mixture(runs(X, y), seed=seed, n_samples=20_000)
    w = np.array([out["weights"][k] for k in SHARES])
    best_run = np.array([out["best_observed"]["weights"][k] for k in SHARES])
    assert out["model"] == "quadratic"
    assert out["held_out_spearman"] > 0.95
    assert out["fit"]["score/total"]["linear"]["spearman"] < out["held_out_spearman"]
    assert np.abs(w - W_STAR).sum() < 0.08
    assert np.abs(w - W_STAR).sum() < np.abs(best_run - W_STAR).sum()
    assert abs(sum(out["weights"].values()) - 1) < 1e-4


def test_fit_linear_truth_puts_weight_on_the_best_pool():
    beta = np.array([0.1, 0.5, 0.2, 0.3])  # rp alone is best
    X = weights(propose_mixtures(SHARES, 48, seed=5))
    y = X @ beta + np.random.default_rng(0).normal(0, 0.01, len(X))
    out = fit_mixture(runs(X, y), n_samples=20_000)
    assert out["model"] in ("linear", "quadratic")
    assert out["held_out_spearman"] > 0.95
    assert max(out["weights"], key=out["weights"].get) == "rp"
    assert out["weights"]["rp"] > 0.8
    assert out["weights"]["rp"] <= X[:, 1].max() + 1e-6  # never beyond what a proxy run tried


def test_minimize_a_loss():
    X = weights(propose_mixtures(SHARES, 64, seed=2))
    loss = 2.0 + ((X - W_STAR) ** 2).sum(axis=1)
    out = fit_mixture(runs(X, loss, "val_loss"), maximize=False, n_samples=20_000)
    w = np.array([out["weights"][k] for k in SHARES])
    assert out["goal"] == "min" and out["target"] == "val_loss"
    assert np.abs(w - W_STAR).sum() < 0.08 and out["predicted"] < loss.min()


def test_gbm_fits_held_out_runs():
    pytest.importorskip("sklearn")
    X = weights(propose_mixtures(SHARES, 64, seed=0))
    y = -((X - W_STAR) ** 2).sum(axis=1)
    cv = cross_validate("gbm", X, y, folds=5)
    assert cv["spearman"] > 0.85 and cv["n"] == 64
    out = fit_mixture(runs(X, y), model="gbm", n_samples=20_000)
    w = np.array([out["weights"][k] for k in SHARES])
    assert out["model"] == "gbm" and np.abs(w - W_STAR).sum() < 0.3


def test_scores_with_no_signal_get_a_low_held_out_spearman():
    X = weights(propose_mixtures(SHARES, 64, seed=0))
    y = np.random.default_rng(0).normal(size=64)
    cv = cross_validate("quadratic", X, y)
    assert abs(cv["spearman"]) < 0.35  # the report says the fit is not to be trusted


# -- results files ---------------------------------------------------------------------------------
def write_results(path, X, cols: dict[str, list]):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["mix_id", *[f"weight/{k}" for k in SHARES], *cols])
        for i, row in enumerate(X):
            w.writerow([i, *row, *[cols[c][i] for c in cols]])


def test_read_results_targets_and_missing_runs(tmp_path):
    X = weights(propose_mixtures(SHARES, 20, seed=0))
    fc = list(X[:, 0])
    rp = list(X[:, 1])
    fc[3] = ""  # a proxy run that crashed: no value
    write_results(tmp_path / "r.csv", X, {"score/fc": fc, "score/rp": rp})
    res = read_results(tmp_path / "r.csv")
    assert res.pools == list(SHARES) and res.X.shape == (20, 4)
    assert np.isnan(res.targets["score/fc"][3])
    # linear: this test is about reading targets; model choice (and gbm's cost) is tested elsewhere
    out = fit_mixture(res, "score/fc", model="linear", n_samples=5000)
    assert out["skipped_runs"] == ["3"] and out["n_runs"] == 19
    assert set(out["fit"]) == {"score/fc", "score/rp"}  # fit quality per task
    out = fit_mixture(
        res, model="linear", n_samples=5000
    )  # no total column: the mean of the task scores
    assert out["target"] == "mean(score/fc, score/rp)"
    with pytest.raises(ConfigError, match="no column"):
        fit_mixture(res, "score/rag")


def test_results_errors(tmp_path):
    with pytest.raises(InputError):
        read_results(tmp_path / "missing.csv")
    (tmp_path / "a.csv").write_text("mix_id,weight/a,weight/b\n0,0.5,0.5\n")
    with pytest.raises(ConfigError, match="no score column"):
        read_results(tmp_path / "a.csv")
    (tmp_path / "b.csv").write_text("mix_id,weight/a,weight/b,score\n0,0.5,0.5,high\n")
    with pytest.raises(ConfigError, match="not a number"):
        read_results(tmp_path / "b.csv")
    (tmp_path / "c.csv").write_text("mix_id,weight/a,weight/b,score\n0,0.5,0.5,1\n1,0.2,0.8,2\n")
    with pytest.raises(ConfigError, match="at least 6"):
        fit_mixture(read_results(tmp_path / "c.csv"))


# -- the whole loop through the CLI ----------------------------------------------------------------
def test_propose_fit_build_loop(tmp_path, capsys):
    """propose from pools -> (synthetic proxy scores) -> fit -> build-dataset with the result."""
    pools = tmp_path / "pools"
    for task, n in (("fc", 40), ("rp", 20)):
        (pools / task).mkdir(parents=True)
        with gzip.open(pools / task / "s0.jsonl.gz", "wb") as fh:
            for i in range(n):
                rec = {
                    "id": f"{task}{i}",
                    "text": f"{task} document number {i} " * 5,
                    "metadata": {f"prob/{task}": 1 - i / n},
                }
                fh.write(orjson.dumps(rec) + b"\n")
    csv_path = tmp_path / "mix" / "mixtures.csv"
    csv_path.parent.mkdir()
    assert (
        cli_main(
            [
                "mix",
                "propose",
                "--pools",
                str(pools),
                "--n",
                "16",
                "-o",
                str(csv_path),
                "--scan-cache",
                str(tmp_path / "scan"),
                "--json",
            ]
        )
        == 0
    )
    prop = json.loads(capsys.readouterr().out)
    assert prop["shares"]["fc"] > prop["shares"]["rp"] > 0
    info = json.loads((tmp_path / "mix" / "mixtures.csv.json").read_text())
    assert info["n"] == 16 and info["pools"] == ["fc", "rp"]
    # a proxy run per row: its "score" peaks at 70% fc
    rows = list(csv.DictReader(open(csv_path)))
    with open(tmp_path / "results.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["mix_id", "weight/fc", "weight/rp", "score/total"])
        for r in rows:
            fc = float(r["weight/fc"])
            w.writerow([r["mix_id"], r["weight/fc"], r["weight/rp"], 1 - (fc - 0.7) ** 2])
    assert (
        cli_main(
            [
                "mix",
                "fit",
                str(tmp_path / "results.csv"),
                "-o",
                str(tmp_path / "best.json"),
                "--samples",
                "5000",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "best mixture" in text and "Spearman" in text
    best = json.loads((tmp_path / "best.json").read_text())
    assert abs(best["weights"]["fc"] - 0.7) < 0.1
    assert (
        cli_main(
            [
                "build-dataset",
                "--pools",
                str(pools),
                "--mixture",
                str(tmp_path / "best.json"),
                "--budget",
                "400",
                "--out",
                str(tmp_path / "final"),
                "--scan-cache",
                str(tmp_path / "scan"),
                "--json",
            ]
        )
        == 0
    )
    s = json.loads(capsys.readouterr().out)
    assert abs(s["pools"]["fc"]["weight"] - best["weights"]["fc"]) < 1e-6
    assert s["tokens"] <= 400
    # a proxy build of one proposal row
    assert (
        cli_main(
            [
                "build-dataset",
                "--pools",
                str(pools),
                "--mixture",
                str(csv_path),
                "--mix-id",
                "3",
                "--budget",
                "200",
                "--out",
                str(tmp_path / "proxy3"),
                "--json",
            ]
        )
        == 0
    )
    s = json.loads(capsys.readouterr().out)
    assert (
        abs(
            s["pools"]["fc"]["weight"]
            - float(rows[3]["weight/fc"])
            / (float(rows[3]["weight/fc"]) + float(rows[3]["weight/rp"]))
        )
        < 1e-6
    )


def test_propose_reads_corpus_pools_with_the_reader_options(tmp_path, gpt2_style_tokenizer, capsys):
    """`mix propose --pool general=CORPUS` with the reader options counts the corpus's documents
    as build-dataset reads them (text fields, token ids, ids), a filter task folder through
    --pool as written; over domains, a domains map keyed by the corpus's ids reaches them."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from conftest import write_field_corpus, write_pool

    from retriever.tokens import estimate_tokens

    corpus = tmp_path / "c"
    texts = write_field_corpus(corpus, gpt2_style_tokenizer)
    fc = [f"function call example {i}" for i in range(4)]
    write_pool(tmp_path / "filter" / "fc" / "s0.jsonl.gz", "fc", fc)
    (tmp_path / "filter" / "manifest.json").write_text("{}")
    tok = str(gpt2_style_tokenizer / "gpt2")
    argv = ["mix", "propose", "--pools", str(tmp_path / "filter"), "--n", "4", "--json"]
    argv += ["--pool", f"general={corpus}", "--pool", f"fc2={tmp_path / 'filter' / 'fc'}"]
    argv += ["--text-field", "body", "--id-field", "doc_id", "--tokens-field", "ids"]
    argv += ["--detokenizer", tok]
    assert cli_main([*argv, "-o", str(tmp_path / "mix.csv")]) == 0
    prop = json.loads(capsys.readouterr().out)
    est = {k: estimate_tokens(t) for k, t in texts.items()}
    n_fc = sum(estimate_tokens(t) for t in fc)
    assert prop["shares"] == {"fc": n_fc, "general": sum(est.values()), "fc2": n_fc}
    assert prop["reader"] == {
        "pools": ["general"],
        **{"text_field": "body", "id_field": "doc_id", "tokens_field": "ids", "detokenizer": tok},
    }
    (tmp_path / "dom").mkdir()
    ids = [*texts, *(f"fc-{i}" for i in range(len(fc)))]
    doms = ["k1"] * 3 + ["k2"] * 3 + ["tools"] * len(fc)
    pq.write_table(pa.table({"id": ids, "domain": doms}), tmp_path / "dom" / "domains.parquet")
    argv += ["--over", "domains", "--domains", str(tmp_path / "dom")]
    assert cli_main([*argv, "-o", str(tmp_path / "dom.csv")]) == 0
    assert json.loads(capsys.readouterr().out)["shares"] == {
        "domain/k1": est["D0"] + est["D1"] + est["D2"],
        "domain/k2": est["D3"] + est["D4"] + est["D5"],
        "domain/tools": n_fc,  # fc and fc2 hold the same documents: counted once
    }
