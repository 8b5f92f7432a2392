"""What every command prints through: the two consoles, and how an error reaches people.

Strings from the user or from files (names, paths, messages that quote them) are printed as
plain ``Text`` or through ``escape``: rich would read ``[/x]`` in a lab name as markup.
"""

from __future__ import annotations

import sys

from rich.console import Console
from rich.markup import escape
from rich.text import Text

from lab.core.errors import InputError, Interrupted, LabError, UsageError

__all__ = ["err", "out", "escape", "hinted", "Refused", "print_error", "print_problems"]

# Tables are for people; piped into a log they should not wrap at 80 columns.
err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 140)
out = Console(highlight=False, width=None if sys.stdout.isatty() else 140)


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
    for p in exc.problems[:SHOWN]:
        err.print(_problem_text(p), soft_wrap=True)
    n = len(exc.problems)
    if n > SHOWN:
        err.print(Text(f"… and {n - SHOWN} more (--json lists all)", style="yellow"))
    err.print(f"[red]{n} problem{'s' if n != 1 else ''}; nothing was built[/]")


def _problem_text(p) -> Text:
    where = p.file if p.line is None else f"{p.file}:{p.line}"
    t = Text()
    t.append(where + ": ", style="bold")
    if p.path:
        t.append(p.path + ": ", style="cyan")
    t.append(p.message, style="red")
    if p.hint:
        t.append("\n    hint: " + p.hint, style="yellow")
    return t
