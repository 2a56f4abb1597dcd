"""RegMix mixtures over corpus domains: build-dataset with ``domain/<d>`` weights, ``mix propose
--over domains`` and ``mix run`` with ``[mix] over = "domains"`` (a real, tiny bigram proxy)."""

from __future__ import annotations

import csv
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from arms_proxies import BigramEvaluator, BigramTrainer
from conftest import WEB_TEXT, write_jsonl
from mix_fixtures import write_mix_run

from retriever.cli import main as cli_main
from retriever.dataset import (
    DatasetBuilder,
    discover_pools,
    domain_token_counts,
    is_domain_mixture,
    parse_mixture,
)
from retriever.errors import ConfigError
from retriever.mix.run import mix_run


def _domains(path, mapping: dict[str, str]):
    """A `retriever domains` folder (only the parquet build-dataset reads)."""
    path.mkdir(parents=True, exist_ok=True)
    ids = list(mapping)
    pq.write_table(
        pa.table(
            {
                "id": ids,
                "shard": ["s"] * len(ids),
                "row": list(range(len(ids))),
                "domain": [mapping[i] for i in ids],
                "distance": [0.0] * len(ids),
            }
        ),
        path / "domains.parquet",
    )
    return path


@pytest.fixture
def clustered_pools(tmp_path):
    """Two pools whose records carry ClimbLab-style cluster ids 1 and 2 (one document in both)."""
    recs = {
        "fc": [(f"fc{i}", f"call tool number {i} " * 4, 1 + i % 2) for i in range(20)],
        "rp": [(f"rp{i}", f"the hero said line {i} " * 4, 1 + (i % 4 == 0)) for i in range(20)],
    }
    recs["rp"].append(("fc0", recs["fc"][0][1], 1))  # the same document in both pools
    for task, rows in recs.items():
        write_jsonl(
            tmp_path / "pools" / task / "a.jsonl",
            [
                {"id": i, "text": t, "metadata": {f"prob/{task}": 1 - n / 50, "cluster_id": c}}
                for n, (i, t, c) in enumerate(rows)
            ],
        )
    return tmp_path / "pools", recs


def test_domain_mixture_keys():
    assert is_domain_mixture(parse_mixture("domain/1=0.5,domain/2=0.5"))
    assert not is_domain_mixture(parse_mixture("fc=1,rp=2"))
    with pytest.raises(ConfigError, match="not both"):
        is_domain_mixture(parse_mixture("domain/1=0.5,fc=0.5"))


def test_build_over_domains_splits_the_budget_by_cluster(clustered_pools, tmp_path):
    pools_dir, recs = clustered_pools
    pools = discover_pools(pools_dir)
    cluster = {i: c for rows in recs.values() for i, _, c in rows}
    s = DatasetBuilder(pools, {"domain/1": 3.0, "domain/2": 1.0}, 400).build(tmp_path / "ds")
    assert s["over"] == "domains" and set(s["pools"]) == {"domain/1", "domain/2"}
    p1, p2 = s["pools"]["domain/1"], s["pools"]["domain/2"]
    assert (p1["budget"], p2["budget"]) == (300, 100)
    assert 300 - 30 < p1["tokens"] <= 300 and 100 - 30 < p2["tokens"] <= 100
    chosen = pq.read_table(tmp_path / "ds" / "selection.parquet").to_pylist()
    # every chosen document is of its domain, drawn from both pools, never twice
    assert all(str(cluster[r["id"]]) == r["pool"].split("/")[1] for r in chosen)
    assert {r["id"][:2] for r in chosen if r["pool"] == "domain/1"} == {"fc", "rp"}
    assert len({r["id"] for r in chosen}) == len(chosen)
    # highest score first within a domain: fc0 (0.98 in fc, 0.6 in rp) taken once, as fc's
    assert "fc0" in {r["id"] for r in chosen}
    assert s["sources"]["fc"]["seen"] == 20 and s["sources"]["rp"]["seen"] == 21
    for p in s["pools"].values():  # docs in = kept + duplicates + over budget, per domain
        c = p["counts"]
        assert c["seen"] == c["kept"] + c.get("dropped/duplicate", 0) + c.get("dropped/budget", 0)
    m = json.loads((tmp_path / "ds" / "manifest.json").read_text())["settings"]
    assert m["over"] == "domains" and m["domains"] is None
    from retriever.report.render import render_report

    html = render_report(dataset=s)
    assert "over corpus domains" in html and "the pools fc, rp" in html and "domain/1" in html
    # a pool mixture's manifest has no such keys (older builds resume unchanged)
    DatasetBuilder(pools, {"fc": 1.0}, 100).build(tmp_path / "ds_pool")
    m = json.loads((tmp_path / "ds_pool" / "manifest.json").read_text())["settings"]
    assert "over" not in m and "domains" not in m


def test_build_over_domains_from_a_domains_folder_and_errors(clustered_pools, tmp_path):
    pools_dir, recs = clustered_pools
    pools = discover_pools(pools_dir)
    ids = [i for rows in recs.values() for i, _, _ in rows]
    dom = _domains(tmp_path / "dom", {i: ("k000" if i.startswith("fc") else "k001") for i in ids})
    s = DatasetBuilder(pools, {"domain/k000": 1.0}, 200, domains=dom).build(tmp_path / "ds")
    chosen = pq.read_table(tmp_path / "ds" / "selection.parquet").column("id").to_pylist()
    assert chosen and all(i.startswith("fc") for i in chosen)
    assert s["pools"]["domain/k000"]["tokens"] > 150
    m = json.loads((tmp_path / "ds" / "manifest.json").read_text())["settings"]
    assert m["domains"][0] == str(dom)
    with pytest.raises(ConfigError, match="k009"):
        DatasetBuilder(pools, {"domain/k009": 1.0}, 200, domains=dom).build(tmp_path / "x")
    counts = domain_token_counts(pools, dom)
    assert set(counts) == {"domain/k000", "domain/k001"}
    assert counts["domain/k000"] == s["sources"]["fc"]["available_tokens"]  # fc0 counted once


def test_propose_over_domains_then_build(clustered_pools, tmp_path, capsys):
    pools_dir, _ = clustered_pools
    out = tmp_path / "mixtures.csv"
    argv = ["mix", "propose", "--pools", str(pools_dir), "--over", "domains", "--n", "8"]
    assert cli_main([*argv, "-o", str(out), "--json"]) == 0
    prop = json.loads(capsys.readouterr().out)
    assert prop["over"] == "domains" and set(prop["shares"]) == {"domain/1", "domain/2"}
    assert prop["shares"]["domain/1"] > prop["shares"]["domain/2"] > 0
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == 8 and set(rows[0]) == {"mix_id", "weight/domain/1", "weight/domain/2"}
    rc = cli_main(
        [
            "build-dataset",
            "--pools",
            str(pools_dir),
            "--mixture",
            str(out),
            "--mix-id",
            "3",
            "--budget",
            "300",
            "--out",
            str(tmp_path / "ds"),
            "--json",
        ]
    )
    assert rc == 0
    s = json.loads(capsys.readouterr().out)
    w1 = float(rows[3]["weight/domain/1"])
    assert s["over"] == "domains"
    if w1 > 0:
        assert s["pools"]["domain/1"]["weight"] == pytest.approx(w1, abs=1e-6)
    assert cli_main(["mix", "propose", "--shares", "a=1,b=2", "--domains", str(tmp_path)]) != 0
    assert "--domains is for --over domains" in capsys.readouterr().err
    assert cli_main(["mix", "propose", "--shares", "k0=1,k1=2", "--over", "domains", "--n", "4",
                     "-o", str(tmp_path / "s.csv"), "--json"]) == 0  # fmt: skip
    assert set(json.loads(capsys.readouterr().out)["shares"]) == {"domain/k0", "domain/k1"}


@pytest.fixture
def run_cfg(tmp_path):
    web, fc, rs = write_mix_run(tmp_path, 'over = "domains"\ndomains = "./dom"\n')
    # three corpus domains, as `retriever domains` would write them
    mapping = {f"function-calling-{i}": "tools" for i in range(len(fc))}
    mapping.update({f"reasoning-{i}": "math" for i in range(len(rs))})
    mapping.update({f"w{i}": "web" for i in range(len(web))})
    _domains(tmp_path / "dom", mapping)
    return tmp_path / "run.toml"


def test_mix_run_over_domains_end_to_end(run_cfg):
    root = run_cfg.parent
    trainer = BigramTrainer(tokens=3000)
    evaluator = BigramEvaluator({"function-calling": str(root / "eval" / "fc.jsonl")})
    res = mix_run(run_cfg, trainer=trainer, evaluator=evaluator)
    out = root / "run" / "mix"
    assert res.trained == 6
    best = json.loads((out / "best_mixture.json").read_text())
    assert set(best["weights"]) == {"domain/tools", "domain/math", "domain/web"}
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert {"weight/domain/tools", "weight/domain/web", "score/total"} <= set(rows[0])
    # the target is the function-calling text's BPB: the fit leans to the tool-call domain
    mean_tools = sum(float(r["weight/domain/tools"]) for r in rows) / len(rows)
    assert best["weights"]["domain/tools"] > mean_tools
    for i, r in enumerate(rows):  # each dataset holds its domains' documents only
        s = json.loads((out / "datasets" / f"mix_{i}" / "summary.json").read_text())
        assert s["over"] == "domains" and s["tokens"] <= 600
        assert set(s["pools"]) <= {k[len("weight/") :] for k, v in r.items()
                                   if k.startswith("weight/") and float(v) > 0}  # fmt: skip
    assert mix_run(run_cfg, trainer=trainer, evaluator=evaluator).trained == 0  # resumable
    with pytest.raises(ConfigError, match="3 domains: use n >= 6"):
        mix_run(run_cfg, {"n": 4, "out": str(root / "m4")}, trainer=trainer, evaluator=evaluator)


def test_idless_corpus_linked_as_a_general_pool_finds_its_domains(tmp_path):
    """ClimbLab-like records carry no id: the score stage (and so `retriever domains`) calls them
    `<shard>:<row>`. Linked into a general pool (as `mix run` and the arms do), they are found
    under the corpus shard's name, not the link's."""
    from retriever.arms.datasets import _link_corpus
    from retriever.corpus import shard_name

    shard = write_jsonl(
        tmp_path / "corpus" / "web.jsonl",
        [{"text": f"{WEB_TEXT[i % 6]} Page {i}."} for i in range(12)],
    )
    sname = shard_name(str(shard))
    assert sname == "corpus__web"
    dom = _domains(
        tmp_path / "dom", {f"{sname}:{i}": ("even" if i % 2 == 0 else "odd") for i in range(12)}
    )
    general = _link_corpus((str(tmp_path / "corpus"),), tmp_path / "links")
    pools = {"general": str(general)}
    counts = domain_token_counts(pools, dom)
    assert set(counts) == {"domain/even", "domain/odd"}  # not domain/none
    DatasetBuilder(pools, {"domain/odd": 1.0}, 10_000, domains=dom).build(tmp_path / "ds")
    rows = pq.read_table(tmp_path / "ds" / "selection.parquet").column("row").to_pylist()
    assert sorted(rows) == [1, 3, 5, 7, 9, 11]


def test_mix_run_over_domains_defaults_to_the_runs_domains_step(run_cfg):
    """With a [domains] section and no [mix] domains, `mix run` reads RUN/domains (what the run's
    domains step wrote); without either, the records' cluster ids (none here: one domain)."""
    import shutil

    root = run_cfg.parent
    shutil.copytree(root / "dom", root / "run" / "domains")
    text = run_cfg.read_text().replace('domains = "./dom"\n', "") + "[domains]\nk = 3\n"
    run_cfg.write_text(text)
    trainer = BigramTrainer(tokens=3000)
    evaluator = BigramEvaluator({"function-calling": str(root / "eval" / "fc.jsonl")})
    res = mix_run(run_cfg, trainer=trainer, evaluator=evaluator)
    assert set(res.best["weights"]) == {"domain/tools", "domain/math", "domain/web"}
    run_cfg.write_text(text.replace("[domains]\nk = 3\n", ""))
    with pytest.raises(ConfigError, match="at least two domains.*retriever domains"):
        mix_run(run_cfg, {"out": str(root / "m2")}, trainer=trainer, evaluator=evaluator)


def test_a_scans_row_domains_are_looked_up_once_and_keyed_like_domain_key():
    """PoolScan.with_domains looks each row's domain up once (``domain_of[id]``, else the
    cluster); domain_keys and the candidates' codes agree with a row-by-row reference, ``""`` and
    ``"none"`` being one key (domain/none)."""
    from collections import Counter

    import numpy as np

    from retriever.dataset import domain_key
    from retriever.dataset.scan import SCAN_SCHEMA, PoolScan
    from retriever.stats import Stats

    clusters = ["3", "", "none", "3", "7", "", "1", "7"]
    ids = [f"d{i}" for i in range(len(clusters))]
    cols = {f.name: [0] * len(ids) for f in SCAN_SCHEMA}
    cols.update(id=ids, cluster=clusters, score=[0.5] * len(ids), source=["s"] * len(ids))
    table = pa.table(cols, schema=SCAN_SCHEMA).append_column("file", pa.array([0] * len(ids)))
    scan = PoolScan(table=table, files=["f"], stats=Stats(), methods=Counter())
    domain_of = {"d0": "k1", "d1": "none", "d3": "k1", "d4": "", "d6": "k2"}
    for given, want in ((None, clusters), (domain_of, [domain_of.get(i, "") for i in ids])):
        s = scan.with_domains(given)
        assert s.domains().to_pylist() == want
        keys, key_of_row = s.domain_keys()
        assert [keys[j] for j in key_of_row] == [domain_key(d) for d in want]
        assert len(set(keys)) == len(keys)
        codes = s.candidates().domain
        same = np.array([[a == b for a in want] for b in want])
        assert np.array_equal(codes[:, None] == codes[None, :], same)  # a code per domain name
    assert scan.with_domains(domain_of).with_domains(None).domains().to_pylist() == clusters
