"""Keyword / pattern matching of every task in one pass over a document.

A pattern is either a *keyword* (a literal, matched case-insensitively anywhere) or a *regex*
(written ``re:<python regex>``, multiline). All keywords of all tasks go into one Aho-Corasick
automaton (``pyahocorasick``: one pass over the lower-cased text, in C, whatever the number of
keywords; without the package, one combined regex of the escaped keywords); the few regexes of a
task are one compiled alternation. A document's score for a task is its number of matches.

This is TinyAgent-guided filtering's "method A": cheap surface cues that a document may teach a
task, run before anything is embedded. Keep regexes few and anchored on something literal: they,
not the keywords, set the cost (see ``scripts/eval_prefilter.py``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

from retriever.errors import ConfigError

REGEX_PREFIX = "re:"

# Defaults per task. Override them per task with `patterns = [...]` in indexes/<task>.toml, a
# [patterns] table in a `--patterns` TOML file, or PrefilterConfig(patterns=...).
DEFAULT_PATTERNS: dict[str, tuple[str, ...]] = {
    "function-calling": (
        '"tool_calls"',
        '"function_call"',
        '"arguments":',
        '"parameters":',
        '"name": "',
        "requests.get(",
        "requests.post(",
        "api_key",
        "api key",
        "apikey",
        "endpoint",
        "function call",
        "tool call",
        "json",
        "curl -",
        "def ",
        "()",
        r"re:\b[a-z]+(?:_[a-z0-9]+)+\((?:[a-z_]+=|['\"\[)])",  # snake_case_call(arg=... / "..." / )
    ),
    "reasoning": (
        "how many",
        "how much",
        "how far",
        "how long",
        "therefore",
        "step 1",
        "first,",
        "solve",
        "calculate",
        "equation",
        "percent",
        "in total",
        "remainder",
        "per hour",
        "per day",
        "per week",
        "####",
        r"re:\d+(?:\.\d+)?\s*[-+*/x\u00d7\u00f7]\s*\d+(?:\.\d+)?\s*=\s*\$?\d",  # 3 + 5 = 8
    ),
    "roleplay": (
        "*smiles",
        "*laughs",
        "*nods",
        "*sighs",
        "(laughs",
        "(smiles",
        "(sighs",
        "(pauses",
        "role-play",
        "roleplay",
        "in character",
        "interviewer:",
        "(speaking)",
        "i am ",
        "my dear",
        # dialogue turn "Name (speaking): ...", not a field label of another task's format
        r"re:^(?!(?:Question|Answer|Context|Passage|Document|Source|Note|Step|Call|User|Output)s?\b)"
        r"[A-Z][\w .'-]{0,40}(?: \([^)\n]{1,30}\))?: \S",
    ),
    "rag": (
        "context:",
        "passage:",
        "question:",
        "answer:",
        "according to the",
        "et al.",
        "this study",
        "we found",
        "we investigated",
        "objective:",
        "background:",
        "methods:",
        "results:",
        "conclusion:",
        "conclusions:",
        "the aim of",
    ),
}


class KeywordMatcher:
    """Counts keyword and regex matches per task.

    Args:
        patterns: ``{task: [keyword or "re:regex", ...]}``; default :data:`DEFAULT_PATTERNS`.

    Raises:
        ConfigError: no pattern at all, an empty keyword, or a regex that does not compile (the
            message names the task and the pattern).
    """

    def __init__(self, patterns: Mapping[str, Sequence[str]] | None = None):
        patterns = dict(DEFAULT_PATTERNS if patterns is None else patterns)
        if not patterns or not any(patterns.values()):
            raise ConfigError("the keyword prefilter needs at least one pattern")
        self.tasks: tuple[str, ...] = tuple(patterns)
        self.patterns = {t: tuple(p) for t, p in patterns.items()}
        keywords: dict[str, set[int]] = {}
        self._regex: list[tuple[int, re.Pattern]] = []
        for ti, task in enumerate(self.tasks):
            rx = []
            for pat in self.patterns[task]:
                if not isinstance(pat, str):
                    raise ConfigError(f"prefilter pattern {pat!r} of task {task!r} is not a string")
                if pat.startswith(REGEX_PREFIX):
                    body = pat[len(REGEX_PREFIX) :]
                    try:
                        re.compile(body)
                    except re.error as e:
                        raise ConfigError(f"prefilter regex {body!r} of task {task!r}: {e}") from e
                    rx.append(f"(?:{body})")
                else:
                    kw = pat.lower()
                    if not kw.strip():
                        raise ConfigError(f"task {task!r} has an empty prefilter keyword")
                    keywords.setdefault(kw, set()).add(ti)
            if rx:
                self._regex.append((ti, re.compile("|".join(rx), re.MULTILINE)))
        self._keywords = {k: tuple(sorted(v)) for k, v in keywords.items()}
        self._automaton = _build_automaton(self._keywords)
        self._kw_regex = None
        if self._automaton is None and self._keywords:
            alt = "|".join(re.escape(k) for k in sorted(self._keywords, key=len, reverse=True))
            self._kw_regex = re.compile(alt)

    @property
    def backend(self) -> str:
        """``"aho-corasick"`` or ``"regex"`` (the keyword matcher in use)."""
        return "aho-corasick" if self._automaton is not None else "regex"

    def count(self, text: str) -> np.ndarray:
        """Matches per task in ``text``: ``[n_tasks]`` int32, in :attr:`tasks` order."""
        out = np.zeros(len(self.tasks), dtype=np.int32)
        low = text.lower()
        if self._automaton is not None:
            for _, tasks in self._automaton.iter(low):
                for ti in tasks:
                    out[ti] += 1
        elif self._kw_regex is not None:
            kw = self._keywords
            for m in self._kw_regex.finditer(low):
                for ti in kw[m.group(0)]:
                    out[ti] += 1
        for ti, rx in self._regex:
            out[ti] += sum(1 for _ in rx.finditer(text))
        return out

    def count_batch(self, texts: Sequence[str]) -> np.ndarray:
        """``[n_texts, n_tasks]`` int32 match counts."""
        out = np.zeros((len(texts), len(self.tasks)), dtype=np.int32)
        for i, t in enumerate(texts):
            out[i] = self.count(t)
        return out


def _build_automaton(keywords: dict[str, tuple[int, ...]]):
    if not keywords:
        return None
    try:
        import ahocorasick
    except ImportError:  # the regex fallback gives the same counts except on overlapping keywords
        return None
    a = ahocorasick.Automaton()
    for k, tasks in keywords.items():
        a.add_word(k, tasks)
    a.make_automaton()
    return a
