"""The CLI as a new user meets it: errors, help texts, read-only commands, candidates, query."""

import gzip
import io
import json
import subprocess
import sys

import pytest
from conftest import MATH_GOLD, REPO, TOOLS_GOLD, WEB_TEXT, index_build_argv, write_jsonl

from retriever.cli import _subparsers, build_parser, main


def _exit_code(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    return e.value.code, capsys.readouterr()


# -- arguments ------------------------------------------------------------------------------------
def test_a_mistyped_flag_shows_the_subcommands_usage_and_a_suggestion(capsys, tmp_path):
    code, out = _exit_code(
        [
            "score",
            "--index",
            "x",
            "--corpus",
            "y",
            "--out",
            str(tmp_path / "o"),
            "--top-fractoin",
            "0.1",
        ],
        capsys,
    )
    assert code == 2
    assert out.err.startswith("usage: retriever score")
    assert "--top-fractoin (did you mean --top-fraction?)" in out.err
    # also when a required option is missing because it was mistyped
    code, out = _exit_code(["query", "--indx", "x", "hello"], capsys)
    assert code == 2 and out.err.startswith("usage: retriever query")
    assert "did you mean --index?" in out.err
    code, out = _exit_code(["index", "build", "t", "--gold-limt", "3"], capsys)
    assert "usage: retriever index build" in out.err and "did you mean --gold-limit?" in out.err
    assert not (tmp_path / "o").exists()


def test_no_help_text_shows_an_empty_default():
    parser = build_parser()
    for path, p in [([], parser), *_subparsers(parser)]:
        text = p.format_help()
        assert "(default: None)" not in text and "(default: False)" not in text, path
        assert "(default: [])" not in text, path


def test_confirm_usage_does_not_show_a_required_verb():
    parser = build_parser()
    confirm = dict((tuple(k), p) for k, p in _subparsers(parser))[("confirm",)]
    usage = confirm.format_usage()
    assert " VERB ..." not in usage and "[VERB] ..." in usage


def test_quiet_and_verbose_are_accepted_after_the_verb(capsys):
    parser = build_parser()
    args = parser.parse_args(["run", "x.toml", "-q"])
    assert args.quiet is True and args.verbose is False
    args = parser.parse_args(["-v", "run", "x.toml"])
    assert args.verbose is True and args.quiet is False


# -- read-only commands create nothing ------------------------------------------------------------
def test_query_of_a_mistyped_store_is_one_line_and_creates_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["query", "--corpus-store", "runs/typo", "hello"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no corpus store at runs/typo" in err
    assert not (tmp_path / "runs").exists()


def _run_config(tmp_path, gold):
    corpus = write_jsonl(tmp_path / "corpus" / "c.jsonl", [{"text": t} for t in WEB_TEXT])
    cfg = tmp_path / "run.toml"
    cfg.write_text(
        f'[run]\nout = "runs/r"\n[tasks.tools]\ngold = ["{gold}"]\n'
        f'[corpus]\npaths = ["{corpus.parent}"]\n'
    )
    return cfg


def test_run_with_a_missing_gold_path_names_the_gold_and_writes_nothing(tmp_path, capsys):
    cfg = _run_config(tmp_path, tmp_path / "no-such-gold")
    assert main(["run", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert (
        "gold source of task 'tools'" in err and "no-such-gold" in err and "corpus input" not in err
    )
    assert main(["run", str(cfg), "--plan"]) == 2
    capsys.readouterr()
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("scorecard", ["./no-such-scorecard.jsonl", "org/no-such-scorecard"])
def test_run_with_a_scorecard_gold_it_cannot_read_stops_before_any_work(
    tmp_path, capsys, scorecard
):
    # scorecard gold is read by the panel step, after the corpus is scored: a typo or a Hub set
    # that cannot be listed used to stop the run there, hours in
    from huggingface_hub import constants

    if "/" in scorecard and not scorecard.startswith(".") and not constants.HF_HUB_OFFLINE:
        pytest.skip("needs HF_HUB_OFFLINE=1 (no network attempt)")
    gold = write_jsonl(tmp_path / "gold.jsonl", [{"text": t} for t in TOOLS_GOLD])
    cfg = _run_config(tmp_path, gold)
    cfg.write_text(
        cfg.read_text().replace("[corpus]", f'scorecard_gold = ["{scorecard}"]\n[corpus]')
    )
    assert main(["run", str(cfg), "--no-cost-plan"]) == 2
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if "error:" in x]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "[tasks.tools] scorecard_gold" in lines[0] and "no-such-scorecard" in lines[0]
    assert not (tmp_path / "runs").exists()  # no index built, nothing scored


def test_run_plan_writes_nothing(tmp_path, capsys):
    gold = write_jsonl(tmp_path / "gold.jsonl", [{"text": t} for t in TOOLS_GOLD])
    cfg = _run_config(tmp_path, gold)
    assert main(["run", str(cfg), "--plan"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("index/tools") and all("would be run" in x for x in lines)
    assert len({x.index("would") for x in lines}) == 1  # one column
    assert not (tmp_path / "runs").exists()


def test_run_summary_columns_line_up():
    from retriever.run.job import format_run_summary
    from retriever.run.steps import StepOutcome

    class Cfg:
        out = REPO / "runs" / "x"
        path = "c.toml"
        task_names = ["function-calling", "a-rather-long-task-name"]

    outcomes = [
        StepOutcome("index/function-calling", "ran", 3.0, {}),
        StepOutcome("distill/function-calling", "ran", 5.8, {"f1": 0.5, "roc_auc": 0.7}),
        StepOutcome("distill/a-rather-long-task-name", "skipped", 0.0, {}),
    ]
    text = format_run_summary(Cfg, outcomes)
    steps = [x for x in text.splitlines() if x.startswith("  ")]
    assert "distill/function-callingran" not in text
    assert len(steps) == 3 and len({len(x) for x in steps}) == 1  # fixed-width columns
    assert len({x.find("ran") if "ran" in x else x.find("skipped") for x in steps}) == 1
    rows = [x for x in text.splitlines() if x.startswith(("task", "function-calling", "a-rather"))]
    assert len({len(r.rstrip()) for r in rows}) == 1  # right-aligned numbers end in one column
    assert text.splitlines()[-1].endswith("run.log")


# -- score folders: candidates, show, export, query ------------------------------------------------
@pytest.fixture(scope="module")
def score_dir(tmp_path_factory, tiny_indexes):
    from retriever.score import score_corpus

    root = tmp_path_factory.mktemp("ux_scores")
    write_jsonl(
        root / "corpus" / "a.jsonl",
        [{"id": f"w{i}", "text": t} for i, t in enumerate(WEB_TEXT)]
        + [{"id": f"m{i}", "text": t} for i, t in enumerate(MATH_GOLD[:3])]
        + [{"id": f"t{i}", "text": t} for i, t in enumerate(TOOLS_GOLD[:3])],
    )
    score_corpus(
        [str(tiny_indexes["tools"]), str(tiny_indexes["math"])],
        [str(root / "corpus")],
        root / "scores",
        top_fraction=0.25,
    )
    return root / "scores"


@pytest.mark.slow
def test_candidates_rethresholding_one_task_keeps_the_others(score_dir, tmp_path, capsys):
    import shutil

    d = tmp_path / "scores"
    shutil.copytree(score_dir, d)
    before = json.loads((d / "summary.json").read_text())["tasks"]
    assert main(["candidates", str(d), "--threshold", "math=0.5"]) == 0
    out = capsys.readouterr()
    after = json.loads((d / "summary.json").read_text())["tasks"]
    assert after["tools"]["rule"] == before["tools"]["rule"] == "top 0.25 of documents by score"
    assert after["tools"]["threshold"] == before["tools"]["threshold"]
    assert after["math"]["threshold"] == 0.5 and "(--threshold)" in after["math"]["rule"]
    assert "tools: unchanged" in out.err
    assert (
        f"math: top 0.25 of documents by score -> score >= 0.5 (--threshold); threshold "
        f"{before['math']['threshold']:.4f} -> 0.5000" in out.err
    )
    # a second partial change keeps the explicit threshold too
    assert main(["candidates", str(d), "--threshold", "tools=0.6", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["tasks"]["math"]["threshold"] == 0.5 and s["tasks"]["tools"]["threshold"] == 0.6
    assert {c["task"] for c in s["changes"]} == {"math", "tools"}
    # --top-fraction replaces every rule not given now; --reset forgets them
    assert (
        main(["candidates", str(d), "--top-fraction", "0.5", "--threshold", "math=0.5", "--json"])
        == 0
    )
    s = json.loads(capsys.readouterr().out)
    assert (
        s["tasks"]["tools"]["rule"] == "top 0.5 of documents by score"
        and s["tasks"]["math"]["threshold"] == 0.5
    )
    assert main(["candidates", str(d), "--reset", "--threshold", "math=0.5", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["tasks"]["tools"]["threshold"] is None and s["tasks"]["tools"]["candidates"] == 0


@pytest.mark.slow
def test_candidates_show_lists_the_best_documents_per_task(score_dir, tmp_path, capsys):
    import shutil

    d = tmp_path / "scores"
    shutil.copytree(score_dir, d)
    summary = (d / "summary.json").read_bytes()
    assert main(["candidates", str(d), "--show", "2"]) == 0
    out = capsys.readouterr().out
    assert (d / "summary.json").read_bytes() == summary  # only looking: nothing rewritten
    tools = out.split("\ntools: top 2")[1].split("\n\n")[0].splitlines()[1:]
    math = out.split("\nmath: top 2")[1].split("\n\n")[0].splitlines()[1:]
    assert len(tools) == 2 and len(math) == 2
    assert all(x.split()[3].startswith("t") for x in tools)  # the tools gold copies rank first
    assert all(x.split()[3].startswith("m") for x in math)
    assert all(x.split()[1] == "*" for x in tools)  # above the threshold: marked
    scores = [float(x.split()[2]) for x in tools]
    assert scores == sorted(scores, reverse=True)
    assert main(["candidates", str(d), "--show", "1", "--json"]) == 0
    top = json.loads(capsys.readouterr().out)["top"]
    assert top["math"][0]["id"].startswith("m") and "preview" in top["math"][0]


@pytest.mark.slow
def test_candidates_export_writes_datatrove_jsonl_with_text(score_dir, tmp_path, capsys):
    import shutil

    from datatrove.pipeline.readers import JsonlReader

    d = tmp_path / "scores"
    shutil.copytree(score_dir, d)
    assert main(["candidates", str(d), "--export", str(tmp_path / "cand")]) == 0
    out = capsys.readouterr().out
    summary = json.loads((d / "summary.json").read_text())
    for task in ("tools", "math"):
        path = tmp_path / "cand" / f"{task}.jsonl.gz"
        with gzip.open(path, "rt") as fh:
            recs = [json.loads(x) for x in fh]
        assert set(recs[0]) == {"id", "text", "metadata"}
        assert len(recs) == summary["tasks"][task]["candidates"]
        assert all(r["metadata"][f"candidate_{task}"] for r in recs)
        assert f"exported {len(recs)} {task} candidates" in out
        docs = list(JsonlReader(str(tmp_path / "cand"), glob_pattern=f"{task}.jsonl.gz")())
        assert [x.id for x in docs] == [r["id"] for r in recs]
        assert docs[0].text == recs[0]["text"] and docs[0].metadata[f"score_{task}"] > 0
    math_ids = {
        r["id"] for r in map(json.loads, gzip.open(tmp_path / "cand" / "math.jsonl.gz", "rt"))
    }
    assert math_ids & {"m0", "m1", "m2"}
    assert not list((tmp_path / "cand").glob("*.tmp"))


@pytest.mark.slow
def test_query_searches_every_index_given_and_reads_stdin(tiny_indexes, capsys, monkeypatch):
    monkeypatch.setattr(
        sys, "stdin", io.StringIO("Question: Tom has 2 pens and buys 3 more.\nHow many?\n")
    )
    assert (
        main(
            [
                "query",
                "--index",
                str(tiny_indexes["tools"]),
                "--index",
                str(tiny_indexes["math"]),
                "-",
                "-k",
                "3",
                "--json",
            ]
        )
        == 0
    )
    res = json.loads(capsys.readouterr().out)
    assert res[0]["query"] == "Question: Tom has 2 pens and buys 3 more.\nHow many?"
    hits = res[0]["hits"]
    assert [h["rank"] for h in hits] == [1, 2, 3] and hits[0]["task"] == "math"
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert main(["query", "--index", str(tiny_indexes["math"]), "-"]) == 2
    assert "read nothing from stdin" in capsys.readouterr().err


@pytest.mark.slow
def test_corpus_hits_print_the_id_once(score_dir, capsys):
    assert main(["query", "--corpus-store", str(score_dir), MATH_GOLD[0], "-k", "1"]) == 0
    line = capsys.readouterr().out.splitlines()[1]
    assert line.split()[2] == "m0" and line.count("m0") == 1


@pytest.mark.slow
def test_a_failed_score_leaves_no_output_folder(tiny_indexes, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    rc = main(
        [
            "score",
            "--index",
            str(tiny_indexes["math"]),
            "--corpus",
            "hf://nobody/no-such-data",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert rc == 2 and "Hub dataset" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_help_runs_as_a_subprocess_without_colour_or_warnings():
    out = subprocess.run(
        [sys.executable, "-m", "retriever", "query", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert out.returncode == 0 and "- reads stdin" in out.stdout and out.stderr == ""


# -- quiet by default -----------------------------------------------------------------------------
DATATROVE_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from test_executors import CountLines, make_shards
from pathlib import Path
from retriever.executors import run_sharded
from retriever.logs import log_to_file, setup_logging

setup_logging(verbose={verbose})
root = Path({root!r})
(root / "calls").mkdir(parents=True, exist_ok=True)
shards = make_shards(root / "in", 2)
with log_to_file(root / "logs" / "run.log"):
    res = run_sharded(
        CountLines(str(root / "calls")), shards, workers={workers}, logging_dir=root / "dt"
    )
assert res.complete
"""


@pytest.mark.parametrize("workers", [1, 2])
def test_datatrove_logs_go_to_the_run_log_not_the_terminal(tmp_path, workers):
    def run(verbose, root):
        code = DATATROVE_SCRIPT.format(
            tests=str(REPO / "tests"), verbose=verbose, root=str(root), workers=workers
        )
        env = {**__import__("os").environ, "PYTHONPATH": str(REPO), "TERM": "xterm-256color"}
        return subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=300,
        )

    quiet = run(False, tmp_path / "quiet")
    assert quiet.returncode == 0, quiet.stderr
    assert "Launching pipeline" not in quiet.stderr and "\x1b[" not in quiet.stderr
    assert (
        "Total Runtime" not in quiet.stderr
    )  # the stats block logged after the run, in the parent
    log = (tmp_path / "quiet" / "logs" / "run.log").read_text()
    assert "datatrove" in log and "Launching pipeline" in log and "\x1b[" not in log
    assert "Total Runtime" in log
    loud = run(
        True, tmp_path / "loud"
    )  # -v: the same records on the terminal, still no colour codes
    assert (
        loud.returncode == 0 and "Launching pipeline" in loud.stderr and "\x1b[" not in loud.stderr
    )


LANCE_FORK = """
import os
import lancedb  # noqa: F401  (registers its after-fork hook)
from retriever.logs import setup_logging
setup_logging(verbose={verbose})
pid = os.fork()
if pid == 0:
    os._exit(0)
os.waitpid(pid, 0)
"""


def test_the_lancedb_fork_warning_is_silenced_unless_verbose(tmp_path):
    env = {**__import__("os").environ, "PYTHONPATH": str(REPO)}
    out = [
        subprocess.run(
            [sys.executable, "-c", LANCE_FORK.format(verbose=v)],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=120,
        )
        for v in (False, True)
    ]
    assert "fork support is experimental" not in out[0].stderr
    assert "fork support is experimental" in out[1].stderr  # the check can fail: -v shows it


@pytest.mark.slow
def test_index_build_gold_limit_reads_that_many_records_per_source(tmp_path, capsys, embedder):
    gold = write_jsonl(tmp_path / "gold.jsonl", [{"text": t} for t in TOOLS_GOLD])
    build = index_build_argv("tools", gold, tmp_path / "idx")
    assert main([*build, "--gold-limit", "3", "--json", "-q"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["n_records"] == 3 and manifest["counts"]["seen"] == 3
    assert main([*build, "--gold-limit", "0"]) == 2
    assert "--gold-limit must be at least 1" in capsys.readouterr().err
