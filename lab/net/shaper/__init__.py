"""The lab's own link shaper (where the kernel has no netem): NFQUEUE and a delay line.

``ShapingError`` lives here, below lab.net.shaping, because both impairment backends
raise it: netem (``netem.py``) and the shaper, and shaping.py drives both.
"""

from lab.core.errors import LabError


class ShapingError(LabError):
    """Impairments could not be applied; the message says what to do."""
