"""The rerun-only-what-changed logic of `retriever run` (real files, real functions)."""

import pytest

from retriever.errors import ConfigError
from retriever.run.steps import RunStep, StepRunner


def _steps(root, calls, a_setting=1, b_setting="x", fail_b=False):
    def step_a():
        calls.append("a")
        (root / "a.txt").write_text(f"a={a_setting}")
        return {"n": a_setting}

    def step_b():
        calls.append("b")
        (root / "b").mkdir(exist_ok=True)
        if fail_b:
            (root / "b" / "partial").write_text("half")
            raise RuntimeError("killed")
        (root / "b" / "out.txt").write_text((root / "a.txt").read_text() + b_setting)

    def step_c():
        calls.append("c")
        (root / "c.txt").write_text("c")

    return [
        RunStep("a", {"v": a_setting}, step_a, outputs=[root / "a.txt"]),
        RunStep("b", {"v": b_setting}, step_b, outputs=[root / "b"], after=["a"]),
        RunStep("c", {}, step_c, outputs=[root / "c.txt"]),  # independent of a and b
    ]


def test_rerun_only_what_changed(tmp_path):
    calls = []
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "unvouched").write_text("from a run no run.json knows")
    r = StepRunner(tmp_path)
    assert [o.action for o in r.run(_steps(tmp_path, calls))] == ["ran", "ran", "ran"]
    assert not (tmp_path / "b" / "unvouched").exists()
    # nothing changed: nothing runs
    assert [o.action for o in StepRunner(tmp_path).run(_steps(tmp_path, calls))] == ["skipped"] * 3
    assert calls == ["a", "b", "c"]
    # a downstream setting changed: only b reruns, its old outputs removed first
    (tmp_path / "b" / "stale").write_text("old")
    out = StepRunner(tmp_path).run(_steps(tmp_path, calls, b_setting="y"))
    assert [o.action for o in out] == ["skipped", "reran", "skipped"]
    assert (
        not (tmp_path / "b" / "stale").exists() and (tmp_path / "b/out.txt").read_text() == "a=1y"
    )
    # an upstream setting changed: a and everything after it rerun, the independent c does not
    calls.clear()
    out = StepRunner(tmp_path).run(_steps(tmp_path, calls, a_setting=2, b_setting="y"))
    assert [o.action for o in out] == ["reran", "reran", "skipped"] and calls == ["a", "b"]
    assert (tmp_path / "b/out.txt").read_text() == "a=2y"
    # an output deleted by hand: that step runs again, and so does what depends on it
    (tmp_path / "a.txt").unlink()
    assert StepRunner(tmp_path).plan(_steps(tmp_path, [], a_setting=2, b_setting="y")) == {
        "a": "resumed",
        "b": "reran",
        "c": "skipped",
    }
    calls.clear()
    StepRunner(tmp_path).run(_steps(tmp_path, calls, a_setting=2, b_setting="y"))
    assert calls == ["a", "b"]


def test_crashed_step_resumes_into_its_outputs(tmp_path):
    calls = []
    with pytest.raises(RuntimeError):
        StepRunner(tmp_path).run(_steps(tmp_path, calls, fail_b=True))
    r = StepRunner(tmp_path)
    assert r.state["steps"]["b"]["status"] == "running"
    assert r.plan(_steps(tmp_path, calls)) == {"a": "skipped", "b": "resumed", "c": "ran"}
    out = r.run(_steps(tmp_path, calls))
    assert [o.action for o in out] == ["skipped", "resumed", "ran"]
    assert (
        tmp_path / "b" / "partial"
    ).exists()  # same settings: outputs kept for the stage to resume
    assert r.state["steps"]["a"]["token"] != r.state["steps"]["b"]["token"]


def test_dependencies_must_come_first(tmp_path):
    steps = _steps(tmp_path, [])
    with pytest.raises(ConfigError, match="unknown or later"):
        StepRunner(tmp_path).run([steps[1], steps[0]])


def test_kept_cache_inside_an_output_survives_a_rerun(tmp_path):
    out = tmp_path / "confirm"

    def step():
        (out / "cache").mkdir(parents=True, exist_ok=True)
        (out / "cache" / "n.txt").write_text(str(len(list((out / "cache").iterdir()))))
        (out / "labels.txt").write_text("labels")

    def steps(v):
        return [RunStep("confirm", {"v": v}, step, outputs=[out], keep=[out / "cache"])]

    StepRunner(tmp_path).run(steps(1))
    (out / "stale.txt").write_text("old")
    assert [o.action for o in StepRunner(tmp_path).run(steps(2))] == ["reran"]
    assert not (out / "stale.txt").exists() and (out / "labels.txt").exists()
    assert (out / "cache" / "n.txt").read_text() == "1"  # the cache folder was not emptied
