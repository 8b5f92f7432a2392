"""icelab: a network emulation lab for WebRTC softphone failures."""

__version__ = "0.1.0"
