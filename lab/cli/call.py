"""`icelab call`: one softphone call from an agent of a lab that is up (lab/net/call.py)."""

from __future__ import annotations

from lab.net.call import NoCallLeft, place_call

from .console import Refused
from .lookup import running_node
from .signals import interruptible


@interruptible()
def call(args) -> int:
    st, node = running_node(args.name, args.agent)
    try:
        return place_call(st, args.agent, node, talk=args.talk, profile=args.profile, engine=args.engine,
                          mdns=args.mdns, text=not args.json)
    except NoCallLeft as exc:
        raise Refused(str(exc)) from None
