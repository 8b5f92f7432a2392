"""The lab's errors: one hierarchy, each error knowing the exit status it ends a command with.

``LabError`` is the base (exit 1: the lab could not do what was asked); ``InputError`` carries
every problem of an input file at once, with file, line, path and hint (exit 2, nothing built);
``UsageError`` is one bad command-line argument (exit 2); ``Interrupted`` is Ctrl-C, SIGTERM or
SIGHUP (exit 130). Every layer raises these, so the CLI needs one ``except LabError``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Iterable


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input file.

    ``path`` is the place in the document in the form people read (``links[3].a``,
    ``nodes.edge.routes[0].via``); ``line`` is 1-based, or None when the file has no
    such place (a required field that is missing is reported at its parent's line).
    """

    file: str
    path: str
    message: str
    hint: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        text = f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"
        if self.hint:
            text += f"\n    hint: {self.hint}"
        return text

    def to_dict(self) -> dict:
        return {"file": self.file, "line": self.line, "path": self.path,
                "message": self.message, "hint": self.hint}


EXIT_OK, EXIT_FAIL, EXIT_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


class LabError(Exception):
    """Something the lab could not do; the message says what to do next. Exit status 1."""

    exit_status = EXIT_FAIL


class UsageError(LabError):
    """One bad argument or name given on the command line. Exit status 2."""

    exit_status = EXIT_INPUT


class Interrupted(LabError):
    """Ctrl-C, SIGTERM or SIGHUP: cleanup ran, the command stops. Exit status 130."""

    exit_status = EXIT_INTERRUPTED

    def __init__(self, signum: int = 2):
        super().__init__(f"interrupted by signal {signum}")
        self.signum = signum


@dataclass
class InputError(LabError):
    """Raised with every problem of a file; the CLI prints them and exits with status 2."""

    problems: list[Problem] = field(default_factory=list)
    exit_status = EXIT_INPUT

    def __str__(self) -> str:
        n = len(self.problems)
        head = f"{n} problem{'s' if n != 1 else ''} found"
        return head + ":\n" + "\n".join(str(p) for p in self.problems)


def format_path(parts: Iterable[str | int]) -> str:
    """('links', 3, 'a') -> 'links[3].a'."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def did_you_mean(word: str, choices: Iterable[str], what: str = "") -> str | None:
    """A hint naming the closest known word, and the known words when there are few."""
    choices = sorted(set(choices))
    close = difflib.get_close_matches(str(word), choices, n=1, cutoff=0.6)
    listing = ", ".join(choices) if len(choices) <= 12 else ", ".join(choices[:12]) + ", ..."
    known = f"{what}: {listing}" if what else listing
    if close:
        return f"did you mean '{close[0]}'? {known}" if choices else None
    return known if choices else None
