"""The timeline's actions and the expectations' kinds, one module each (see ``base``).

Importing this package registers them all: ``ACTIONS`` (probe, call, link,
flush-conntrack, turn, rule, probe-endpoint) and ``EXPECTS`` (probe, call, nat, endpoint). A new action is a new
module here, imported below.
"""

# each module registers itself; in this order the schema, hints and reports list them
from . import probe, call, link, conntrack, turn, rule, nat, endpoint  # noqa: F401,I001
from .base import ACTIONS, EXPECTS, Action, Expect, Strict

__all__ = ["ACTIONS", "EXPECTS", "Action", "Expect", "Strict"]
