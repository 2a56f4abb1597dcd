"""The query service through real HTTP requests to a real uvicorn server on localhost."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import time
from urllib.parse import urlparse

import numpy as np
import pytest
from conftest import MATH_GOLD, REPO, TOOLS_GOLD, WEB_TEXT, write_jsonl

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from retriever.errors import ConfigError, InputError  # noqa: E402
from retriever.serve import QueryService, ServeConfig, ThreadedServer  # noqa: E402

# corpus: web text in cluster "web", word problems and tool calls in cluster "skill"
DOCS = (
    [{"id": f"w{i}", "text": t, "cluster_id": "web"} for i, t in enumerate(WEB_TEXT)]
    + [
        {"id": f"m{i}", "text": "Worked example. " + t, "cluster_id": "skill"}
        for i, t in enumerate(MATH_GOLD[:4])
    ]
    + [
        {"id": f"t{i}", "text": "Transcript: " + t, "cluster_id": "skill"}
        for i, t in enumerate(TOOLS_GOLD[:4])
    ]
)


@pytest.fixture(scope="module")
def scored(tmp_path_factory, tiny_indexes, embedder):
    from retriever.score import score_corpus

    root = tmp_path_factory.mktemp("serve")
    write_jsonl(root / "corpus" / "docs.jsonl", DOCS)
    score_corpus(
        [str(p) for p in tiny_indexes.values()],
        [str(root / "corpus")],
        root / "scores",
        top_fraction=0.5,
    )
    return root / "scores"


@pytest.fixture(scope="module")
def service(tiny_indexes, scored, embedder):
    cfg = ServeConfig(
        indexes=tuple(str(p) for p in tiny_indexes.values()),
        store=str(scored),
        max_k=20,
        max_texts=8,
        max_text_chars=2_000,
        max_body_bytes=50_000,
    )
    svc = QueryService(cfg, embedder=embedder)
    yield svc
    svc.close()


@pytest.fixture(scope="module")
def url(service):
    with ThreadedServer(service) as u:
        yield u


def request(
    url: str,
    method: str,
    path: str,
    body=None,
    raw: bytes | None = None,
    headers: dict | None = None,
    chunked: bool = False,
):
    """One HTTP request; returns (status, parsed JSON body)."""
    u = urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    if chunked:
        conn.request(
            method,
            path,
            body=iter([data[i : i + 4096] for i in range(0, len(data), 4096)]),
            headers=hdrs,
            encode_chunked=True,
        )
    else:
        conn.request(method, path, body=data, headers=hdrs)
    resp = conn.getresponse()
    out = resp.read()
    conn.close()
    return resp.status, json.loads(out)


@pytest.mark.slow
def test_health_and_manifests(url, service):
    status, h = request(url, "GET", "/health")
    assert status == 200 and h["status"] == "ok"
    assert h["tasks"] == ["math", "tools"] and h["dim"] == 384
    assert h["store"]["rows"] == len(DOCS) and set(h["store"]["score_tasks"]) == {"tools", "math"}
    status, m = request(url, "GET", "/manifests")
    assert status == 200
    assert set(m["indexes"]) == {"math", "tools"}
    assert m["indexes"]["tools"]["n_records"] == len(TOOLS_GOLD)
    assert m["store"]["rows"] == len(DOCS) and "score_math" in m["store"]["columns"]
    assert m["scores"]["settings"]["model"] == h["model"]


@pytest.mark.slow
def test_gold_batch_matches_python_api(url, tiny_indexes, embedder):
    from retriever.query import query_gold

    texts = [
        "send a text message to Bob saying hi",
        "Tom has 4 apples and eats 1, how many are left?",
    ]
    status, r = request(url, "POST", "/gold", {"texts": texts, "k": 3})
    assert status == 200 and len(r["results"]) == 2
    assert r["results"][0]["tools"][0]["text"] == TOOLS_GOLD[1]  # the SMS exemplar
    for task in ("tools", "math"):
        ref = query_gold(tiny_indexes[task], texts, k=3, embedder=embedder)
        for got, want in zip(r["results"], ref, strict=True):
            assert [h["id"] for h in got[task]] == [h["id"] for h in want]
            np.testing.assert_allclose(
                [h["score"] for h in got[task]], [h["score"] for h in want], atol=1e-5
            )
    status, r = request(url, "POST", "/gold", {"text": texts[1], "k": 2, "tasks": ["math"]})
    assert status == 200 and list(r["results"][0]) == ["math"] and len(r["results"][0]["math"]) == 2


def _brute_force(scored, embedder, text, k, keep):
    from retriever.score import read_scores

    tbl = read_scores(scored, with_vectors=True).to_pylist()
    rows = [r for r in tbl if keep(r)]
    xb = np.array([r["vector"] for r in rows], dtype=np.float32)
    s = xb @ embedder.encode([text])[0]
    order = np.argsort(-s)[:k]
    return [rows[i]["id"] for i in order], rows


@pytest.mark.slow
def test_corpus_hits_scores_and_filters_match_brute_force(url, scored, embedder):
    text = DOCS[2]["text"]
    status, r = request(url, "POST", "/corpus", {"text": text, "k": 5})
    assert status == 200
    hits = r["results"][0]
    assert hits[0]["id"] == DOCS[2]["id"] and hits[0]["score"] > 0.99
    want, rows = _brute_force(scored, embedder, text, 5, lambda r: True)
    assert [h["id"] for h in hits] == want
    by_id = {row["id"]: row for row in rows}
    for h in hits:  # task scores and previews come from the score folder
        assert h["scores"]["math"] == pytest.approx(by_id[h["id"]]["score_math"], abs=1e-6)
        assert h["topk"]["tools"] == pytest.approx(by_id[h["id"]]["topk_tools"], abs=1e-6)
        assert (
            h["preview"] == by_id[h["id"]]["preview"]
            and h["cluster_id"] == by_id[h["id"]]["cluster_id"]
        )
    # filters: every hit passes, and they are the nearest among the documents that pass
    x = float(np.median([row["score_math"] for row in rows]))
    status, r = request(url, "POST", "/corpus", {"text": text, "k": 4, "min_score": {"math": x}})
    assert status == 200
    want, _ = _brute_force(scored, embedder, text, 4, lambda row: row["score_math"] >= x)
    assert [h["id"] for h in r["results"][0]] == want and all(
        h["scores"]["math"] >= x for h in r["results"][0]
    )
    status, r = request(
        url,
        "POST",
        "/corpus",
        {"texts": [text, "get_weather(city='Paris')"], "k": 20, "cluster": "skill"},
    )
    assert status == 200 and len(r["results"]) == 2
    assert len(r["results"][0]) == 8 and all(
        h["cluster_id"] == "skill" for res in r["results"] for h in res
    )


BAD = [
    # (body or raw bytes, status, words the message must contain)
    (b'{"text": "abc", "k": ', 400, "invalid JSON"),
    (b"[1, 2]", 400, "JSON object"),
    (b"", 400, "JSON object"),
    ({"text": ""}, 422, "empty"),
    ({"texts": ["ok", "   "]}, 422, "texts[1] is empty"),
    ({"texts": []}, 422, "at least one"),
    ({"text": "a", "texts": ["b"]}, 422, "exactly one"),
    ({"k": 3}, 422, "exactly one"),
    ({"text": "x" * 2_001}, 413, "limit is 2,000"),
    ({"texts": ["a"] * 9}, 413, "limit is 8"),
    ({"text": "a", "k": 0}, 422, "between 1 and 20"),
    ({"text": "a", "k": 21}, 422, "between 1 and 20"),
    ({"text": "a", "k": "ten"}, 422, "k:"),
    ({"text": 5}, 422, "text:"),
    ({"text": "a", "tasks": ["cooking"]}, 422, "unknown task 'cooking'"),
    ({"text": "a", "top_k": 3}, 422, "unknown field 'top_k'"),
]


@pytest.mark.slow
@pytest.mark.parametrize("body,status,words", BAD)
def test_bad_requests_get_one_clear_4xx(url, body, status, words):
    raw = body if isinstance(body, bytes) else None
    got, r = request(url, "POST", "/gold", None if raw is not None else body, raw=raw)
    assert got == status, r
    assert words in r["error"] and "\n" not in r["error"] and list(r) == ["error"]


@pytest.mark.slow
def test_bad_corpus_filters_and_routes(url):
    got, r = request(url, "POST", "/corpus", {"text": "a", "min_score": {"cooking": 0.1}})
    assert got == 422 and "unknown task 'cooking'" in r["error"]
    got, r = request(url, "POST", "/corpus", {"text": "a", "min_score": {"math": "high"}})
    assert got == 422 and "min_score" in r["error"]
    got, r = request(url, "GET", "/nowhere")
    assert got == 404 and "/health" in r["error"]
    got, r = request(url, "GET", "/gold")
    assert got == 405 and "GET" in r["error"]


@pytest.mark.slow
def test_oversized_bodies_get_413_declared_or_chunked(url):
    big = json.dumps({"text": "word " * 20_000}).encode()  # 100 kB > 50 kB cap
    got, r = request(url, "POST", "/corpus", raw=big)
    assert got == 413 and "bytes" in r["error"]
    got, r = request(url, "POST", "/corpus", raw=big, chunked=True)  # no Content-Length
    assert got == 413 and "bytes" in r["error"]
    got, r = request(url, "POST", "/corpus", {"text": "still serving", "k": 1})
    assert got == 200


@pytest.mark.slow
def test_concurrent_requests_are_batched_and_equal_to_sequential(url, service):
    texts = [f"{t} (variant {i})" for i, t in enumerate(WEB_TEXT + MATH_GOLD)]
    seq = {t: request(url, "POST", "/corpus", {"text": t, "k": 3})[1]["results"][0] for t in texts}
    before = service.batcher.forwards
    got: dict[str, list] = {}
    errors: list = []

    def client(chunk):
        for t in chunk:
            status, r = request(url, "POST", "/corpus", {"text": t, "k": 3})
            if status != 200:
                errors.append(r)
            got[t] = r["results"][0]

    threads = [threading.Thread(target=client, args=(texts[i::6],)) for i in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    for t in texts:
        assert [h["id"] for h in got[t]] == [h["id"] for h in seq[t]]
        # bf16 forwards (AMX CPUs): a vector moves up to ~1e-3 with its batch's shape (the
        # backend test allows cosine 0.999 to fp32 torch)
        np.testing.assert_allclose(
            [h["score"] for h in got[t]], [h["score"] for h in seq[t]], atol=2e-3
        )
    assert service.batcher.forwards - before <= len(texts)


@pytest.mark.slow
def test_service_settings_are_checked(tiny_indexes, embedder):
    with pytest.raises(ConfigError, match="--index"):
        ServeConfig()
    with pytest.raises(ConfigError, match="max_k"):
        ServeConfig(indexes=("x",), max_k=0)
    with pytest.raises(InputError, match="once"):
        QueryService(ServeConfig(indexes=(str(tiny_indexes["math"]),) * 2), embedder=embedder)
    svc = QueryService(ServeConfig(indexes=(str(tiny_indexes["math"]),)), embedder=embedder)
    try:
        from retriever.errors import RequestError

        with pytest.raises(RequestError, match="no corpus store") as e:
            svc.corpus(["a"], 3)
        assert e.value.status == 404
    finally:
        svc.close()


@pytest.mark.slow
def test_python_api_keeps_indexes_and_stores_loaded(tiny_indexes, scored, embedder, tmp_path):
    from retriever.index import add_to_index, build_index
    from retriever.query import open_index, open_store, query_gold

    assert open_index(tiny_indexes["math"]) is open_index(tiny_indexes["math"])
    assert open_store(scored) is open_store(scored)
    g = write_jsonl(tmp_path / "g.jsonl", [{"text": t} for t in MATH_GOLD[:2]])
    build_index("m2", gold=[str(g)], indexes_dir=tmp_path, embedder=embedder)
    first = open_index(tmp_path / "m2")
    assert len(query_gold(tmp_path / "m2", ["2 + 2?"], k=5, embedder=embedder)[0]) == 2
    time.sleep(0.01)
    add_to_index(tmp_path / "m2", ["Question: What is 2 + 2?\nAnswer: 4"], embedder=embedder)
    assert open_index(tmp_path / "m2") is not first  # a changed manifest reloads
    assert query_gold(tmp_path / "m2", ["2 + 2?"], k=5, embedder=embedder)[0][0]["text"].endswith(
        "4"
    )


@pytest.mark.slow
def test_cli_serve_answers_until_terminated(tiny_indexes, scored):
    cmd = [
        sys.executable,
        "-m",
        "retriever",
        "serve",
        "--index",
        str(tiny_indexes["tools"]),
        "--corpus-store",
        str(scored),
        "--port",
        "0",
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        deadline = time.monotonic() + 120
        while "listening on" not in line:
            line = proc.stderr.readline()
            assert line or proc.poll() is None, "server exited before listening"
            assert time.monotonic() < deadline
        base = line.split("listening on ")[1].split()[0]
        status, h = request(base, "GET", "/health")
        assert status == 200 and h["tasks"] == ["tools"]
        status, r = request(base, "POST", "/corpus", {"text": DOCS[0]["text"], "k": 1})
        assert status == 200 and r["results"][0][0]["id"] == DOCS[0]["id"]
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0


@pytest.mark.slow
def test_cli_query_asks_a_running_server(url, service, tiny_indexes, embedder, capsys):
    from retriever.cli import main
    from retriever.query import query_gold_many

    text = "Tom has 4 apples and eats 1, how many are left?"
    assert main(["query", "--server", url, "--json", "-k", "3", text]) == 0
    got = json.loads(capsys.readouterr().out)
    want = service.corpus([text], 3)[0]
    assert [h["id"] for h in got[0]["hits"]] == [h["id"] for h in want]
    # gold over every task of the server: the same merged hits as the local --index query
    assert main(["query", "--server", url, "--task", "all", "--json", "-k", "4", text]) == 0
    got = json.loads(capsys.readouterr().out)[0]["hits"]
    local = query_gold_many([tiny_indexes["math"], tiny_indexes["tools"]], [text], 4, embedder)[0]
    assert [(h["task"], h["id"]) for h in got] == [(h["task"], h["id"]) for h in local]
    assert main(["query", "--server", url, "--task", "math", "-k", "2", text]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("query: Tom has 4") and len(out) == 3
    # errors: the server's 4xx message, an unreachable server, --task without --server
    assert main(["query", "--server", url, "--task", "cooking", text]) == 2
    assert "unknown task 'cooking'" in capsys.readouterr().err
    from retriever.serve.server import bind

    closed = bind("127.0.0.1", 0)
    port = closed.getsockname()[1]
    closed.close()
    assert main(["query", "--server", f"http://127.0.0.1:{port}", text]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot reach a query server" in err and "\n" not in err
    assert main(["query", "--index", str(tiny_indexes["math"]), "--task", "math", text]) == 2
    assert "--task goes with --server" in capsys.readouterr().err
