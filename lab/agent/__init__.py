"""The emulated Amazon Connect softphone (connect-rtc-js ``RTCSession``), see docs/softphone.md.

``place_call(call_id, media_info, ssl=...)`` places one call and returns an :class:`Outcome`
with its timeline; ``python -m lab.agent --config FILE`` does the same as a process.
"""

from .call import CallOptions, place_call
from .session import Outcome, RTCSession

__all__ = ["CallOptions", "Outcome", "RTCSession", "place_call"]
