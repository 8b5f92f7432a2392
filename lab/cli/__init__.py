"""icelab's command line: one module per command group, each command a few lines over the layers
below (lab.model, lab.net, lab.scenario, lab.report). ``main`` is the ``icelab`` entry point.

Exit status: 0 success, 1 the lab could not be built or reached (or a verdict is not pass),
2 bad input or usage, 130 interrupted (Ctrl-C, SIGTERM, SIGHUP).
"""

import os

# pydantic looks for plugins among every installed package's entry points the first time a model
# is built (~10 % of `icelab validate`'s start-up, issue #12); the lab uses none. Set the variable
# yourself to have pydantic load plugins anyway.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

from .main import main  # noqa: E402  (after the environment it reads)

__all__ = ["main"]
