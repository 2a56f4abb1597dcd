"""`retriever run` configs: the shipped ones load, typos are one-line errors naming the key."""

from pathlib import Path

import pytest

from retriever.cli import main
from retriever.errors import ConfigError
from retriever.run.config import load_run_config
from retriever.run.job import RunJob

REPO_CONFIGS = ["configs/offline.toml", "configs/elmb.toml"]
SHIPPED = sorted(p.name for p in (Path(__file__).resolve().parents[1] / "configs").glob("*.toml"))


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


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_config_loads_into_the_stages_configs_and_plans(name, capsys):
    from conftest import REPO, SHARED_DATA

    from retriever.batch_filter import FilterConfig
    from retriever.distill import DistillConfig

    path = REPO / "configs" / name
    if "shared/data" in path.read_text() and not SHARED_DATA.is_dir():
        pytest.skip(f"configs/{name} reads ../shared/data")
    assert len(SHIPPED) >= 3  # offline, elmb, quickstart at least
    cfg = load_run_config(path)
    assert isinstance(cfg.distill, DistillConfig) and isinstance(cfg.filter, FilterConfig)
    job = RunJob(cfg)
    assert type(job.filter_config()) is FilterConfig and job.filter_config().tasks == tuple(
        cfg.task_names
    )
    assert type(cfg.distill.config()) is DistillConfig
    # `retriever run --plan`: the config-load path of the CLI, the steps listed, nothing run
    assert main(["run", str(path), "--plan", "--no-cost-plan"]) == 0
    out = capsys.readouterr().out
    assert "filter" in out and "dataset" in out


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
        ('[filter]\nfmt = "jsonl"\n', r"\[filter\]: unknown key.*'fmt' \(did you mean 'format'"),
        ('[filter]\nexecutor = "k8s"\n', r"\[filter\].*executor 'k8s'"),
        ("[filter]\nworkers = 0\n", r"\[filter\].*workers must be >= 1"),
        ('[filter]\ntasks = ["a"]\n', r"\[filter\] tasks: not set here.*\[tasks\.NAME\]"),
        ('[filter]\nindexes = "x"\n', r"\[filter\] indexes: not set here.*students"),
        ('[filter]\ntext_field = "body"\n', r"\[filter\] text_field: not set here.*\[corpus\]"),
        ('[band]\nmodel = "m"\nid_field = "x"\n', r"\[band\] id_field: .*\[corpus\]"),
        ('[rate]\ndetokenizer = "gpt2"\n', r"\[rate\] detokenizer: .*\[corpus\]"),
        ('[prefilter]\nreader = "x"\n', r"\[prefilter\] reader: .*\[corpus\]"),
        ('[distill]\nmultilabel = "yes"\n', r"\[distill\].*multilabel.*true or false"),
        ("[distill]\nepoch = 0\n", r"\[distill\].*epoch"),
        ("[confirm]\npositive_min = 0.1\nnegative_max = 0.2\n", "negative_max"),
        ("[index]\nheads = true\n", r"\[index\]: unknown key.*heads"),
        ("[index]\nhead = 1\n", r"\[index\].*head.*true or false"),
        ("[index]\nmax_negatives = 3\n", "max_negatives must be >= 10"),
        ('[dataset]\norder = "best"\n', r"\[dataset\].*order 'best' is not one of"),
        ("[dataset]\nseed = 3\n", r"\[dataset\] seed: not set here.*\[run\] seed"),
        ('[dataset]\ndomains = "d"\n', r"\[dataset\] domains: not set here.*\[domains\]"),
        ("[dataset]\npart_token = 5\n", r"'part_token' \(did you mean 'part_tokens'"),
        ("[dataset]\nworkers = 0\n", r"\[dataset\].*workers must be >= 1"),
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


def test_optional_rate_band_and_prefilter_steps(tmp_path):
    (tmp_path / "g.jsonl").write_text('{"text": "gold"}\n')
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "d.jsonl").write_text('{"id": "1", "text": "doc"}\n')
    p = _write(tmp_path, "")
    names = [s.name for s in RunJob(load_run_config(p)).steps()]
    assert not {"prefilter", "rate", "band"} & set(names)  # absent sections: no step
    body = (
        '[prefilter]\nmode = "drop"\npatterns = {a = ["doc"]}\n'
        '[rate]\nmodel = "m"\nbase_url = "http://127.0.0.1:9/v1"\nprompts = {a = "R {text}"}\n'
        '[band]\nmodel = "ref"\nlow = 0.2\n'
    )
    cfg = load_run_config(_write(tmp_path, body))
    assert cfg.band.model == "ref" and cfg.rate.prompts == {"a": "R {text}"}
    steps = {s.name: s for s in RunJob(cfg).steps()}
    names = list(steps)
    assert names.index("prefilter") < names.index("score") < names.index("band")
    assert names.index("candidates") < names.index("rate") < names.index("report")
    assert "prefilter" in steps["score"].after  # drop mode: the score step embeds what it kept
    assert steps["rate"].after == ["candidates"] and steps["band"].after == ["score"]
    assert any(k.name == "cache.sqlite" for k in steps["rate"].keep)  # answers survive a rerun
    assert {"band", "rate"} <= set(steps["report"].after)
    assert "rate" in steps["distill/a"].after  # the students read the rating labels too


def test_optional_domains_step_feeds_the_dataset(tmp_path):
    (tmp_path / "g.jsonl").write_text('{"text": "gold"}\n')
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "d.jsonl").write_text('{"id": "1", "text": "doc"}\n')
    names = [s.name for s in RunJob(load_run_config(_write(tmp_path, ""))).steps()]
    assert "domains" not in names
    cfg = load_run_config(_write(tmp_path, '[domains]\nk = 4\nsource = "kmeans"\n'))
    assert (cfg.domains.k, cfg.domains.source) == (4, "kmeans")
    steps = {s.name: s for s in RunJob(cfg).steps()}
    assert steps["domains"].after == ["score"] and "domains" in steps["dataset"].after
    assert list(steps).index("score") < list(steps).index("domains") < list(steps).index("dataset")
    for body, match in (
        ("[domains]\nk = 0\n", "k must be an integer"),
        ('[domains]\nsource = "topics"\n', "domain source"),
        ("[domains]\nkk = 4\n", r"\[domains\]: unknown key.*'kk' \(did you mean 'k'"),
    ):
        with pytest.raises(ConfigError, match=match):
            load_run_config(_write(tmp_path, body))


@pytest.mark.parametrize(
    "body, match",
    [
        ('[rate]\nmodel = "m"\nthreshold = 9\n', "threshold"),
        ('[rate]\nmodle = "m"\n', r"\[rate\]: unknown key.*modle"),
        ("[band]\nlow = 0.2\n", "reference model"),
        ('[band]\nmodel = "x"\nlow = 0.9\nhigh = 0.5\n', "below high"),
        ('[prefilter]\nmode = "keep"\n', "prefilter mode"),
    ],
)
def test_optional_sections_are_checked_at_load(tmp_path, body, match):
    with pytest.raises(ConfigError, match=match):
        load_run_config(_write(tmp_path, body))


def test_an_unknown_key_names_the_nearest_valid_one(tmp_path):
    with pytest.raises(ConfigError, match=r"\[score\]: unknown key.*'topfraction' \(did you mean "):
        load_run_config(_write(tmp_path, "[score]\ntopfraction = 0.1\n"))
    p = tmp_path / "d.toml"
    p.write_text('[tasks.a]\ngold = ["g.jsonl"]\n[corpus]\npaths = ["c"]\ntext_feild = "body"\n')
    with pytest.raises(ConfigError, match=r"'text_feild' \(did you mean 'text_field'\?\)"):
        load_run_config(p)


def test_every_reader_option_reaches_every_stage_that_reads_the_corpus(tmp_path):
    from dataclasses import fields

    from retriever.corpus import ReaderConfig

    (tmp_path / "g.jsonl").write_text('{"text": "gold"}\n')
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "d.jsonl").write_text('{"doc_id": "1", "body": "doc"}\n')
    p = tmp_path / "all.toml"
    p.write_text(
        '[tasks.a]\ngold = ["g.jsonl"]\n'
        '[corpus]\npaths = ["c"]\ntext_field = "body"\nid_field = "doc_id"\n'
        'tokens_field = "ids"\ndetokenizer = "gpt2"\nkeep_fields = ["cluster_id"]\n'
        '[prefilter]\nmode = "drop"\npatterns = { a = ["x"] }\n'
        '[rate]\nmodel = "m"\n[band]\nmodel = "ref"\n'
    )
    job = RunJob(load_run_config(p))
    want = ReaderConfig(
        text_field="body",
        id_field="doc_id",
        tokens_field="ids",
        detokenizer="gpt2",
        keep_fields=("cluster_id",),
    )
    # every option is set away from its default here, so a new reader option must be added above
    assert all(getattr(want, f.name) != getattr(ReaderConfig(), f.name) for f in fields(want))
    assert job.reader_config() == want
    assert job.filter_config().reader == want  # the filter re-reads the corpus shards
    assert job.prefilter_config().reader == want  # the prefilter reads them first
    # the band and the rating read the score folder in a run, a corpus on their own: the same
    assert job.cfg.band.reader == want and job.cfg.rate.reader == want
    # a changed reader option reruns every step that reads the corpus with it
    steps = {s.name: s.settings for s in job.steps()}
    for name in ("prefilter", "filter"):
        assert steps[name]["reader"]["detokenizer"] == "gpt2", name
    r = job.corpus_reader()  # the plan's profile and the tiny panel's generic texts
    assert (r.text_field, r.id_field, r.tokens_field, r.keep_fields) == (
        "body",
        "doc_id",
        "ids",
        ("cluster_id",),
    )
    assert r.detokenizer is not None and r.detokenizer.name == "gpt2"
    # with the prefilter dropping, the score stage reads its kept jsonl (plain text, id fields)
    assert job.score_reader() == ReaderConfig()
    plain = RunJob(load_run_config(_write(tmp_path, "")))
    assert plain.score_reader() == plain.reader_config()
    e = tmp_path / "e.toml"
    e.write_text(p.read_text().split("[prefilter]")[0])
    job_no_prefilter = RunJob(load_run_config(e))
    assert job_no_prefilter.score_reader() == want  # what _score hands score_corpus
    # without a general pool the dataset step reads the filter's pools (records it wrote itself)
    dataset = next(s for s in job_no_prefilter.steps() if s.name == "dataset")
    assert dataset.after[0] == "filter" and "reader" not in dataset.settings
    # a general pool is corpus files: the dataset step and the arms read it (and the random arm
    # the corpus) with the same options; a changed one reruns the step (keep_fields has no
    # effect there: a pool document keeps every scalar field)
    from retriever.arms.datasets import ArmSources

    g = tmp_path / "g.toml"
    g.write_text(e.read_text() + '[dataset]\ngeneral_pool = "c"\n')
    job_general = RunJob(load_run_config(g))
    assert (
        job_general.cfg.dataset.reader == want and job_general.cfg.dataset.config().reader == want
    )
    assert ArmSources.from_run(job_general.cfg).reader == want
    dataset = next(s for s in job_general.steps() if s.name == "dataset")
    assert dataset.settings["reader"] == {
        "text_field": "body",
        "id_field": "doc_id",
        "tokens_field": "ids",
        "detokenizer": "gpt2",
    }
    with pytest.raises(ConfigError, match=r"\[dataset\] text_field: not set here.*\[corpus\]"):
        load_run_config(_write(tmp_path, '[dataset]\ntext_field = "body"\n'))


def test_the_general_pool_and_the_random_arm_read_the_corpus_with_corpus_reader_options(
    tmp_path, gpt2_style_tokenizer
):
    """``[corpus]``'s text, id and token-id fields and detokenizer reach the dataset step's general
    pool and the random arm: their documents are the corpus reader's (ids, detokenized texts)."""
    import pyarrow.parquet as pq
    from conftest import write_field_corpus, write_pool

    from retriever.arms.datasets import ArmSources, build_arm_dataset

    texts = write_field_corpus(tmp_path / "c", gpt2_style_tokenizer)
    (tmp_path / "g.jsonl").write_text('{"text": "gold"}\n')
    p = tmp_path / "run.toml"
    p.write_text(
        '[run]\nout = "out"\n[tasks.a]\ngold = ["g.jsonl"]\n'
        '[corpus]\npaths = ["c"]\ntext_field = "body"\nid_field = "doc_id"\n'
        f'tokens_field = "ids"\ndetokenizer = "{gpt2_style_tokenizer / "gpt2"}"\n'
        '[dataset]\ngeneral_pool = "c"\nbudget = "10k"\nformats = ["parquet"]\n'
    )
    cfg = load_run_config(p)
    job = RunJob(cfg, progress=False)
    assert {d.id: d.text for f in cfg.corpus.paths for d in _read_all(job.corpus_reader(), f)} == (
        texts
    )
    write_pool(cfg.out / "pools" / "a" / "s0.jsonl.gz", "a", ["a task document"])  # the filter's
    job._dataset()
    out = pq.read_table(cfg.out / "dataset" / "parquet" / "part_00000.parquet").to_pylist()
    assert {r["id"]: r["text"] for r in out if r["pool"] == "general"} == texts
    assert {r["id"]: r["text"] for r in out if r["pool"] == "a"} == {"a-0": "a task document"}
    arm = build_arm_dataset("random", ArmSources.from_run(cfg), 10_000, tmp_path / "arms")
    got = pq.read_table(arm.path / "parquet" / "part_00000.parquet").to_pylist()
    assert {r["id"]: r["text"] for r in got} == texts


def test_a_general_pool_that_is_a_stages_output_is_read_as_written(tmp_path):
    """``[dataset] general_pool`` naming another run's filter task folder (beside its
    manifest.json): its records are the filter's ``id`` / ``text``, read as written, whatever
    ``[corpus]``'s fields (which would reject them all)."""
    import pyarrow.parquet as pq
    from conftest import write_jsonl, write_pool

    other = tmp_path / "other" / "pools"
    write_pool(other / "b" / "s0.jsonl.gz", "b", ["another run's kept document"])
    (other / "manifest.json").write_text("{}")  # what a filter output folder always holds
    write_jsonl(tmp_path / "c" / "d.jsonl", [{"doc_id": "D0", "body": "corpus text"}])
    (tmp_path / "g.jsonl").write_text('{"text": "gold"}\n')
    p = tmp_path / "run.toml"
    p.write_text(
        '[run]\nout = "out"\n[tasks.a]\ngold = ["g.jsonl"]\n'
        '[corpus]\npaths = ["c"]\ntext_field = "body"\nid_field = "doc_id"\n'
        '[dataset]\ngeneral_pool = "other/pools/b"\nbudget = "10k"\nformats = ["parquet"]\n'
    )
    cfg = load_run_config(p)
    write_pool(cfg.out / "pools" / "a" / "s0.jsonl.gz", "a", ["a task document"])
    RunJob(cfg, progress=False)._dataset()
    out = pq.read_table(cfg.out / "dataset" / "parquet" / "part_00000.parquet").to_pylist()
    assert {r["text"] for r in out if r["pool"] == "general"} == {"another run's kept document"}


def _read_all(reader, path):
    from retriever.corpus.sharding import list_shards

    return [d for shard in list_shards([path]) for d in reader.read(shard)]


def test_the_dataset_step_fingerprint_is_unchanged_for_default_reader_options(tmp_path):
    """The dataset step's settings and fingerprint for default reader options are those of the
    code before the reader reached it (computed there): a run folder keeps its dataset."""
    from retriever.run.steps import StepRunner

    (tmp_path / "g.jsonl").write_text('{"text": "gold"}\n')
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "d.jsonl").write_text('{"id": "1", "text": "doc"}\n')
    want = {
        "budget": "10B",
        "general_pool": None,
        "mixture": "equal",
        "order": "top",
        "tiers": ((0.1, 0.7), (0.5, 0.3)),
        "tokenizer": None,
    }
    for body, general in (("", None), ('[dataset]\ngeneral_pool = "c"\n', str(tmp_path / "c"))):
        job = RunJob(load_run_config(_write(tmp_path, body)))
        step = next(s for s in job.steps() if s.name == "dataset")
        assert step.settings == {**want, "general_pool": general}
        if general is None:  # (with a general pool, its path is in the fingerprint)
            tokens = {a: f"unfinished:{a}" for a in step.after}
            assert StepRunner._fingerprint(step, tokens) == "c898d83e98a8ceb2"


def test_a_stage_section_is_the_stage_config_the_api_takes(tmp_path):
    from retriever.batch_filter import FilterConfig
    from retriever.distill import DistillConfig

    body = (
        '[distill]\nepoch = 3\ntraining_set = ["gold", "random"]\nmultilabel = true\n'
        '[filter]\nformat = "parquet"\ntop_fraction = 0.2\nworkers = 2\nexecutor = "ray"\n'
    )
    cfg = load_run_config(_write(tmp_path, body))
    job = RunJob(cfg)
    assert cfg.distill.config() == DistillConfig(epoch=3, training_set=("gold", "random"))
    assert job.filter_config() == FilterConfig(
        tasks=("a",),
        indexes=str(cfg.out / "filters"),
        models={"a": str(job.multilabel_model())},  # [distill] multilabel: its one student
        top_fraction=0.2,
        format="parquet",
    )
    assert (cfg.filter.executor, cfg.filter.workers) == ("ray", 2)
    plain = load_run_config(_write(tmp_path, ""))
    assert plain.filter.models is None and plain.filter.executor == "local"
    assert RunJob(plain).filter_config().indexes == str(plain.out / "filters")


def test_the_dataset_section_is_the_dataset_config_the_api_takes(tmp_path):
    from retriever.dataset import DatasetConfig

    (tmp_path / "eval.jsonl").write_text('{"question": "q"}\n')
    (tmp_path / "g.jsonl").write_text('{"text": "gold"}\n')
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "d.jsonl").write_text('{"id": "1", "text": "doc"}\n')
    body = (
        '[run]\nseed = 7\n[domains]\nk = 4\n[dataset]\nbudget = "2M"\norder = "stratified"\n'
        'tiers = [[0.2, 0.6], [0.6, 0.4]]\nworkers = 2\nformats = ["parquet"]\n'
        'decontaminate = { rag = "eval.jsonl" }\n'
    )
    cfg = load_run_config(_write(tmp_path, body))
    assert cfg.dataset.config() == DatasetConfig(
        order="stratified",
        seed=7,  # [run] seed
        tiers=((0.2, 0.6), (0.6, 0.4)),
        workers=2,
        formats=("parquet",),
        decontaminate={"rag": str(tmp_path / "eval.jsonl")},  # relative to the config
        domains=str(cfg.out / "domains"),  # the run's [domains] step
    )
    assert cfg.dataset.budget == "2M"
    settings = {s.name: s.settings for s in RunJob(cfg).steps()}["dataset"]
    # the section's original keys always, the other options when set away from the default
    assert settings == {
        "budget": "2M",
        "mixture": "equal",
        "order": "stratified",
        "tiers": ((0.2, 0.6), (0.6, 0.4)),
        "tokenizer": None,
        "general_pool": None,
        "workers": 2,
        "formats": ["parquet"],
        "decontaminate": {"rag": str(tmp_path / "eval.jsonl")},
    }
    plain = load_run_config(_write(tmp_path, ""))
    assert plain.dataset.config() == DatasetConfig() and plain.dataset.domains is None


def _step_settings(tmp_path, body):
    """Each step's fingerprinted settings for a config ``body`` (a gold file, a one-document
    corpus)."""
    (tmp_path / "g.jsonl").write_text('{"text": "gold"}\n')
    (tmp_path / "c").mkdir(exist_ok=True)
    (tmp_path / "c" / "d.jsonl").write_text('{"id": "1", "text": "doc"}\n')
    return {s.name: s.settings for s in RunJob(load_run_config(_write(tmp_path, body))).steps()}


def test_writing_a_default_out_changes_no_step_fingerprint(tmp_path):
    def settings(body):
        return _step_settings(tmp_path, body)

    base = settings('[band]\nmodel = "m"\n')
    same = settings(
        '[distill]\nepoch = 15\n[filter]\nby = "tokens"\nformat = "jsonl.gz"\nworkers = 3\n'
        '[band]\nmodel = "m"\nlow = 0.1\n[dataset]\npart_tokens = 25000000\nworkers = 1\n'
    )
    assert same == base  # workers: where the filter runs, not what it keeps
    other = settings('[distill]\nepoch = 5\n[filter]\nformat = "jsonl"\n[band]\nmodel = "m"\n')
    assert other["distill/a"] != base["distill/a"] and other["filter"] != base["filter"]
    assert other["filter"]["filter"] == {"format": "jsonl"}


@pytest.mark.parametrize(
    "body, match",
    [
        ("[evaluate]\nseedz = 2\n", r"\[evaluate\]: .*'seedz' \(did you mean 'seeds'\?\)"),
        ("[mix]\ntempurature = 0.3\n", r"\[mix\]: .*'tempurature' \(did you mean 'temperature'"),
        ('[evaluate]\narms = ["random", "mine"]\n', r"\[evaluate\] unknown arm\(s\) \['mine'\]"),
        ('[evaluate]\ndatasets = "x"\n', r"\[evaluate\] datasets must be a table"),
        ('[mix]\nover = "clusters"\n', r"\[mix\] over must be pools or domains"),
        ("[mix]\nn = 1\n", r"\[mix\] n must be an integer >= 2"),
        (
            "[evaluate]\nproxy = {token = 4096}\n",
            r"\[evaluate\.proxy\]: unknown key.*'token' \(did you mean 'tokens'\?\)",
        ),
        ("[evaluate.proxy]\nn_layers = 1\n", r"'n_layers' \(did you mean 'n_layer'\?\)"),
        ("[evaluate]\nproxy = {seed = 1}\n", r"\[evaluate\.proxy\] seed: not set here.*seeds"),
        ('[evaluate]\nproxy = {tokens = "4k"}\n', r"\[evaluate\.proxy\]: `tokens` must be an"),
        ("[evaluate]\nproxy = {n_embd = 30, n_head = 4}\n", r"\[evaluate\.proxy\]: n_embd \(30\)"),
        ('[evaluate]\nproxy = "small"\n', r"\[evaluate\.proxy\] must be a table"),
    ],
)
def test_evaluate_and_mix_typos_fail_at_load_naming_the_nearest_key(tmp_path, capsys, body, match):
    """[evaluate] / [mix] are the stages' configs, read at load: `retriever run --plan` refuses a
    typo in them, and so do `retriever evaluate` / `retriever mix run` before any work."""
    from retriever.arms.api import evaluate_run
    from retriever.mix.run import mix_run

    p = _write(tmp_path, body)
    with pytest.raises(ConfigError, match=match):
        load_run_config(p)
    assert main(["run", str(p), "--plan", "--no-cost-plan"]) != 0
    # one line naming the section (or its sub-table: [evaluate.proxy])
    assert body.splitlines()[0].rstrip("]") in capsys.readouterr().err
    for command in (evaluate_run, mix_run):
        with pytest.raises(ConfigError, match=match):
            command(p)


def test_evaluate_and_mix_sections_are_the_stages_configs(tmp_path):
    from retriever.arms import EvaluateConfig, load_evaluate_config
    from retriever.mix import MixRunConfig

    p = _write(tmp_path, '[evaluate]\nseeds = 2\narms = ["random"]\n[mix]\nn = 6\nout = "mx"\n')
    cfg = load_run_config(p)
    assert cfg.evaluate == EvaluateConfig(seeds=2, arms=("random",))
    assert cfg.mix == MixRunConfig(n=6, out=str(tmp_path / "mx"))
    assert load_evaluate_config(cfg, {"seeds": 4, "budget": None}).seeds == 4
    with pytest.raises(ConfigError, match="seedz"):
        load_evaluate_config(cfg, {"seedz": 4})  # an override is checked too
    bare = load_run_config(_write(tmp_path, ""))
    assert bare.evaluate == EvaluateConfig() and bare.mix == MixRunConfig()


def _config_elsewhere(tmp_path):
    """A run config in ``cfg/`` naming every kind of path key relatively, and a ``cwd/`` beside it
    holding nothing."""
    cfg_dir, cwd = tmp_path / "cfg", tmp_path / "cwd"
    (cfg_dir / "c").mkdir(parents=True)
    cwd.mkdir()
    (cfg_dir / "g.jsonl").write_text('{"text": "gold"}\n')
    (cfg_dir / "c" / "d.jsonl").write_text('{"id": "1", "text": "doc"}\n')
    (cfg_dir / "rates.json").write_text("{}")
    p = cfg_dir / "run.toml"
    p.write_text(
        '[run]\nout = "runs/x"\nindexes_dir = "specs"\n'
        '[tasks.a]\ngold = ["g.jsonl"]\nscorecard_gold = ["./g.jsonl"]\nspec = "specs/a.toml"\n'
        '[corpus]\npaths = ["c"]\n'
        '[confirm]\npanel = "panels/p.toml"\n'
        '[plan]\nrates_file = "rates.json"\n'
        '[dataset]\ngeneral_pool = "pool"\ntokenizer = "gpt2"\nscan_cache = "scan"\n'
        '[filter]\nmodels = {a = "students/a.bin"}\n'
        '[rate]\nmodel = "m"\ncache = "answers.sqlite"\nprompts = {a = "R {text}"}\n'
        '[evaluate]\nout = "ev"\n[mix]\nout = "mx"\n'
    )
    return p, cfg_dir, cwd


def test_relative_paths_resolve_against_the_config_folder_from_any_cwd(tmp_path, monkeypatch):
    from retriever.arms.api import load_evaluate_config

    p, d, cwd = _config_elsewhere(tmp_path)
    monkeypatch.chdir(cwd)
    cfg = load_run_config(p)
    assert cfg.out == d / "runs" / "x"  # without a leading "./" too
    assert cfg.run.indexes_dir == str(d / "specs")  # need not exist yet
    t = cfg.tasks[0]
    assert t.gold == (str(d / "g.jsonl"),) and t.scorecard_gold == (str(d / "g.jsonl"),)
    assert t.spec == str(d / "specs" / "a.toml")
    assert cfg.corpus.paths == (str(d / "c"),)
    assert cfg.confirm.panel == str(d / "panels" / "p.toml")
    assert cfg.plan.rates_file == str(d / "rates.json")
    assert cfg.dataset.general_pool == str(d / "pool")  # an output-side folder: never the cwd
    assert cfg.dataset.tokenizer == "gpt2"  # not beside the config: a Hub name
    assert cfg.dataset.scan_cache == str(d / "scan")
    assert cfg.filter.models == {"a": str(d / "students" / "a.bin")}
    assert cfg.rate.cache == str(d / "answers.sqlite")
    assert load_evaluate_config(cfg).out == str(d / "ev")
    assert cfg == load_run_config(Path("..") / "cfg" / "run.toml")  # the same, by a relative path
    assert list(cwd.iterdir()) == []


def test_absent_indexes_dir_is_the_shipped_specs_from_any_cwd(tmp_path, monkeypatch):
    from conftest import REPO

    p = _write(tmp_path, "")
    monkeypatch.chdir(tmp_path)
    assert load_run_config(p).run.indexes_dir == str(REPO / "indexes")
    assert load_run_config(p).out == tmp_path / "runs" / "default"


def test_a_path_found_only_in_the_cwd_is_a_clear_error(tmp_path, monkeypatch):
    p, d, cwd = _config_elsewhere(tmp_path)
    (cwd / "c2").mkdir()
    p.write_text(p.read_text().replace('paths = ["c"]', 'paths = ["c2"]'))
    monkeypatch.chdir(cwd)
    with pytest.raises(ConfigError, match=r"\[corpus\] paths 'c2'.*relative to the config"):
        load_run_config(p)


def test_run_plan_from_another_cwd_reads_the_run_folder_beside_the_config(tmp_path):
    import json
    import subprocess
    import sys

    from conftest import REPO

    p, d, cwd = _config_elsewhere(tmp_path)
    run_dir = d / "runs" / "x"
    run_dir.mkdir(parents=True)
    # a run folder whose record of the first step has other settings: the plan says "reran"
    (run_dir / "run.json").write_text(
        json.dumps({"steps": {"index/a": {"fingerprint": "other", "status": "done"}}})
    )

    def plan(where):
        proc = subprocess.run(
            [sys.executable, "-m", "retriever.cli", "run", str(p), "--plan", "--json"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=120,
            env={**__import__("os").environ, "PYTHONPATH": str(REPO)},
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        return json.loads(proc.stdout)

    assert plan(d)["index/a"] == "reran"
    assert plan(cwd) == plan(d)  # the same run folder, whatever the cwd
    assert list(cwd.iterdir()) == []


# one non-default [confirm], written flat (the keys before the section was nested) and nested
_CONFIRM_PANEL = (
    '[confirm]\ntiny_models = 4\ntiny_steps = 60\ntiny_texts = 100\nscorecard_kind = "text"\n'
    'scorecard_limit = 50\nmin_models = 4\nmetric = "acc"\ncenter_models = false\n'
)
_CONFIRM_PARTS = {
    "candidates": "negatives_per_positive = 2\nmax_random_negatives = 500\nmax_candidates = 1000\n",
    "rules": 'estimator = "concordance"\npositive_min = 0.75\nnegative_max = 0.5\n'
    "positive_top_fraction = 0.3\n",
    "bpb": 'device = "cpu"\n',
}
CONFIRM_FLAT = _CONFIRM_PANEL + "".join(_CONFIRM_PARTS.values())
CONFIRM_NESTED = _CONFIRM_PANEL + "".join(f"[confirm.{p}]\n{b}" for p, b in _CONFIRM_PARTS.items())


def test_the_confirm_section_is_the_confirm_stages_nested_settings(tmp_path):
    from retriever.confirm.decide import DecisionRules
    from retriever.confirm.docs import CandidateRule
    from retriever.confirm.stage import BpbOptions, ConfirmSettings

    nested = load_run_config(_write(tmp_path, "[run]\nseed = 4\n" + CONFIRM_NESTED))
    flat = load_run_config(_write(tmp_path, "[run]\nseed = 4\n" + CONFIRM_FLAT))
    assert nested.confirm == flat.confirm  # one object, whichever spelling
    assert type(nested.confirm.config()) is ConfirmSettings
    assert nested.confirm.config() == ConfirmSettings(
        tasks=("a",),  # the run's tasks and seed
        candidates=CandidateRule(
            negatives_per_positive=2, max_random_negatives=500, max_candidates=1000, seed=4
        ),
        rules=DecisionRules(
            estimator="concordance", positive_min=0.75, negative_max=0.5, positive_top_fraction=0.3
        ),
        bpb=BpbOptions(device="cpu"),
        min_models=4,
        metric="acc",
        center_models=False,
    )
    assert (nested.confirm.tiny_models, nested.confirm.scorecard_limit) == (4, 50)
    # every option of the stage is the section's (the parts' too), the run's own aside
    body = (
        "[confirm]\nsample_budget = 0.5\n[confirm.bpb]\n"
        'dtype = "float32"\nmax_batch_tokens = 1024\nblock_docs = 16\n'
    )
    c = load_run_config(_write(tmp_path, body)).confirm.config()
    assert c.sample_budget == 0.5 and c.bpb == BpbOptions(
        dtype="float32", max_batch_tokens=1024, block_docs=16
    )
    assert load_run_config(_write(tmp_path, "")).confirm.config() == ConfirmSettings(tasks=("a",))


# [rate]'s endpoint is its part [rate.endpoint], its old flat keys still read
RATE_MISTAKES = [
    (
        '[rate]\nmodel = "m"\n[rate.endpoint]\nmodel = "n"\n',
        r"^\[rate\] model and \[rate\.endpoint\] model are one option written twice; keep "
        r"\[rate\.endpoint\] model$",
    ),
    ('[rate]\nendpoint = "m"\n', r"^\[rate\.endpoint\] must be a table$"),
    ('[rate]\nmodle = "m"\n', r"^\[rate\]: unknown key\(s\) 'modle' \(did you mean 'model'\?"),
    (
        '[rate.endpoint]\nmodel = "m"\nbase_ur = "x"\n',
        r"^\[rate\.endpoint\]: unknown key\(s\) 'base_ur' \(did you mean 'base_url'\?",
    ),
    ('[rate.endpoint]\nmodel = "m"\napi = "grpc"\n', r"^\[rate\.endpoint\]: api 'grpc'"),
    ("[rate]\nthreshold = 4\n", r"^\[rate\]: the rating endpoint needs a model name"),
    ('[rate]\nmodel = "m"\ntext_field = "body"\n', r"^\[rate\] text_field: not set here"),
    (
        '[rate]\nmodel = "m"\nbackoff = 5.0\nmax_backoff = 1.0\n',
        r"^\[rate\.endpoint\]: max_backoff 1\.0 is smaller than backoff 5\.0",
    ),
]


@pytest.mark.parametrize(
    "body, match",
    [
        (
            '[confirm]\nestimator = "sign"\n[confirm.rules]\nestimator = "spearman"\n',
            r"^\[confirm\] estimator and \[confirm\.rules\] estimator are one option written twice",
        ),
        (
            "[confirm]\nmax_candidates = 5\n[confirm.candidates]\nmax_candidates = 6\n",
            r"\[confirm\] max_candidates and \[confirm\.candidates\] max_candidates",
        ),
        (
            '[confirm.rules]\nestimater = "sign"\n',
            r"\[confirm\.rules\]: unknown key.*'estimater' \(did you mean 'estimator'\?\)",
        ),
        ("[confirm.bpb]\nmax_batch_token = 5\n", r"did you mean 'max_batch_tokens'"),
        ("[confirm.candidate]\nmax_candidates = 5\n", r"did you mean 'candidates'"),
        ('[confirm]\ndtype = "float32"\n', r"\[confirm\] dtype: an option of \[confirm\.bpb\]"),
        (
            "[confirm]\nmax_candidate = 5\n",
            r"did you mean \[confirm\.candidates\] max_candidates\?",
        ),
        ("[confirm]\nseed = 5\n", r"^\[confirm\] seed: not set here, it comes from \[run\] seed"),
        ("[confirm]\nrules = 3\n", r"\[confirm\.rules\] must be a table"),
        (
            "[confirm.rules]\npositive_min = 0.1\nnegative_max = 0.2\n",
            r"\[confirm\.rules\]: negative_max \(0\.2\) must be below",
        ),
        ("[confirm.candidates]\nmax_candidates = 0\n", r"\[confirm\.candidates\]: max_candidates"),
        (
            "[confirm.candidates]\nseed = 3\n",
            r"\[confirm\.candidates\] seed: not set here.*\[run\] seed",
        ),
        ("[confirm.candidates]\ntop_fraction = 0.3\n", r"top_fraction: not set here.*\[score\]"),
        ('[confirm]\ntasks = ["a"]\n', r"\[confirm\] tasks: not set here"),
        ("[confirm]\nmin_models = 1\n", r"\[confirm\]: min_models must be >= 2"),
        ('[confirm]\npanel = "p.json"\n', r'\[confirm\] panel must be "tiny"'),
        ("[confirm]\ntiny_models = 1\n", r"\[confirm\]: tiny panel models .*tiny_models.* >= 2"),
        ('[confirm]\ntiny_steps = "9"\n', r"\[confirm\]: `tiny_steps` must be an integer"),
        ('[confirm]\nscorecard_kind = "mcq"\n', r"\[confirm\]: scorecard kind .* auto, mc, text"),
        ("[confirm]\nscorecard_limit = 0\n", r"\[confirm\]: scorecard limit .* >= 1, got 0"),
        (
            '[confirm.bpb]\nblock_docs = "16"\n',
            r"\[confirm\.bpb\]: `block_docs` must be an integer",
        ),
    ]
    + RATE_MISTAKES,
)
def test_confirm_and_rate_mistakes_are_one_line_errors(tmp_path, capsys, body, match):
    p = _write(tmp_path, body)
    with pytest.raises(ConfigError, match=match):
        load_run_config(p)
    assert main(["run", str(p), "--plan", "--no-cost-plan"]) != 0  # `retriever run --plan` too
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


# The confirm step's settings and fingerprint as main computed them (commit 4352e72, before
# [confirm] was nested: `RunJob(cfg).steps()`'s "confirm" settings and manifest.fingerprint of
# them), hard-coded so an existing run folder never reruns confirm for the spelling.
CONFIRM_DEFAULT = {
    "center_models": True,
    "device": None,
    "estimator": "spearman",
    "max_random_negatives": 100000,
    "metric": None,
    "min_models": 3,
    "negative_max": 0.0,
    "negatives_per_positive": 1.0,
    "panel": "tiny",
    "positive_min": 0.5,
    "positive_top_fraction": None,
    "scorecard_kind": "auto",
    "scorecard_limit": 200,
    "tiny_models": 6,
    "tiny_steps": 120,
    "tiny_texts": 300,
}
CONFIRM_SET = {
    "center_models": False,
    "device": "cpu",
    "estimator": "concordance",
    "max_candidates": 1000,
    "max_random_negatives": 500,
    "metric": "acc",
    "min_models": 4,
    "negative_max": 0.5,
    "negatives_per_positive": 2,
    "panel": "tiny",
    "positive_min": 0.75,
    "positive_top_fraction": 0.3,
    "scorecard_kind": "text",
    "scorecard_limit": 50,
    "tiny_models": 4,
    "tiny_steps": 60,
    "tiny_texts": 100,
}


@pytest.mark.parametrize(
    "body, settings, digest",
    [
        ("", CONFIRM_DEFAULT, "cbd0c3c2faad1bc7"),
        (
            "[confirm]\n[confirm.candidates]\n[confirm.rules]\n[confirm.bpb]\n",
            CONFIRM_DEFAULT,
            "cbd0c3c2faad1bc7",
        ),
        ('[confirm.rules]\nestimator = "spearman"\n', CONFIRM_DEFAULT, "cbd0c3c2faad1bc7"),
        (CONFIRM_FLAT, CONFIRM_SET, "9df3b73f8ba60efa"),
        (CONFIRM_NESTED, CONFIRM_SET, "9df3b73f8ba60efa"),
    ],
)
def test_the_confirm_fingerprint_is_mains_whatever_the_spelling(tmp_path, body, settings, digest):
    from retriever.manifest import fingerprint

    confirm = _step_settings(tmp_path, body)["confirm"]
    assert confirm == settings
    assert fingerprint(confirm) == digest


def test_a_confirm_option_added_with_the_nesting_is_recorded_only_when_set(tmp_path):
    def confirm(body):
        return _step_settings(tmp_path, body)["confirm"]

    assert confirm('[confirm.bpb]\ndtype = "auto"\n[confirm]\nsample_budget = 0.25\n') == (
        CONFIRM_DEFAULT
    )
    assert confirm('[confirm.bpb]\ndtype = "float32"\n[confirm]\nsample_budget = 0.5\n') == {
        **CONFIRM_DEFAULT,
        "bpb.dtype": "float32",
        "sample_budget": 0.5,
    }


# What the arms' default trainer made of [evaluate] proxy on main (commit 4352e72, when proxy was
# a raw dict): the cache key's proxy spec (fingerprinted) and a seed's ProxyConfig, hard-coded so
# the proxies cached by earlier runs are found again.
PROXY_SPEC_DEFAULT = "a02bd5a9ef9e0bef"
PROXY_SPEC_SET = "7ccbf39afd1baf60"
PROXY_SET = {
    "mode": "scratch",
    "tokens": 4096,
    "seq_len": 64,
    "n_layer": 1,
    "n_embd": 32,
    "n_head": 2,
    "arch": "gpt2",
    "batch_size": 4,
    "lr": 1,
    "warmup": 0.05,
    "min_lr_ratio": 0.1,
    "weight_decay": 0.0,
    "grad_clip": 1.0,
    "seed": 2,
    "device": "cpu",
    "dtype": "auto",
    "tokenizer": None,
    "init": None,
    "save_every": 100,
    "text_field": "text",
    "max_docs": None,
    "threads": 1,
}


@pytest.mark.parametrize(
    "body, digest, seed2",
    [
        ("", PROXY_SPEC_DEFAULT, {}),
        (
            '[evaluate]\ndevice = "cpu"\nproxy = {tokens = 4096, seq_len = 64, n_layer = 1, '
            "n_embd = 32, n_head = 2, lr = 1, batch_size = 4, threads = 1}\n",
            PROXY_SPEC_SET,
            PROXY_SET,
        ),
        (
            '[evaluate]\ndevice = "cpu"\n[evaluate.proxy]\ntokens = 4096\nseq_len = 64\n'
            "n_layer = 1\nn_embd = 32\nn_head = 2\nlr = 1\nbatch_size = 4\nthreads = 1\n",
            PROXY_SPEC_SET,
            PROXY_SET,
        ),
        # the proxy's own device wins over [evaluate] device, as before; not in the cache key
        (
            '[evaluate]\ndevice = "cuda"\nproxy = {tokens = 4096, seq_len = 64, n_layer = 1, '
            'n_embd = 32, n_head = 2, lr = 1, batch_size = 4, threads = 1, device = "cpu"}\n',
            PROXY_SPEC_SET,
            PROXY_SET,
        ),
    ],
)
def test_the_evaluate_proxy_is_the_proxy_config_and_keeps_mains_cache_key(
    tmp_path, body, digest, seed2
):
    from dataclasses import asdict

    from retriever.arms.proxy import ProxyTrainer
    from retriever.manifest import fingerprint
    from retriever.proxy import ProxyConfig

    ec = load_run_config(_write(tmp_path, body)).evaluate
    assert type(ec.proxy) is ProxyConfig and ec.proxy.seed == 0
    trainer = ProxyTrainer(ec.proxy, device=ec.device)
    assert fingerprint(trainer.spec) == digest
    assert asdict(trainer.config(2)) == (seed2 or asdict(ProxyConfig(seed=2)))


# [rate]'s endpoint options, flat as every config before [rate.endpoint] wrote them
_RATE_ENDPOINT = (
    'base_url = "https://api.example.com/v1"\nmodel = "judge"\napi = "completions"\n'
    "temperature = 0.5\nmax_tokens = 64\nseed = 7\ntimeout = 30.0\nretries = 2\nbackoff = 0.5\n"
    "max_backoff = 8.0\n"
)
_RATE_OWN = (
    'api_key_env = "JUDGE_KEY"\nconcurrency = 4\nmax_requests = 1000\nmax_chars = 2000\n'
    'score_marker = "Rating:"\nthreshold = 4\nsystem = "Be brief."\ntop_fraction = 0.2\n'
    "max_candidates = 50\nnegatives_per_positive = 2.0\nmax_random_negatives = 10\n"
    'sample_seed = 3\nprompts = {a = "R {text}"}\n'
)
RATE_FLAT = "[rate]\n" + _RATE_OWN + _RATE_ENDPOINT
RATE_NESTED = "[rate]\n" + _RATE_OWN + "[rate.endpoint]\n" + _RATE_ENDPOINT
# The rate step's settings and fingerprint, the prompt version of a task (template "R {text}")
# and the manifest's settings (its digest and key order), as main computed them (commit 69f8af1,
# before [rate] nested its endpoint), hard-coded so an existing run folder reruns nothing and its
# answer cache is hit.
RATE_MIN = {"tasks": ["a"], "model": "m"}
RATE_SET = {
    "tasks": ["a"],
    "base_url": "https://api.example.com/v1",
    "model": "judge",
    "api": "completions",
    "api_key_env": "JUDGE_KEY",
    "temperature": 0.5,
    "max_tokens": 64,
    "seed": 7,
    "timeout": 30.0,
    "retries": 2,
    "backoff": 0.5,
    "max_backoff": 8.0,
    "concurrency": 4,
    "max_requests": 1000,
    "max_chars": 2000,
    "score_marker": "Rating:",
    "threshold": 4,
    "prompts": {"a": "R {text}"},
    "system": "Be brief.",
    "top_fraction": 0.2,
    "max_candidates": 50,
    "negatives_per_positive": 2.0,
    "max_random_negatives": 10,
    "sample_seed": 3,
}
RATE_MANIFEST_KEYS = (
    "tasks base_url model api temperature max_tokens seed timeout retries backoff max_backoff "
    "concurrency max_requests max_chars score_marker threshold system top_fraction threshold_sim "
    "max_candidates negatives_per_positive max_random_negatives sample_seed text_field id_field "
    "tokens_field detokenizer keep_fields"
).split()
_MIN = ("5fa0175f7cf705cb", "4f897324c8dbf74f", "be5b2cab69f97243")
_SET = ("3606f52f23801c8b", "aaf6f12a0808c598", "50f8d46aff463edc")


@pytest.mark.parametrize(
    "body, settings, digests",
    [
        ('[rate]\nmodel = "m"\n', RATE_MIN, _MIN),
        ('[rate.endpoint]\nmodel = "m"\n', RATE_MIN, _MIN),
        (  # the defaults written out, nested
            '[rate.endpoint]\nmodel = "m"\nbase_url = "http://localhost:8000/v1"\napi = "chat"\n'
            "temperature = 0.0\nmax_tokens = 256\ntimeout = 120.0\nretries = 5\nbackoff = 1.0\n"
            "max_backoff = 60.0\n",
            RATE_MIN,
            _MIN,
        ),
        (RATE_FLAT, RATE_SET, _SET),
        (RATE_NESTED, RATE_SET, _SET),
    ],
)
def test_the_rate_fingerprint_and_prompt_version_are_mains_whatever_the_spelling(
    tmp_path, body, settings, digests
):
    from retriever.manifest import fingerprint
    from retriever.rate import EndpointConfig, RateConfig, RatingStage, task_prompt

    step = _step_settings(tmp_path, body)["rate"]
    assert step == settings
    assert fingerprint(step) == digests[0]
    rate = load_run_config(tmp_path / "c.toml").rate
    assert type(rate) is RateConfig and type(rate.endpoint) is EndpointConfig
    prompt = task_prompt("a", "", "", "R {text}", rate.system)
    stage = RatingStage(rate, {"a": prompt}, tmp_path / "out")
    assert stage.version("a") == digests[1]  # the answer cache's key: nothing is asked again

    class Docs:
        source, kind = ["x"], "scores"

    manifest = stage._manifest(Docs, ["a"], {"a": "v"})["settings"]
    assert list(manifest) == RATE_MANIFEST_KEYS and fingerprint(manifest) == digests[2]


def test_the_rate_endpoint_fields_do_not_collide_with_the_stages():
    # the rate step records the endpoint's options under their own names
    from dataclasses import fields

    from retriever.rate import EndpointConfig, RateConfig

    assert not {f.name for f in fields(EndpointConfig)} & {f.name for f in fields(RateConfig)}


# The panel step's settings (its corpus fingerprint aside: it holds the test's paths) and their
# fingerprint, as main computed them (commit 69f8af1, before the tiny panel's options were a
# TinyPanelConfig), hard-coded so an existing run folder does not retrain its tiny panel.
PANEL_DEFAULT = {
    "panel": "tiny",
    "scorecard_kind": "auto",
    "limit": 200,
    "seed": 0,
    "scorecard_gold": {"a": []},
    "models": 6,
    "steps": 120,
    "texts": 300,
}


@pytest.mark.parametrize(
    "body, settings, digest",
    [
        ("", PANEL_DEFAULT, "34db102332de7e95"),
        ("[confirm]\ntiny_models = 6\ntiny_steps = 120\n", PANEL_DEFAULT, "34db102332de7e95"),
        (
            "[confirm]\ntiny_models = 4\ntiny_steps = 60\ntiny_texts = 100\n",
            {**PANEL_DEFAULT, "models": 4, "steps": 60, "texts": 100},
            "3a78affb877dbeea",
        ),
    ],
)
def test_the_tiny_panel_fingerprint_is_mains(tmp_path, body, settings, digest):
    from retriever.confirm.tiny_panel import TinyPanelConfig
    from retriever.manifest import fingerprint

    panel = _step_settings(tmp_path, body)["panel"]
    del panel["corpus"]
    assert panel == settings and fingerprint(panel) == digest
    tiny = load_run_config(tmp_path / "c.toml").confirm.tiny_panel()
    assert tiny == TinyPanelConfig(settings["models"], settings["steps"], settings["texts"])
