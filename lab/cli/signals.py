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


def _first_signal(signum, _frame):
    """The first of the three signals unwinds the command; the ones after it are ignored until
    the command has unwound, so that they cannot cut its cleanup short (a signal to a process
    group reaches `verify --parallel` and its child runs, and verify then stops the children
    again; a second Ctrl-C must not leave half a lab either)."""
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise _Terminate(signum)


@contextmanager
def interruptible() -> Iterator[None]:
    """Use as ``@interruptible()`` on a command, or ``with interruptible():``. Installs the
    three handlers, restores the ones before on the way out."""
    old = {sig: signal.getsignal(sig) for sig in SIGNALS}
    # SIGINT too, explicitly: a process started from a non-interactive shell (`icelab up &`
    # in a script) inherits SIGINT as ignored, and would then never stop on it.
    for sig in SIGNALS:
        signal.signal(sig, _first_signal)
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted(int(signal.SIGINT)) from None
    except _Terminate as exc:
        raise Interrupted(int(exc.args[0])) from None
    finally:
        for sig, handler in old.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
