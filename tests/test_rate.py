"""``retriever rate``: prompts, parse, cache, budget and labels (fast), and the whole stage against
a real OpenAI-compatible server on localhost serving tiny local LMs (slow)."""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest
from conftest import write_jsonl
from rate_lm import TEMPLATE, random_lm, trained_scorer, word_docs

from retriever.errors import ConfigError, EndpointError
from retriever.rate import (
    AnswerCache,
    ChatClient,
    EndpointConfig,
    RateConfig,
    RequestBudget,
    load_prompts,
    parse_score,
    rate_docs,
    rating_label_rows,
    task_prompt,
)
from retriever.rate.client import BudgetExhausted
from retriever.rate.prompt import prompt_version, render

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- fast: no server, no model ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "answer, score, int_score, error",
    [
        ("The page shows calls.\nScore: 4", 4.0, 4, None),
        ("score:2", 2.0, 2, None),
        ('Format is "Score: <total points>". ... Score: **5**', 5.0, 5, None),
        ("Score: 3.5", 3.5, 4, None),
        ("  3 ", 3.0, 3, None),
        ("Score: 7", math.nan, -1, "out_of_range"),
        ("I would give it three points", math.nan, -1, "unparseable"),
        ("", math.nan, -1, "unparseable"),
    ],
)
def test_parse_takes_the_last_score_after_the_marker(answer, score, int_score, error):
    p = parse_score(answer)
    assert p.error == error and p.int_score == int_score
    assert (math.isnan(p.score) and math.isnan(score)) or p.score == score


def test_prompts_ship_in_the_task_specs_and_keep_document_braces():
    config = RateConfig(endpoint=EndpointConfig(model="m"))
    prompts = load_prompts(["function-calling", "reasoning", "roleplay", "rag"], config, "indexes")
    for t, p in prompts.items():
        text = p.build('{"name": "f", "arguments": {}} {rubric}')
        assert '{"name": "f", "arguments": {}} {rubric}' in text  # the document untouched
        assert "Bestow a fifth point" in text and "Score: <total points>" in text, t
    assert render("a {text} {task} {other}", text="{task}", task="T") == "a {task} T {other}"


def test_prompt_errors_say_what_to_add(tmp_path):
    with pytest.raises(ConfigError, match="no rating rubric"):
        task_prompt("t")
    with pytest.raises(ConfigError, match="no {text} placeholder"):
        task_prompt("t", template="Rate the page. Score:")
    with pytest.raises(ConfigError, match="no rating rubric"):
        load_prompts(["unknown-task"], RateConfig(endpoint=EndpointConfig(model="m")), tmp_path)


def test_prompt_version_moves_with_what_shapes_an_answer():
    a = task_prompt("t", template="A {text}")
    b = task_prompt("t", template="B {text}")
    v = prompt_version(a, max_chars=100, temperature=0.0)
    assert v == prompt_version(
        task_prompt("t", template="A {text}"), max_chars=100, temperature=0.0
    )
    assert v != prompt_version(b, max_chars=100, temperature=0.0)
    assert v != prompt_version(a, max_chars=200, temperature=0.0)
    assert v != prompt_version(a, max_chars=100, temperature=0.7)


def test_cache_is_keyed_by_prompt_model_id_and_text(tmp_path):
    path = tmp_path / "c.sqlite"
    with AnswerCache(path) as c:
        c.put("v1", "m", "d1", "sha1", "Score: 4", {"prompt_tokens": 10, "completion_tokens": 3})
        assert c.get("v1", "m", "d1", "sha1") == "Score: 4"
        assert c.get("v2", "m", "d1", "sha1") is None  # another prompt version
        assert c.get("v1", "m2", "d1", "sha1") is None  # another model
        assert c.get("v1", "m", "d1", "sha2") is None  # the document's text changed
    with AnswerCache(path) as c:  # persisted
        assert c.get("v1", "m", "d1", "sha1") == "Score: 4" and c.count("v1", "m") == 1


def test_budget_and_config_checks():
    b = RequestBudget(2)
    b.take()
    b.take()
    with pytest.raises(BudgetExhausted):
        b.take()
    assert b.used == 2 and b.left == 0
    for bad in (
        {"threshold": 6},
        {"concurrency": 0},
        {"top_fraction": 2.0},
        {"score_marker": " "},
    ):
        with pytest.raises(ConfigError):
            RateConfig(endpoint=EndpointConfig(model="m"), **bad)
    with pytest.raises(ConfigError, match="api 'grpc'"):
        EndpointConfig(model="m", api="grpc")
    with pytest.raises(ConfigError, match="model"):  # the endpoint's default has no model
        RateConfig()
    with pytest.raises(ConfigError, match="http"):
        EndpointConfig(base_url="localhost:8000", model="m")
    with pytest.raises(ConfigError, match="model"):
        EndpointConfig()


@pytest.mark.parametrize(
    "waits, message",
    [
        ({"max_backoff": -1.0}, "max_backoff must be >= 0"),
        ({"backoff": 5.0, "max_backoff": 1.0}, "max_backoff 1.0 is smaller than backoff 5.0"),
        ({"backoff": float("nan")}, "backoff must be >= 0"),
        ({"max_backoff": float("nan")}, "max_backoff must be >= 0"),
        ({"backoff": -0.5}, "backoff must be >= 0"),
    ],
)
def test_backoff_settings_are_checked(waits, message):
    # a negative cap made every retry wait negative: time.sleep raised mid-run
    with pytest.raises(ConfigError, match=message):
        EndpointConfig(model="m", **waits)
    with pytest.raises(ConfigError, match=message):  # the run config's [rate] fails at load
        RateConfig(endpoint=EndpointConfig(model="m", **waits))


def test_equal_backoff_and_cap_are_accepted():
    cfg = EndpointConfig(model="m", backoff=2.0, max_backoff=2.0)
    assert ChatClient(cfg)._wait(3, "") == 2.0
    assert ChatClient(cfg)._wait(1, "30") == 2.0  # Retry-After is capped too


def test_labels_from_ratings_apply_the_threshold():
    rows = [
        {"id": "a", "score": 4.0, "int_score": 4, "similarity": 0.5},
        {"id": "b", "score": 3.0, "int_score": 3, "similarity": 0.4},
        {"id": "c", "score": 1.0, "int_score": 1, "similarity": 0.1},
    ]
    out = rating_label_rows("t", rows, {"a": "A", "b": "B", "c": "C"}, threshold=3, model="m")
    assert [r["label"] for r in out] == ["positive", "positive", "negative"]
    assert {r["source"] for r in out} == {"rating"}
    assert out[2]["reason"] == "negative: rated 1 < 3 by m"


def test_an_unreachable_endpoint_stops_the_run_with_a_hint():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    cfg = EndpointConfig(base_url=f"http://127.0.0.1:{port}/v1", model="m", retries=1, backoff=0)
    with pytest.raises(EndpointError, match="cannot reach"):
        ChatClient(cfg).ask("hello")


def test_ratings_train_a_student_through_distill(tmp_path):
    import random

    from test_distill import synthetic_doc

    from retriever.distill import DistillConfig, FastTextDistiller
    from retriever.rate import write_rating_labels

    rng = random.Random(0)
    ratings, texts = [], {}
    for k in range(60):
        pos = k % 2 == 0
        ratings.append({"id": f"r{k}", "score": 4.0 if pos else 1.0, "int_score": 4 if pos else 1})
        texts[f"r{k}"] = synthetic_doc(rng, pos)
    write_rating_labels(tmp_path / "labels" / "t.parquet", "t", ratings, texts, 3, "m")
    cfg = DistillConfig(epoch=10, dim=16, seed=0, training_set="rating")
    rep = FastTextDistiller(cfg).run(tmp_path / "labels", "t", tmp_path / "m" / "filter.bin")
    per = rep.manifest["training_set"]["per_source"]
    assert per["rating"]["rows"] == 60
    assert rep.metrics["roc_auc"] > 0.9

    # beside the confirm stage's labels (two label folders, as `retriever run` passes them)
    from retriever.distill import write_labels

    conf = [
        {"id": f"c{k}", "text": synthetic_doc(rng, k % 2 == 0), "task": "t",
         "label": "positive" if k % 2 == 0 else "negative",
         "source": "confirmed" if k % 2 == 0 else "random"}
        for k in range(20)
    ]  # fmt: skip
    write_labels(tmp_path / "confirm" / "t.parquet", conf)
    cfg = DistillConfig(epoch=10, dim=16, seed=0, training_set=("confirmed", "random", "rating"))
    rep = FastTextDistiller(cfg).run(
        [tmp_path / "confirm", tmp_path / "labels"], "t", tmp_path / "m2" / "filter.bin"
    )
    per = rep.manifest["training_set"]["per_source"]
    assert (per["confirmed"]["rows"], per["random"]["rows"], per["rating"]["rows"]) == (10, 10, 60)


# -- slow: a real server on localhost --------------------------------------------------------------
@pytest.fixture(scope="module")
def models():
    return {"scorer": trained_scorer(), "babbler": random_lm()}


def _serve(models, **faults):
    from retriever.rate.local_server import Faults, RunningServer, build_app

    return RunningServer(build_app(models, Faults(**faults))).start()


def _corpus(tmp_path, n=12, seed=0):
    docs = word_docs(n, seed)
    write_jsonl(tmp_path / "corpus" / "docs.jsonl", docs)
    return docs


def _cfg(url, model="scorer", **kw):
    """A RateConfig for the test server; ``kw``: options of the stage or of its endpoint."""
    endpoint = dict(base_url=url, model=model, max_tokens=16, backoff=0.01, max_backoff=0.05)
    endpoint.update({k: kw.pop(k) for k in list(kw) if k in EndpointConfig.__dataclass_fields__})
    base = dict(tasks=("t",), prompts={"t": TEMPLATE}, system="", concurrency=3)
    return RateConfig(endpoint=EndpointConfig(**endpoint), **{**base, **kw})


def _stats(srv):
    return dict(srv.app.state.counts)


@pytest.mark.slow
def test_rate_end_to_end_then_everything_from_the_cache(models, tmp_path, capsys):
    from retriever.cli import main

    docs = _corpus(tmp_path)
    (tmp_path / "prompts.toml").write_text(f"[prompts]\nt = {TEMPLATE!r}\n".replace("'", '"'))
    srv = _serve(models)
    try:
        argv = [
            "rate", "--docs", str(tmp_path / "corpus"), "--out", str(tmp_path / "out"),
            "--base-url", srv.url, "--model", "scorer", "--prompts", str(tmp_path / "prompts.toml"),
            "--max-tokens", "16", "--concurrency", "4", "--threshold", "3", "--system", "", "-q",
        ]  # fmt: skip
        s = rate_docs(tmp_path / "corpus", tmp_path / "out", _cfg(srv.url, concurrency=4))
        assert _stats(srv)["answered"] == len(docs) == s["requests"]
        t = s["tasks"]["t"]
        assert t["docs_in"] == t["rated"] + sum(t["rejected"].values()) == len(docs)
        assert t["rated"] == len(docs) and t["histogram"]["3"] == len(docs)
        assert t["labels"] == {"positive": len(docs), "negative": 0}
        r = pq.read_table(tmp_path / "out" / "ratings" / "t.parquet").to_pylist()
        assert [x["id"] for x in r] == [d["id"] for d in docs]  # input order
        assert {x["int_score"] for x in r} == {3} and all(x["error"] is None for x in r)
        lab = pq.read_table(tmp_path / "out" / "labels" / "t.parquet").to_pylist()
        assert {x["source"] for x in lab} == {"rating"}
        assert [x["text"] for x in lab] == [d["text"] for d in docs]

        # a rerun asks nothing: the server sees no new request
        s2 = rate_docs(tmp_path / "corpus", tmp_path / "out", _cfg(srv.url, threshold=4))
        assert _stats(srv)["requests"] == len(docs)
        assert s2["requests"] == 0 and s2["tasks"]["t"]["cached"] == len(docs)
        # re-thresholded from the cache
        assert s2["tasks"]["t"]["labels"] == {"positive": 0, "negative": len(docs)}

        # the CLI builds the same prompt: nothing asked either; another system message is another
        # prompt version, so it asks again
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert f"{len(docs)} docs in = {len(docs)} rated + 0 rejected" in out
        assert "retriever distill --labels" in out
        assert _stats(srv)["requests"] == len(docs)
        assert main(argv[:-3] + ["--system", "Rate well.", "-q"]) == 0
        assert _stats(srv)["requests"] == 2 * len(docs)
    finally:
        srv.stop()


@pytest.mark.slow
def test_unparseable_answers_are_counted_and_written_out(models, tmp_path):
    docs = _corpus(tmp_path, n=6)
    srv = _serve(models)
    try:
        s = rate_docs(tmp_path / "corpus", tmp_path / "out", _cfg(srv.url, model="babbler"))
    finally:
        srv.stop()
    t = s["tasks"]["t"]
    assert t["rated"] == 0 and t["rejected"] == {"unparseable": len(docs)}
    assert t["docs_in"] == len(docs) and t["balanced"]
    r = pq.read_table(tmp_path / "out" / "ratings" / "t.parquet").to_pylist()
    assert all(x["error"] == "unparseable" and x["int_score"] == -1 for x in r)
    assert all(isinstance(x["raw"], str) and x["raw"] for x in r)  # the raw answers are kept
    assert pq.read_table(tmp_path / "out" / "labels" / "t.parquet").num_rows == 0


@pytest.mark.slow
@pytest.mark.parametrize("status, retry_after", [(429, "0"), (500, None), (503, None)])
def test_rate_limits_and_server_errors_are_retried(models, tmp_path, status, retry_after):
    docs = _corpus(tmp_path, n=5)
    srv = _serve(models, fail_first=3, fail_status=status, retry_after=retry_after)
    try:
        s = rate_docs(tmp_path / "corpus", tmp_path / "out", _cfg(srv.url, concurrency=1))
        st = _stats(srv)
    finally:
        srv.stop()
    assert s["tasks"]["t"]["rated"] == len(docs)
    assert st["failed"] == 3 and st["requests"] == len(docs) + 3 == s["requests"]
    r = pq.read_table(tmp_path / "out" / "ratings" / "t.parquet").to_pylist()
    assert sum(x["attempts"] for x in r) == len(docs) + 3


@pytest.mark.slow
def test_retries_used_up_reject_the_document_and_the_next_run_asks_again(models, tmp_path):
    docs = _corpus(tmp_path, n=3)
    srv = _serve(models, fail_first=2, fail_status=500)
    try:
        cfg = _cfg(srv.url, concurrency=1, retries=1)
        s = rate_docs(tmp_path / "corpus", tmp_path / "out", cfg)
        assert s["tasks"]["t"]["rejected"] == {"http_500": 1}  # 2 attempts, both refused
        s = rate_docs(tmp_path / "corpus", tmp_path / "out", cfg)
        assert s["requests"] == 1 and s["tasks"]["t"]["rated"] == len(docs)  # errors not cached
    finally:
        srv.stop()


@pytest.mark.slow
def test_the_request_budget_caps_a_run_and_a_rerun_continues(models, tmp_path):
    docs = _corpus(tmp_path, n=10)
    srv = _serve(models)
    try:
        s = rate_docs(tmp_path / "corpus", tmp_path / "out", _cfg(srv.url, max_requests=4))
        t = s["tasks"]["t"]
        assert s["requests"] == 4 == _stats(srv)["requests"]
        assert t["rated"] == 4 and t["over_budget"] == len(docs) - 4 and not s["complete"]
        assert t["balanced"] and t["docs_in"] == len(docs)
        s = rate_docs(tmp_path / "corpus", tmp_path / "out", _cfg(srv.url))
        assert s["requests"] == len(docs) - 4 and s["complete"]
        assert _stats(srv)["requests"] == len(docs)
    finally:
        srv.stop()


@pytest.mark.slow
def test_a_killed_run_resumes_from_the_cache(models, tmp_path):
    docs = _corpus(tmp_path, n=12)
    (tmp_path / "prompts.toml").write_text('[prompts]\nt = "Rate: {text}\\nScore:"\n')
    srv = _serve(models, delay=0.25)
    try:
        cmd = [
            sys.executable, "-m", "retriever", "rate", "--docs", str(tmp_path / "corpus"),
            "--out", str(tmp_path / "out"), "--base-url", srv.url, "--model", "scorer",
            "--prompts", str(tmp_path / "prompts.toml"), "--concurrency", "1",
            "--max-tokens", "16", "-q",
        ]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": REPO}
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        t0 = time.monotonic()
        while _stats(srv).get("answered", 0) < 4:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() - t0 < 60
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        first = _stats(srv)["requests"]
        assert first < len(docs)  # killed mid-run
        proc = subprocess.run(cmd + ["--json"], env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    finally:
        srv.stop()
    import json

    s = json.loads(proc.stdout)
    t = s["tasks"]["t"]
    assert t["rated"] == len(docs) and t["cached"] >= 2
    # asked twice: at most what was in flight or answered but not yet written at the kill
    assert _stats(srv)["requests"] <= len(docs) + 2
    assert t["cached"] + t["asked"] == len(docs)


@pytest.mark.slow
def test_completions_api_and_the_key_from_the_environment(models, tmp_path, monkeypatch):
    from retriever.rate.local_server import Faults, RunningServer, build_app

    _corpus(tmp_path, n=3)
    srv = RunningServer(build_app(models, Faults(api_key="k-123"))).start()
    try:
        monkeypatch.delenv("RATE_TEST_KEY", raising=False)
        cfg = _cfg(srv.url, api="completions", api_key_env="RATE_TEST_KEY")
        with pytest.raises(EndpointError, match="refused the key"):
            rate_docs(tmp_path / "corpus", tmp_path / "o1", cfg)
        monkeypatch.setenv("RATE_TEST_KEY", "k-123")
        s = rate_docs(tmp_path / "corpus", tmp_path / "o2", cfg)
        assert s["tasks"]["t"]["docs_in"] == 3 and _stats(srv)["completions"] == 3
        with pytest.raises(EndpointError, match="404"):
            cfg = _cfg(srv.url, model="nope", api_key_env="RATE_TEST_KEY")
            rate_docs(tmp_path / "corpus", tmp_path / "o3", cfg)
    finally:
        srv.stop()


@pytest.mark.slow
def test_run_steps_rate_and_band_on_a_score_folder(models, tiny_indexes, tmp_path):
    pytest.importorskip("faiss")
    from rate_lm import save_random_lm

    from retriever.run.config import load_run_config
    from retriever.run.job import RunJob
    from retriever.score import score_corpus

    docs = word_docs(16, seed=3)
    write_jsonl(tmp_path / "corpus" / "d.jsonl", docs)
    ref = save_random_lm(tmp_path / "ref")
    srv = _serve(models)
    try:
        cfg_path = tmp_path / "run.toml"
        cfg_path.write_text(
            f'[run]\nout = "{tmp_path / "run"}"\n'
            f'[tasks.tools]\ngold = ["{tiny_indexes["tools"]}"]\n'
            f'[tasks.math]\ngold = ["{tiny_indexes["math"]}"]\n'
            f'[corpus]\npaths = ["{tmp_path / "corpus"}"]\n'
            f'[rate]\nbase_url = "{srv.url}"\nmodel = "scorer"\nsystem = ""\nmax_tokens = 16\n'
            f"top_fraction = 0.25\nprompts = {{tools = {TEMPLATE!r}, math = {TEMPLATE!r}}}\n"
            f'[band]\nmodel = "{ref}"\nlow = 0.25\nhigh = 0.75\n'.replace("'", '"')
        )
        job = RunJob(load_run_config(cfg_path), progress=False)
        score_corpus(
            [str(tiny_indexes["tools"]), str(tiny_indexes["math"])],
            [str(tmp_path / "corpus")],
            job.out / "scores",
            top_fraction=0.25,
            store=None,
            batch_size=8,
        )
        r = job._rate()
        b = job._band()
    finally:
        srv.stop()
    for t in ("tools", "math"):  # 4 candidates + 4 random documents per task, all answered "3"
        assert r["tasks"][t]["rated"] == 8 and r["tasks"][t]["labels"]["positive"] == 8
    # both tasks use one template here: a document both select is the same prompt, asked once
    assert r["requests"] + r["cached"] == 16 and r["cached"] > 0 and r["complete"]
    assert b["docs_in"] == len(docs) and set(b["spearman_bpb_vs_similarity"]) == {"tools", "math"}
    assert 0 < b["in_band"] < len(docs)
    lab = pq.read_table(job.out / "rate" / "labels" / "tools.parquet").to_pydict()
    assert all(0 <= s <= 1 for s in lab["similarity"])  # the score folder's similarity kept
    # a score folder without candidate thresholds: the rate options to give are named
    bare = tmp_path / "bare"
    score_corpus(
        [str(tiny_indexes["tools"])], [str(tmp_path / "corpus")], bare, store=None, batch_size=8
    )
    with pytest.raises(ConfigError, match="--sim-threshold TASK=SCORE"):
        cfg = _cfg("http://127.0.0.1:9/v1", tasks=("tools",), prompts={"tools": TEMPLATE})
        rate_docs(bare, tmp_path / "o", cfg)


def test_report_shows_the_rating_histograms(tmp_path):
    import json

    from retriever.report.collect import collect_report
    from retriever.report.render import render_report

    d = tmp_path / "run" / "rate"
    (d / "ratings").mkdir(parents=True)
    (d / "labels").mkdir()
    (d / "labels" / "rag.parquet").write_bytes(b"")  # a rate folder is not a confirm folder
    (d / "manifest.json").write_text(json.dumps({"stage": "rate"}))
    task = {
        "docs_in": 12,
        "rated": 10,
        "rejected": {"unparseable": 2},
        "over_budget": 0,
        "histogram": {"0": 1, "1": 2, "2": 3, "3": 2, "4": 1, "5": 1},
        "labels": {"positive": 4, "negative": 6},
    }
    (d / "summary.json").write_text(json.dumps({"model": "judge-7b", "tasks": {"rag": task}}))
    data = collect_report(tmp_path / "run")
    assert "labels" not in data and data["facts"]["rag: LLM ratings"] == "10 rated, 2 rejected"
    html = render_report(**data)
    assert 'id="ratings"' in html and "rag: rated by judge-7b" in html
    assert "labels 4 positive / 6 negative; rejected unparseable 2" in html


def test_show_prompt_prints_the_prompt_and_sends_nothing(tmp_path, capsys):
    from retriever.cli import main

    write_jsonl(tmp_path / "c" / "d.jsonl", [{"id": "x1", "text": 'call get_weather(city="Oslo")'}])
    argv = ["rate", "--docs", str(tmp_path / "c"), "--out", str(tmp_path / "o"), "--model", "m"]
    argv += ["--base-url", "http://127.0.0.1:9/v1", "--task", "function-calling", "--show-prompt"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "== function-calling: 1 documents would be rated" in out
    assert 'call get_weather(city="Oslo")' in out and "Bestow a fifth point" in out
    assert "-- system:" in out and not (tmp_path / "o").exists()  # nothing asked, nothing written


# -- the local server's routes and its subprocess helper (no model) -----------------------------
def _post(url: str, body) -> tuple[int, dict]:
    import json
    import urllib.error
    import urllib.request

    req = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_both_generation_routes_check_then_admit_then_answer():
    """A body a route cannot use is refused before it is counted; a valid one is admitted
    (the first one refused by the injected fault), then answered, on both routes."""
    from retriever.rate.local_server import Faults, FixedAnswer, RunningServer, build_app

    with RunningServer(build_app({"f": FixedAnswer("Score: 3")}, Faults(fail_first=1))) as srv:
        chat, cmpl = srv.url + "/chat/completions", srv.url + "/completions"
        assert _post(chat, {"model": "f", "messages": []})[0] == 400
        assert _post(cmpl, {"model": "f", "prompt": 5})[0] == 400
        assert _post(cmpl, {"model": "nope", "prompt": "x"})[0] == 404
        assert _stats(srv) == {}  # none of them reached admission
        assert (
            _post(chat, {"model": "f", "messages": [{"role": "user", "content": "hi"}]})[0] == 500
        )
        status, ans = _post(chat, {"model": "f", "messages": [{"role": "user", "content": "hi"}]})
        assert status == 200 and ans["choices"][0]["message"]["content"] == "Score: 3"
        status, ans = _post(cmpl, {"model": "f", "prompt": "Rate: x\nScore:"})
        assert status == 200 and ans["choices"][0]["text"] == "Score: 3"
        assert _stats(srv) == {
            "requests": 3,
            "chat": 2,
            "completions": 1,
            "failed": 1,
            "answered": 2,
        }


def test_the_server_in_a_subprocess_serves_until_the_block_ends():
    from retriever.rate.local_server import serve_in_subprocess

    with serve_in_subprocess("--fixed", "f=Score: 4") as url:
        status, ans = _post(url + "/completions", {"model": "f", "prompt": "x"})
        assert status == 200 and ans["choices"][0]["text"] == "Score: 4"
    with pytest.raises(OSError):  # the child is gone
        _post(url + "/completions", {"model": "f", "prompt": "x"})
    with pytest.raises(EndpointError, match="did not start"):
        with serve_in_subprocess():  # no model given: the server refuses to start
            pass
