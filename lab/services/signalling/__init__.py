"""The LilyRTC signalling mock: what the softphone's WebSocket talks to.

``server.SignallingServer`` serves ``wss://<host>/LilyRTC?callId=..&contactCtx=..`` with the
JSON-RPC 2.0 methods of connect-rtc-js (``invite``, ``accept``, ``bye``) and can misbehave on
purpose (busy, not found, slow answers). ``python -m lab.services.signalling --config FILE``
runs it as a process.
"""

from .server import CallPlan, SignallingServer, static_answerer

__all__ = ["CallPlan", "SignallingServer", "static_answerer"]
