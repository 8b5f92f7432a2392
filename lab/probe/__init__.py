"""``icelab probe``: the lab's diagnosis run on a real agent's network, without root.

An engineer runs it on an agent's machine (Linux, macOS or Windows, as an ordinary user);
the lab runs the same code inside an agent's namespace (the ``probe-endpoint`` scenario
action), so every lab network is a test case for it. It sends a bounded, paced set of
packets only to the endpoints it is given (``targets``), measures what comes back
(``measure``), and turns that into findings that name the lab scenario reproducing each
problem (``signatures``, the one place where those signatures live). ``report`` writes a
Markdown or HTML page to attach to a ticket.

It imports ``lab.core`` and nothing else of the lab: plain asyncio sockets (no raw sockets,
no Mininet, no scapy, no aiortc), so ``pip install`` without Mininet gives a working probe.
"""
