"""The shared benchmark helpers (retriever.bench) the scripts/bench_*.py use."""

import json

from retriever import bench


def test_read_jsonl_splits_on_newlines_only_and_pages(tmp_path):
    p = tmp_path / "r.jsonl"
    rows = [{"text": "a\u2028b"}, {"text": "c"}, {"text": "d"}]  # U+2028 is not a line end
    p.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n\n")
    assert bench.read_jsonl(p) == rows
    assert bench.read_jsonl(p, n=1, skip=1) == rows[1:2]
    assert bench.read_jsonl(p, n=0) == []


def test_timed_returns_the_result_and_its_seconds():
    out, sec = bench.timed(sorted, [3, 1, 2], reverse=True)
    assert out == [3, 2, 1] and sec >= 0


def test_start_parses_the_common_options_and_records_conditions(monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["bench_x", "--busy", "2"])
    ap = bench.parser("doc")
    ap.add_argument("--docs", type=int, default=5)
    args, report = bench.start(ap, "bench_x")
    assert (args.docs, args.busy, args.json) == (5, 2, None)
    assert report.name == "bench_x" and "load_avg" in report.before
    assert "bench_x: start" in capsys.readouterr().err
