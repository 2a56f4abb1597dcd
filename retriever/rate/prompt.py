"""Rating prompts (a 0-5 additive rubric per task) and the parse of the model's answer.

The frame follows FineWeb-Edu's annotation prompt: the extract, an additive rubric (start at 0,
add a point per condition met, so 0-5), a short justification, then ``Score: <points>``. Each task's
rubric is shipped in its spec (a multi-line ``rubric`` string in ``indexes/<task>.toml``); a whole
template replaces the frame with ``--prompts FILE.toml`` (a ``[prompts]`` table ``{task =
"...{text}..."}``) or ``RateConfig(prompts=...)``. Templates name fields in braces: ``{text}``
(required), ``{task}``, ``{description}``, ``{rubric}``; other braces are left as they are
(documents are full of them).

The *prompt version* is a hash of everything that shapes an answer: the resolved template, the
system message, the document cut, the API kind and the sampling settings. Cached answers are keyed
by it, so editing a rubric asks again while rerunning the same prompt asks nothing.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from retriever.errors import ConfigError
from retriever.manifest import fingerprint

SYSTEM = "You are a careful annotator of pretraining data. Follow the rubric exactly."

FRAME = """Below is an extract from a web page. Evaluate whether it would help a small language \
model learn this skill: {description}

Use the additive 5-point scoring system below. Start at 0 and add each point whose condition the \
extract meets (a total of 0 to 5 points).

{rubric}

The extract:
<extract>
{text}
</extract>

After examining the extract:
- Briefly justify your total score, up to 100 words.
- Conclude with the score using the format: "Score: <total points>"
"""

FIELDS = ("text", "task", "description", "rubric")
MAX_SCORE = 5


def render(template: str, **values: str) -> str:
    """``template`` with ``{name}`` replaced for the names of :data:`FIELDS` only.

    ``str.format`` would choke on the braces of JSON and code in documents and in rubrics.
    """
    out = template
    # {text} last, so braces inside the document are never taken for a field
    for name in [f for f in FIELDS if f != "text"] + ["text"]:
        if name in values:
            out = out.replace("{" + name + "}", values[name])
    return out


@dataclass(frozen=True)
class TaskPrompt:
    """The prompt of one task: a template with ``{text}`` and the fields filled in around it."""

    task: str
    template: str
    system: str = SYSTEM

    def __post_init__(self) -> None:
        if "{text}" not in self.template:
            raise ConfigError(
                f"the rating prompt of task {self.task!r} has no {{text}} placeholder: the "
                "document would never be sent; add {text} where the extract goes"
            )

    def build(self, text: str) -> str:
        return render(self.template, text=text)


def task_prompt(
    task: str,
    rubric: str = "",
    description: str = "",
    template: str | None = None,
    system: str = SYSTEM,
) -> TaskPrompt:
    """The prompt of ``task``: ``template`` if given, else :data:`FRAME` with the task's rubric.

    Raises:
        ConfigError: no template and no rubric (the task spec has no ``rubric``).
    """
    if template is None:
        if not rubric.strip():
            raise ConfigError(
                f'task {task!r} has no rating rubric: add `rubric = """..."""` to its spec '
                "(indexes/<task>.toml) or give a template in a --prompts file"
            )
        template = FRAME
    filled = render(
        template,
        task=task,
        description=description.strip() or task,
        rubric=rubric.strip(),
    )
    return TaskPrompt(task=task, template=filled, system=system)


def prompt_version(prompt: TaskPrompt, **settings) -> str:
    """Hash of the template, system message and the settings that shape an answer."""
    return fingerprint({"template": prompt.template, "system": prompt.system, **settings})


@dataclass(frozen=True)
class Parsed:
    """A parsed answer: ``score`` (float, NaN when rejected), ``int_score`` (-1 when rejected),
    ``error`` (``None``, ``"unparseable"`` or ``"out_of_range"``)."""

    score: float
    int_score: int
    error: str | None


_NUMBER = r"[\s*_<\[(\"'`]*(-?\d+(?:\.\d+)?)"


def score_pattern(marker: str = "Score:") -> re.Pattern:
    """The marker (case-insensitive, its colon optional) then the number after it."""
    m = marker.strip().rstrip(":").strip()
    if not m:
        raise ConfigError("the score marker must not be empty (e.g. 'Score:')")
    return re.compile(re.escape(m) + r"\s*\**\s*[:=]?" + _NUMBER, re.IGNORECASE)


def parse_score(answer: str, pattern: re.Pattern | None = None) -> Parsed:
    """The score of an answer: the number after the *last* ``Score:`` marker (the conclusion; a
    justification may quote the format first), or the whole answer when it is just a number.

    A decimal (``Score: 3.5``) is kept in ``score``; ``int_score`` is it rounded half up. Outside
    0-5 is ``out_of_range``; no number at all is ``unparseable``.
    """
    rx = pattern or score_pattern()
    hits = rx.findall(answer or "")
    if hits:
        val = hits[-1]
    else:
        lone = re.fullmatch(r"\s*\**\s*(-?\d+(?:\.\d+)?)\s*\**\.?\s*", answer or "")
        if lone is None:
            return Parsed(math.nan, -1, "unparseable")
        val = lone.group(1)
    x = float(val)
    if not 0 <= x <= MAX_SCORE:
        return Parsed(math.nan, -1, "out_of_range")
    return Parsed(x, int(math.floor(x + 0.5)), None)
