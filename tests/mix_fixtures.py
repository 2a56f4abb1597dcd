"""A tiny finished run for ``retriever mix run``: a web corpus, two task pools, evaluation
records and the run config (shared by the mix tests over pools and over domains)."""

from __future__ import annotations

from conftest import MATH_GOLD, TOOLS_GOLD, WEB_TEXT, write_jsonl, write_pool

EVAL_FC = [
    {"text": 'Question: Text Dan.\n1. get_phone_number("Dan")\n2. send_sms(["$1"], "hi")'},
    {"text": 'User: Weather in Rome?\nCall: get_weather(city="Rome")'},
]


def write_mix_run(root, mix_extra: str = "") -> tuple[list[str], list[str], list[str]]:
    """Write the run under ``root`` (``root/run.toml``; ``mix_extra``: more ``[mix]`` lines);
    returns the web, function-calling and reasoning texts."""
    web = [f"{WEB_TEXT[i % 6]} Page {i} has more plain prose about town life." for i in range(60)]
    write_jsonl(
        root / "corpus" / "web.jsonl", [{"id": f"w{i}", "text": t} for i, t in enumerate(web)]
    )
    fc = [f"{t}\nCall {i}." for i, t in enumerate(TOOLS_GOLD * 8)]
    rs = [f"{t}\nStep {i}." for i, t in enumerate(MATH_GOLD * 8)]
    write_pool(root / "run" / "pools" / "function-calling" / "a.jsonl.gz", "function-calling", fc)
    write_pool(root / "run" / "pools" / "reasoning" / "a.jsonl.gz", "reasoning", rs)
    write_jsonl(root / "eval" / "fc.jsonl", EVAL_FC)
    (root / "run.toml").write_text(
        '[run]\nout = "./run"\n[tasks.function-calling]\ngold = ["./g.jsonl"]\n'
        '[tasks.reasoning]\ngold = ["./g.jsonl"]\n[corpus]\npaths = ["./corpus"]\n'
        '[dataset]\nbudget = "600"\n[mix]\nn = 6\nmodel = "linear"\nsamples = 5000\nfolds = 3\n'
        + mix_extra
    )
    return web, fc, rs
