"""Run Python code inside a lab node's network namespace, from this process.

``setns(2)`` moves only the calling thread, so the work runs in a short-lived thread:
sockets it creates stay in the node's namespace after the thread ends, and the rest of
the process (and the root namespace) is never touched. Python 3.11 has no os.setns.
"""

from __future__ import annotations

import ctypes
import os
import threading
from typing import Callable, TypeVar

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def run_in(pid: int, fn: Callable[[], T]) -> T:
    """fn() called in a thread that has joined the network namespace of ``pid``."""
    box: dict = {}

    def target():
        try:
            fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    e = ctypes.get_errno()
                    raise OSError(e, f"setns into the namespace of {pid}: {os.strerror(e)}")
            finally:
                os.close(fd)
            box["value"] = fn()
        except BaseException as exc:   # handed to the caller
            box["error"] = exc

    t = threading.Thread(target=target, name=f"netns-{pid}")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]
