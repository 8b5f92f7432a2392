"""The ``icelab`` entry point: parse, run the command, turn a lab error into its exit status."""

from __future__ import annotations

import importlib
import os
import sys

from lab.core.errors import EXIT_INTERRUPTED, EXIT_OK, LabError

from .console import Refused, hinted, print_error
from .parser import parser

#: what the lab-building commands need and the probe does not (pyproject.toml's ``lab`` extra;
#: ``make setup`` installs it): a machine with only ``pip install icelab`` has the probe
LAB_PACKAGES = {"mininet": "Mininet"}


def command(module: str):
    """The command's module; a lab command on a machine without Mininet is refused with what
    to install (exit 1), not a traceback."""
    try:
        return importlib.import_module(f"lab.cli.{module}")
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").partition(".")[0]
        if missing not in LAB_PACKAGES:
            raise
        raise Refused(hinted(
            f"this command builds labs and needs {LAB_PACKAGES[missing]}, which is not installed here",
            "on the lab machine run 'sudo make setup' (apt's mininet and pip install '.[lab]'); "
            "'icelab probe' works without it")) from None


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # Each command's module is imported when that command runs, not before: `icelab validate`
    # must start in a blink, without Mininet, the scenario runner or matplotlib, which other
    # commands' modules import (the parser names commands as "module:function").
    module, _, name = args.handler.partition(":")
    try:
        return getattr(command(module), name)(args)
    except LabError as exc:
        print_error(exc)
        return exc.exit_status
    except BrokenPipeError:
        # the reader went away (`icelab ... | head`): not an error of ours; stop writing quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
