"""What every command prints through: the two consoles, and how an error reaches people.

Strings from the user or from files (names, paths, messages that quote them) are printed as
plain ``Text`` or through ``escape``: rich would read ``[/x]`` in a lab name as markup.
"""

from __future__ import annotations

import os
import sys

from lab.core.errors import InputError, Interrupted, LabError, UsageError

__all__ = ["err", "out", "escape", "print_ok", "hinted", "Refused", "print_error", "print_problems"]


class _Console:
    """A rich ``Console`` made on first use. rich costs about a seventh of `icelab validate`'s
    start-up (issue #12); a command that only prints JSON (`validate --json`, `verify --json`)
    never pays for it. Attributes are those of rich's Console."""

    def __init__(self, stderr: bool):
        self._stderr = stderr
        self._console = None

    def __getattr__(self, name):
        if self._console is None:
            from rich.console import Console   # lazy: start-up time, see the class's docstring
            stream = sys.stderr if self._stderr else sys.stdout
            # Tables are for people; piped into a log they should not wrap at 80 columns.
            self._console = Console(stderr=self._stderr, highlight=False,
                                    width=None if stream.isatty() else 140)
        return getattr(self._console, name)


err = _Console(stderr=True)
out = _Console(stderr=False)


def print_ok(text: str) -> None:
    """A line that says something went well, after a green check: written directly, without
    rich (the common case of `icelab validate`, whose start-up is counted: issue #12).
    Colour only on a terminal and without NO_COLOR (https://no-color.org), as rich does."""
    tty = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    sys.stdout.write(("\x1b[32m✓\x1b[0m " if tty else "✓ ") + text + "\n")
    sys.stdout.flush()


def escape(text: str) -> str:
    """``text`` with rich's markup characters escaped (see the module's docstring)."""
    from rich.markup import escape as rich_escape   # lazy: start-up time (_Console)
    return rich_escape(text)


class Refused(LabError):
    """A command cannot do what was asked (exit status 1); the message is already phrased for
    the command line, so it is printed as it is, like a ``UsageError``."""


def hinted(message: str, hint: str) -> str:
    """A message and, on the next line, what to do about it (as the problems of a file read)."""
    return f"{message}\n    hint: {hint}"


def print_error(exc: LabError) -> None:
    """Problems of input files one by one; an interruption says nothing (cleanup has said what
    it did); a refusal or a bad argument: its first line in red, then its hint; any other
    error of the lab after 'error:'."""
    from rich.text import Text   # lazy: start-up time (_Console)
    if isinstance(exc, InputError):
        print_problems(exc)
    elif isinstance(exc, Interrupted):
        return
    elif isinstance(exc, (UsageError, Refused)):
        first, nl, rest = str(exc).partition("\n")
        err.print(Text(first, style="red") + Text(nl + rest))
    else:
        err.print(Text("error:", style="red") + Text(f" {exc}"))


#: problems printed for people; past that a count (rich takes ~2 s for 3,000, and nobody reads them)
SHOWN = 100


def print_problems(exc: InputError) -> None:
    from rich.text import Text   # lazy: start-up time (_Console)
    for p in exc.problems[:SHOWN]:
        err.print(_problem_text(p), soft_wrap=True)
    n = len(exc.problems)
    if n > SHOWN:
        err.print(Text(f"… and {n - SHOWN} more (--json lists all)", style="yellow"))
    err.print(f"[red]{n} problem{'s' if n != 1 else ''}; nothing was built[/]")


def _problem_text(p) -> Text:
    from rich.text import Text   # lazy: start-up time (_Console)
    where = p.file if p.line is None else f"{p.file}:{p.line}"
    t = Text()
    t.append(where + ": ", style="bold")
    if p.path:
        t.append(p.path + ": ", style="cyan")
    t.append(p.message, style="red")
    if p.hint:
        t.append("\n    hint: " + p.hint, style="yellow")
    return t
