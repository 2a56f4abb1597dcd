"""Run a list of dependent steps, redoing only what changed.

Each step has a fingerprint: its own settings plus the *tokens* of the steps it depends on. A step
gets a new token every time it executes, so anything that makes a step run again (changed settings,
a resumed crash, an output deleted by hand) reaches every step downstream of it and nothing else.
``run.json`` in the run folder records, per step, the fingerprint and token it last finished with.

* same fingerprint, finished, outputs present -> skipped;
* same fingerprint, not finished (a crash, a kill) -> run again *into the same outputs*, so stages
  that resume (scoring, filtering) pick up where they stopped;
* other fingerprint (settings or inputs changed), or no record at all -> the step's outputs are
  removed (they belong to another configuration, or to a run no record vouches for), then it runs.

The state file is written atomically after every step, so a killed run loses at most the step in
progress, and a finished-looking output is never one of an earlier configuration.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retriever.errors import ConfigError
from retriever.io import read_json, write_json_atomic
from retriever.manifest import fingerprint

log = logging.getLogger(__name__)

STATE_FILE = "run.json"


@dataclass
class RunStep:
    """One unit of a run.

    Args:
        name: unique name (``"score"``, ``"distill/rag"``).
        settings: everything that changes the step's result (JSON-able), input fingerprints
        included. fn: does the work; returns a small JSON-able result recorded in ``run.json``.
        outputs: files/folders the step owns: removed when its fingerprint changes, and required to
            exist for a skip.
        after: names of the steps whose results this one uses.
        keep: outputs that survive a fingerprint change (caches keyed by their own content).
    """

    name: str
    settings: dict[str, Any]
    fn: Callable[[], dict[str, Any] | None]
    outputs: list[Path] = field(default_factory=list)
    after: list[str] = field(default_factory=list)
    keep: list[Path] = field(default_factory=list)


@dataclass
class StepOutcome:
    name: str
    action: str  # "skipped" | "ran" | "resumed" | "reran"
    seconds: float
    result: dict[str, Any] | None


class StepRunner:
    """Runs steps in order under ``run_dir`` (see module docstring)."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(
            run_dir
        )  # created at the first save: --plan and failed checks leave none
        self.state_path = self.run_dir / STATE_FILE
        self.state: dict[str, Any] = (
            read_json(self.state_path) if self.state_path.exists() else {"steps": {}}
        )

    @staticmethod
    def _check_order(steps: list[RunStep]) -> None:
        seen: set[str] = set()
        for s in steps:
            missing = [a for a in s.after if a not in seen]
            if missing:
                raise ConfigError(f"step {s.name} runs after unknown or later step(s) {missing}")
            seen.add(s.name)

    @staticmethod
    def _fingerprint(s: RunStep, tokens: dict[str, str]) -> str:
        return fingerprint({"settings": s.settings, "after": [tokens[a] for a in s.after]})

    def _token(self, name: str) -> str:
        rec = self.state["steps"].get(name) or {}
        return rec.get("token") or f"unfinished:{name}"

    def plan(self, steps: list[RunStep]) -> dict[str, str]:
        """What :meth:`run` would do with each step, without doing it."""
        self._check_order(steps)
        tokens: dict[str, str] = {}
        out = {}
        for s in steps:
            out[s.name] = self._action(s, self._fingerprint(s, tokens))
            # a step that will execute gets a new token, which its dependents have not seen
            tokens[s.name] = self._token(s.name) if out[s.name] == "skipped" else f"new:{s.name}"
        return out

    def _action(self, s: RunStep, fp: str) -> str:
        rec = self.state["steps"].get(s.name)
        if rec is None:
            return "ran"
        if rec["fingerprint"] != fp:
            return "reran"
        if rec.get("status") == "done" and all(Path(o).exists() for o in s.outputs):
            return "skipped"
        return "resumed"

    def run(
        self, steps: list[RunStep], on_step: Callable[[RunStep, str], None] | None = None
    ) -> list[StepOutcome]:
        self._check_order(steps)
        tokens: dict[str, str] = {}
        outcomes = []
        for s in steps:
            fp = self._fingerprint(s, tokens)
            action = self._action(s, fp)
            if on_step is not None:
                on_step(s, action)
            if action == "skipped":
                rec = self.state["steps"][s.name]
                tokens[s.name] = self._token(s.name)
                outcomes.append(StepOutcome(s.name, action, 0.0, rec.get("result")))
                continue
            if action in ("reran", "ran"):
                # changed settings, or outputs no record vouches for (an older run): never reuse
                # them
                keep = {Path(k).resolve() for k in s.keep}
                for o in s.outputs:
                    _remove(Path(o).resolve(), keep)
            self.state["steps"][s.name] = {
                "fingerprint": fp,
                "status": "running",
                "settings": s.settings,
            }
            self._save()
            t0 = time.perf_counter()
            result = s.fn() or {}
            dt = time.perf_counter() - t0
            token = fingerprint([fp, time.time_ns()])
            self.state["steps"][s.name] = {
                "fingerprint": fp,
                "token": token,
                "status": "done",
                "settings": s.settings,
                "result": result,
                "seconds": round(dt, 2),
                "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            }
            tokens[s.name] = token
            self._save()
            log.info("step %s: %s in %.1f s", s.name, action, dt)
            outcomes.append(StepOutcome(s.name, action, dt, result))
        return outcomes

    def _save(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.state_path, self.state)


def _remove(p: Path, keep: set[Path]) -> None:
    """Remove ``p``, except the paths in ``keep`` (and the folders leading to them)."""
    if p in keep or not p.exists():
        return
    if p.is_dir() and any(p in k.parents for k in keep):
        for child in p.iterdir():
            _remove(child, keep)
    elif p.is_dir():
        shutil.rmtree(p)
    else:
        p.unlink()
