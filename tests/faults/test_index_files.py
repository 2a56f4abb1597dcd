"""Case 4 (a failed rebuild keeps the working index) and 11 (corrupt or hand-edited index files
give one line naming the file)."""

from __future__ import annotations

import errno
import json

import numpy as np
import pytest

from retriever.errors import InputError
from retriever.index.gold_index import GoldIndex

pytestmark = pytest.mark.faults


def _index(n: int, task: str = "tools", seed: int = 0) -> GoldIndex:
    import faiss

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    index = faiss.IndexFlatIP(8)
    index.add(x)
    manifest = {
        "task": task,
        "model": "m",
        "dim": 8,
        "factory": "Flat",
        "format": 1,
        "gold_fingerprint": f"g{n}",
    }
    return GoldIndex(
        task,
        index,
        [f"i{k}" for k in range(n)],
        [f"text {k}" for k in range(n)],
        ["s"] * n,
        manifest,
        use_gpu=False,
    )


def test_failed_rebuild_leaves_the_working_index(tmp_path, monkeypatch):
    import faiss

    folder = tmp_path / "tools"
    _index(5).save(folder)
    (folder / "filter.bin").write_bytes(b"distilled model")

    def full_disk(index, path):
        with open(path, "wb") as fh:
            fh.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(faiss, "write_index", full_disk)
    with pytest.raises(OSError):
        _index(9, seed=1).save(folder)
    monkeypatch.undo()
    back = GoldIndex.load(folder)
    assert back.ntotal == 5 and back.manifest["gold_fingerprint"] == "g5"
    assert (folder / "filter.bin").read_bytes() == b"distilled model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tools"]  # no temp folder left


def test_rebuild_replaces_the_index_and_keeps_other_files(tmp_path):
    folder = tmp_path / "tools"
    _index(5).save(folder)
    (folder / "filter.bin").write_bytes(b"m")
    _index(9, seed=1).save(folder)
    assert GoldIndex.load(folder).ntotal == 9 and (folder / "filter.bin").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tools"]


def _break(folder, how):
    if how == "manifest_json":
        (folder / "manifest.json").write_text("{ hand edited")
    elif how == "manifest_keys":
        m = json.loads((folder / "manifest.json").read_text())
        del m["dim"]
        (folder / "manifest.json").write_text(json.dumps(m))
    elif how == "manifest_task":
        m = json.loads((folder / "manifest.json").read_text())
        m["task"] = "../../elsewhere"
        (folder / "manifest.json").write_text(json.dumps(m))
    elif how == "index_truncated":
        b = (folder / "index.faiss").read_bytes()
        (folder / "index.faiss").write_bytes(b[: len(b) // 2])
    elif how == "index_random":
        (folder / "index.faiss").write_bytes(np.random.default_rng(0).bytes(4096))
    elif how == "no_gold":
        (folder / "gold.parquet").unlink()
    elif how == "gold_corrupt":
        (folder / "gold.parquet").write_bytes(b"PAR1 not really")


@pytest.mark.parametrize(
    "how",
    [
        "manifest_json",
        "manifest_keys",
        "manifest_task",
        "index_truncated",
        "index_random",
        "no_gold",
        "gold_corrupt",
    ],
)
def test_corrupt_index_is_one_line_input_error(tmp_path, how):
    folder = tmp_path / "tools"
    _index(5).save(folder)
    _break(folder, how)
    with pytest.raises(InputError) as e:
        GoldIndex.load(folder)
    msg = str(e.value)
    assert "\n" not in msg and str(folder) in msg and "rebuild" in msg


def test_cli_query_on_corrupt_index_prints_one_line(tmp_path):
    from faults_helpers import assert_one_line_error, cli

    folder = tmp_path / "tools"
    _index(5).save(folder)
    _break(folder, "index_random")
    proc = cli("query", "--index", str(folder), "hello", timeout=120)
    assert_one_line_error(proc, "index.faiss")
