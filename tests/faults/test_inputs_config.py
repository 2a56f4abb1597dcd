"""Cases 7 and 11: symlinked corpus subfolders, wrong TOML value types, a score folder given as
a pool, the model-mismatch message."""

from __future__ import annotations

import os

import numpy as np
import pytest

from retriever.corpus.sharding import list_shards
from retriever.errors import ConfigError, InputError, ModelMismatchError

pytestmark = pytest.mark.faults


def test_symlinked_subfolders_are_followed_once_without_looping(tmp_path):
    real = tmp_path / "elsewhere" / "cluster_2"
    real.mkdir(parents=True)
    (real / "part_0.jsonl").write_text('{"text": "a"}\n')
    corpus = tmp_path / "corpus"
    (corpus / "cluster_1").mkdir(parents=True)
    (corpus / "cluster_1" / "part_0.jsonl").write_text('{"text": "b"}\n')
    (corpus / "cluster_2").symlink_to(real, target_is_directory=True)
    (corpus / "cluster_1" / "loop").symlink_to(corpus, target_is_directory=True)  # a cycle
    shards = list_shards([str(corpus)])
    assert shards == [
        str(corpus / "cluster_1" / "part_0.jsonl"),
        str(corpus / "cluster_2" / "part_0.jsonl"),
    ]


def _spec(tmp_path, source_lines: str):
    p = tmp_path / "tools.toml"
    p.write_text(f'task = "tools"\n[[sources]]\npath = "g.jsonl"\n{source_lines}\n')
    return p


@pytest.mark.parametrize(
    "line,key",
    [
        ('limit = "10"', "limit"),
        ('optional = "no"', "optional"),
        ("text_field = 3", "text_field"),
        ('data_files = "a.json"', "data_files"),
    ],
)
def test_wrong_toml_value_types_are_one_line_config_errors(tmp_path, line, key):
    from retriever.config import load_task_spec

    with pytest.raises(ConfigError) as e:
        load_task_spec(_spec(tmp_path, line))
    assert f"`{key}`" in str(e.value) and "\n" not in str(e.value)


def test_right_toml_value_types_pass(tmp_path):
    from retriever.config import load_task_spec

    spec = load_task_spec(_spec(tmp_path, "limit = 10\noptional = true"))
    assert spec.sources[0].limit == 10 and spec.sources[0].optional is True


def test_run_config_section_type_is_checked(tmp_path):
    from retriever.run.config import load_run_config

    cfg = tmp_path / "run.toml"
    cfg.write_text(
        '[run]\nout = "runs/x"\n[tasks.tools]\ngold = ["g.jsonl"]\ngold_limit = 5\n'
        '[corpus]\npaths = ["c"]\n[score]\nk = "10"\n'
    )
    with pytest.raises(ConfigError, match="`k` must be an integer"):
        load_run_config(cfg)


def test_filter_scores_folder_is_not_a_pool(tmp_path):
    from retriever.dataset.pools import discover_pools, list_pool_files

    out = tmp_path / "filtered"
    (out / "fc").mkdir(parents=True)
    (out / "fc" / "s.jsonl").write_text('{"id": "a", "text": "kept"}\n')
    (out / "scores").mkdir()
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(
        pa.table({"id": ["a", "b"], "prob_fc": [0.9, 0.1]}), out / "scores" / "s.parquet"
    )
    (out / "manifest.json").write_text("{}")
    assert sorted(discover_pools(out)) == ["fc"]
    with pytest.raises(InputError, match="not a pool"):
        list_pool_files(out / "scores")


class _FakeEmbedder:
    def __init__(self, model_id, dim):
        self.model_id, self.dim = model_id, dim


def _gi(model="m", dim=8):
    import faiss

    from retriever.index.gold_index import GoldIndex

    index = faiss.IndexFlatIP(dim)
    index.add(np.eye(dim, dtype=np.float32)[:2])
    return GoldIndex(
        "tools",
        index,
        ["a", "b"],
        ["x", "y"],
        ["s", "s"],
        {"task": "tools", "model": model, "dim": dim, "format": 1},
        use_gpu=False,
    )


def test_model_mismatch_message_names_two_models_and_no_missing_option():
    with pytest.raises(ModelMismatchError) as e:
        _gi("model-a").check_embedder(_FakeEmbedder("model-b", 8))
    msg = str(e.value)
    assert "model-a" in msg and "model-b" in msg and "--model model-a" not in msg


def test_same_model_other_dim_says_rebuild_not_use_the_same_model():
    with pytest.raises(ModelMismatchError) as e:
        _gi("model-a", 8).check_embedder(_FakeEmbedder("model-a", 384))
    msg = str(e.value)
    assert msg.count("model-a") == 1 and "rebuild" in msg


def test_output_folder_that_cannot_be_written_is_refused_before_work(tmp_path):
    from retriever.errors import OutputError
    from retriever.io import check_writable

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError, match="cannot write"):
        check_writable(blocker / "out")
    if os.geteuid() != 0:  # root writes into read-only folders anyway
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        with pytest.raises(OutputError):
            check_writable(ro)
