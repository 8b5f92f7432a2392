"""Why a scenario's run could not go on (the lab, not the scenario's expectations)."""

from __future__ import annotations

from lab.core.errors import LabError


class RunError(LabError):
    """A run broke: a responder, a service or a live change failed. The result's ``error``."""


class ActionError(RunError):
    """A timeline action could not be done to the running lab (a TURN server, a firewall)."""
