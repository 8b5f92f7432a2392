"""icelab's command line: one module per command group, each command a few lines over the layers
below (lab.model, lab.net, lab.scenario, lab.report). ``main`` is the ``icelab`` entry point.

Exit status: 0 success, 1 the lab could not be built or reached (or a verdict is not pass),
2 bad input or usage, 130 interrupted (Ctrl-C, SIGTERM, SIGHUP).
"""

from .main import main

__all__ = ["main"]
