"""The lab's own link shaper (where the kernel has no netem): NFQUEUE and a delay line."""
