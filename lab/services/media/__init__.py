"""The media edge: the Connect side of the agent's audio leg (answers the offer, relays
through the lab's TURN, hold audio until ``accept``, then the caller). ``python -m
lab.services.media --config FILE`` runs it with the signalling mock in one process."""

from .edge import MediaEdge

__all__ = ["MediaEdge"]
