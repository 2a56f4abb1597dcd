"""The CLI of the foundation verbs: index build/add/info, score, candidates, query."""

import json
import subprocess
import sys

import pytest
from conftest import MATH_GOLD, REPO, TOOLS_GOLD, WEB_TEXT, index_build_argv, write_jsonl

from retriever.cli import main


def test_help_lists_the_verbs():
    out = subprocess.run(
        [sys.executable, "-m", "retriever", "--help"], capture_output=True, text=True, cwd=REPO
    )
    assert out.returncode == 0
    for verb in ("index", "score", "candidates", "query"):
        assert verb in out.stdout
    for verb in (["index", "build"], ["score"], ["query"], ["candidates"]):
        with pytest.raises(SystemExit) as e:
            main([*verb, "--help"])
        assert e.value.code == 0


@pytest.mark.slow
def test_cli_index_score_candidates_query(tmp_path, capsys, embedder):
    gold = write_jsonl(tmp_path / "gold.jsonl", [{"text": t} for t in TOOLS_GOLD])
    assert main(index_build_argv("tools", gold, tmp_path / "idx", "--json")) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["task"] == "tools" and manifest["n_records"] == len(TOOLS_GOLD)

    assert (
        main(
            [
                "index",
                "add",
                "--index",
                str(tmp_path / "idx/tools"),
                "Question: Call Ann.\n1. call('Ann')",
                "--json",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["added"] == 1

    write_jsonl(
        tmp_path / "corpus/a.jsonl",
        [{"text": t} for t in WEB_TEXT + MATH_GOLD[:2]] + [{"no": "text"}],
    )
    rc = main(
        [
            "score",
            "--index",
            str(tmp_path / "idx/tools"),
            "--corpus",
            str(tmp_path / "corpus"),
            "--out",
            str(tmp_path / "out"),
            "--top-fraction",
            "0.25",
            "--json",
        ]
    )
    s = json.loads(capsys.readouterr().out)
    assert rc == 0 and s["docs_in"] == 9 and s["scored"] == 8 and s["rejected"] == 1
    assert s["tasks"]["tools"]["candidates"] == 2

    assert main(["candidates", str(tmp_path / "out"), "--threshold", "tools=2"]) == 0
    table = capsys.readouterr().out
    assert "tools" in table and "score >= 2.0" in table  # re-thresholded without re-embedding

    assert (
        main(["query", "--corpus-store", str(tmp_path / "out"), WEB_TEXT[1], "-k", "2", "--json"])
        == 0
    )
    hits = json.loads(capsys.readouterr().out)[0]["hits"]
    assert hits[0]["preview"] == WEB_TEXT[1] and len(hits) == 2
    assert (
        main(["query", "--index", str(tmp_path / "idx/tools"), "send a text to Bob", "-k", "1"])
        == 0
    )
    assert "send_sms" in capsys.readouterr().out


def test_cli_errors_are_one_line_with_exit_code_2(tmp_path, capsys):
    assert main(["query", "--index", str(tmp_path / "nope"), "x"]) == 2
    err = capsys.readouterr().err
    assert "no gold index" in err and "retriever index build" in err and "Traceback" not in err
    assert (
        main(
            [
                "score",
                "--index",
                str(tmp_path / "nope"),
                "--corpus",
                str(tmp_path),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    capsys.readouterr()
    assert main(["candidates", str(tmp_path), "--threshold", "tools"]) == 2
    assert "TASK=VALUE" in capsys.readouterr().err
    assert main(["candidates", str(tmp_path)]) == 2
    assert "not a score folder" in capsys.readouterr().err


@pytest.mark.slow
def test_a_corpus_without_the_text_field_is_a_one_line_error(tiny_indexes, tmp_path, capsys):
    write_jsonl(tmp_path / "c.jsonl", [{"body": "x"}, {"body": "y"}])
    rc = main(
        [
            "score",
            "--index",
            str(tiny_indexes["math"]),
            "--corpus",
            str(tmp_path / "c.jsonl"),
            "--out",
            str(tmp_path / "out"),
            "--no-store",
        ]
    )
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.startswith("retriever score: error")]
    assert rc == 2 and len(lines) == 1 and "--text-field" in lines[0] and "no_text" in lines[0]


def test_a_model_missing_offline_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    gold = write_jsonl(tmp_path / "g.jsonl", [{"text": t} for t in TOOLS_GOLD])
    rc = main(index_build_argv("t", gold, tmp_path, "--model", "nobody/no-such-model"))
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.startswith("retriever index: error")]
    assert rc == 2 and len(lines) == 1 and "Offline?" in lines[0]
