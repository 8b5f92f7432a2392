"""The lab's leaf package: what every layer shares and nothing of the lab is imported by.

errors (one hierarchy, each error with its exit status), units (durations, percentages, rates,
bounds: one parser for every file format), stun (the one STUN/TURN codec), control (the
JSON-line control channel), supervise (processes: start, wait until ready, stop; deadlines),
names (lab, node, interface, shell and tun names, MACs, the run directory), audio (the test
tones both ends of a call play and check).
"""
