"""`retriever run` configs: the shipped ones load, typos are one-line errors naming the key."""

import pytest

from retriever.cli import main
from retriever.errors import ConfigError
from retriever.run.config import load_run_config
from retriever.run.job import RunJob

REPO_CONFIGS = ["configs/offline.toml", "configs/elmb.toml"]


@pytest.mark.parametrize("path", REPO_CONFIGS)
def test_shipped_configs_load_and_plan(path):
    from conftest import REPO, SHARED_DATA

    if "offline" in path and not SHARED_DATA.is_dir():
        pytest.skip("configs/offline.toml reads ../shared/data")

    cfg = load_run_config(REPO / path)
    assert set(cfg.task_names) == {"function-calling", "roleplay", "rag", "reasoning"}
    names = [s.name for s in RunJob(cfg).steps()]
    assert names[:4] == [f"index/{t}" for t in cfg.task_names]
    assert cfg.index.head  # the learned head is on by default (docs/retrieval.md)
    assert names[4:9] == ["head", "score", "candidates", "panel", "confirm"] and names[-3:] == [
        "filter",
        "dataset",
        "report",
    ]


def _write(tmp_path, body):
    p = tmp_path / "c.toml"
    p.write_text('[tasks.a]\ngold = ["g.jsonl"]\n[corpus]\npaths = ["c"]\n' + body)
    return p


@pytest.mark.parametrize(
    "body, match",
    [
        ("[scor]\nk = 3\n", "unknown section"),
        ("[score]\nkk = 3\n", r"\[score\]: unknown key.*kk"),
        ("[distill]\nepochs = 3\n", r"\[distill\]: unknown key.*epochs"),
        ("[filter]\nthreshold = 2.0\n", "probabilities"),
        ("[confirm]\npositive_min = 0.1\nnegative_max = 0.2\n", "negative_max"),
        ("[index]\nheads = true\n", r"\[index\]: unknown key.*heads"),
        ("[index]\nhead = 1\n", r"\[index\].*head.*true or false"),
        ("[index]\nmax_negatives = 3\n", "max_negatives must be >= 10"),
    ],
)
def test_config_typos_are_clear_errors(tmp_path, body, match):
    p = _write(tmp_path, body)
    with pytest.raises(ConfigError, match=match):
        load_run_config(p)  # every section is checked before any work starts


def test_head_step_can_be_turned_off(tmp_path):
    (tmp_path / "g.jsonl").write_text('{"text": "x"}\n')
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "a.jsonl").write_text('{"text": "y"}\n')
    on = RunJob(load_run_config(_write(tmp_path, ""))).steps()
    score = next(s for s in on if s.name == "score")
    assert "head" in [s.name for s in on] and "head" in score.after
    off = RunJob(load_run_config(_write(tmp_path, "[index]\nhead = false\n"))).steps()
    assert "head" not in [s.name for s in off]
    assert "head" not in next(s for s in off if s.name == "score").after


def test_cli_run_reports_a_bad_config_in_one_line(tmp_path, capsys):
    assert main(["run", str(tmp_path / "missing.toml")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "configs/offline.toml" in err and "Traceback" not in err
