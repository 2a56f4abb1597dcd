"""Every ``retriever ...`` command the README and docs/ show in a shell block parses with the real
CLI parser: a renamed or removed option fails here, not in a user's terminal."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from retriever.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL = ("bash", "sh", "shell", "console", "")
# a placeholder the reader fills in: not a command to parse as written
PLACEHOLDER = re.compile(r"\.\.\.|<[^>]*>|\[|\$\(")


def shell_commands(text: str) -> list[str]:
    """The ``retriever`` commands of the shell code blocks of a Markdown page (continuation lines
    joined, comments and pipes / redirections cut off)."""
    lines, fence = [], None
    for ln in text.splitlines():
        if ln.lstrip().startswith("```"):
            fence = None if fence is not None else ln.strip()[3:].strip()
            continue
        if fence in SHELL:
            lines.append(ln)
    out = []
    for ln in "\n".join(lines).replace("\\\n", " ").splitlines():
        ln = re.sub(r"(^|\s)#.*", "", ln).strip()
        m = re.search(r"(?:^|\s|/)(retriever\s.*)", ln)
        if m:
            out.append(re.split(r"&&|;|\||>", m.group(1))[0].strip())
    return out


def table_commands(text: str) -> list[str]:
    """The ``retriever ...`` commands with options in backticks of a page's table rows (a row may
    name a verb's main options only: its required ones may be left out)."""
    return [
        c
        for ln in text.splitlines()
        if ln.startswith("|")
        for c in re.findall(r"`(retriever [^`]+)`", ln)
        if " -" in c
    ]


def unbracket(command: str) -> str:
    """``a [--x 1] --y slurm\\|ray`` -> ``a --x 1 --y slurm``: a table row's optional parts and
    first alternative, checked like the rest."""
    command = re.sub(r"\[([^\]]*)\]", r"\1", command)
    return re.sub(r"(\S+?)\\\|\S+", r"\1", command)


def _commands() -> list[tuple[str, str, bool]]:
    """``(page, command, whole)``: ``whole`` for a shell block's command (it must parse as it
    stands), not for a table row's."""
    found = []
    for page in PAGES:
        text = page.read_text()
        rows = [(c, True) for c in shell_commands(text)] + [
            (c, False) for c in table_commands(text)
        ]
        for c, whole in rows:
            verb = re.match(r"retriever( [a-z-]+)+?(?= -| [A-Z]|$)", c)
            for part in c.split(" / "):  # "retriever x --a 1 / --b 2": two variants
                if not part.startswith("retriever ") and verb:
                    part = f"{verb.group(0)} {part}"
                if not PLACEHOLDER.search(part):
                    found.append((page.name, part, whole))
    return found


COMMANDS = _commands()


def test_the_pages_show_commands():
    assert len(COMMANDS) >= 40  # the check would pass vacuously if extraction broke
    assert {p for p, _, _ in COMMANDS} >= {"README.md", "stages.md", "quickstart.md"}


@pytest.mark.parametrize(("page", "command", "whole"), COMMANDS, ids=[c for _, c, _ in COMMANDS])
def test_documented_command_parses(page, command, whole):
    parser = build_parser()
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            parser.parse_args(shlex.split(command)[1:])
        except SystemExit as e:
            msg = err.getvalue().strip().splitlines()[-1] if e.code else ""
            placeholder = re.search(r"invalid \w+ value: '[A-Z_|\\]+'", msg)  # --seed S
            if not whole and ("arguments are required" in msg or placeholder):
                return  # a table row showing some options of a verb, or a placeholder value
            assert not e.code, f"{page}: `{command}`: {msg}"
