"""Stage CLIs take their options' defaults and help from the stage's config dataclass."""

import argparse
from dataclasses import dataclass, field, fields

import pytest

from retriever._cli import HelpFormatter, add_config_options, config_from_args, field_help
from retriever.band import BandConfig
from retriever.batch_filter import FilterConfig
from retriever.cli import _subparsers, build_parser, main
from retriever.config import field_default
from retriever.confirm.decide import DecisionRules
from retriever.confirm.docs import CandidateRule
from retriever.confirm.stage import BpbOptions, ConfirmSettings
from retriever.confirm.tiny_panel import TinyPanelConfig
from retriever.dataset import DatasetConfig
from retriever.distill import DistillConfig
from retriever.domains import DomainConfig
from retriever.index.head import HeadConfig
from retriever.mix.run import MixRunConfig
from retriever.prefilter import PrefilterConfig
from retriever.proxy.config import ProxyConfig
from retriever.rate import EndpointConfig, RateConfig
from retriever.score.job import DocSampler, ScoreJob
from retriever.serve.service import ServeConfig

# verb -> its stage's configs, each with the fields the CLI parses itself (other dest or type),
# and the fields it does not offer (run-config or API only), so a new field is a choice
CONVERTED = {
    "distill": [(DistillConfig, {"weights"}, {"max_auc_gap"})],
    "filter": [(FilterConfig, {"tasks", "models", "threshold", "reader"}, set())],
    "band": [(BandConfig, {"reader"}, set())],
    "rate": [
        (EndpointConfig, set(), set()),
        (RateConfig, {"tasks", "endpoint", "prompts", "threshold_sim", "reader"}, set()),
    ],
    "domains": [(DomainConfig, set(), {"top_terms", "samples"})],
    "score": [
        (
            ScoreJob,
            {"index_dirs", "corpus", "out_dir", "reader", "meta_fields", "sample"},
            {"embed_batch_size", "_scorer", "_bar"},
        ),
        (DocSampler, {"fraction"}, {"requested", "basis"}),
    ],
    "serve": [(ServeConfig, {"indexes"}, set())],
    "mix propose": [
        (
            MixRunConfig,
            {"n", "budget", "domains", "out"},  # --n 64 here, 8 in a run; -o a CSV
            {"seeds", "general", "metric", "model", "folds", "samples", "top_k"},
        )
    ],
    "mix fit": [
        (
            MixRunConfig,
            {"out"},
            {"n", "seeds", "budget", "general", "metric", "over", "domains"}
            | {"temperature", "min_strength", "max_strength", "minimum", "max_epochs"},
        )
    ],
    "prefilter": [(PrefilterConfig, {"tasks", "patterns", "reader"}, set())],
    "proxy train": [(ProxyConfig, set(), set())],
    "index head": [(HeadConfig, set(), set())],
    "build-dataset": [
        (DatasetConfig, {"tiers", "formats", "score_keys", "decontaminate", "reader"}, set()),
    ],
    "confirm": [
        (BpbOptions, set(), set()),
        (CandidateRule, {"threshold"}, set()),
        (DecisionRules, set(), set()),
        (ConfirmSettings, {"tasks", "candidates", "rules", "bpb"}, set()),
    ],
    # texts: a run's training texts per corpus; the verb's --max-texts also holds the held-out gold
    "confirm tiny-panel": [(TinyPanelConfig, set(), {"texts"})],
}


def _parsers():
    return {" ".join(k): p for k, p in _subparsers(build_parser())}


@pytest.mark.parametrize("verb", sorted(CONVERTED))
def test_a_stage_cli_default_is_its_config_field_default(verb):
    parser = _parsers()[verb]
    generated = [a for a in parser._actions if getattr(a, "config_field", None)]
    assert len(generated) >= 2
    for a in generated:  # the options made from a field: its default, under its name
        cls, name = a.config_field
        assert a.dest == name
        assert a.default == field_default({f.name: f for f in fields(cls)}[name]), (verb, name)
    for cls, own, not_offered in CONVERTED[verb]:
        names = {f.name for f in fields(cls)}
        made = {a.dest for a in generated if a.config_field[0] is cls}
        # every field is an option made from it, parsed by the CLI itself, or not offered
        assert names - made - own == not_offered, (verb, cls.__name__)
        hand = [a for a in parser._actions if a.dest in names - own and a not in generated]
        assert not hand, [a.option_strings for a in hand]  # no default declared twice


def test_the_parsed_defaults_build_the_default_config():
    p = build_parser()
    args = p.parse_args(["filter", "--task", "a", "--input", "x", "--output", "o"])
    from retriever.batch_filter.cli import filter_config_from_args

    assert filter_config_from_args(args) == FilterConfig(tasks=("a",))
    # --corpus / --out (-o) as in every other verb; --input / --output still read
    same = p.parse_args(["filter", "--task", "a", "--corpus", "x", "-o", "o"])
    assert (same.input, same.output) == (args.input, args.output) == (["x"], "o")
    args = p.parse_args(["band", "--docs", "d", "--out", "o", "--model", "m"])
    assert config_from_args(BandConfig, args) == BandConfig(model="m")
    args = p.parse_args(["domains", "--scores", "s", "--out", "o"])
    assert config_from_args(DomainConfig, args) == DomainConfig()
    args = p.parse_args(["distill", "--task", "a"])
    assert config_from_args(DistillConfig, args) == DistillConfig()
    args = p.parse_args(["rate", "--docs", "d", "--out", "o", "--model", "m"])
    # --prompts is a file the CLI reads itself: only the generated options are taken
    endpoint = config_from_args(EndpointConfig, args)
    assert config_from_args(RateConfig, args, endpoint=endpoint) == RateConfig(
        endpoint=EndpointConfig(model="m")
    )
    args = p.parse_args(["confirm"])
    CS = ConfirmSettings
    assert config_from_args(CS, args, bpb=config_from_args(BpbOptions, args)) == CS()
    assert config_from_args(DecisionRules, args) == DecisionRules()
    assert config_from_args(CandidateRule, args) == CandidateRule()
    args = p.parse_args(["confirm", "tiny-panel", "--out", "o"])
    assert config_from_args(TinyPanelConfig, args) == TinyPanelConfig()
    args = p.parse_args(["confirm", "tiny-panel", "--out", "o", "--n-models", "3", "--steps", "9"])
    assert config_from_args(TinyPanelConfig, args) == TinyPanelConfig(models=3, steps=9)
    args = p.parse_args(["confirm", "--no-center", "--batch-tokens", "99", "--positive-top", "0.5"])
    c = config_from_args(CS, args, bpb=config_from_args(BpbOptions, args))
    assert (c.center_models, c.bpb.max_batch_tokens) == (False, 99)
    assert config_from_args(DecisionRules, args).positive_top_fraction == 0.5
    from retriever.dataset.cli import dataset_config_from_args

    argv = ["build-dataset", "--pools", "p", "--mixture", "equal", "--budget", "1M", "--out", "o"]
    assert dataset_config_from_args(p.parse_args(argv)) == DatasetConfig()
    args = p.parse_args(
        [*argv, "--no-token-count", "--part-tokens", "2M", "--order", "stratified"]
        + ["--tiers", "0.2:1", "--format", "parquet", "--score-key", "q", "--score-key", "s"]
    )
    assert dataset_config_from_args(args) == DatasetConfig(
        use_token_count=False,
        part_tokens=2_000_000,
        order="stratified",
        tiers=((0.2, 1.0),),
        formats=("parquet",),
        score_keys=("q", "s"),
    )
    args = p.parse_args(["serve", "--index", "i"])
    assert config_from_args(ServeConfig, args, indexes=("i",)) == ServeConfig(indexes=("i",))
    args = p.parse_args(["serve", "--corpus-store", "s", "--max-k", "7", "--threads", "2"])
    assert config_from_args(ServeConfig, args) == ServeConfig(store="s", max_k=7, threads=2)
    args = p.parse_args(["mix", "propose", "--shares", "a=1,b=1"])
    assert config_from_args(MixRunConfig, args) == MixRunConfig()
    args = p.parse_args(["mix", "fit", "r.csv", "--top-k", "5", "--model", "linear"])
    assert config_from_args(MixRunConfig, args) == MixRunConfig(top_k=5, model="linear")
    argv = ["filter", "--task", "a", "--input", "x", "--output", "o", "--no-write-scores"]
    args = p.parse_args([*argv, "--format", "parquet", "--max-chars", "7"])
    c = filter_config_from_args(args)
    assert (c.write_scores, c.format, c.max_chars) == (False, "parquet", 7)


def test_index_head_defaults_are_the_head_config_and_the_run_index_section():
    from retriever.run.config import IndexSection

    p = build_parser()
    args = p.parse_args(["index", "head", "--index", "i", "--negatives", "n"])
    assert config_from_args(HeadConfig, args) == HeadConfig()
    assert (args.max_negatives, args.c) == (IndexSection.max_negatives, IndexSection.c)
    args = p.parse_args(
        ["index", "head", "--index", "i", "--negatives", "n", "--c", "0.5"]
        + ["--no-reliable-negatives", "--words-max-terms", "9"]
    )
    assert config_from_args(HeadConfig, args) == HeadConfig(
        c=0.5, reliable_negatives=False, words_max_terms=9
    )


def test_the_cli_parser_and_the_run_config_load_no_model_library():
    """Building every verb's parser and loading the run config's sections stays light: the
    index head's and the dataset's configs come without OpenVINO, torch, FAISS or pyarrow."""
    import subprocess
    import sys

    code = (
        "import sys; from retriever.cli import build_parser; build_parser(); "
        "import retriever.run.config, retriever.index.head, retriever.dataset.config; "
        "print(sorted(m for m in ('openvino', 'torch', 'faiss', 'pyarrow', 'sklearn') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_option_help_comes_from_the_docstring_table():
    h = field_help(DistillConfig)
    assert h["lr"] == "learning rate" and h["epoch"] == "passes over the training lines"
    assert "subwords" in h["minn"] and h["maxn"].startswith("longest character n-gram")
    assert ":func:" not in h["normalization"] and "``" not in h["normalization"]
    p = field_help(ProxyConfig)
    assert p["n_layer"] == p["n_embd"] == p["n_head"] == "size of a scratch model"  # `a, b, c:`


@dataclass(frozen=True)
class _Documented:
    """A config of the tests.

    Args:
        size: how many, with 5%% more. Details follow.
        first, second,
            third: a list of names continued on the next line.
        ref: see :class:`~retriever.band.BandConfig` and ``code``.
    """

    size: int = 1
    first: tuple[int, ...] = ()
    second: dict = field(default_factory=dict)
    third: int | None = None
    ref: str = ""
    missing: bool = False


def test_field_help_takes_the_first_sentence_of_each_entry():
    h = field_help(_Documented)
    assert h["size"] == "how many, with 5%%%% more"  # escaped for argparse's % formatting
    assert h["first"] == h["second"] == h["third"] == "a list of names continued on the next line"
    assert h["ref"] == "see BandConfig and code"
    assert "missing" not in h


def test_add_config_options_refuses_a_help_a_default_or_an_undocumented_field():
    import argparse

    for extra in ({"help": "words kept beside the docstring"}, {"default": 2}):
        with pytest.raises(TypeError, match=r"_Documented\.size: the (help|default) is"):
            add_config_options(argparse.ArgumentParser(), _Documented, ["size"], size=extra)
    with pytest.raises(TypeError, match=r"_Documented\.missing: document the field"):
        add_config_options(argparse.ArgumentParser(), _Documented, ["missing"])
    p = argparse.ArgumentParser()
    add_config_options(p, _Documented, ["size", "third"])
    assert {a.dest: a.help for a in p._actions if getattr(a, "config_field", None)} == {
        "size": field_help(_Documented)["size"],
        "third": "a list of names continued on the next line",
    }


def _all_parsers():
    return [(" ".join(k), p) for k, p in _subparsers(build_parser())]


def test_every_option_made_from_a_field_has_the_field_docstring_help():
    """Each option made from a config field, in every sub-command, is helped by the field's
    docstring entry (one wording), and its parser shows the defaults (no docstring names one)."""
    checked = 0
    for verb, parser in _all_parsers():
        made = [a for a in parser._actions if getattr(a, "config_field", None)]
        if made:
            assert isinstance(parser.formatter_class, type)
            assert issubclass(parser.formatter_class, HelpFormatter), verb
        for a in made:
            cls, name = a.config_field
            assert a.help and a.help == field_help(cls)[name], (verb, cls.__name__, name)
            assert "%(default" not in a.help and "(default %" not in a.help, (verb, name)
            checked += 1
    assert checked >= 150  # every stage verb's options


def test_no_option_shows_its_default_twice():
    """The formatter adds ``(default: X)``; a help that names its default itself would show it
    twice."""
    for verb, parser in _all_parsers():
        fmt = parser._get_formatter()
        for a in parser._actions:
            if a.help and a.help is not argparse.SUPPRESS:
                text = fmt._expand_help(a)
                assert text.count("(default") <= 1, (verb, text)


@pytest.mark.parametrize("verb", [v for v, _ in _all_parsers()])
def test_every_verb_help_renders(verb, capsys):
    with pytest.raises(SystemExit) as e:
        main([*verb.split(), "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and out.startswith(f"usage: retriever {verb}")
    assert "%(" not in out and "%%" not in out


def test_a_task_table_file_is_read_or_refused_in_one_line(tmp_path):
    from retriever._cli import read_task_table
    from retriever.errors import ConfigError

    assert read_task_table(None, "prompts", "prompts file") == {}
    f = tmp_path / "p.toml"
    f.write_text('[prompts]\na = "Rate {text}"\n')
    assert read_task_table(str(f), "prompts", "prompts file") == {"a": "Rate {text}"}
    f.write_text("prompts = 3\n")
    with pytest.raises(ConfigError, match=r"\[prompts\] must be a table"):
        read_task_table(str(f), "prompts", "prompts file")
    with pytest.raises(ConfigError, match="patterns file .* does not exist"):
        read_task_table(str(tmp_path / "none.toml"), "patterns", "patterns file")


def test_every_output_option_is_out_with_o():
    """One spelling for where a verb writes: ``-o`` / ``--out`` in every sub-command that has an
    output option (``--output`` only as filter's old alias)."""
    outs = 0
    for verb, parser in _all_parsers():
        for a in parser._actions:
            if {"--out", "--output"} & set(a.option_strings):
                assert "-o" in a.option_strings and "--out" in a.option_strings, (verb, a.dest)
                outs += 1
    assert outs >= 15
