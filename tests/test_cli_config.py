"""Stage CLIs take their options' defaults and help from the stage's config dataclass."""

from dataclasses import fields

import pytest

from retriever._cli import config_from_args, field_help
from retriever.band import BandConfig
from retriever.batch_filter import FilterConfig
from retriever.cli import _subparsers, build_parser
from retriever.config import field_default
from retriever.distill import DistillConfig
from retriever.domains import DomainConfig
from retriever.rate import RateConfig

# verb -> its stage's config, and the fields the CLI parses itself (other dest or type)
CONVERTED = {
    "distill": (DistillConfig, {"weights"}),
    "filter": (FilterConfig, {"tasks", "models", "threshold"}),
    "band": (BandConfig, set()),
    "rate": (RateConfig, {"tasks", "prompts", "threshold_sim"}),
    "domains": (DomainConfig, set()),
}


def _parsers():
    return {k[0]: p for k, p in _subparsers(build_parser()) if len(k) == 1}


@pytest.mark.parametrize("verb", sorted(CONVERTED))
def test_a_stage_cli_default_is_its_config_field_default(verb):
    cls, own = CONVERTED[verb]
    by_name = {f.name: f for f in fields(cls)}
    actions = [a for a in _parsers()[verb]._actions if a.dest in by_name and a.dest not in own]
    generated = [a for a in actions if getattr(a, "config_field", None) == (cls, a.dest)]
    assert len(generated) >= 5 and len(generated) == len(actions)  # none declared by hand
    for a in actions:
        assert a.default == field_default(by_name[a.dest]), (verb, a.dest)
    missing = set(by_name) - {a.dest for a in actions} - own - {"reader"}
    # the fields a CLI does not offer (run-config or API only), so a new field is a choice
    assert (
        missing
        == {
            "distill": {"max_auc_gap"},
            "filter": set(),
            "band": set(),
            "rate": {"prompts"} - own,
            "domains": {"top_terms", "samples"},
        }[verb]
    )


def test_the_parsed_defaults_build_the_default_config():
    p = build_parser()
    args = p.parse_args(["filter", "--task", "a", "--input", "x", "--output", "o"])
    from retriever.batch_filter.cli import filter_config_from_args

    assert filter_config_from_args(args) == FilterConfig(tasks=("a",))
    args = p.parse_args(["band", "--docs", "d", "--out", "o", "--model", "m"])
    assert config_from_args(BandConfig, args) == BandConfig(model="m")
    args = p.parse_args(["domains", "--scores", "s", "--out", "o"])
    assert config_from_args(DomainConfig, args) == DomainConfig()
    args = p.parse_args(["distill", "--task", "a"])
    assert config_from_args(DistillConfig, args) == DistillConfig()
    args = p.parse_args(["rate", "--docs", "d", "--out", "o", "--model", "m"])
    # --prompts is a file the CLI reads itself: only the generated options are taken
    assert config_from_args(RateConfig, args) == RateConfig(model="m")
    argv = ["filter", "--task", "a", "--input", "x", "--output", "o", "--no-write-scores"]
    args = p.parse_args([*argv, "--format", "parquet", "--max-chars", "7"])
    c = filter_config_from_args(args)
    assert (c.write_scores, c.format, c.max_chars) == (False, "parquet", 7)


def test_option_help_comes_from_the_docstring_table():
    h = field_help(DistillConfig)
    assert h["lr"] == "learning rate" and h["epoch"] == "passes over the training lines"
    assert h["minn"] == h["maxn"] and "subwords" in h["minn"]  # `minn, maxn:` documents both
    r = field_help(RateConfig)
    # a list of names continued on the next line, then the text
    assert r["sample_seed"] == r["top_fraction"] == "which documents of a score folder are rated"
    assert ":func:" not in h["normalization"] and "``" not in h["normalization"]
