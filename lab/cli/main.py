"""The ``icelab`` entry point: parse, run the command, turn a lab error into its exit status."""

from __future__ import annotations

import importlib
import os
import sys

from lab.core.errors import EXIT_INTERRUPTED, EXIT_OK, LabError

from .console import print_error
from .parser import parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # Each command's module is imported when that command runs, not before: `icelab validate`
    # must start in a blink, without Mininet, the scenario runner or matplotlib, which other
    # commands' modules import (the parser names commands as "module:function").
    module, _, name = args.handler.partition(":")
    try:
        return getattr(importlib.import_module(f"lab.cli.{module}"), name)(args)
    except LabError as exc:
        print_error(exc)
        return exc.exit_status
    except BrokenPipeError:
        # the reader went away (`icelab ... | head`): not an error of ours; stop writing quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
