"""One way for the commands that build labs to stop on a signal.

Ctrl-C (SIGINT), SIGTERM (``icelab down``, a CI runner's timeout) and SIGHUP (the terminal
closed) all unwind the command, so that its cleanup (``finally:`` blocks, down to the lab's
teardown) runs; then the command ends with ``Interrupted`` (exit status 130).

While the command unwinds, the signal travels as ``KeyboardInterrupt`` (SIGINT) or
``_Terminate`` (SIGTERM, SIGHUP), both ``BaseException``: the runner's ``except LabError``
and ``except Exception`` blocks must not take it for a failed step and carry on. It becomes
``Interrupted`` only here, at the command's edge.
"""

from __future__ import annotations

import signal
from contextlib import contextmanager
from typing import Iterator

from lab.core.errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _Terminate(BaseException):
    """SIGTERM or SIGHUP, raised in the main thread like KeyboardInterrupt for Ctrl-C."""


def _raise_terminate(signum, _frame):
    raise _Terminate(signum)


@contextmanager
def interruptible() -> Iterator[None]:
    """Use as ``@interruptible()`` on a command, or ``with interruptible():``. Installs the
    three handlers, restores the ones before on the way out."""
    old = {sig: signal.getsignal(sig) for sig in SIGNALS}
    # SIGINT too, explicitly: a process started from a non-interactive shell (`icelab up &`
    # in a script) inherits SIGINT as ignored, and would then never stop on it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_terminate)
    signal.signal(signal.SIGHUP, _raise_terminate)
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted(int(signal.SIGINT)) from None
    except _Terminate as exc:
        raise Interrupted(int(exc.args[0])) from None
    finally:
        for sig, handler in old.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
