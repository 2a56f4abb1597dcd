"""report.html: PR curve against a reference, rendering from plain data, collecting a run folder in
the contract layouts (with a real distilled fastText filter), and what headless Chromium shows."""

from __future__ import annotations

import gzip
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from retriever.cli import main as cli_main
from retriever.errors import InputError
from retriever.report import collect_report, find_sources, pr_curve, render_report, write_report

TASKS = ("function-calling", "roleplay")
KEPT_TEXT = "KEPT: call get_weather(city='Paris') then send_email(to='amir')"
REJECTED_TEXT = "REJECTED: a recipe for lentil soup with carrots"
UNCERTAIN_TEXT = "UNCERTAIN: a forum post mentioning an API"
NASTY = "<script>alert('x')</script> & <b>not bold</b>"


# -- pure parts ------------------------------------------------------------------------------------
def test_pr_curve_matches_a_brute_force_reference():
    rng = np.random.default_rng(0)
    y = rng.random(300) < 0.3
    p = np.round(np.where(y, rng.normal(0.7, 0.2, 300), rng.normal(0.4, 0.2, 300)), 2)  # ties
    rec, prec, thr, ap = pr_curve(y, p)
    for r, pr, t in zip(rec, prec, thr, strict=True):
        pred = p >= t
        assert pr == pytest.approx((pred & y).sum() / pred.sum())
        assert r == pytest.approx((pred & y).sum() / y.sum())
    assert list(thr) == sorted(set(p.tolist()), reverse=True)
    sk = pytest.importorskip("sklearn.metrics")
    assert ap == pytest.approx(sk.average_precision_score(y, p))


def test_render_from_plain_data_shows_only_given_sections_and_escapes_text():
    html = render_report(
        "plain",
        scores={"fc": {"values": np.linspace(0, 1, 200), "threshold": 0.8, "rule": "top 20%"}},
        samples={"fc": {"kept": [{"id": "d1", "text": NASTY, "scores": {"prob/fc": 0.91}}]}},
        missing=["confirmation labels"],
    )
    assert 'id="scores"' in html and 'id="samples"' in html and 'id="missing"' in html
    for absent in ('id="correlation"', 'id="pr"', 'id="kept"', 'id="dataset"', 'id="mixture"'):
        assert absent not in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "threshold 0.800" in html
    assert len(re.findall(r'<rect class="bar"', html)) == 50  # 200 even values, 50 bins, all filled
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', html)  # nothing fetched from anywhere
    assert "<link" not in html and "@import" not in html


def test_render_pr_operating_point_only_and_counts_without_share():
    html = render_report(
        pr={"fc": {"precision": 0.8, "recall": 0.6, "threshold": 0.5, "average_precision": 0.77}},
        kept={
            "fc": {
                "by": "cluster",
                "groups": {"3": {"kept": 10, "seen": None}, "12": {"kept": 4, "seen": None}},
            }
        },
    )
    assert 'class="op"' in html and "operating point only" in html
    assert "10 kept" in html and "cluster 12" in html
    assert html.index("cluster 3") < html.index("cluster 12")  # numeric order


# -- a run folder in the contract layouts ----------------------------------------------------------
def _labels_table(task: str, rng: np.random.Generator) -> pa.Table:
    rows = []
    for i in range(60):
        kind = ("positive", "negative", "uncertain")[i % 3]
        sim = {"positive": 0.7, "negative": 0.35, "uncertain": 0.5}[kind] + rng.normal(0, 0.05)
        cor = {"positive": 0.7, "negative": -0.3, "uncertain": 0.25}[kind] + rng.normal(0, 0.05)
        text = {
            "positive": f"{KEPT_TEXT} example {i} tool call json arguments",
            "negative": f"{REJECTED_TEXT} number {i} cooking kitchen",
            "uncertain": f"{UNCERTAIN_TEXT} {i}",
        }[kind]
        rows.append(
            {
                "id": f"{task}-{i}",
                "text": text,
                "task": task,
                "similarity": sim,
                "correlation": cor,
                "label": kind,
                "reason": f"{kind} by rule",
                "shard": "corpus__s0",
                "row": i,
            }
        )
    return pa.Table.from_pylist(rows)


def make_run(root: Path, real_filter: bool = True) -> Path:
    """score/ confirm/ indexes/ pools/ dataset/ mix/ as the stages write them
    (docs/contracts.md)."""
    rng = np.random.default_rng(0)
    run = root / "run"
    # similarity scores
    sd = run / "score"
    (sd / "scores").mkdir(parents=True)
    n = 500
    cols = {
        "id": [f"d{i}" for i in range(n)],
        "shard": ["corpus__s0"] * 300 + ["corpus__s1"] * 200,
        "row": list(range(n)),
        "n_chars": [100] * n,
        "cluster_id": [str(i % 5) for i in range(n)],  # the score stage keeps cluster_id
    }
    for t in TASKS:
        cols[f"score_{t}"] = rng.normal(0.3, 0.12, n).astype(np.float32)
        cols[f"topk_{t}"] = cols[f"score_{t}"]
    pq.write_table(pa.table(cols), sd / "scores" / "corpus__s0.parquet")
    (sd / "manifest.json").write_text(json.dumps({"settings": {"tasks": list(TASKS)}}))
    (sd / "summary.json").write_text(
        json.dumps(
            {
                "docs_in": 510,
                "scored": 500,
                "rejected": 10,
                "tasks": {
                    t: {
                        "threshold": 0.45,
                        "rule": "top 0.1 of documents by score",
                        "candidates": 50,
                    }
                    for t in TASKS
                },
            }
        )
    )
    # confirmation labels
    cd = run / "confirm"
    (cd / "labels").mkdir(parents=True)
    for t in TASKS:
        pq.write_table(_labels_table(t, rng), cd / "labels" / f"{t}.parquet")
    (cd / "summary.json").write_text(
        json.dumps(
            {
                "settings": {
                    "rules": {"estimator": "spearman", "positive_min": 0.5, "negative_max": 0.0}
                },
                "tasks": {t: {"cutoff": 0.45} for t in TASKS},
            }
        )
    )
    # distilled filter: a real fastText model and manifest from the distill stage
    if real_filter:
        from retriever.distill.train import DistillConfig, FastTextDistiller

        cfg = DistillConfig(
            dim=16, bucket=10_000, epoch=5, test_fraction=0.3, training_set="gold+confirmed"
        )
        FastTextDistiller(cfg).run(
            cd / "labels" / "function-calling.parquet",
            "function-calling",
            run / "indexes" / "function-calling" / "filter.bin",
        )
    # pools
    for t in TASKS:
        d = run / "pools" / t
        d.mkdir(parents=True)
        with gzip.open(d / "corpus__s0.jsonl.gz", "wb") as fh:
            for i in range(40):
                text = f"{KEPT_TEXT} pool doc {i}" if i == 0 else f"{t} pool document {i}"
                rec = {
                    "id": f"{t}-p{i}",
                    "text": text,
                    "metadata": {
                        "shard": "corpus__s0" if i < 30 else "corpus__s1",
                        "row": i,
                        f"prob/{t}": 0.99 - i / 100,  # a pool written before score_name
                        "cluster_id": i % 4,
                    },
                }
                fh.write(orjson.dumps(rec) + b"\n")
    # a training set and a mixture fit
    from retriever.dataset import DatasetBuilder, discover_pools

    DatasetBuilder(discover_pools(run / "pools"), {t: 1 for t in TASKS}, 300).build(run / "dataset")
    (run / "mix").mkdir()
    (run / "mix" / "best_mixture.json").write_text(
        json.dumps(
            {
                "weights": {"function-calling": 0.7, "roleplay": 0.3},
                "target": "score/total",
                "goal": "max",
                "model": "quadratic",
                "predicted": 0.61,
                "held_out_spearman": 0.93,
                "n_runs": 32,
                "fit": {
                    "score/total": {
                        "linear": {"spearman": 0.8, "mae": 0.02},
                        "quadratic": {"spearman": 0.93, "mae": 0.01},
                    }
                },
                "best_observed": {"mix_id": "7", "value": 0.58},
            }
        )
    )
    return run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("report"))


def test_find_sources_locates_every_artifact(run_dir):
    src = find_sources(run_dir)
    assert src.scores == run_dir / "score"
    assert src.confirm == run_dir / "confirm"
    assert src.pools == run_dir / "pools"
    assert src.dataset == run_dir / "dataset"
    assert src.mixture == run_dir / "mix" / "best_mixture.json"
    assert src.distill == [run_dir / "indexes" / "function-calling" / "filter.json"]
    with pytest.raises(InputError, match="does not exist"):
        find_sources(run_dir / "nope")
    with pytest.raises(InputError, match="pools"):
        find_sources(run_dir, pools=run_dir / "missing")


def test_collect_reads_contract_layouts(run_dir):
    data = collect_report(run_dir)
    assert set(data["scores"]) == set(TASKS)
    s = data["scores"]["roleplay"]
    assert (
        sum(s["counts"]) == 500
        and s["threshold"] == 0.45
        and len(s["edges"]) == len(s["counts"]) + 1
    )
    assert data["label_rules"]["roleplay"]["positive_min"] == 0.5
    pr = data["pr"]["function-calling"]
    assert 0 <= pr["precision"] <= 1 and pr["threshold"] == 0.5  # the distill manifest's metrics
    kept = data["kept"]
    assert (
        kept["roleplay"]["by"] == "cluster"
        and sum(g["kept"] for g in kept["roleplay"]["groups"].values()) == 40
    )
    assert kept["roleplay"]["groups"]["3"] == {"kept": 10, "seen": 100}  # share per cluster
    src = kept["roleplay (by source)"]["groups"]
    assert src["corpus__s0"] == {"kept": 30, "seen": 300}  # share against the scored documents
    sm = data["samples"]["function-calling"]
    assert sm["kept"][0]["text"].startswith(KEPT_TEXT)  # highest prob first
    assert all(d["text"].startswith("REJECTED") for d in sm["rejected"])
    assert any(d["text"].startswith("UNCERTAIN") for d in sm["borderline"])
    assert data["dataset"]["tokens"] <= 300
    assert data["facts"]["corpus docs in"] == 510
    assert data["missing"] == []


def test_collect_uses_held_out_predictions_when_present(tmp_path):
    run = tmp_path / "run"
    d = run / "idx"
    d.mkdir(parents=True)
    (d / "filter.bin").write_bytes(b"")  # the report never loads the model, only its manifest
    (d / "filter.json").write_text(
        json.dumps(
            {
                "kind": "fasttext-filter",
                "task": "fc",
                "metrics": {"precision": 0.5, "recall": 0.5, "threshold": 0.5},
            }
        )
    )
    pq.write_table(
        pa.table({"label": ["positive", "negative", "positive"], "prob": [0.9, 0.2, 0.6]}),
        d / "filter.heldout.parquet",
    )
    data = collect_report(run)
    assert data["pr"]["fc"]["y"] == [True, False, True] and data["pr"]["fc"]["p"] == [0.9, 0.2, 0.6]
    assert any("similarity scores" in m for m in data["missing"])
    html = render_report(**data)
    assert 'class="curve"' in html and "Not in this report" in html


# -- headless Chromium -----------------------------------------------------------------------------
PROBE = """
<script>
window.addEventListener('load', () => {
  const out = {text: document.body.innerText, sections: [], plots: []};
  for (const s of document.querySelectorAll('section')) {
    const r = s.getBoundingClientRect();
    out.sections.push({id: s.id, title: s.querySelector('h2').innerText, h: r.height});
  }
  for (const svg of document.querySelectorAll('svg.plot')) {
    const r = svg.getBoundingClientRect();
    out.plots.push({cls: svg.getAttribute('class'), w: r.width, h: r.height,
      bars: svg.querySelectorAll('rect.bar').length, pts: svg.querySelectorAll('circle.pt').length,
      curves: svg.querySelectorAll('polyline.curve').length,
      thr: svg.querySelectorAll('line.thr').length,
      ops: svg.querySelectorAll('circle.op').length});
  }
  const pre = document.createElement('pre');
  pre.id = 'probe';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


def chromium_probe(html_path: Path, tmp: Path) -> dict:
    """What Chromium renders: visible text (innerText), section and plot sizes, drawn elements.

    The report has no script; the probe is added to a copy, here in the test only.
    """
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    probe = tmp / "probe.html"
    probe.write_text(
        html_path.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"),
        encoding="utf-8",
    )
    cmd = [
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        f"--user-data-dir={tmp / 'chrome-profile'}",
        "--window-size=1280,900",
        "--virtual-time-budget=3000",
        "--dump-dom",
        probe.resolve().as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    m = re.search(r'<pre id="probe">(.*?)</pre>', proc.stdout, re.S)
    assert m, f"chromium rendered no probe (rc={proc.returncode}): {proc.stderr[-2000:]}"
    import html as html_lib

    return json.loads(html_lib.unescape(m.group(1)))


@pytest.mark.slow
def test_report_renders_in_headless_chromium(run_dir, tmp_path):
    out = write_report(run_dir, tmp_path / "report.html")
    raw = out.read_text(encoding="utf-8")
    assert "<script" not in raw  # self-contained and static
    seen = chromium_probe(out, tmp_path)
    titles = {s["title"] for s in seen["sections"]}
    assert {
        "Summary",
        "Score distributions",
        "Similarity vs perplexity correlation",
        "Distilled filter: precision-recall",
        "Kept share per source / cluster",
        "Training set",
        "Mixture search (RegMix)",
        "Samples: kept, borderline, rejected",
    } <= titles
    assert all(s["h"] > 40 for s in seen["sections"])
    text = seen["text"]
    for needle in (
        KEPT_TEXT,
        REJECTED_TEXT,
        UNCERTAIN_TEXT,
        "threshold 0.450",
        "candidate cutoff",
        "positive_min 0.5",
        "cluster 3",
        "quadratic (chosen)",
        "prob_function-calling",  # the label of a legacy pool's prob/<task> score
    ):
        assert needle in text, needle
    plots = seen["plots"]
    assert all(p["w"] > 200 and p["h"] > 60 for p in plots)  # drawn, not collapsed
    hists = [p for p in plots if "hist" in p["cls"]]
    assert len(hists) == 2 and all(p["bars"] >= 10 and p["thr"] == 1 for p in hists)
    scat = [p for p in plots if "scatter" in p["cls"]]
    assert len(scat) == 2 and all(p["pts"] == 60 and p["thr"] == 3 for p in scat)
    curves = [p for p in plots if "curve" in p["cls"]]
    assert len(curves) == 1 and curves[0]["ops"] == 1  # the operating threshold
    if (run_dir / "indexes" / "function-calling" / "filter.heldout.parquet").exists():
        assert curves[0]["curves"] >= 1  # the distill stage wrote held-out predictions: a curve
    assert sum(p["bars"] for p in plots if "bars" in p["cls"]) >= 8


@pytest.mark.slow
def test_cli_writes_report_and_lists_sources(run_dir, tmp_path, capsys):
    out = tmp_path / "r.html"
    assert cli_main(["report", str(run_dir), "-o", str(out), "--samples", "2", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["report"] == str(out) and found["sources"]["pools"].endswith("pools")
    html = out.read_text()
    assert html.count('class="sample kept"') == 2 * len(TASKS)
    assert cli_main(["report", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_score_histograms_are_the_stage_histograms_and_skip_a_file_without_a_task(tmp_path):
    """The report's histogram of a task is the score stage's ScoreHistogram shown in bars; a
    score file without a task's column (written before that task was added) adds nothing to it."""
    from retriever.report.readers import scores_section
    from retriever.score.select import ScoreHistogram

    sd = tmp_path / "score"
    (sd / "scores").mkdir(parents=True)
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.3, 0.1, 300), rng.normal(0.5, 0.1, 200)
    pq.write_table(pa.table({"id": ["x"] * 300, "score_a": a}), sd / "scores" / "s0.parquet")
    t1 = pa.table({"id": ["y"] * 200, "score_a": b, "score_b": b, "shard": ["s1"] * 200})
    pq.write_table(t1, sd / "scores" / "s1.parquet")
    (sd / "manifest.json").write_text(json.dumps({"settings": {"tasks": ["a", "b"]}}))
    hists, _, seen = scores_section(sd)
    ref = ScoreHistogram()
    ref.add(np.r_[a, b])
    counts, edges = ref.display()
    assert hists["a"]["counts"] == counts and hists["a"]["edges"] == edges
    assert sum(hists["b"]["counts"]) == 200 and seen["shard"] == {"s1": 200}


def test_find_sources_takes_the_score_folder_not_the_filters_probabilities(tmp_path):
    """pools/scores/*.parquet (the filter's probabilities) has the score folder's shape and sorts
    first; the report must still read scores/ (regression: a KeyError on score_<task>)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from retriever.report.find import find_sources

    for name, settings, col in (
        ("pools", {"tasks": ["t"], "models": {}, "threshold": 0.5}, "prob_t"),
        ("scores", {"model": "m", "k": 10, "tasks": ["t"]}, "score_t"),
    ):
        (tmp_path / name / "scores").mkdir(parents=True)
        (tmp_path / name / "manifest.json").write_text(json.dumps({"settings": settings}))
        pq.write_table(
            pa.table({"id": ["a"], col: [0.5]}), tmp_path / name / "scores" / "x.parquet"
        )
    assert find_sources(tmp_path).scores == tmp_path / "scores"


def test_find_sources_parses_each_json_file_once(tmp_path, monkeypatch):
    """A folder that every sniffer looks at (labels, ratings, band, a summary and a manifest) is
    classified as before while each of its JSON files is parsed once."""
    import retriever.report.find as find

    x = tmp_path / "rate"
    (x / "labels").mkdir(parents=True)
    (x / "ratings").mkdir()
    pq.write_table(pa.table({"id": ["a"]}), x / "labels" / "t.parquet")
    pq.write_table(pa.table({"id": ["a"]}), x / "band.parquet")
    (x / "manifest.json").write_text(json.dumps({"stage": "rate", "settings": {"stage": "rate"}}))
    (x / "summary.json").write_text(json.dumps({"stage": "band", "table": [], "settings": {}}))
    (x / "filter.bin").write_bytes(b"")
    (x / "filter.json").write_text(json.dumps({"kind": "fasttext-filter"}))
    (x / "a_mixture.json").write_text("not json")
    parsed: list[str] = []

    def counting(path):
        parsed.append(Path(path).name)
        return find_read_json(path)

    find_read_json = find.read_json
    monkeypatch.setattr(find, "read_json", counting)
    src = find.find_sources(tmp_path)
    assert src.rate == x and src.band == x  # rating labels are not confirmation labels
    assert src.confirm is None and src.dataset is None and src.arms is None and src.mixture is None
    assert src.distill == [x / "filter.json"]
    assert sorted(parsed) == ["a_mixture.json", "filter.json", "manifest.json", "summary.json"]
